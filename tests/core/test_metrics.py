"""Metrics: every figure against a plain Python loop, hand-computed values, properties, bad input."""

from __future__ import annotations

import math
import re

import pytest
import torch

from autoanchor.io.datasets import load_boxes
from autoanchor.core.metrics import (
    AnchorStats,
    anchor_fitness,
    anchor_stats,
    anchor_stats_batch,
    anchors_above_threshold,
    avg_iou,
    best_possible_recall,
    ratio_metric,
    size_iou,
    wh_iou,
)
from autoanchor.core.objectives import best_match, match_matrix
from autoanchor.core.parallel import LocalReducer


# yolov5's P5 default anchors (yolov5s.yaml), pixels at img_size 640.
P5_ANCHORS = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]]




def random_sizes(shape, *, seed, low=2.0, high=600.0, dtype=torch.float32, device="cpu"):
    """Sizes log-uniform in [low, high] px: ratios both above and below the thresholds."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(*shape, generator=generator, dtype=torch.float64)
    return (math.log(low) + u * (math.log(high) - math.log(low))).exp().to(dtype=dtype, device=device)


# ---- plain Python references (double precision, one pair at a time) ----------------------------------


def loop_ratio(box, anchor):
    (bw, bh), (aw, ah) = box, anchor
    return min(bw / aw, aw / bw, bh / ah, ah / bh)


def loop_iou(box, anchor):
    (bw, bh), (aw, ah) = box, anchor
    inter = min(bw, aw) * min(bh, ah)
    return inter / (bw * bh + aw * ah - inter)


def loop_matrix(wh, anchors, pair):
    return [[pair(box, anchor) for anchor in anchors] for box in wh]


def loop_figures(wh, anchors, thr, weights=None):
    """fitness, bpr, aat, avg_iou, total weight for one anchor set (lists of floats)."""
    weights = weights if weights is not None else [1.0] * len(wh)
    fitness = bpr = aat = iou = 0.0
    for box, w in zip(wh, weights):
        ratios = [loop_ratio(box, a) for a in anchors]
        best = max(ratios)
        passed = best > 1 / thr
        fitness += w * (best if passed else 0.0)
        bpr += w * passed
        aat += w * sum(r > 1 / thr for r in ratios)
        iou += w * max(loop_iou(box, a) for a in anchors)
    total = sum(weights)
    return fitness / total, bpr / total, aat / total, iou / total, total


SHAPES = [(1, 1), (7, 3), (50, 9), (33, 1)]


# ---- against the loop ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n_boxes,k", SHAPES)
@pytest.mark.parametrize("population", [None, 4])
def test_matrices_match_loop(device, n_boxes, k, population):
    wh = random_sizes((n_boxes, 2), seed=n_boxes, device=device)
    shape = (k, 2) if population is None else (population, k, 2)
    anchors = random_sizes(shape, seed=100 + k, device=device)
    sets = [anchors] if population is None else list(anchors)
    ratio, iou = ratio_metric(wh, anchors), wh_iou(wh, anchors)
    expected_shape = (n_boxes, k) if population is None else (population, n_boxes, k)
    assert ratio.shape == iou.shape == expected_shape
    ratio_sets = [ratio] if population is None else list(ratio)
    iou_sets = [iou] if population is None else list(iou)
    for one, r, i in zip(sets, ratio_sets, iou_sets):
        expected_ratio = torch.tensor(loop_matrix(wh.tolist(), one.tolist(), loop_ratio), dtype=torch.float64)
        expected_iou = torch.tensor(loop_matrix(wh.tolist(), one.tolist(), loop_iou), dtype=torch.float64)
        torch.testing.assert_close(r.cpu().double(), expected_ratio, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(i.cpu().double(), expected_iou, rtol=1e-6, atol=1e-7)
    # match_matrix and best_match are the same numbers by name
    torch.testing.assert_close(match_matrix(wh, anchors, metric="ratio"), ratio)
    torch.testing.assert_close(match_matrix(wh, anchors, metric="iou"), iou)
    torch.testing.assert_close(best_match(wh, anchors), ratio.amax(-1))
    torch.testing.assert_close(best_match(wh, anchors, metric="iou"), iou.amax(-1))


@pytest.mark.parametrize("n_boxes,k", SHAPES)
@pytest.mark.parametrize("thr", [2.0, 4.0, 6.5])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("population", [None, 3])
def test_figures_match_loop(device, n_boxes, k, thr, weighted, population):
    wh = random_sizes((n_boxes, 2), seed=7 * n_boxes + k, device=device)
    shape = (k, 2) if population is None else (population, k, 2)
    anchors = random_sizes(shape, seed=k, device=device)
    weights = None
    if weighted:
        weights = torch.rand(n_boxes, generator=torch.Generator().manual_seed(3)).add(0.1).to(device)
    got = torch.stack(
        [
            anchor_fitness(wh, anchors, thr=thr, weights=weights),
            best_possible_recall(wh, anchors, thr=thr, weights=weights),
            anchors_above_threshold(wh, anchors, thr=thr, weights=weights),
            avg_iou(wh, anchors, weights=weights),
        ],
        -1,
    ).cpu()  # [4] or [P,4]
    sets = [anchors] if population is None else list(anchors)
    expected = torch.tensor(
        [
            loop_figures(wh.tolist(), a.tolist(), thr, None if weights is None else weights.tolist())[:4]
            for a in sets
        ],
        dtype=torch.float64,
    )
    expected = expected[0] if population is None else expected
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 18])
@pytest.mark.parametrize("weighted", [False, True])
def test_anchor_stats_matches_loop_with_chunks(device, chunk, weighted):
    wh = random_sizes((61, 2), seed=11, device=device)
    anchors = random_sizes((5, 2), seed=12, low=5, high=300, device=device)
    weights = None
    if weighted:
        weights = torch.randint(1, 5, (61,), generator=torch.Generator().manual_seed(5)).double().to(device)
    stats = anchor_stats(wh, anchors, thr=3.0, weights=weights, chunk=chunk)
    assert isinstance(stats, AnchorStats)
    assert all(isinstance(value, float) for value in stats)
    expected = loop_figures(wh.tolist(), anchors.tolist(), 3.0, None if weights is None else weights.tolist())
    assert stats == pytest.approx(expected, rel=1e-6, abs=1e-7)
    # and the one-figure functions agree with it
    assert stats.fitness == pytest.approx(float(anchor_fitness(wh, anchors, thr=3.0, weights=weights)), abs=1e-9)
    assert stats.bpr == pytest.approx(float(best_possible_recall(wh, anchors, thr=3.0, weights=weights)), abs=1e-9)
    assert stats.aat == pytest.approx(float(anchors_above_threshold(wh, anchors, thr=3.0, weights=weights)), abs=1e-9)
    assert stats.avg_iou == pytest.approx(float(avg_iou(wh, anchors, weights=weights)), abs=1e-9)


@pytest.mark.parametrize("chunk", [5, 1 << 17])
@pytest.mark.parametrize("weighted", [False, True])
def test_anchor_stats_population_matches_loop(device, chunk, weighted):
    wh = random_sizes((43, 2), seed=13, device=device)
    population = random_sizes((4, 3, 2), seed=14, low=5, high=300, device=device)
    weights = torch.rand(43, generator=torch.Generator().manual_seed(15)).add(0.2).to(device) if weighted else None
    stats = anchor_stats_batch(wh, population, thr=4.0, weights=weights, chunk=chunk)
    assert isinstance(stats, list) and len(stats) == 4
    for one, anchors in zip(stats, population):
        assert isinstance(one, AnchorStats)
        expected = loop_figures(wh.tolist(), anchors.tolist(), 4.0, None if weights is None else weights.tolist())
        assert one == pytest.approx(expected, rel=1e-6, abs=1e-7)
        # the same numbers as measuring that one set alone
        assert one == pytest.approx(anchor_stats(wh, anchors, weights=weights), rel=1e-12)


class _DoublingReducer(LocalReducer):
    """Pretends a second process holds an identical copy of the boxes: every sum doubles."""

    def __init__(self) -> None:
        self.calls = 0

    def sum(self, tensor):
        self.calls += 1
        return tensor * 2


def test_anchor_stats_sums_through_the_reducer():
    wh = random_sizes((40, 2), seed=21)
    anchors = random_sizes((4, 2), seed=22, low=5, high=300)
    reducer = _DoublingReducer()
    shared = anchor_stats(wh, anchors, reducer=reducer)
    alone = anchor_stats(wh, anchors)
    assert reducer.calls == 1
    # the same figures, over twice the boxes
    assert shared[:4] == pytest.approx(alone[:4], abs=1e-12)
    assert shared.n_boxes == 2 * alone.n_boxes == 80


# ---- hand-computed values -----------------------------------------------------------------------------


def test_known_pair_values():
    box, anchor = torch.tensor([[10.0, 40.0]]), torch.tensor([[20.0, 20.0]])
    # width 10/20 = 0.5 -> min(0.5, 2) = 0.5; height 40/20 = 2 -> min(2, 0.5) = 0.5; worst side 0.5
    assert ratio_metric(box, anchor).item() == pytest.approx(0.5)
    # corner-aligned: intersection 10 * 20 = 200; union 10*40 + 20*20 - 200 = 600; IoU = 1/3
    assert wh_iou(box, anchor).item() == pytest.approx(1 / 3)
    # box 30x10 vs 10x10: width 30/10 = 3 -> 1/3, height 1 -> 1; worst 1/3.
    # IoU: inter 10*10 = 100, union 300 + 100 - 100 = 300 -> 1/3
    assert ratio_metric(torch.tensor([[30.0, 10.0]]), torch.tensor([[10.0, 10.0]])).item() == pytest.approx(1 / 3)
    assert wh_iou(torch.tensor([[30.0, 10.0]]), torch.tensor([[10.0, 10.0]])).item() == pytest.approx(1 / 3)
    # a perfect fit is 1 for both
    assert ratio_metric(anchor, anchor).item() == 1.0
    assert wh_iou(anchor, anchor).item() == 1.0


# Three boxes against two anchors A = 20x20, B = 10x40:
#   box 10x40: ratio A 0.5, B 1       -> best 1.00;  IoU A 200/600 = 1/3, B 1        -> best 1
#   box 80x20: ratio A 20/80 = 0.25,   B min(10/80, 20/40) = 0.125 -> best 0.25
#              IoU A 400/(1600+400-400) = 0.25, B 200/(1600+400-200) = 1/9          -> best 0.25
#   box  6x6 : ratio A 6/20 = 0.3,     B min(6/10, 6/40) = 0.15    -> best 0.30
#              IoU A 36/(36+400-36) = 0.09, B 36/(36+400-36) = 0.09                  -> best 0.09
HAND_WH = [[10.0, 40.0], [80.0, 20.0], [6.0, 6.0]]
HAND_ANCHORS = [[20.0, 20.0], [10.0, 40.0]]


@pytest.mark.parametrize(
    "thr,weights,fitness,bpr,aat",
    [
        # thr 4: pass means > 0.25 (strict), so 80x20 (exactly 0.25) fails.
        # fitness (1 + 0 + 0.3)/3; BPR 2/3; anchors past thr per box: 2, 0, 1 -> 3/3
        (4.0, None, 1.3 / 3, 2 / 3, 1.0),
        # thr 5: pass means > 0.2: all pass. fitness (1 + 0.25 + 0.3)/3; per box 2, 1, 1 -> 4/3
        (5.0, None, 1.55 / 3, 1.0, 4 / 3),
        # thr 4, weights 1, 2, 3: fitness (1*1 + 2*0 + 3*0.3)/6; BPR (1 + 0 + 3)/6; aat (1*2 + 0 + 3*1)/6
        (4.0, [1.0, 2.0, 3.0], 1.9 / 6, 4 / 6, 5 / 6),
    ],
)
def test_known_figures(device, thr, weights, fitness, bpr, aat):
    wh = torch.tensor(HAND_WH, device=device)
    anchors = torch.tensor(HAND_ANCHORS, device=device)
    w = None if weights is None else torch.tensor(weights, device=device)
    # Avg IoU: (1 + 0.25 + 0.09)/3, or weighted (1 + 2*0.25 + 3*0.09)/6
    iou = 1.34 / 3 if weights is None else 1.77 / 6
    assert anchor_fitness(wh, anchors, thr=thr, weights=w).item() == pytest.approx(fitness)
    assert best_possible_recall(wh, anchors, thr=thr, weights=w).item() == pytest.approx(bpr)
    assert anchors_above_threshold(wh, anchors, thr=thr, weights=w).item() == pytest.approx(aat)
    assert avg_iou(wh, anchors, weights=w).item() == pytest.approx(iou)
    stats = anchor_stats(wh, anchors, thr=thr, weights=w)
    assert stats == pytest.approx((fitness, bpr, aat, iou, 3.0 if weights is None else 6.0))


def test_weights_equal_repeated_rows(device):
    wh = random_sizes((20, 2), seed=31, device=device)
    anchors = random_sizes((6, 2), seed=32, low=5, high=300, device=device)
    counts = torch.randint(1, 5, (20,), generator=torch.Generator().manual_seed(33))
    repeated = wh.repeat_interleave(counts.to(device), dim=0)
    weights = counts.double().to(device)
    for figure in (anchor_fitness, best_possible_recall, anchors_above_threshold):
        torch.testing.assert_close(figure(wh, anchors, weights=weights), figure(repeated, anchors))
    torch.testing.assert_close(avg_iou(wh, anchors, weights=weights), avg_iou(repeated, anchors))
    assert anchor_stats(wh, anchors, weights=weights) == pytest.approx(anchor_stats(repeated, anchors), rel=1e-12)


def test_yolov5_default_anchors_on_coco128():
    wh = load_boxes(None, verbose=False).pixel_wh(640)
    anchors = torch.tensor(P5_ANCHORS, dtype=torch.float32)
    bpr = best_possible_recall(wh, anchors).item()
    fitness = anchor_fitness(wh, anchors).item()
    # measured values for yolov5's P5 anchors on coco128 (929 boxes: 924 of them pass, 924/929 = 0.9946)
    assert bpr == pytest.approx(0.9946, abs=1e-3)
    assert fitness == pytest.approx(0.6834, abs=1e-3)
    expected = loop_figures(wh.tolist(), anchors.tolist(), 4.0)
    assert (fitness, bpr) == pytest.approx(expected[:2], rel=1e-6)
    assert anchor_stats(wh, anchors) == pytest.approx(expected, rel=1e-6)
    assert expected[4] == 929


# ---- properties -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("population", [None, 5])
def test_values_in_unit_interval(device, population):
    wh = random_sizes((200, 2), seed=41, low=0.5, high=2000, device=device)
    anchors = random_sizes((6, 2) if population is None else (population, 6, 2), seed=42, device=device)
    for values in (ratio_metric(wh, anchors), wh_iou(wh, anchors)):
        assert bool(((values > 0) & (values <= 1)).all())
    for thr in (1.5, 4.0, 100.0):
        fitness = anchor_fitness(wh, anchors, thr=thr)
        bpr = best_possible_recall(wh, anchors, thr=thr)
        aat = anchors_above_threshold(wh, anchors, thr=thr)
        assert bool(((fitness >= 0) & (fitness <= bpr) & (bpr <= 1)).all())
        # a box that passes has at least one anchor past the threshold; no box has more than K
        assert bool(((aat >= bpr) & (aat <= 6)).all())
    iou = avg_iou(wh, anchors)
    assert bool(((iou > 0) & (iou <= 1)).all())


def test_symmetric_in_box_and_anchor(device):
    wh = random_sizes((30, 2), seed=51, device=device)
    anchors = random_sizes((8, 2), seed=52, device=device)
    # equal up to rounding: min(b/a, 1/(b/a)) and min(a/b, 1/(a/b)) round differently
    torch.testing.assert_close(ratio_metric(wh, anchors), ratio_metric(anchors, wh).T)
    torch.testing.assert_close(wh_iou(wh, anchors), wh_iou(anchors, wh).T)


@pytest.mark.parametrize("scale", [0.01, 3.0, 1000.0])
def test_scale_invariant(device, scale):
    wh = random_sizes((30, 2), seed=61, dtype=torch.float64, device=device)
    anchors = random_sizes((4, 3, 2), seed=62, dtype=torch.float64, device=device)
    torch.testing.assert_close(ratio_metric(wh * scale, anchors * scale), ratio_metric(wh, anchors))
    torch.testing.assert_close(wh_iou(wh * scale, anchors * scale), wh_iou(wh, anchors))


def test_bpr_non_decreasing_in_thr(device):
    wh = random_sizes((300, 2), seed=71, device=device)
    anchors = random_sizes((3, 4, 2), seed=72, device=device)
    thresholds = [1.01, 1.2, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 50.0]
    bprs = torch.stack([best_possible_recall(wh, anchors, thr=t) for t in thresholds])  # [T,P]
    aats = torch.stack([anchors_above_threshold(wh, anchors, thr=t) for t in thresholds])
    assert bool((bprs.diff(dim=0) >= 0).all())
    assert bool((aats.diff(dim=0) >= 0).all())
    assert bprs[0].max() < bprs[-1].min()  # the data is spread enough for the threshold to matter


# ---- device and dtype -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wh_dtype,anchor_dtype,expected",
    [
        (torch.float32, torch.float32, torch.float32),
        (torch.float64, torch.float64, torch.float64),
        (torch.float64, torch.float32, torch.float64),
        (torch.float32, torch.float64, torch.float64),
    ],
)
def test_device_and_dtype(device, wh_dtype, anchor_dtype, expected):
    wh = random_sizes((10, 2), seed=81, dtype=wh_dtype, device=device)
    anchors = random_sizes((3, 2), seed=82, dtype=anchor_dtype, device=device)
    for values in (ratio_metric(wh, anchors), wh_iou(wh, anchors), best_match(wh, anchors)):
        assert values.device.type == device.type
        assert values.dtype == expected
    for figure in (
        anchor_fitness(wh, anchors),
        best_possible_recall(wh, anchors),
        anchors_above_threshold(wh, anchors),
        avg_iou(wh, anchors),
    ):
        assert figure.device.type == device.type
        assert figure.dtype == torch.float64
        assert figure.shape == ()


def test_float64_keeps_precision():
    # 1e8 + 1 vs 1e8 is not representable in float32: only a float64 path can tell them apart
    wh = torch.tensor([[1e8 + 1, 1e8]], dtype=torch.float64)
    anchors = torch.tensor([[1e8, 1e8]], dtype=torch.float64)
    assert ratio_metric(wh, anchors).item() == pytest.approx(1e8 / (1e8 + 1), abs=1e-15)
    assert ratio_metric(wh, anchors).item() < 1


def test_empty_boxes_give_empty_matrices(device):
    anchors = torch.tensor([[10.0, 10.0]], device=device)
    empty = torch.zeros(0, 2, device=device)
    assert ratio_metric(empty, anchors).shape == (0, 1)
    assert wh_iou(empty, anchors).shape == (0, 1)
    with pytest.raises(ValueError, match="at least one box"):
        anchor_stats(empty, anchors)


# ---- bad input ------------------------------------------------------------------------------------------

ANCHORS = torch.tensor([[10.0, 13.0], [30.0, 61.0]])
WH = torch.tensor([[12.0, 15.0], [40.0, 50.0], [3.0, 9.0]])
FIGURES = [
    lambda wh, a, **kw: ratio_metric(wh, a),
    lambda wh, a, **kw: wh_iou(wh, a),
    lambda wh, a, **kw: best_possible_recall(wh, a, **kw),
    lambda wh, a, **kw: anchors_above_threshold(wh, a, **kw),
    lambda wh, a, **kw: anchor_fitness(wh, a, **kw),
    lambda wh, a, **kw: avg_iou(wh, a),
    lambda wh, a, **kw: anchor_stats(wh, a, **kw),
]
FIGURE_IDS = ["ratio_metric", "wh_iou", "bpr", "aat", "fitness", "avg_iou", "anchor_stats"]


@pytest.mark.parametrize("figure", FIGURES, ids=FIGURE_IDS)
@pytest.mark.parametrize("shape", [(3, 3), (3,), (1, 3, 2), (2, 1)])
def test_wrong_wh_shape(figure, shape):
    with pytest.raises(ValueError, match=re.escape(str(list(shape)))):
        figure(torch.ones(shape), ANCHORS)


@pytest.mark.parametrize("figure", FIGURES, ids=FIGURE_IDS)
@pytest.mark.parametrize("shape", [(2, 3), (2,), (0, 2), (1, 2, 2, 2)])
def test_wrong_anchor_shape(figure, shape):
    with pytest.raises(ValueError, match=re.escape(str(list(shape)))):
        figure(WH, torch.ones(shape))


@pytest.mark.parametrize("figure", FIGURES, ids=FIGURE_IDS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_integer_dtype(figure, dtype):
    with pytest.raises(TypeError, match=re.escape(str(dtype))):
        figure(WH.to(dtype), ANCHORS)
    with pytest.raises(TypeError, match=re.escape(str(dtype))):
        figure(WH, ANCHORS.to(dtype))


@pytest.mark.parametrize("figure", FIGURES, ids=FIGURE_IDS)
def test_not_a_tensor(figure):
    # a list or a numpy array is refused with a TypeError naming what was passed
    with pytest.raises(TypeError, match="list"):
        figure(WH.tolist(), ANCHORS)
    with pytest.raises(TypeError, match="ndarray"):
        figure(WH.numpy(), ANCHORS)
    with pytest.raises(TypeError, match="list"):
        figure(WH, ANCHORS.tolist())


WEIGHTED_FIGURES = [best_possible_recall, anchors_above_threshold, anchor_fitness, avg_iou, anchor_stats]


@pytest.mark.parametrize("figure", WEIGHTED_FIGURES, ids=lambda f: f.__name__)
def test_weights_not_a_tensor(figure):
    with pytest.raises(TypeError, match="list"):
        figure(WH, ANCHORS, weights=[1.0, 2.0, 3.0])


THR_FIGURES = [best_possible_recall, anchors_above_threshold, anchor_fitness, anchor_stats]


@pytest.mark.parametrize("figure", THR_FIGURES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("thr", [1, 1.0, 0.5, 0, -4.0, float("nan"), float("inf"), "4", None, True])
def test_bad_thr(figure, thr):
    with pytest.raises(ValueError, match=re.escape(repr(thr))):
        figure(WH, ANCHORS, thr=thr)


@pytest.mark.parametrize("metric", ["IoU", "giou", "", None])
def test_unknown_metric(metric):
    for function in (match_matrix, best_match):
        with pytest.raises(ValueError, match=re.escape(repr(metric))):
            function(WH, ANCHORS, metric=metric)


@pytest.mark.parametrize("figure", WEIGHTED_FIGURES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(2,), (4,), (3, 1)])
def test_bad_weights_shape(figure, shape):
    with pytest.raises(ValueError, match=re.escape(str(list(shape)))):
        figure(WH, ANCHORS, weights=torch.ones(shape))


def test_anchor_stats_takes_one_set_and_the_batch_a_population():
    # one return type per function: anchor_stats -> AnchorStats, anchor_stats_batch -> list
    population = torch.stack([ANCHORS, ANCHORS * 2])  # [2,2,2]
    with pytest.raises(ValueError, match=re.escape("[2, 2, 2]")):
        anchor_stats(WH, population)
    with pytest.raises(ValueError, match=re.escape("[2, 2]")):
        anchor_stats_batch(WH, ANCHORS)
    assert isinstance(anchor_stats(WH, ANCHORS), AnchorStats)
    batch = anchor_stats_batch(WH, ANCHORS[None])
    assert isinstance(batch, list) and batch == [anchor_stats(WH, ANCHORS)]


def test_size_iou_known_values_and_layouts():
    # 10x40 against 20x20: intersection 10*20 = 200, union 400 + 400 - 200 = 600
    assert size_iou(torch.tensor([10.0, 40.0]), torch.tensor([20.0, 20.0])).item() == pytest.approx(1 / 3)
    # sides along dim 0 ([2, N] against [K, 2, 1]) give wh_iou transposed, bit for bit
    wh = random_sizes((17, 2), seed=3)
    anchors = random_sizes((5, 2), seed=4)
    assert torch.equal(size_iou(wh.T, anchors[..., None], dim=-2), wh_iou(wh, anchors).T)
