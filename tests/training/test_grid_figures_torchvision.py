"""The grid figures against torchvision's own count: its transform, backbone, AnchorGenerator and box_iou.

Skipped where torchvision does not import; CI runs this file in the second environment
(``torch==2.14.1``, ``torchvision==0.29.1``). Models are built with ``weights=None,
weights_backbone=None`` (nothing is downloaded) and small resizes, so the backbones run fast.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

torchvision = pytest.importorskip("torchvision")
from torchvision.models.detection import fasterrcnn_resnet50_fpn, retinanet_resnet50_fpn  # noqa: E402
from torchvision.ops import box_iou  # noqa: E402

from autoanchor import check_anchors  # noqa: E402
from autoanchor.grid import GridAnchors  # noqa: E402
from autoanchor.grid.inputs import EVAL_ROWS  # noqa: E402
from autoanchor.grid.matching import lattice_centres  # noqa: E402
from autoanchor.io.datasets import load_boxes  # noqa: E402
from autoanchor.training.heads.torchvision import generator_line  # noqa: E402

BUILDERS = {"retinanet": retinanet_resnet50_fpn, "fasterrcnn": fasterrcnn_resnet50_fpn}


def generator_of(model):
    return model.anchor_generator if hasattr(model, "anchor_generator") else model.rpn.anchor_generator


def threshold_of(model) -> float:
    matcher = model.proposal_matcher if hasattr(model, "proposal_matcher") else model.rpn.proposal_matcher
    return float(matcher.high_threshold)


@torch.no_grad()
def torchvision_count(model, boxes, count: int) -> dict[str, float]:
    """Share matched, mean best IoU and positives per box, counted by torchvision itself.

    Each box is placed at the ``count`` centres the library uses when the data has none
    (``lattice_centres``: an input, not a count); then, per image and per training size,
    torchvision's transform resizes image and boxes, its backbone gives the feature maps of
    the padded image, its AnchorGenerator the anchors, and box_iou the IoUs.
    """
    model.eval()
    transform, generator, threshold = model.transform, generator_of(model), threshold_of(model)
    wh = torch.as_tensor(boxes.wh, dtype=torch.float64)
    centres = lattice_centres(wh, count)  # [N,count,2] normalised
    index = torch.as_tensor(boxes.image_index, dtype=torch.long)
    shapes = torch.as_tensor(boxes.shapes, dtype=torch.float64)
    sizes = tuple(transform.min_size)
    matched = iou_sum = positives = rows = 0.0
    feature_shapes: dict[tuple[int, int], list[torch.Tensor]] = {}
    for min_size in sizes:
        transform.min_size = (min_size,)
        try:
            for image in range(shapes.shape[0]):
                mine = torch.nonzero(index == image).flatten()
                if mine.numel() == 0:
                    continue
                width, height = (int(v) for v in shapes[image])
                xy = centres[mine].reshape(-1, 2) * shapes[image]  # stored pixels
                size = wh[mine].repeat_interleave(count, dim=0) * shapes[image]
                target = {"boxes": torch.cat([xy - size / 2, xy + size / 2], 1).float(),
                          "labels": torch.ones(xy.shape[0], dtype=torch.int64)}
                images, targets = transform([torch.zeros(3, height, width)], [target])
                key = tuple(images.tensors.shape[-2:])
                if key not in feature_shapes:
                    features = model.backbone(images.tensors)
                    feature_shapes[key] = [torch.zeros(1, 1, *f.shape[-2:]) for f in features.values()]
                anchors = generator(images, feature_shapes[key])[0]
                iou = box_iou(targets[0]["boxes"], anchors)  # [n, anchors]
                best = iou.max(dim=1).values
                matched += float((best >= threshold).sum())
                iou_sum += float(best.sum())
                positives += float((iou >= threshold).sum())
                rows += best.numel()
        finally:
            transform.min_size = sizes
    return {"matched": matched / rows, "mean IoU": iou_sum / rows, "positives": positives / rows}


def close(ours: float, theirs: float) -> bool:
    return abs(ours - theirs) <= 0.005 * abs(theirs)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, min_size", [("retinanet", 320), ("fasterrcnn", 320), ("retinanet", (256, 288, 320))]
)
def test_the_reported_figures_are_torchvisions_own_count(name, min_size, one_cpu_thread):
    model = BUILDERS[name](weights=None, weights_backbone=None, min_size=min_size, max_size=512)
    boxes = load_boxes(None)
    sizes = (min_size,) if isinstance(min_size, int) else min_size
    count = max(1, min(64, EVAL_ROWS // (boxes.n_boxes * len(sizes))))  # what the library uses on this data
    start = GridAnchors(
        tuple(tuple(map(float, s)) for s in generator_of(model).sizes),
        tuple(tuple(map(float, r)) for r in generator_of(model).aspect_ratios), (1,) * 5,
    )
    before = torchvision_count(model, boxes, count)
    report = check_anchors(boxes, model, bpr_threshold=1.0, verbose=False)
    after = torchvision_count(model, boxes, count)
    for name_, theirs in before.items():
        assert close(report.figures_before[name_], theirs), (name_, report.figures_before[name_], theirs)
    for name_, theirs in after.items():
        assert close(report.figures_after[name_], theirs), (name_, report.figures_after[name_], theirs)
    assert report.replaced and after["matched"] > before["matched"]
    # Every training size is named on the report line, with the threshold.
    line = str(report)
    assert f"IoU >= {threshold_of(model):g}" in line
    assert (f"{min(sizes)}..{max(sizes)}" if len(sizes) > 1 else f"min_size {sizes[0]}") in line
    # Levels in scale order after the fit.
    fitted = generator_of(model).sizes
    assert all(min(fitted[level + 1]) > max(fitted[level]) for level in range(len(fitted) - 1)), fitted
    assert generator_line(start).startswith("AnchorGenerator(")


def test_the_python_output_runs_as_printed():
    from autoanchor.cli.grid import python_text

    generator = GridAnchors(((20, 25, 31), (40, 50, 63)), ((0.5, 1.0, 2.0),) * 2, (8, 16))
    namespace: dict = {}
    exec(python_text(generator), namespace)  # noqa: S102  the printed text, as a user pastes it
    built = namespace["anchor_generator"]
    assert isinstance(built, torchvision.models.detection.anchor_utils.AnchorGenerator)
    assert built.sizes == ((20, 25, 31), (40, 50, 63))
    for theirs, ours in zip(built.cell_anchors, generator.cell_anchors()):
        assert torch.equal(theirs, ours)
    assert math.isclose(built.aspect_ratios[1][2], 2.0) and np.isfinite(built.cell_anchors[0].numpy()).all()
