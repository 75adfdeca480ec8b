"""``autoanchor fit/check --generator ssd300|ssdlite320|efficientdet-d0`` (neither torchvision nor effdet needed)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from autoanchor.cli import main
from autoanchor.grid.default_boxes import DefaultBoxes
from autoanchor.grid.effdet_anchors import EffdetAnchors


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "-q"])
    return code, out.getvalue()


def figures(text: str, label: str) -> float:
    return float(re.search(rf"{label}:\s+matched ([0-9.]+)", text).group(1))


@pytest.mark.slow
def test_fit_ssd300_prints_a_constructor_with_increasing_scales(one_cpu_thread):
    code, text = run("fit", "--generator", "ssd300")
    assert code == 0
    line = next(line for line in text.splitlines() if line.startswith("DefaultBoxGenerator("))
    # The line is Python: DefaultBoxGenerator(aspect_ratios, scales=..., steps=..., clip=...).
    arguments = eval(line, {"DefaultBoxGenerator": lambda ratios, **kwargs: (ratios, kwargs)})
    ratios, kwargs = arguments
    boxes = DefaultBoxes(tuple(kwargs["scales"]), tuple(tuple(r) for r in ratios), tuple(kwargs["steps"]), kwargs["clip"])
    assert boxes.anchors_per_location == (4, 6, 6, 6, 4, 4)  # SSD300's head still fits
    assert all(b > a for a, b in zip(boxes.scales, boxes.scales[1:]))
    assert kwargs["steps"] == [8, 16, 32, 64, 100, 300]
    assert figures(text, "fitted") > figures(text, "start")


@pytest.mark.slow
def test_fit_efficientdet_prints_effdet_and_zylo117_forms(one_cpu_thread):
    code, text = run("fit", "--generator", "efficientdet-d0")
    assert code == 0 and figures(text, "fitted") > figures(text, "start")
    scales = re.search(r"anchors_scales: '(\[.*\])'", text).group(1)
    ratios = re.search(r"anchors_ratios: '(\[.*\])'", text).group(1)
    octaves = eval(scales)  # zylo117 evaluates these strings the same way
    pairs = eval(ratios)
    anchor_scale = float(re.search(r"anchor_scale = ([0-9.]+)", text).group(1))
    assert len(octaves) == 3 and octaves == sorted(octaves) and len(pairs) == 3
    # The zylo117 scales are effdet's octave scales with anchor_scale / 4 folded in.
    fitted = EffdetAnchors(3, 7, tuple(0.0 for _ in octaves), tuple(pairs), anchor_scale, (512, 512))
    assert octaves[0] == pytest.approx(anchor_scale / 4 * 2 ** fitted.octave_scales[0], rel=1e-3)


def test_check_ssdlite_measures_and_exits_1_below_the_threshold():
    code, text = run("check", "--generator", "ssdlite320")
    assert code == 1 and "matched" in text and "forced best match" in text


def test_grid_options_are_refused_with_a_centred_preset(capsys):
    assert main(["fit", "--generator", "ssd300", "--sizes", "32,64", "-q"]) == 2
    assert "--sizes" in capsys.readouterr().err
