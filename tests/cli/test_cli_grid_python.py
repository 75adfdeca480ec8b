"""``fit --generator ... --format python`` prints a program that runs as printed (torchvision CI environment)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

pytest.importorskip("torchvision")
from autoanchor.cli import main  # noqa: E402
from autoanchor.grid import GridAnchors  # noqa: E402
from helpers import write_npz  # noqa: E402
from test_cli_grid import PRESETS, parse_python  # noqa: E402


@pytest.fixture(scope="module")
def tall_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 120
    wh = np.stack([rng.uniform(0.03, 0.15, n), rng.uniform(0.2, 0.6, n)], 1)
    return write_npz(tmp_path_factory.mktemp("data") / "tall.npz", np.tile([[640.0, 480.0]], (30, 1)), wh,
                     rng.integers(0, 30, n))


@pytest.mark.slow  # builds a ResNet-50 or MobileNet detector per preset
@pytest.mark.parametrize("preset", ["retinanet", "fasterrcnn", "fasterrcnn-mobilenet"])
def test_the_printed_program_builds_the_model_with_the_fitted_anchors(preset, tall_npz):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["fit", str(tall_npz), "--generator", preset, "--format", "python", "--min-size", "320",
                     "--max-size", "512", "-q"]) == 0
    program = out.getvalue()
    namespace: dict = {}
    exec(compile(program, f"<fit --generator {preset} --format python>", "exec"), namespace)  # runs as printed
    model = namespace["model"]
    generator = model.anchor_generator if preset == "retinanet" else model.rpn.anchor_generator
    sizes, ratios = parse_python(program)
    assert (sizes, ratios) != (PRESETS[preset]["sizes"], PRESETS[preset]["ratios"])  # it fitted
    fitted = GridAnchors(sizes, ratios, PRESETS[preset]["strides"])
    assert all(torch.equal(a, b) for a, b in zip(generator.cell_anchors, fitted.cell_anchors()))
    assert model.transform.min_size == (320,) and model.transform.max_size == 512
