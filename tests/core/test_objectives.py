"""Objectives: one class per metric, found by name; a new metric is one registered class."""

from __future__ import annotations

import math
import re

import pytest
import torch

from autoanchor.core.metrics import AnchorStats, anchor_stats, size_iou, wh_iou
from autoanchor.core.objectives import (
    IoUObjective,
    Objective,
    RatioObjective,
    linf_distance,
    make_objective,
    objective_class,
    objective_names,
    register_objective,
)
from autoanchor.core.polish import _DIRECTIONS, _Scores, polish
from autoanchor.core.registry import OBJECTIVES
from autoanchor.core.search import search_anchors
from helpers import generator

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def random_sizes(shape, *, seed, low=3.0, high=400.0) -> torch.Tensor:
    u = torch.rand(*shape, generator=generator(seed), dtype=torch.float64)
    return (math.log(low) + u * (math.log(high) - math.log(low))).exp().float()


class SquaredIoU(Objective):
    """A metric the core has never heard of: mean over boxes of the best IoU squared."""

    name = "iou2"
    label = "Avg IoU²"
    stat = "avg_iou"
    pairwise = staticmethod(lambda wh, anchors: wh_iou(wh, anchors) ** 2)

    def match(self, anchors, rows=slice(None)):
        return size_iou(self.wh[rows][None, :, None, :], anchors[:, None, :, :]) ** 2  # [P,m,K]


@pytest.fixture
def squared_iou():
    register_objective(SquaredIoU)
    yield SquaredIoU
    OBJECTIVES.unregister(SquaredIoU.name)


def test_the_registry_knows_ratio_and_iou():
    assert objective_names()[:2] == ("ratio", "iou")
    assert objective_class("ratio") is RatioObjective and objective_class("iou") is IoUObjective
    assert objective_class(IoUObjective) is IoUObjective  # a class passes through


@pytest.mark.parametrize("metric", ["giou", "IoU", "", None, 3])
def test_unknown_name_lists_the_known_ones(metric):
    with pytest.raises(ValueError, match=re.escape("('ratio', 'iou')") + ".*" + re.escape(repr(metric))):
        objective_class(metric)


def test_how_each_objective_reports_itself():
    stats = AnchorStats(fitness=0.7, bpr=0.99, aat=4.0, avg_iou=0.6, n_boxes=10.0)
    assert (RatioObjective.label, RatioObjective.figure(stats)) == ("fitness", 0.7)
    assert (IoUObjective.label, IoUObjective.figure(stats)) == ("Avg IoU", 0.6)
    assert (RatioObjective.kmeans_distance, IoUObjective.kmeans_distance) == ("euclidean", "iou")
    assert IoUObjective.cells.coarse == RatioObjective.cells.coarse / 2


def test_registration_is_checked(squared_iou):
    with pytest.raises(ValueError, match="already registered"):
        register_objective(type("Other", (SquaredIoU,), {}))
    register_objective(SquaredIoU)  # registering the same class again is harmless
    Other = register_objective(replace=True)(type("Other", (SquaredIoU,), {}))  # replace= takes the name
    assert objective_class("iou2") is Other
    with pytest.raises(TypeError, match="Objective subclass"):
        register_objective(dict)
    with pytest.raises(ValueError, match="name and stat"):
        register_objective(type("Nameless", (Objective,), {}))


