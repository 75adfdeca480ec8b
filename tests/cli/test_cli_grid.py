"""``autoanchor fit/check --generator``: torchvision grid anchors on the command line (no torchvision needed)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import subprocess
import sys

import pytest
import torch
import yaml
from test_cli import NO_TORCH_PROBE

from autoanchor.cli import main
from autoanchor.cli.grid import PRESETS, mmdet_fields
from autoanchor.grid import GridAnchors


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "-q"])
    return code, out.getvalue()


def parse_python(text: str) -> GridAnchors:
    """The ``AnchorGenerator(sizes=..., aspect_ratios=...)`` call in the output (one line in the text format,
    several in the ``--format python`` program), evaluated with ``dict`` in its place."""
    start = re.search(r"AnchorGenerator\(\s*sizes=", text).start()
    depth, end = 0, start
    for end in range(start + len("AnchorGenerator"), len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            break
    kwargs = eval(text[start : end + 1], {"AnchorGenerator": dict})
    return kwargs["sizes"], kwargs["aspect_ratios"]


def parse_mmdet(text: str) -> dict:
    body = text[text.index("anchor_generator=") + len("anchor_generator=") :]
    return eval(body, {"dict": dict})


def mmdet_cell_anchors(fields: dict) -> list[torch.Tensor]:
    """mmdetection's base anchors by its documented formula (AnchorGenerator.gen_single_level_base_anchors,
    scale_major, centre offset 0): per ratio r and scale s, w = base * s / sqrt(r), h = base * s * sqrt(r),
    box (-w/2, -h/2, w/2, h/2). A plain loop, no rounding."""
    levels = []
    for base in fields["base_sizes"]:
        rows = []
        for ratio in fields["ratios"]:
            for scale in fields["scales"]:
                w = base * scale / math.sqrt(ratio)
                h = base * scale * math.sqrt(ratio)
                rows.append([-w / 2, -h / 2, w / 2, h / 2])
        levels.append(torch.tensor(rows, dtype=torch.float64))
    return levels


@pytest.fixture(scope="module")
def fasterrcnn_fit() -> dict[str, str]:
    return {fmt: run("fit", "--generator", "fasterrcnn", "--format", fmt)[1] for fmt in ("text", "python", "mmdet",
                                                                                      "detectron2")}


def test_fit_formats_agree_and_mmdet_recomputes_the_anchors(fasterrcnn_fit):
    sizes, ratios = parse_python(fasterrcnn_fit["python"])
    assert parse_python(fasterrcnn_fit["text"]) == (sizes, ratios)  # the text output holds all three forms
    text = fasterrcnn_fit["text"]
    assert "ANCHOR_GENERATOR:" in text and "anchor_generator=dict(" in text
    assert (sizes, ratios) != (PRESETS["fasterrcnn"]["sizes"], PRESETS["fasterrcnn"]["ratios"])  # it fitted
    fitted = GridAnchors(sizes, ratios, PRESETS["fasterrcnn"]["strides"])
    fields = parse_mmdet(fasterrcnn_fit["mmdet"])
    assert fields["strides"] == [4, 8, 16, 32, 64] and "#" not in fasterrcnn_fit["mmdet"]  # exact: no caveat
    for theirs, ours in zip(mmdet_cell_anchors(fields), fitted.cell_anchors(dtype=torch.float64)):
        # torchvision rounds its cell anchors to whole pixels; mmdet does not.
        assert torch.allclose(theirs, ours, atol=0.5)
    # detectron2: a YAML block that safe_load reads into what cfg.merge_from_file takes.
    config = yaml.safe_load(fasterrcnn_fit["detectron2"])
    assert list(config) == ["MODEL"] and list(config["MODEL"]) == ["ANCHOR_GENERATOR"]
    d2_sizes, d2_ratios = config["MODEL"]["ANCHOR_GENERATOR"]["SIZES"], config["MODEL"]["ANCHOR_GENERATOR"]["ASPECT_RATIOS"]
    assert [tuple(level) for level in d2_sizes] == [tuple(level) for level in sizes]
    assert tuple(d2_ratios[0]) == ratios[0] and len(d2_ratios) == 1  # shared ratios: one list
    assert yaml.safe_load(text[text.index("MODEL:"):text.index("# mmdetection")]) == config  # the text's block too
    # Levels in scale order: every size of a coarser level above the finer level's.
    assert all(min(sizes[level + 1]) > max(sizes[level]) for level in range(len(sizes) - 1))


def test_mmdet_fields_exact_for_proportional_levels_and_flag_the_rest():
    proportional = GridAnchors(((20, 30), (40, 60)), ((0.5, 2.0),) * 2, (8, 16))
    fields, worst = mmdet_fields(proportional)
    assert worst == 0 and fields["scales"] == [1.0, 1.5] and fields["base_sizes"] == [20.0, 40.0]
    for theirs, ours in zip(mmdet_cell_anchors(fields), proportional.cell_anchors(dtype=torch.float64)):
        assert torch.allclose(theirs, ours, atol=0.5)
    # 32, 40 vs 64, 100: level 1 as mmdet sees it is 64, 80, so 100 is 20% off.
    assert mmdet_fields(GridAnchors(((32, 40), (64, 100)), ((1.0,),) * 2, (8, 16)))[1] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="shares the scales and ratios"):
        mmdet_fields(GridAnchors(((32,), (64, 100)), ((1.0,),) * 2, (8, 16)))


def test_check_exit_code_follows_the_share_matched():
    code, text = run("check", "--generator", "retinanet")
    share = float(re.search(r"matched ([0-9.]+) at IoU >= 0.5", text).group(1))
    # coco128 at 800 px: most boxes match the stock anchors, above the torchvision default 0.5
    assert 0.5 < share < 0.98 and code == 0 and "AnchorGenerator(sizes=((32, 40, 50)," in text
    assert "matched above 0.5: these anchors fit the data" in text
    code, _ = run("check", "--generator", "retinanet", "--bpr-threshold", "0.98")
    assert code == 1
    assert "IoU >= 0.5" in text.splitlines()[0] and "resize min_size 800, max_size 1333" in text.splitlines()[0]
    code, _ = run("check", "--generator", "retinanet", "--bpr-threshold", f"{share - 0.01:.4f}")
    assert code == 0
    # Explicit sizes replace the preset's: one 64-px anchor per level matches fewer coco boxes.
    code, text = run("check", "--generator", "retinanet", "--sizes", "64;64;64;64;64", "--ratios", "1")
    assert float(re.search(r"matched ([0-9.]+)", text).group(1)) < share


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "--generator", "retinanet", "--format", "yaml"],
        ["fit", "--format", "python"],
        ["fit", "--sizes", "32;64"],  # no strides and no IoU without a preset
        ["check", "--sizes", "32;64"],
        ["fit", "--generator", "fasterrcnn", "--max-stride-units", "0.1"],  # under one pixel at stride 4: no sizes keep it
        ["fit", "--generator", "retinanet", "--strides", "8,16"],  # 5 levels of sizes, 2 strides
        ["check", "--generator", "retinanet", "--iou", "1.5"],
    ],
)
def test_bad_grid_options_are_refused(args, capsys):
    assert main([*args, "-q"]) == 2
    assert "autoanchor: error:" in capsys.readouterr().err


def test_generator_help_imports_no_torch():
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH_PROBE, "check", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.stderr.splitlines()[-1] == "torch imported: False exit 0", done.stderr
    assert "fasterrcnn_mobilenet_v3_large_fpn" in done.stdout and "torchvision is not needed" in done.stdout


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (["--n", "12"], "--n sets the number of YOLO anchors; a grid generator keeps its sizes and ratios per level"),
        (["--scale", "0.5"], "--scale is YOLO's scale jitter; a torchvision transform trains at the sizes of --min-size"),
        (["--thr", "3"], "--thr is YOLO's width/height ratio limit; grid anchors match by IoU (set --iou)"),
        (["--img", "320"], "--img is YOLO's letterbox size; grid anchors are measured at the model's resize"),
        (["--metric", "iou"], "--metric picks a YOLO search metric"),
    ],
)
def test_yolo_options_are_refused_with_generator_each_with_its_reason(capsys, options, reason):
    assert main(["fit", "--generator", "retinanet", *options, "-q"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert reason in captured.err


def test_format_refusals_say_what_grid_anchors_are_written_as(capsys):
    assert main(["fit", "--generator", "retinanet", "--format", "yaml", "-q"]) == 2
    assert "--format yaml writes YOLO anchors; fit with grid anchors writes text, json, python" in capsys.readouterr().err
    assert main(["check", "--generator", "retinanet", "--format", "mmdet", "-q"]) == 2
    assert "invalid choice: 'mmdet' (choose from 'text', 'json')" in capsys.readouterr().err


def test_check_takes_the_grid_options_without_a_preset_and_json_has_the_text_figures():
    options = ["--sizes", "32;64;128;256;512", "--strides", "4,8,16,32,64", "--iou", "0.7",
               "--min-size", "800", "--max-size", "1333"]
    code, text = run("check", *options)
    _code, preset = run("check", "--generator", "fasterrcnn")
    assert code == 1 and text.splitlines()[1:] == preset.splitlines()[1:]  # the preset's numbers, given by hand
    _code, document = run("check", *options, "--format", "json")
    figures = json.loads(document)["anchors"]
    assert f"matched {figures['matched']:.4f} at IoU >= 0.7, mean best IoU {figures['mean_iou']:.4f}" in text
    assert [level["sizes_in_strides"] for level in figures["levels"]] == [[8.0]] * 5


@pytest.mark.slow
def test_multi_scale_fit_names_every_training_size_and_orders_levels():
    code, document = run("fit", "--generator", "retinanet", "--min-size", "480,640,800", "--format", "json")
    result = json.loads(document)
    assert code == 0 and result["resize"].startswith("resize min_size 480..800 (3 training sizes")
    sizes = result["fitted"]["sizes"]
    assert all(min(sizes[level + 1]) > max(sizes[level]) for level in range(len(sizes) - 1))
    assert result["fitted"]["matched"] > result["start"]["matched"]


def test_grid_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "grid.png"
    code, _ = run("check", "--generator", "fasterrcnn", "--plot", str(path))
    assert code == 1 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_advise_answers_for_grid_families():
    code, text = run("advise", "--generator", "fasterrcnn")
    assert code == 0 and "sizes/level  anchors/location" in text and "recommended:" in text
    rows = [line.split() for line in text.splitlines() if re.match(r"\s+[123]\s+\d+\s+0\.", line)]
    assert [int(row[0]) for row in rows] == [1, 2, 3] and [int(row[1]) for row in rows] == [3, 6, 9]
