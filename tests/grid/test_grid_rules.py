"""Level rules (scale order, stride bounds), torchvision's padded grid, centres inside the image, multi-size rows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from helpers import shared_npz

from autoanchor.grid import GridAnchors, ResizeRule, fit_grid_anchors, match_stats
from autoanchor.grid.inputs import describe_resizes, input_samples
from autoanchor.grid.matching import (
    Samples,
    best_iou,
    lattice_centres,
    level_grid,
    level_match_stats,
    offset_iou,
    positive_counts,
)
from autoanchor.grid.rules import LevelRules
from autoanchor.io.datasets import load_boxes

FASTER = GridAnchors(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5, (4, 8, 16, 32, 64))


def in_scale_order(generator: GridAnchors) -> bool:
    """Every size of each level above every size of the levels of smaller stride (a plain double loop)."""
    for a, b in itertools.permutations(range(generator.num_levels), 2):
        if generator.strides[a] < generator.strides[b] and not min(generator.sizes[b]) > max(generator.sizes[a]):
            return False
    return True


def test_level_grid_is_torchvisions_ceil_feature_map_and_floor_spacing():
    # 800 px at stride 64: ceil(800 / 64) = 13 cells, spaced 800 // 13 = 61 px; 1088 / 64 -> 17 cells of 64 px.
    step, cells = level_grid(64, torch.tensor([[1088.0, 800.0]], dtype=torch.float64))
    assert step.tolist() == [[64.0, 61.0]] and cells.tolist() == [[17.0, 13.0]]
    step, cells = level_grid(8, None)
    assert step == 8.0 and cells is None


def test_padded_grid_matching_against_a_plain_loop():
    # A box near the bottom of an 800-px-high input: the stride-64 level's last row of anchors is at 12 * 61 = 732.
    wh = torch.tensor([[150.0, 140.0]], dtype=torch.float64)
    xy = torch.tensor([[500.0, 760.0]], dtype=torch.float64)
    extent = torch.tensor([[1088.0, 800.0]], dtype=torch.float64)
    generator = GridAnchors(((150,),), ((1.0,),), (64,))
    samples = Samples(wh, xy, torch.ones(1, dtype=torch.float64), extent)
    ious, count = [], 0
    for i, j in itertools.product(range(17), range(13)):
        iou = float(offset_iou(wh, torch.tensor([[150.0, 150.0]]), xy - torch.tensor([[i * 64.0, j * 61.0]])))
        ious.append(iou)
        count += iou >= 0.5
    assert float(best_iou(samples, generator)) == pytest.approx(max(ious), abs=1e-12)
    assert float(positive_counts(samples, generator, 0.5)) == count


def test_lattice_centres_keep_each_box_inside_its_image():
    wh = torch.tensor([[0.1, 0.5], [1.0, 0.02], [0.6, 0.6]], dtype=torch.float64)
    centres = lattice_centres(wh, 16)
    assert centres.shape == (3, 16, 2)
    assert (centres - wh[:, None] / 2 >= -1e-12).all() and (centres + wh[:, None] / 2 <= 1 + 1e-12).all()
    assert torch.equal(centres, lattice_centres(wh, 16))  # deterministic
    assert not torch.equal(centres[0], centres[2])  # each box its own points


def test_input_samples_count_every_box_once_per_training_size():
    boxes = load_boxes(None)
    sizes = (ResizeRule(480, 10000), ResizeRule(800, 10000))  # a max_size no image reaches: the short side rules
    samples = input_samples(boxes.shapes, boxes.wh, boxes.image_index, None, sizes, positions=3)
    assert samples.wh.shape[0] == boxes.n_boxes * 3 * 2 and samples.total_weight == pytest.approx(boxes.n_boxes)
    half = samples.wh.shape[0] // 2
    # The second half is the same boxes at 800 instead of 480: 800 / 480 = 5 / 3 larger (up to the floor of the resize).
    assert torch.allclose(samples.wh[half:] / samples.wh[:half], torch.full_like(samples.wh[:half], 5 / 3), rtol=0.01)
    assert describe_resizes(sizes) == "resize min_size 480..800 (2 training sizes, each box at each), max_size 10000"
    assert describe_resizes((None,)) == "boxes at the images' stored size"


@pytest.mark.parametrize("sizes", [[[40], [30], [300], [20], [600]], [[9], [9], [9], [9], [9]], [[1], [1], [1], [1], [1]]])
def test_project_puts_any_sizes_in_scale_order(sizes):
    rules = LevelRules(FASTER.strides)
    projected = rules.project(sizes)
    assert rules.keeps(projected) and not rules.keeps(sizes)
    assert in_scale_order(GridAnchors(projected, FASTER.aspect_ratios, FASTER.strides))


def test_bounds_follow_the_neighbours_and_the_stride_units():
    rules = LevelRules((8, 16, 16, 32), min_stride_units=2, max_stride_units=10)
    sizes = [[20, 30], [50], [70, 40], [200]]
    # Level 1 (stride 16): above level 0's 30 and 2 strides (32); below level 3's 200 and 10 strides (160).
    assert rules.bounds(1, sizes) == (32, 160)
    # Levels of equal stride (1 and 2) do not bound each other.
    assert rules.bounds(2, sizes) == (32, 160)
    assert LevelRules((8, 16), level_order=False).bounds(1, [[500], [20]]) == (1.0, float("inf"))
    with pytest.raises(ValueError, match="no sizes keep"):
        LevelRules((4, 8), max_stride_units=0.1).project([[3], [5]])
    with pytest.raises(ValueError, match="above max_stride_units"):
        LevelRules((4,), min_stride_units=3, max_stride_units=2)


@pytest.fixture(scope="module")
def wider_small():
    """2000 WIDER FACE val boxes (tiny faces) at 800 / 1333, centres spread over their images."""
    with np.load(shared_npz("widerface_val")) as data:
        keep = np.isin(data["image_index"], np.arange(150))
        return input_samples(data["shapes"], data["wh"][keep], data["image_index"][keep], None,
                             (ResizeRule(800, 1333),), positions=1)


def test_fit_keeps_levels_in_scale_order_where_the_free_fit_does_not(wider_small, one_cpu_thread):
    s = wider_small
    free = fit_grid_anchors(s.wh, s.xy, FASTER, threshold=0.7, seed=0, extent=s.extent, level_order=False, kicks=1)
    ordered = fit_grid_anchors(s.wh, s.xy, FASTER, threshold=0.7, seed=0, extent=s.extent, kicks=1)
    assert in_scale_order(ordered.generator)
    free_stats = match_stats(s, free.generator, threshold=0.7, positives=False)
    ordered_stats = match_stats(s, ordered.generator, threshold=0.7, positives=False)
    start_stats = match_stats(s, FASTER, threshold=0.7, positives=False)
    assert ordered_stats.matched > start_stats.matched
    assert ordered_stats.matched >= free_stats.matched - 0.05  # the order costs little


def test_fit_keeps_the_stride_bounds(wider_small, one_cpu_thread):
    s = wider_small
    result = fit_grid_anchors(
        s.wh, s.xy, FASTER, threshold=0.7, seed=1, extent=s.extent, kicks=1, min_stride_units=2, max_stride_units=6
    )
    for sizes, stride in zip(result.generator.sizes, result.generator.strides):
        assert all(2 * stride <= v <= 6 * stride for v in sizes), (sizes, stride)
    assert in_scale_order(result.generator)


def test_level_match_stats_add_up(wider_small):
    per_level = level_match_stats(wider_small, FASTER, threshold=0.7)
    total = match_stats(wider_small, FASTER, threshold=0.7)
    assert sum(level["best"] for level in per_level) == pytest.approx(1.0)
    assert sum(level["positives"] for level in per_level) == pytest.approx(total.positives)
    assert max(level["matched"] for level in per_level) <= total.matched <= sum(l["matched"] for l in per_level) + 1e-12
    assert total.low_quality_only == pytest.approx(1 - total.matched)
