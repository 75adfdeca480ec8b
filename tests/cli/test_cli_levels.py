"""The per-level table, ``--scale`` and ``advise`` on the command line.

Runs go through :func:`autoanchor.cli.main` in-process (as users' runs, minus the
interpreter start-up); two subprocess probes check that ``advise`` answers
``--help`` and a bad ``--scale`` without importing torch.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from autoanchor.core.advise import advise
from autoanchor.cli import main
from autoanchor.io.configs import anchors_by_name, strides_by_name
from autoanchor.io.datasets import load_boxes
from autoanchor.core.jitter import scale_jittered_wh
from autoanchor.core.levels import anchors_below_stride, format_below_stride, format_level_table, level_stats
from autoanchor.core.metrics import anchor_stats

from test_cli import NO_TORCH_PROBE

P5 = anchors_by_name("yolov5-p5")  # [3, 3, 2] px
P5_STRIDES = strides_by_name("yolov5-p5")  # 8, 16, 32

# A P3/8 level with two anchors under one stride: 4x5 is sqrt(20) = 4.47 px = 0.56 strides and
# 6x7 is 6.48 px = 0.81 strides; 8x9 is 8.49 px = 1.06 strides, above.
SMALL_MODEL = """\
nc: 80
anchors:
  - [4,5, 6,7, 8,9]  # P3/8
  - [30,61, 62,45, 59,119]  # P4/16
  - [116,90, 156,198, 373,326]  # P5/32
head:
  [[[17, 20, 23], 1, Detect, [nc, anchors]]]
"""


def measured(wh: torch.Tensor) -> torch.Tensor:
    """The boxes the command measures: at least 2 px on one side."""
    return wh[(wh >= 2).any(1) & (wh > 0).all(1)]


@pytest.fixture(scope="module")
def coco_wh() -> torch.Tensor:
    return measured(load_boxes(None).pixel_wh(640))


@pytest.fixture(scope="module")
def coco_scaled() -> torch.Tensor:
    """coco128 under 8 seeded draws (seed 0) of yolov5's default training scale 0.5."""
    return measured(scale_jittered_wh(load_boxes(None), 640, scale=0.5, draws=8, seed=0))


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_text_prints_the_per_level_table_of_level_stats(capsys, coco_wh):
    code, out, _ = run(capsys, "check", "--anchors", "yolov5-p5", "-q")
    assert code == 0
    table = format_level_table(level_stats(coco_wh, P5, P5_STRIDES))
    lines = out.splitlines()
    at = lines.index(table[0])
    assert lines[at : at + 4] == table
    assert lines[at - 1].startswith("BPR ") and lines[at + 4] == "BPR above 0.98: these anchors fit the data"
    assert "under one stride" not in out  # yolov5's smallest anchor is 1.4 strides of P3


def test_check_json_carries_the_levels(capsys, coco_wh):
    code, out, _ = run(capsys, "check", "--anchors", "yolov5-p5", "--format", "json", "-q")
    document = json.loads(out)
    assert code == 0
    assert document["levels"] == [level.to_dict() for level in level_stats(coco_wh, P5, P5_STRIDES)]
    assert [level["name"] for level in document["levels"]] == ["P3", "P4", "P5"]
    assert document["below_stride"] == []
    assert document["scale"] is None and document["draws"] == 1


def test_check_names_the_anchors_under_one_stride(capsys, tmp_path, coco_wh):
    model = tmp_path / "small.yaml"
    model.write_text(SMALL_MODEL)
    anchors = torch.tensor([[[4.0, 5.0], [6.0, 7.0], [8.0, 9.0]], *P5[1:].tolist()])
    below = anchors_below_stride(anchors, [8, 16, 32])
    assert [item.anchor for item in below] == [(4.0, 5.0), (6.0, 7.0)]

    code, out, _ = run(capsys, "check", "--model", str(model), "-q")
    assert code == 0  # P4 and P5 still reach nearly every coco128 box: BPR above 0.98
    assert "\n".join(format_below_stride(below)) in out
    assert "P3 (stride 8): anchor 4x5 px is 0.56 strides, 44% under one stride" in out

    code, out, _ = run(capsys, "check", "--model", str(model), "--format", "json", "-q")
    document = json.loads(out)
    assert [(item["level"], item["anchor"]) for item in document["below_stride"]] == [(0, [4.0, 5.0]), (0, [6.0, 7.0])]
    assert document["below_stride"][0]["shortfall"] == pytest.approx(1 - 20**0.5 / 8)
    assert document["levels"] == [level.to_dict() for level in level_stats(coco_wh, anchors, [8, 16, 32])]


