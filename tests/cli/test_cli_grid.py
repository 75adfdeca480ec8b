"""``autoanchor fit/check --generator``: torchvision grid anchors on the command line (no torchvision needed)."""

from __future__ import annotations

import contextlib
import io
import math
import re
import subprocess
import sys

import pytest
import torch
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
    assert "MODEL.ANCHOR_GENERATOR.SIZES" in text and "anchor_generator=dict(" in text
    assert (sizes, ratios) != (PRESETS["fasterrcnn"]["sizes"], PRESETS["fasterrcnn"]["ratios"])  # it fitted
    fitted = GridAnchors(sizes, ratios, PRESETS["fasterrcnn"]["strides"])
    fields = parse_mmdet(fasterrcnn_fit["mmdet"])
    assert fields["strides"] == [4, 8, 16, 32, 64] and "#" not in fasterrcnn_fit["mmdet"]  # exact: no caveat
    for theirs, ours in zip(mmdet_cell_anchors(fields), fitted.cell_anchors(dtype=torch.float64)):
        # torchvision rounds its cell anchors to whole pixels; mmdet does not.
        assert torch.allclose(theirs, ours, atol=0.5)
    d2 = fasterrcnn_fit["detectron2"]
    d2_sizes = eval(re.search(r"SIZES = (.*)", d2).group(1))
    d2_ratios = eval(re.search(r"ASPECT_RATIOS = (.*)", d2).group(1))
    assert [tuple(level) for level in d2_sizes] == [tuple(level) for level in sizes]
    assert tuple(d2_ratios[0]) == ratios[0] and len(d2_ratios) == 1  # shared ratios: one list


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
    assert 0 < share < 0.98 and code == 1 and "AnchorGenerator(sizes=((32, 40, 50)," in text
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
    ("options", "named"),
    [
        (["--min-stride-units", "1"], "--min-stride-units applies"),
        (["--scale", "0.5", "--n", "12"], "--scale, --n apply"),
        (["--thr", "3"], "--thr applies"),
        (["--img", "320"], "--img applies"),
        (["--metric", "iou"], "--metric applies"),
    ],
)
def test_yolo_options_are_refused_with_generator_not_ignored(capsys, options, named):
    assert main(["fit", "--generator", "retinanet", *options, "-q"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{named} to YOLO anchors, not to --generator" in captured.err
