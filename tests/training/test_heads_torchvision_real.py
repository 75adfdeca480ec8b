"""``check_anchors`` on the real torchvision detectors (skipped where torchvision does not import).

CI runs this file in the second environment (``torch==2.14.1``, ``torchvision==0.29.1``);
models are built with ``weights=None, weights_backbone=None``: nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch

torchvision = pytest.importorskip("torchvision")
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn, retinanet_resnet50_fpn  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402

from autoanchor import check_anchors  # noqa: E402
from autoanchor.io.datasets import load_boxes  # noqa: E402
from autoanchor.training.heads.torchvision import TorchvisionAnchors  # noqa: E402
from helpers import fail_after_prepare  # noqa: E402


def build(name: str) -> torch.nn.Module:
    builder = {"retinanet": retinanet_resnet50_fpn, "fasterrcnn": fasterrcnn_mobilenet_v3_large_fpn}[name]
    return builder(weights=None, weights_backbone=None, min_size=320, max_size=512)


def generator_of(model) -> AnchorGenerator:
    return model.anchor_generator if hasattr(model, "anchor_generator") else model.rpn.anchor_generator


def state_of(model) -> tuple:
    module = generator_of(model)
    return (
        module.sizes, module.aspect_ratios, [c.clone() for c in module.cell_anchors],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def unchanged(model, before) -> bool:
    now = state_of(model)
    return (
        now[:2] == before[:2]
        and all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(now[2], before[2]))
        and all(torch.equal(before[3][k], v) for k, v in now[3].items())
    )


def test_by_default_torchvision_anchors_that_match_most_boxes_are_kept():
    """The torchvision family keeps its anchors when more than half the boxes match (the evidence:
    docs/training-effect.md), where YOLO's 0.98 would have refitted them."""
    model = build("retinanet")
    before = state_of(model)
    sizes = load_boxes(None)
    report = check_anchors(sizes, model, verbose=False)
    assert 0.5 < report.figures_before["matched"] < 0.98
    assert not report.searched and not report.replaced and unchanged(model, before)
    assert "kept" in str(report)
    # The same boxes at a fifth of their size: few match the stock anchors, so they are refitted.
    small = type(sizes)(sizes.shapes, sizes.wh / 5, sizes.image_index, source="coco128 / 5", xy=sizes.xy)
    report = check_anchors(small, model, verbose=False)
    assert report.figures_before["matched"] <= 0.5 and report.searched and report.replaced
    # An explicit bpr_threshold still wins, either way.
    model = build("retinanet")
    assert check_anchors(sizes, model, bpr_threshold=0.98, verbose=False).replaced


def test_keep_threshold_is_the_family_default_only_when_none_is_given():
    from autoanchor.core.defaults import DEFAULT_BPR_THRESHOLD, DEFAULT_MATCHED_THRESHOLD
    from autoanchor.training.heads import get_family
    from autoanchor.training.options import CheckOptions

    assert get_family("torchvision").keep_threshold == DEFAULT_MATCHED_THRESHOLD == 0.5
    assert get_family("yolov5").keep_threshold == DEFAULT_BPR_THRESHOLD == 0.98
    assert CheckOptions().keep_threshold(get_family("torchvision")) == 0.5
    assert CheckOptions(bpr_threshold=0.9).keep_threshold(get_family("torchvision")) == 0.9
    assert CheckOptions(bpr_threshold=0.0).keep_threshold(get_family("yolov5")) == 0.0


@pytest.mark.parametrize("name", ["retinanet", "fasterrcnn"])
def test_replaced_when_more_boxes_match_and_a_training_step_runs(name, one_cpu_thread):
    model = torch.nn.DataParallel(build(name)) if name == "fasterrcnn" else build(name)  # .module wrapping too
    inner = model.module if name == "fasterrcnn" else model
    module = generator_of(inner)
    pointers = [c.data_ptr() for c in module.cell_anchors]
    report = check_anchors(load_boxes(None), model, bpr_threshold=0.98, verbose=False)
    assert report.family == "torchvision" and report.replaced
    assert report.figures_after["matched"] > report.figures_before["matched"]
    assert [c.data_ptr() for c in module.cell_anchors] == pointers
    # torchvision's own AnchorGenerator built from the new sizes and ratios gives the same cell anchors.
    fresh = AnchorGenerator(module.sizes, module.aspect_ratios)
    assert all(torch.equal(a, b) for a, b in zip(fresh.cell_anchors, module.cell_anchors))
    inner.train()
    images = [torch.rand(3, 180, 240, generator=torch.Generator().manual_seed(1))]
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 120.0, 150.0]]), "labels": torch.tensor([1])}]
    losses = inner(images, targets)
    loss = sum(losses.values())
    loss.backward()
    assert torch.isfinite(loss.detach())


def test_an_injected_error_leaves_the_real_model_bit_identical(one_cpu_thread, monkeypatch):
    model = build("retinanet")
    before = state_of(model)
    fail_after_prepare(monkeypatch)
    with pytest.raises(RuntimeError, match="injected"):
        check_anchors(load_boxes(None), model, bpr_threshold=0.98, verbose=False)
    assert unchanged(model, before)


def test_kept_bit_identical_when_good_enough(one_cpu_thread):
    model = build("fasterrcnn")
    before = state_of(model)
    report = check_anchors(load_boxes(None), model, bpr_threshold=0.0, verbose=False)
    assert not report.searched and not report.replaced and unchanged(model, before)


def test_a_bare_generator_with_strides(one_cpu_thread):
    module = AnchorGenerator(((32, 40, 50), (64, 80, 101), (128, 161, 203)), ((0.5, 1.0, 2.0),) * 3)
    with pytest.warns(UserWarning, match=r"yolov5 arguments \(imgsz=512\)"):
        report = check_anchors(
            load_boxes(None), module, imgsz=512, family=TorchvisionAnchors(strides=(8, 16, 32), threshold=0.5),
            bpr_threshold=0.0, verbose=False,
        )
    assert not report.replaced and report.figures_before["matched"] > 0 and report.matched_before > 0