def test_check_of_numbers_has_no_levels_and_says_why(capsys):
    code, out, _ = run(capsys, "check", "--anchors", "10,13, 16,30, 33,23", "-q")
    assert code == 1  # three small anchors: BPR not above 0.98
    assert "no per-level table" in out and "level  stride" not in out
    _, out, _ = run(capsys, "check", "--anchors", "10,13, 16,30, 33,23", "--format", "json", "-q")
    assert json.loads(out)["levels"] == []


def test_check_scale_measures_the_seeded_training_sizes(capsys, coco_scaled):
    code, out, _ = run(capsys, "check", "--anchors", "yolov5-p5", "--scale", "0.5", "--format", "json", "-q")
    document = json.loads(out)
    stats = anchor_stats(coco_scaled, P5.view(-1, 2), thr=4.0)
    assert (document["bpr"], document["fitness"]) == (stats.bpr, stats.fitness)
    assert document["levels"] == [level.to_dict() for level in level_stats(coco_scaled, P5, P5_STRIDES)]
    assert document["scale"] == 0.5 and document["draws"] == 8 and document["seed"] == 0
    assert document["n_boxes_all"] == 929 * 8

    assert run(capsys, "check", "--anchors", "yolov5-p5", "--scale", "0.5", "--format", "json", "-q")[1] == out
    other = json.loads(run(capsys, "check", "--anchors", "yolov5-p5", "--scale", "0.5", "--seed", "1",
                           "--format", "json", "-q")[1])
    assert other["fitness"] != document["fitness"]

    _, text, _ = run(capsys, "check", "--anchors", "yolov5-p5", "--scale", "0.5", "-q")
    assert "scale 0.5 (8 draws per image, seed 0)" in text.splitlines()[0]


def test_fit_scale_searches_and_measures_the_training_sizes(capsys, coco_scaled):
    code, out, _ = run(capsys, "fit", "--gen", "5", "--scale", "0.5", "--format", "json", "-q")
    document = json.loads(out)
    assert code == 0 and document["scale"] == 0.5 and document["draws"] == 8
    levels = document["levels"]
    assert [level["stride"] for level in levels] == [8, 16, 32]
    assert [level["level"] for level in levels] == [0, 1, 2] and [level["name"] for level in levels] == ["P3", "P4", "P5"]
    rounded = torch.tensor([level["anchors"] for level in levels], dtype=torch.float32)  # integer pixels
    assert all(isinstance(v, int) for level in levels for pair in level["anchors"] for v in pair)
    stats = anchor_stats(coco_scaled, rounded.view(-1, 2), thr=4.0)
    assert document["fitness"] == stats.fitness and document["n_boxes"] == coco_scaled.shape[0]
    for got, want in zip(levels, level_stats(coco_scaled, rounded, [8, 16, 32])):
        assert (got["matched"], got["targets"], got["best"], got["size_in_strides"]) == (
            want.matched, want.targets, want.best, want.size_in_strides.tolist()
        )

    _, text, _ = run(capsys, "fit", "--gen", "5", "--scale", "0.5", "-q")
    table = format_level_table(level_stats(coco_scaled, rounded, [8, 16, 32]))
    assert "\n".join(table) in text
    assert "seed 0, scale 0.5 (8 draws per image, seed 0)" in text.splitlines()[0]


@pytest.mark.parametrize("command", [["fit"], ["check", "--anchors", "yolov5-p5"], ["advise"]])
@pytest.mark.parametrize("value", ["1.5", "1", "-0.2", "x"])
def test_bad_scale_exits_2_naming_it(capsys, command, value):
    code, out, err = run(capsys, *command, "--scale", value)
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert "argument --scale: --scale must be" in line and value in line


