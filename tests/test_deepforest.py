"""DeepForest, a real client: it trains one step with the callback, and its checkpoint comes back
with the fitted anchors (torchvision CI environment; no network).

DeepForest builds its RetinaNet from torchvision's COCO weights; ``TORCH_HOME`` points at a
temporary folder holding a randomly initialised ``retinanet_resnet50_fpn`` state dict under
the file name torchvision uses (a cached file is loaded without a hash check).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepforest")
torchvision = pytest.importorskip("torchvision")
from torchvision.models.detection import retinanet_resnet50_fpn  # noqa: E402
from torchvision.models.detection.retinanet import RetinaNet_ResNet50_FPN_Weights  # noqa: E402

from autoanchor.training.rebuild import STATE_KEY  # noqa: E402

pytestmark = pytest.mark.slow  # a ResNet-50 RetinaNet step at 800 px on the CPU: one to two minutes

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "deepforest_hook.py"


@pytest.fixture
def offline_weights(tmp_path, monkeypatch):
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    name = os.path.basename(RetinaNet_ResNet50_FPN_Weights.COCO_V1.url)
    torch.save(retinanet_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), folder / name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def load_example():
    spec = importlib.util.spec_from_file_location("deepforest_hook", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["deepforest_hook"] = module
    spec.loader.exec_module(module)
    return module


def test_deepforest_trains_with_fitted_anchors_and_its_checkpoint_keeps_them(tmp_path, offline_weights):
    from deepforest import get_data, main

    example = load_example()
    csv_file = get_data("OSBS_029.csv")
    # Fitted for a stricter foreground IoU than the matcher's 0.5, where the default anchors miss trees.
    checkpoint, callback = example.run(csv_file, steps=1, out=str(tmp_path), threshold=0.7, bpr_threshold=0.98)
    report = callback.report
    assert report.replaced and report.figures_after["matched"] > report.figures_before["matched"]
    state = torch.load(checkpoint, weights_only=False)
    assert state["global_step"] == 1  # it trained
    sizes = report.grid_after.sizes
    with pytest.raises(RuntimeError, match="autoanchor_fitted_anchors__see_autoanchor_restore_anchors"):
        main.deepforest.load_from_checkpoint(checkpoint)  # the default anchors are never loaded silently
    model = example.reload(csv_file, checkpoint, str(tmp_path))
    generator = model.model.anchor_generator
    assert generator.sizes == tuple(tuple(int(v) if float(v).is_integer() else v for v in level) for level in sizes)
    expected = report.anchor_generator()
    assert all(torch.equal(a, b) for a, b in zip(generator.cell_anchors, expected.cell_anchors))
    assert f"model.anchor_generator.{STATE_KEY}" in model.state_dict()