def test_a_new_objective_is_one_class(squared_iou):
    wh = random_sizes((200, 2), seed=1)
    anchors = random_sizes((3, 4, 2), seed=2, low=8, high=300)
    # its score on anchor sets is the plain definition
    objective = make_objective("iou2", wh)
    expected = (wh_iou(wh, anchors).amax(-1).double() ** 2).mean(-1)
    torch.testing.assert_close(objective(anchors), expected, rtol=1e-6, atol=1e-7)
    # the polish (generic move scoring: no reachable() bound) never lowers it and agrees with a recount
    best, fitness = polish(objective, anchors[0], relocations=4, hops=4, generator=generator(3))
    assert float(fitness) >= float(objective(anchors[0])) - 1e-12
    torch.testing.assert_close(fitness, objective(best))
    # and the whole search runs on it, by name or by class, reporting it
    by_name = search_anchors(wh, 4, gen=20, metric="iou2", seed=4)
    by_class = search_anchors(wh, 4, gen=20, metric=SquaredIoU, seed=4)
    assert torch.equal(by_name.anchors, by_class.anchors) and by_name.metric == "iou2"
    assert by_name.objective == by_name.stats.avg_iou
    assert by_name.stats == anchor_stats(wh, by_name.anchors)


@pytest.mark.parametrize("cls", [RatioObjective, IoUObjective])
def test_pairwise_is_the_public_metric(cls):
    wh = random_sizes((30, 2), seed=5)
    anchors = random_sizes((4, 2), seed=6)
    objective = cls(wh, thr=4.0)
    pairs = cls.pairwise(wh, anchors)  # [N,K]
    if cls is RatioObjective:  # the fitness keeps only ratios above 1/thr
        pairs = pairs * (pairs > 0.25)
    torch.testing.assert_close(objective.match(anchors[None])[0], pairs, rtol=1e-5, atol=1e-6)


def test_linf_distance_known_values():
    # |0 - 0.5| = 0.5 and |1 - 3| = 2: the larger is 2
    assert linf_distance(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 3.0]), dim=0).item() == 2.0
    a, b = torch.randn(2, 5, generator=generator(1)), torch.randn(2, 1, generator=generator(2))
    expected = torch.maximum((a[0] - b[0]).abs(), (a[1] - b[1]).abs())
    assert torch.equal(linf_distance(a, b, dim=0), expected)


@pytest.mark.parametrize("cls", [RatioObjective, IoUObjective])
@pytest.mark.parametrize("reach", [0.008, 0.05, 0.3])
def test_reachable_holds_every_box_a_small_move_can_change(cls, reach):
    wh = random_sizes((3000, 2), seed=8)
    anchors = random_sizes((5, 2), seed=9, low=10, high=200)
    objective = cls(wh, thr=4.0)
    raw = objective.pair_raw(anchors)  # [K,M]
    table = objective.raw_score(raw)
    first = table.amax(0)
    mask = objective.reachable(raw, table.argmax(0), reach=reach)
    assert bool(mask.any(0).all()) and not bool(mask.all())  # every box under its owner; not every box everywhere
    for k in range(5):
        for direction in ((1, 0), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)):
            for fraction in (0.25, 1.0):  # inside the reach and at its edge
                moved = anchors.clone()
                moved[k] = anchors[k] * torch.tensor(direction).mul(reach * fraction).exp()
                changed = objective.match(moved[None])[0].amax(-1) != first  # [M]
                assert not bool((changed & ~mask[k]).any())


@pytest.mark.parametrize("cls", [RatioObjective, IoUObjective])
def test_moves_scored_on_reachable_boxes_match_a_full_recount(cls):
    # many boxes: try_near_moves gathers each anchor's reachable boxes; the plain reference scores
    # every moved set on every box
    wh = random_sizes((40_000, 2), seed=10)
    anchors = random_sizes((6, 2), seed=11, low=10, high=200)
    objective = cls(wh, thr=4.0)
    scores = _Scores(objective, anchors)
    positions = anchors[:, None, :] * (_DIRECTIONS * 0.02).exp()  # [K,D,2]
    assert not scores.dense(positions)
    near = scores.try_near_moves(positions, 0.02)  # [K,D]
    for k in range(anchors.shape[0]):
        for d in range(positions.shape[1]):
            moved = anchors.clone()
            moved[k] = positions[k, d]
            assert float(near[k, d]) == pytest.approx(float(objective(moved)), abs=1e-9)