@pytest.mark.slow
def test_advise_recommends_as_the_library_does(capsys):
    args = ["advise", "--counts", "3,4,6,9", "--sweep-gen", "5", "--gen", "20", "-q"]
    code, out, _ = run(capsys, *args)
    assert code == 0
    wh = load_boxes(None).pixel_wh(640)
    with pytest.warns(UserWarning, match="under 3 px"):  # as the command warned on stderr (-q: not shown)
        expected = advise(wh, img_size=640, counts=[3, 4, 6, 9], sweep_gen=5, gen=20)
    chosen = expected.recommended
    lines = out.splitlines()
    assert lines[0] == (
        "levels and anchors for built-in coco128 (928 of 929 boxes; 1 under 2 px left out; img 640, thr 4.0, "
        "seed 0, margin 10%):"
    )
    recommendation = next(line for line in lines if line.startswith("recommended: "))
    assert recommendation.startswith(
        f"recommended: {chosen.levels} with {chosen.n_anchors} anchors ({chosen.per_level} per level), "
        f"fitness {chosen.fitness:.4f}"
    )
    # One table row per configuration: P3-P5 takes 3, 6 and 9; P2-P5 and P3-P6 take 4.
    rows = [line for line in lines if line[1:6] in ("P3-P5", "P2-P5", "P3-P6")]
    assert [row.split()[0].lstrip("*") for row in rows] == ["P3-P5"] * 3 + ["P2-P5", "P3-P6"]
    assert sum(row.startswith("*") for row in rows) == 1

    code, out, _ = run(capsys, *args, "--format", "json")
    document = json.loads(out)
    assert document["recommended"]["fitness"] == chosen.fitness
    assert document["recommended"]["level_stats"] == [level.to_dict() for level in chosen.level_stats]
    assert [(row["levels"], row["n_anchors"]) for row in document["rows"]] == [
        ("P3-P5", 3), ("P3-P5", 6), ("P3-P5", 9), ("P2-P5", 4), ("P3-P6", 4)
    ]
    assert document["counts"] == [3, 4, 6, 9] and document["margin"] == 0.1


def test_advise_notes_many_small_boxes(capsys, tmp_path):
    # 64 images of 640x640 with one 5x5 px box each (all under the finest stride, 8 px) and 16 with a
    # 100x100 box: 64 / 80 = 80 % of the boxes are small.
    import numpy as np

    path = tmp_path / "small.npz"
    # (Sizes a little apart: advise refuses more anchors than distinct sizes.)
    wh = np.array([[(5 + i / 64) / 640, 5 / 640] for i in range(64)] + [[(100 + i) / 640, 100 / 640] for i in range(16)],
                  dtype=np.float32)
    np.savez(path, shapes=np.full((80, 2), 640), wh=wh, image_index=np.arange(80))
    code, out, _ = run(capsys, "advise", str(path), "--counts", "3,4", "--sweep-gen", "5", "--gen", "5", "-q")
    assert code == 0
    assert "note: 80% of boxes are under 8 px (long side), the finest stride: add a P2 level, stride 4" in out


def test_advise_scale_pools_the_draws(capsys):
    code, out, _ = run(capsys, "advise", "--counts", "3", "--sweep-gen", "2", "--gen", "2", "--scale", "0.5",
                       "--format", "json", "-q")
    document = json.loads(out)
    assert code == 0 and document["n_boxes_all"] == 929 * 8 and document["scale"] == 0.5
    assert document["n_boxes"] + document["n_boxes_left_out"] == 929 * 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--counts", "0-3"], "argument --counts"),
        (["--counts", "3..9"], "argument --counts"),
        (["--margin", "1"], "argument --margin"),
        (["--counts", "5"], "no count in [5] is a multiple of the levels"),
    ],
)
def test_advise_refuses_bad_options(capsys, args, message):
    code, out, err = run(capsys, "advise", *args)
    assert code == 2 and out == "" and message in err


@pytest.mark.parametrize(("args", "code"), [(["advise", "--help"], 0), (["advise", "--scale", "1.5"], 2)])
def test_advise_help_and_usage_errors_do_not_import_torch(args, code):
    done = subprocess.run([sys.executable, "-c", NO_TORCH_PROBE, *args], capture_output=True, text=True, timeout=120)
    assert done.stderr.splitlines()[-1] == f"torch imported: False exit {code}", done.stderr
