"""Pair moves: two anchors neighbouring in area moved together onto nearby pooled sizes.

Checked on a hand-made lattice optimum that no single move leaves (against a brute force over
every pair of sizes), against a plain recount of every candidate set, as properties (never
less fit, within stride bounds, nothing without candidates) and through the search (the last
stage, on the finest pooling; ``pairs=0`` leaves it out)."""

from __future__ import annotations

import itertools

import pytest
import torch

from autoanchor.core.levels import stride_bounds, within_stride_bounds
from autoanchor.core.objectives import make_objective
from autoanchor.core.pairs import pair_moves
from autoanchor.core.search import pool_sizes, search_anchors
from autoanchor.core.settings import SearchSettings

SIDES = torch.arange(4.0, 10.0)  # square boxes of 4-9 px
COUNTS = torch.tensor([7.0, 5, 8, 7, 2, 7])


def _lattice(metric: str = "iou"):
    return make_objective(metric, torch.stack([SIDES, SIDES], 1), COUNTS)


def test_a_lattice_optimum_no_single_move_leaves_is_left_by_a_pair_move():
    objective = _lattice()
    sizes = objective.wh

    def fitness(indices) -> float:
        return float(objective(sizes[list(indices)]))

    start = (2, 5)  # anchors at 6 and 9 px
    singles = [fitness((other, start[1])) for other in range(6) if other not in start]
    singles += [fitness((start[0], other)) for other in range(6) if other not in start]
    assert max(singles) < fitness(start)  # every single move onto another size loses
    brute = max(fitness(pair) for pair in itertools.combinations(range(6), 2))
    moved, reached = pair_moves(objective, sizes[list(start)])
    assert float(reached) == pytest.approx(brute) and brute > fitness(start) + 0.01
    assert moved.tolist() == [[4.0, 4.0], [7.0, 7.0]]


@pytest.mark.parametrize("metric", ["ratio", "iou"])
@pytest.mark.parametrize("seed", range(3))
def test_the_result_is_a_recounted_gain_never_a_loss(metric, seed):
    g = torch.Generator().manual_seed(seed)
    wh = torch.randint(3, 40, (400, 2), generator=g).float()  # whole pixels: a lattice
    objective = make_objective(metric, wh)
    anchors = torch.randint(4, 40, (5, 2), generator=g).float()
    moved, reached = pair_moves(objective, anchors)
    torch.testing.assert_close(reached, objective(moved))  # the figure is the set's own
    assert float(reached) >= float(objective(anchors))
    # a second pass from the result finds no pair move that gains
    again, second = pair_moves(objective, moved)
    assert float(second) == pytest.approx(float(reached)) and torch.equal(again, moved)
    # every anchor that moved sits on a box size
    changed = [a for a in moved.tolist() if a not in anchors.tolist()]
    assert all(a in wh.tolist() for a in changed)


@pytest.mark.parametrize("metric", ["ratio", "iou"])
def test_one_round_takes_the_best_pair_move_a_plain_loop_finds(metric):
    g = torch.Generator().manual_seed(7)
    wh = torch.randint(3, 40, (20_000, 2), generator=g).float()  # many boxes: scored on reachable ones only
    objective = make_objective(metric, *pool_sizes(wh))
    anchors = torch.tensor([[5.0, 6.0], [9.0, 8.0], [14.0, 15.0], [22.0, 20.0], [33.0, 31.0]])
    near = 4
    best, best_fitness = anchors, float(objective(anchors))
    sizes, log_sizes = objective.wh, objective.wh.log()
    for i in range(4):  # the plain loop: every pair, every combination, the whole set recounted
        nearest = [sizes[(log_sizes - anchors[j].log()).abs().amax(1).topk(near, largest=False).indices] for j in (i, i + 1)]
        for a in nearest[0]:
            for b in nearest[1]:
                trial = anchors.clone()
                trial[i], trial[i + 1] = a, b
                fitness = float(objective(trial))
                if fitness > best_fitness + 1e-12:
                    best, best_fitness = trial, fitness
    moved, reached = pair_moves(objective, anchors, near=near, max_rounds=1)
    assert float(reached) == pytest.approx(best_fitness, abs=1e-9) and best_fitness > float(objective(anchors))
    assert sorted(moved.tolist()) == sorted(best.tolist())


