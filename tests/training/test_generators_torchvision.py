"""Grid anchors against the real torchvision: its AnchorGenerator, box_iou, transform and detectors.

Skipped where torchvision does not import (the main CI environment); CI runs this file
in a second environment with ``torch==2.14.1`` and ``torchvision==0.29.1``. Models are
built with ``weights=None, weights_backbone=None``: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

torchvision = pytest.importorskip("torchvision")
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn, retinanet_resnet50_fpn  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402
from torchvision.ops import box_iou  # noqa: E402

from autoanchor import BoxSizes  # noqa: E402
from autoanchor.grid import GridAnchors, best_iou, grid_anchors, make_samples, positive_counts  # noqa: E402
from autoanchor.training.heads.torchvision_model import (  # noqa: E402
    check_grid_anchors,
    find_anchor_generator,
    read_detector,
    write_grid_anchors,
)


def coco128() -> BoxSizes:
    path = Path(__file__).resolve().parents[2] / "autoanchor" / "data" / "coco128.npz"
    with np.load(path) as data:
        return BoxSizes(data["shapes"], data["wh"], data["image_index"], source="coco128")


def real_anchors(module: AnchorGenerator, width: int, height: int, strides) -> torch.Tensor:
    """torchvision's own anchors for one ``width x height`` (padded) image."""
    maps = [torch.zeros(1, 1, height // s, width // s) for s in strides]
    return module(ImageList(torch.zeros(1, 3, height, width), [(height, width)]), maps)[0]


SIZES = [
    (((32, 40, 50), (64, 80, 101), (128, 161, 203)), ((0.5, 1.0, 2.0),) * 3),
    (((17, 23), (45, 61), (150, 199)), ((0.37, 1.3), (0.8, 2.9), (0.5, 1.0))),
]


@pytest.mark.parametrize("sizes, ratios", SIZES)
def test_geometry_is_torchvisions(sizes, ratios):
    module = AnchorGenerator(sizes, ratios)
    ours = GridAnchors(sizes, ratios, (8, 16, 32))
    for theirs, mine in zip(module.cell_anchors, ours.cell_anchors()):
        assert torch.equal(theirs, mine)
    expected = real_anchors(module, 96, 64, ours.strides)
    mine = torch.cat([grid_anchors(c, (64 // s, 96 // s), (s, s)) for c, s in zip(ours.cell_anchors(), ours.strides)])
    assert torch.equal(expected, mine)


@pytest.mark.parametrize("sizes, ratios", SIZES)
@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_matching_is_box_iou_over_every_anchor(sizes, ratios, threshold):
    module = AnchorGenerator(sizes, ratios)
    ours = GridAnchors(sizes, ratios, (8, 16, 32))
    width, height = 160, 128
    g = torch.Generator().manual_seed(0)
    wh = torch.rand(400, 2, generator=g, dtype=torch.float64) * 150 + 2
    xy = torch.rand(400, 2, generator=g, dtype=torch.float64) * torch.tensor([width, height])
    iou = box_iou(torch.cat([xy - wh / 2, xy + wh / 2], 1), real_anchors(module, width, height, ours.strides).double())
    samples = make_samples(wh, xy, ours.cell, extent=torch.tensor([[width, height]] * 400, dtype=torch.float64))
    assert torch.allclose(best_iou(samples, ours), iou.max(dim=1).values, atol=1e-12)
    assert torch.equal(positive_counts(samples, ours, threshold), (iou >= threshold).sum(dim=1).double())


@pytest.fixture(scope="module")
def models():
    return {
        "retinanet": retinanet_resnet50_fpn(weights=None, weights_backbone=None),
        "fasterrcnn": fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None),
    }


def test_reads_the_real_detectors(models):
    retina = read_detector(models["retinanet"])
    assert retina.generator.strides == (8, 16, 32, 64, 128) and retina.threshold == 0.5
    assert retina.generator.sizes[0] == (32.0, 40.0, 50.0) and retina.family == "retinanet"
    rpn = read_detector(models["fasterrcnn"])
    assert rpn.generator.strides == (32, 32, 64) and rpn.threshold == 0.7 and rpn.family == "rpn"
    assert (retina.resize.min_size, retina.resize.max_size) == (800.0, 1333.0)


@pytest.mark.parametrize("shape", [(480, 640), (500, 1000), (333, 200)])
def test_resize_rule_is_the_transforms(models, shape):
    transform = models["retinanet"].transform.eval()
    rule = read_detector(models["retinanet"], strides=(8, 16, 32, 64, 128)).resize
    height, width = shape
    images, _ = transform([torch.zeros(3, height, width)])
    resized = rule.resized_shape(torch.tensor([[float(width), float(height)]]))[0]
    assert tuple(images.image_sizes[0]) == (int(resized[1]), int(resized[0]))
    padded = rule.padded_shape(torch.tensor([[float(width), float(height)]]))[0]
    assert tuple(images.tensors.shape[-2:]) == (int(padded[1]), int(padded[0]))


@pytest.mark.parametrize("name", ["retinanet", "fasterrcnn"])
def test_check_replaces_and_a_training_step_runs(models, name, one_cpu_thread):
    model = models[name]
    _path, module = find_anchor_generator(model)
    report = check_grid_anchors(coco128(), model)
    assert report.replaced and report.after.matched > report.before.matched
    width, height = 256, 192
    strides = report.generator_after.strides
    expected = torch.cat(
        [
            grid_anchors(c, (height // s, width // s), (s, s))
            for c, s in zip(report.generator_after.cell_anchors(), strides)
        ]
    )
    assert torch.equal(real_anchors(module, width, height, strides), expected)
    model.train()
    images = [torch.rand(3, 180, 240, generator=torch.Generator().manual_seed(1))]
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 120.0, 150.0]]), "labels": torch.tensor([1])}]
    losses = model(images, targets)
    loss = sum(losses.values())
    loss.backward()
    assert torch.isfinite(loss.detach())


def test_a_bad_write_leaves_the_real_model_bit_identical(models):
    model = models["retinanet"]
    _path, module = find_anchor_generator(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = (module.sizes, module.aspect_ratios, [c.clone() for c in module.cell_anchors])
    wrong = GridAnchors(((32, 40),) * 5, ((0.5, 1.0, 2.0),) * 5, (8, 16, 32, 64, 128))
    with pytest.raises(ValueError, match="the head would not fit"):
        write_grid_anchors(module, wrong)
    assert (module.sizes, module.aspect_ratios) == before[:2]
    assert all(torch.equal(a, b) for a, b in zip(module.cell_anchors, before[2]))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
