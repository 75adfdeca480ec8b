"""Per-level statistics against a plain-loop re-implementation of yolov5's target assignment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autoanchor.core.boxes import BoxSizes
from autoanchor.io.configs import anchors_by_name, strides_by_name
from autoanchor.core.levels import (
    BelowStride,
    LevelStats,
    anchors_below_stride,
    clamp_to_strides,
    format_below_stride,
    format_level_table,
    level_name,
    level_stats,
    split_levels,
    stride_bounds,
    within_stride_bounds,
)
from autoanchor.core.metrics import anchors_above_threshold, best_possible_recall
from helpers import shared_npz

P5 = anchors_by_name("yolov5-p5")  # [3,3,2] px
P5_STRIDES = strides_by_name("yolov5-p5")  # [8, 16, 32]


def load_npz(name: str) -> BoxSizes:
    data = np.load(shared_npz(name))
    return BoxSizes(data["shapes"], data["wh"], data["image_index"], source=name)


# ---- the reference: yolov5's build_targets rule, one box and one anchor at a time ----------------------


def reference_level_stats(wh, anchors, strides, thr):
    """(matched, targets, best) per level, from the rule as described, in plain Python floats.

    build_targets keeps the pair (box, anchor of level l) when max(r, 1/r) < anchor_t for both
    the width and the height ratio r = box / anchor. A box's best anchor is the one with the
    highest min(r, 1/r) over its worse side, the first (finest level) on ties.
    """
    boxes = wh.double().tolist()
    levels = anchors.double().tolist()
    n, nl = len(boxes), len(levels)
    matched, targets, best = [0] * nl, [0] * nl, [0] * nl
    for w, h in boxes:
        best_metric, best_level = -1.0, None
        for level, level_anchors in enumerate(levels):
            kept = 0
            for aw, ah in level_anchors:
                rw, rh = w / aw, h / ah
                worst = max(max(rw, 1 / rw) if rw > 0 else math.inf, max(rh, 1 / rh) if rh > 0 else math.inf)
                kept += worst < thr
                metric = min(min(rw, 1 / rw) if rw > 0 else 0.0, min(rh, 1 / rh) if rh > 0 else 0.0)
                if metric > best_metric:
                    best_metric, best_level = metric, level
            matched[level] += kept > 0
            targets[level] += kept
        best[best_level] += 1
    return [(matched[l] / n, targets[l] / n, best[l] / n) for l in range(nl)]


def assert_matches_reference(levels, wh, anchors, strides, thr):
    expected = reference_level_stats(wh, anchors, strides, thr)
    assert len(levels) == len(expected)
    for level, (matched, targets, best) in zip(levels, expected):
        assert level.matched == pytest.approx(matched, abs=1e-12)
        assert level.targets == pytest.approx(targets, abs=1e-12)
        assert level.best == pytest.approx(best, abs=1e-12)


# ---- hand-made cases with known values -------------------------------------------------------------------


def test_known_values_on_yolov5_p5():
    wh = torch.tensor([[12.0, 14.0], [100.0, 80.0]])
    levels = level_stats(wh, P5, P5_STRIDES)
    # P3 (10,13) (16,30) (33,23): box 12x14 passes all three (worst ratios 1.2, 2.14, 2.75);
    #   100x80 passes only 33x23 (3.03, 3.48). matched 2/2, targets (3 + 1) / 2 = 2.
    # P4 (30,61) (62,45) (59,119): 12x14 passes none (61/14 = 4.36 ...); 100x80 passes all three
    #   (3.33, 1.78, 1.69). matched 1/2, targets 3/2.
    # P5 (116,90) (156,198) (373,326): 100x80 passes 116x90 and 156x198 (2.48), not 373x326
    #   (326/80 = 4.08). matched 1/2, targets 2/2.
    assert [(lv.matched, lv.targets) for lv in levels] == [(1.0, 2.0), (0.5, 1.5), (0.5, 1.0)]
    # Best anchors: 12x14 -> 10x13 (metric min(10/12, 13/14) = 0.83) on P3; 100x80 -> 116x90
    # (min(100/116, 80/90) = 0.862) on P5.
    assert [lv.best for lv in levels] == [0.5, 0.0, 0.5]
    assert [lv.stride for lv in levels] == [8.0, 16.0, 32.0]
    assert [lv.name for lv in levels] == ["P3", "P4", "P5"]
    assert all(lv.n_boxes == 2 for lv in levels)
    # sqrt(10 * 13) / 8 = 1.425, sqrt(373 * 326) / 32 = 10.90
    assert levels[0].size_in_strides[0].item() == pytest.approx(math.sqrt(130) / 8)
    assert levels[2].size_in_strides[2].item() == pytest.approx(math.sqrt(373 * 326) / 32)
    assert torch.equal(levels[1].anchors, P5[1])
    assert_matches_reference(levels, wh, P5, P5_STRIDES, 4.0)


def test_the_ratio_bound_is_strict_as_in_build_targets():
    anchors = torch.tensor([[[10.0, 10.0]]])
    # 40 / 10 = 4 is not < 4; 39.5 / 10 = 3.95 is; 2.5 / 10 = 1/4 gives max(r, 1/r) = 4 again.
    wh = torch.tensor([[40.0, 10.0], [39.5, 10.0], [10.0, 2.5], [10.0, 2.6]])
    (level,) = level_stats(wh, anchors, [8])
    assert level.targets == 0.5 and level.matched == 0.5
    (level,) = level_stats(wh, anchors, [8], thr=4.5)
    assert level.targets == 1.0


def test_a_box_goes_to_every_anchor_of_a_level_within_thr():
    # A 20x20 box against 10x10, 20x20, 30x30 on one level and 100x100 on another (thr 4):
    # ratios 2, 1, 1.5 pass, 5 does not: three targets on level 0, none on level 1.
    anchors = torch.tensor([[[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]], [[100.0, 100.0], [200.0, 200.0], [80.0, 80.0]]])
    levels = level_stats(torch.tensor([[20.0, 20.0]]), anchors, [8, 16])
    assert [lv.targets for lv in levels] == [3.0, 0.0]
    assert [lv.matched for lv in levels] == [1.0, 0.0]
    assert [lv.best for lv in levels] == [1.0, 0.0]


def test_zero_sized_boxes_match_nothing():
    anchors = torch.tensor([[[10.0, 10.0]], [[40.0, 40.0]]])
    levels = level_stats(torch.tensor([[0.0, 12.0], [10.0, 10.0]]), anchors, [8, 32])
    assert [lv.targets for lv in levels] == [0.5, 0.0]
    assert sum(lv.best for lv in levels) == 1.0


def test_ties_for_the_best_anchor_go_to_the_finer_level():
    # 20x20 against 10x10 (level 0) and 40x40 (level 1): both metrics are 0.5.
    levels = level_stats(torch.tensor([[20.0, 20.0]]), torch.tensor([[[10.0, 10.0]], [[40.0, 40.0]]]), [8, 16])
    assert [lv.best for lv in levels] == [1.0, 0.0]


# ---- against the reference on random and real sizes -----------------------------------------------------


def log_uniform(n, *, seed, low=1.0, high=700.0):
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    return (math.log(low) + u * (math.log(high) - math.log(low))).exp().float()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("thr", [2.0, 4.0, 6.5])
def test_random_sizes_match_the_loop(seed, thr):
    wh = log_uniform(300, seed=seed)
    anchors = log_uniform(12, seed=100 + seed, low=4.0, high=400.0).view(4, 3, 2)
    strides = [4, 8, 16, 32]
    assert_matches_reference(level_stats(wh, anchors, strides, thr=thr), wh, anchors, strides, thr)


def test_coco128_with_yolov5_p5_matches_the_loop():
    wh = load_npz("coco128").pixel_wh(640)
    levels = level_stats(wh, P5, P5_STRIDES)
    assert_matches_reference(levels, wh, P5, P5_STRIDES, 4.0)
    # The levels together make up the whole-model figures.
    flat = P5.view(-1, 2)
    assert sum(lv.targets for lv in levels) == pytest.approx(float(anchors_above_threshold(wh, flat)), abs=1e-9)
    assert sum(lv.best for lv in levels) == pytest.approx(1.0)
    assert max(lv.matched for lv in levels) <= float(best_possible_recall(wh, flat)) + 1e-12


@pytest.mark.parametrize("seed", [3, 4])
def test_properties_on_random_sizes(seed):
    wh = log_uniform(500, seed=seed)
    anchors = log_uniform(9, seed=50 + seed, low=4.0, high=400.0)
    levels_tensor = split_levels(anchors, 3)
    levels = level_stats(wh, levels_tensor, [8, 16, 32])
    for level, level_anchors in zip(levels, levels_tensor):
        # A level's matched share is the BPR of its own anchors; targets are bounded by na.
        assert level.matched == pytest.approx(float(best_possible_recall(wh, level_anchors)), abs=1e-12)
        assert 0 <= level.matched <= level.targets <= 3
    assert sum(lv.targets for lv in levels) == pytest.approx(float(anchors_above_threshold(wh, anchors)), abs=1e-12)
    # Scaling boxes, anchors and strides together changes nothing.
    scaled = level_stats(wh * 2, levels_tensor * 2, [16, 32, 64])
    assert [(a.matched, a.targets, a.best) for a in levels] == [(b.matched, b.targets, b.best) for b in scaled]
    assert torch.allclose(scaled[0].size_in_strides, levels[0].size_in_strides)


def test_chunks_add_up_to_the_whole():
    wh = log_uniform(1000, seed=7)
    whole = level_stats(wh, P5, P5_STRIDES)
    for chunk in (1, 7, 999):
        parts = level_stats(wh, P5, P5_STRIDES, chunk=chunk)
        assert [x for a in parts for x in (a.matched, a.targets, a.best)] == pytest.approx(
            [x for b in whole for x in (b.matched, b.targets, b.best)], abs=1e-12
        )
    with pytest.raises(ValueError, match="chunk must be an integer of at least 1, got 0"):
        level_stats(wh, P5, P5_STRIDES, chunk=0)


def test_tensors_stay_on_the_device_and_dtype(device):
    wh = log_uniform(50, seed=5).to(device)
    anchors = P5.double().to(device)
    levels = level_stats(wh, anchors, torch.tensor(P5_STRIDES, device=device))
    for level in levels:
        assert level.anchors.device == anchors.device and level.anchors.dtype == torch.float64
        assert level.size_in_strides.device == anchors.device and level.size_in_strides.shape == (3,)
        assert isinstance(level.matched, float) and isinstance(level.targets, float)
    assert_matches_reference(levels, wh.cpu(), P5, P5_STRIDES, 4.0)


def test_inputs_are_not_changed_and_results_do_not_alias_them():
    wh, anchors = log_uniform(20, seed=6), P5.clone()
    wh_copy = wh.clone()
    levels = level_stats(wh, anchors, P5_STRIDES)
    levels[0].anchors.mul_(2)
    assert torch.equal(anchors, P5) and torch.equal(wh, wh_copy)


def test_to_dict_holds_plain_values():
    (level,) = level_stats(torch.tensor([[20.0, 20.0]]), torch.tensor([[[10.0, 10.0], [30.0, 30.0]]]), [8])
    # sqrt(100) / 8 = 1.25, sqrt(900) / 8 = 3.75
    assert level.to_dict() == {
        "name": "P3", "stride": 8.0, "anchors": [[10.0, 10.0], [30.0, 30.0]], "size_in_strides": [1.25, 3.75],
        "matched": 1.0, "targets": 2.0, "best": 1.0, "n_boxes": 1,
    }


# ---- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wh, anchors, strides, error, match",
    [
        (torch.ones(3, 2), torch.ones(9, 2), [8], ValueError, r"\[nl, na, 2\].*\[9, 2\]"),
        (torch.ones(3, 2), torch.ones(3, 0, 2), [8, 16, 32], ValueError, r"nl, na >= 1"),
        (torch.ones(3, 2), P5, [8, 16], ValueError, r"one value per level \(3\).*\[2\]"),
        (torch.ones(3, 2), P5, [8, 0, 32], ValueError, r"strides must be finite and positive"),
        (torch.ones(3, 2), P5, "8,16,32", TypeError, r"strides must be a sequence"),
        (torch.ones(3, 2), P5, [8, "16", 32], TypeError, r"strides must hold numbers"),
        (torch.ones(3, 2), -P5, P5_STRIDES, ValueError, r"anchors must be finite and positive"),
        (torch.ones(3, 2), P5.int(), P5_STRIDES, TypeError, r"floating-point"),
        (torch.ones(3, 3), P5, P5_STRIDES, ValueError, r"wh must have shape \[N, 2\].*\[3, 3\]"),
        ([[1.0, 2.0]], P5, P5_STRIDES, TypeError, r"wh must be a torch.Tensor"),
        (torch.zeros(0, 2), P5, P5_STRIDES, ValueError, r"at least one box"),
        (torch.tensor([[1.0, 2.0], [3.0, -1.0]]), P5, P5_STRIDES, ValueError, r"box 1 has size \[3.0, -1.0\]"),
        (torch.tensor([[float("nan"), 2.0]]), P5, P5_STRIDES, ValueError, r"box 0 has size"),
    ],
)
def test_bad_input_is_named(wh, anchors, strides, error, match):
    with pytest.raises(error, match=match):
        level_stats(wh, anchors, strides)


def test_bad_thr_is_named():
    with pytest.raises(ValueError, match="thr must be"):
        level_stats(torch.ones(3, 2), P5, P5_STRIDES, thr=1.0)


# ---- anchors below one stride --------------------------------------------------------------------------


def test_anchors_below_stride_names_each_and_by_how_much():
    # The tree-crown case from the issue: P3 anchors of 4-9 px at stride 8, P5 of 22-55 px at stride 32.
    anchors = torch.tensor([[[4.0, 5.0], [7.0, 9.0], [9.0, 9.0]], [[22.0, 30.0], [40.0, 40.0], [55.0, 50.0]]])
    found = anchors_below_stride(anchors, [8, 32])
    # sqrt(20) / 8 = 0.559, sqrt(63) / 8 = 0.992; 9x9 is 1.125. sqrt(660) / 32 = 0.803; 40/32 = 1.25.
    assert [(b.level, b.anchor) for b in found] == [(0, (4.0, 5.0)), (0, (7.0, 9.0)), (1, (22.0, 30.0))]
    assert found[0].size_in_strides == pytest.approx(math.sqrt(20) / 8)
    assert found[2].shortfall == pytest.approx(1 - math.sqrt(660) / 32)
    assert str(found[2]) == "P5 (stride 32): anchor 22x30 px is 0.80 strides, 20% under one stride"
    lines = format_below_stride(found)
    assert lines[0] == "3 anchor(s) under one stride of their level:" and len(lines) == 4
    # With a bound of 1.2 strides, 9x9 (1.125) and 40x40 (1.25) split.
    assert [b.anchor for b in anchors_below_stride(anchors, [8, 32], min_units=1.2)][2] == (9.0, 9.0)
    assert "1.2 strides" in str(anchors_below_stride(anchors, [8, 32], min_units=1.2)[0])


def test_yolov5_p5_defaults_are_all_above_one_stride():
    # The smallest, 10x13 at stride 8, is sqrt(130) / 8 = 1.43 strides.
    assert anchors_below_stride(P5, P5_STRIDES) == []
    assert format_below_stride([]) == []
    assert len(anchors_below_stride(P5, P5_STRIDES, min_units=1.5)) == 1


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "1", True])
def test_anchors_below_stride_rejects_bad_bounds(bad):
    with pytest.raises(ValueError, match="min_units"):
        anchors_below_stride(P5, P5_STRIDES, min_units=bad)


# ---- helpers -------------------------------------------------------------------------------------------


def test_level_names():
    assert [level_name(s) for s in (4, 8, 16, 32, 64, 128)] == ["P2", "P3", "P4", "P5", "P6", "P7"]
    assert level_name(12) == "s12"


def test_split_levels_sorts_by_area_and_cuts_evenly():
    flat = P5.view(-1, 2).flip(0)
    assert torch.equal(split_levels(flat, 3), P5)
    with pytest.raises(ValueError, match="multiple of 4 levels"):
        split_levels(flat, 4)


def test_level_table_has_one_line_per_level():
    levels = level_stats(load_npz("coco128").pixel_wh(640), P5, P5_STRIDES)
    lines = format_level_table(levels)
    assert len(lines) == 4
    assert lines[0].split()[:2] == ["level", "stride"]
    assert lines[1].startswith("P3") and "10x13  16x30  33x23" in lines[1] and "1.4  2.7  3.4" in lines[1]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert f"{levels[2].matched:.1%}" in lines[3]


def test_level_stats_is_frozen():
    (level,) = level_stats(torch.ones(1, 2), torch.ones(1, 1, 2), [8])
    assert isinstance(level, LevelStats)
    with pytest.raises(AttributeError):
        level.matched = 0.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        BelowStride(0, 8.0, (1.0, 1.0), 0.1, 1.0).level = 1  # type: ignore[misc]


# ---- bounds for a stride-bounded search -----------------------------------------------------------------


def test_stride_bounds_per_area_rank():
    low, high = stride_bounds([8, 16, 32], 6, min_units=1.0, max_units=4.0)
    # Two anchors per level: ranks 0-1 on stride 8, 2-3 on 16, 4-5 on 32.
    assert low.tolist() == [8, 8, 16, 16, 32, 32] and high.tolist() == [32, 32, 64, 64, 128, 128]
    low, high = stride_bounds(torch.tensor([8.0, 16.0]), 2, min_units=0.5)
    assert low.tolist() == [4, 8] and high.tolist() == [math.inf, math.inf]


@pytest.mark.parametrize(
    "strides, n, kwargs, match",
    [
        ([8, 16, 32], 8, {}, "multiple of the 3 levels, got 8"),
        ([16, 8], 2, {}, "strictly increasing"),
        ([8, 8], 2, {}, "strictly increasing"),
        ([8, 16], 2, {"min_units": 0}, "min_units must be a finite number greater than 0"),
        ([8, 16], 2, {"max_units": float("inf")}, "max_units must be"),
        ([8, 16], 2, {"min_units": 2.0, "max_units": 1.0}, r"min_units \(2\) exceeds max_units \(1\)"),
    ],
)
def test_stride_bounds_bad_input(strides, n, kwargs, match):
    with pytest.raises(ValueError, match=match):
        stride_bounds(strides, n, **kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clamping_keeps_every_anchor_on_its_level_and_within_bounds(seed, dtype):
    strides = [8, 16, 32]
    low, high = stride_bounds(strides, 9, min_units=1.0, max_units=3.0)
    population = log_uniform(50 * 9, seed=seed, low=1.0, high=300.0).to(dtype).view(50, 9, 2)  # [50,9,2]
    clamped = clamp_to_strides(population, low, high)
    assert clamped.shape == population.shape and clamped.dtype == dtype
    assert bool(within_stride_bounds(clamped, low, high).all())
    for before, after in zip(population, clamped):
        # Taken in the original area order, the clamped areas still grow (ties where several were
        # raised to one bound): each anchor keeps its rank, hence its level ...
        area = after.double().prod(-1)[before.prod(-1).argsort(stable=True)]
        assert bool((area[1:] >= area[:-1] * (1 - 1e-5)).all())
        levels = split_levels(after, 3)
        assert anchors_below_stride(levels, strides) == []
        assert bool((levels.double().prod(-1).sqrt() <= torch.tensor([24.0, 48.0, 96.0], dtype=torch.float64)[:, None]).all())
        # ... the aspect ratio kept, and anchors already within bounds untouched, bit for bit.
        assert torch.allclose(after[:, 0] / after[:, 1], before[:, 0] / before[:, 1], rtol=1e-5)
        size = before.double().prod(-1).sqrt()
        rank = size.argsort(stable=True).argsort()
        inside = (size >= low[rank]) & (size <= high[rank])
        assert torch.equal(after[inside], before[inside])
    # Clamping twice changes nothing more.
    assert torch.equal(clamp_to_strides(clamped, low, high), clamped)


def test_within_stride_bounds_on_known_sets():
    low, high = stride_bounds([8, 32], 2, min_units=1.0)
    # sqrt(4 * 16) = 8 >= 8 and sqrt(64 * 40) = 50.6 >= 32; sqrt(4 * 9) = 6 < 8.
    sets = torch.tensor([[[4.0, 16.0], [64.0, 40.0]], [[4.0, 9.0], [64.0, 40.0]], [[64.0, 40.0], [4.0, 16.0]]])
    assert within_stride_bounds(sets, low, high).tolist() == [True, False, True]
    with pytest.raises(ValueError, match=r"low and high must have shape \[3\]"):
        clamp_to_strides(torch.ones(3, 2), low, high)