def test_nothing_to_try_leaves_the_anchors():
    objective = _lattice()
    start = torch.tensor([[6.0, 6.0], [9.0, 9.0]])
    for kwargs in ({"near": 0}, {"max_rounds": 0}):
        moved, fitness = pair_moves(objective, start, **kwargs)
        assert torch.equal(moved, start) and float(fitness) == float(objective(start))
    one, _ = pair_moves(objective, start[:1])  # a single anchor has no neighbour
    assert torch.equal(one, start[:1])


def test_moves_stay_within_stride_bounds():
    objective = _lattice()
    start = torch.tensor([[6.0, 6.0], [9.0, 9.0]])
    low, high = torch.tensor([5.5, 8.5]), torch.tensor([6.5, 9.5])  # neither anchor may go anywhere
    moved, fitness = pair_moves(objective, start, bounds=(low, high))
    assert torch.equal(moved, start)
    low, high = torch.tensor([3.5, 6.5]), torch.tensor([6.5, 9.5])  # 4 and 7 are allowed
    moved, fitness = pair_moves(objective, start, bounds=(low, high))
    assert bool(within_stride_bounds(moved, low, high)) and moved.tolist() == [[4.0, 4.0], [7.0, 7.0]]


def _record_pair_moves(monkeypatch) -> list[dict]:
    import autoanchor.core.search as search_module

    calls = []
    real = search_module.pair_moves

    def recording(objective, anchors, **kwargs):
        calls.append({"points": objective.wh.shape[0], **kwargs})
        return real(objective, anchors, **kwargs)

    monkeypatch.setattr(search_module, "pair_moves", recording)
    return calls


def test_the_search_ends_with_pair_moves_on_the_finest_pooling(monkeypatch):
    calls = _record_pair_moves(monkeypatch)
    wh = torch.randint(3, 60, (800, 2), generator=torch.Generator().manual_seed(5)).float()
    distinct = torch.unique(wh, dim=0).shape[0]
    with_pairs = search_anchors(wh, 6, gen=30, seed=0)
    assert len(calls) == 1 and calls[0]["near"] == SearchSettings().pairs == 8
    assert calls[0]["points"] == distinct  # few boxes: the finest pooling keeps every distinct size
    without = search_anchors(wh, 6, gen=30, seed=0, pairs=0)
    assert len(calls) == 1  # not called
    assert with_pairs.objective >= without.objective - 1e-9


def test_pair_moves_keep_the_search_within_stride_bounds(monkeypatch):
    wh = torch.randint(3, 200, (3000, 2), generator=torch.Generator().manual_seed(6)).float()
    strides = (8, 16, 32)
    result = search_anchors(wh, 9, gen=30, seed=0, strides=strides, min_stride_units=1.0, fine_points=2000)
    low, high = stride_bounds(strides, 9, min_units=1.0)
    assert bool(within_stride_bounds(result.anchors, low, high))


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_pairs_must_be_a_count(bad):
    with pytest.raises(ValueError, match=f"pairs must be an integer of at least 0, got {bad!r}"):
        SearchSettings(pairs=bad)


def test_a_pair_move_that_loses_on_every_box_is_not_kept(monkeypatch):
    # The pair moves judge on the finest pooling; the search keeps their result only if it also gains
    # when measured on every box. A stand-in that always makes things worse must leave the result alone.
    import autoanchor.core.search as search_module

    def worse(objective, anchors, **kwargs):
        return anchors * 1.5, objective(anchors * 1.5)

    wh = torch.randint(3, 60, (800, 2), generator=torch.Generator().manual_seed(8)).float()
    without = search_anchors(wh, 6, gen=30, seed=0, pairs=0)
    monkeypatch.setattr(search_module, "pair_moves", worse)
    with_worse = search_anchors(wh, 6, gen=30, seed=0)
    assert torch.equal(with_worse.anchors, without.anchors) and with_worse.stats == without.stats
