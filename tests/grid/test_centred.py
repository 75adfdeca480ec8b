"""Matching and fitting on centred grids (SSD default boxes, EfficientDet anchors), without the libraries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autoanchor.grid.centred import (
    best_iou_centred,
    image_samples,
    match_stats_centred,
    positive_counts_centred,
)
from autoanchor.grid.default_boxes import DefaultBoxes, fit_default_boxes
from autoanchor.grid.effdet_anchors import EffdetAnchors, fit_effdet_anchors, letterbox

SSD300 = DefaultBoxes(
    (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05), ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)), (8, 16, 32, 64, 100, 300)
)
SSD300_GRID = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
D0 = EffdetAnchors.from_config(3, 7, 3, [(1.0, 1.0), (1.4, 0.7), (0.7, 1.4)], 4.0, (256, 256))


def coco_pixels(side: float = 300.0, limit: int | None = None) -> torch.Tensor:
    data = np.load("autoanchor/data/coco128.npz")
    wh = torch.tensor(data["wh"], dtype=torch.float64) * side
    return wh if limit is None else wh[:limit]


def plain_iou(box: list[float], anchor: list[float]) -> float:
    """IoU of two (x1, y1, x2, y2) boxes, one pair at a time."""
    w = max(0.0, min(box[2], anchor[2]) - max(box[0], anchor[0]))
    h = max(0.0, min(box[3], anchor[3]) - max(box[1], anchor[1]))
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1]) + (anchor[2] - anchor[0]) * (anchor[3] - anchor[1])
    return inter / (area - inter)


def every_box(levels) -> list[list[float]]:
    boxes = []
    for level in levels:
        for y in level.ys.tolist():
            for x in level.xs.tolist():
                for w, h in level.wh.tolist():
                    boxes.append([x - w / 2, y - h / 2, x + w / 2, y + h / 2])
    return boxes


@pytest.mark.parametrize("which", ["ssd", "effdet"])
def test_best_iou_and_positives_equal_a_plain_loop_over_every_anchor(which):
    levels = SSD300.levels(SSD300_GRID, (300, 300)) if which == "ssd" else D0.levels()
    side = 300.0 if which == "ssd" else 256.0
    wh = coco_pixels(side, limit=12)
    samples = image_samples(wh, None, torch.full_like(wh, side), positions=3)
    best = best_iou_centred(samples, levels)
    counts = positive_counts_centred(samples, levels, 0.5)
    anchors = every_box(levels)
    for row in range(samples.wh.shape[0]):
        (x, y), (w, h) = samples.xy[row].tolist(), samples.wh[row].tolist()
        ious = [plain_iou([x - w / 2, y - h / 2, x + w / 2, y + h / 2], a) for a in anchors]
        assert float(best[row]) == pytest.approx(max(ious), abs=1e-9)
        assert int(counts[row]) == sum(value >= 0.5 for value in ious)


def test_lattice_positions_keep_each_box_inside_its_image():
    wh = torch.tensor([[10.0, 20.0], [300.0, 50.0], [400.0, 10.0]])
    extent = torch.tensor([[300.0, 200.0], [300.0, 200.0], [300.0, 200.0]])
    samples = image_samples(wh, None, extent, positions=16)
    low, high = samples.xy - samples.wh / 2, samples.xy + samples.wh / 2
    fits = samples.wh <= extent.repeat_interleave(16, dim=0)
    assert bool(((low >= 0) & (high <= extent.repeat_interleave(16, dim=0)) | ~fits).all())
    # A box wider than its image is centred on it.
    assert torch.all(samples.xy[32:, 0] == 150.0)
    assert float(samples.weight.sum()) == pytest.approx(3.0)


def test_positives_count_the_forced_best_match():
    # A 2 x 2 px box matches nothing at IoU 0.5 on SSD300; the matcher still gives it its best box.
    wh = torch.tensor([[2.0, 2.0]], dtype=torch.float64)
    samples = image_samples(wh, torch.tensor([[150.0, 150.0]]), torch.full_like(wh, 300.0))
    stats = match_stats_centred(samples, SSD300.levels(SSD300_GRID, (300, 300)), threshold=0.5)
    assert stats.matched == 0.0 and stats.positives == 1.0


def test_ssd_fit_raises_the_fitness_keeps_scales_in_order_and_repeats_for_a_seed(one_cpu_thread):
    wh = coco_pixels(300.0)[:150]
    first = fit_default_boxes(wh, None, SSD300, SSD300_GRID, (300, 300), seed=3, kicks=0, max_boxes=150)
    again = fit_default_boxes(wh, None, SSD300, SSD300_GRID, (300, 300), seed=3, kicks=0, max_boxes=150)
    assert first.anchors == again.anchors
    assert first.fitness_after > first.fitness_before and first.after.matched >= first.before.matched - 0.02
    scales = first.anchors.scales
    assert all(b > a for a, b in zip(scales, scales[1:]))
    assert first.anchors.anchors_per_location == SSD300.anchors_per_location
    assert all(1 <= a <= 8 for level in first.anchors.aspect_ratios for a in level)


def test_effdet_fit_keeps_effdet_octaves_when_asked(one_cpu_thread):
    data = np.load("autoanchor/data/coco128.npz")
    factor, content = letterbox(torch.tensor(data["shapes"]), (256, 256))
    index = torch.tensor(data["image_index"]).long()
    wh = torch.tensor(data["wh"], dtype=torch.float64) * content[index]
    fixed = fit_effdet_anchors(wh, None, content[index], D0, fit_octaves=False, kicks=0, max_boxes=400)
    free = fit_effdet_anchors(wh, None, content[index], D0, kicks=0, max_boxes=400)
    assert fixed.anchors.standard_octaves() == 3 and fixed.fitness_after > fixed.fitness_before
    assert free.fitness_after >= fixed.fitness_after - 1e-6  # more freedom, same start
    octaves = free.anchors.octave_scales
    assert octaves[0] == 0.0 and all(b > a for a, b in zip(octaves, octaves[1:]))


def test_letterbox_scales_the_long_side_to_the_input():
    factor, content = letterbox(torch.tensor([[640.0, 480.0], [100.0, 400.0]]), (512, 512))
    assert factor.tolist() == [0.8, 1.28] and content.tolist() == [[512.0, 384.0], [128.0, 512.0]]


def test_settings_are_validated_with_the_field_named():
    with pytest.raises(ValueError, match="need 4 scales"):
        DefaultBoxes((0.1, 0.2), ((2,), (2,), (2,)))
    with pytest.raises(ValueError, match=r"aspect_ratios\[1\]"):
        EffdetAnchors(3, 7, (0.0,), ((1.0, 1.0), (0.0, 1.0)), 4.0, (512, 512))
    with pytest.raises(ValueError, match="start scales must increase"):
        fit_default_boxes(coco_pixels(limit=5), None, DefaultBoxes((0.3, 0.2), ((2,),)), [(1, 1)], (300, 300))
