"""Evolution: the objective against the metrics, the mutation law, never-worse searches, move scoring."""

from __future__ import annotations

import math
import re

import pytest
import torch

import autoanchor.core.polish as polish_module
from autoanchor.core.boxes import MIN_ANCHOR_PX, searchable_boxes
from autoanchor.io.datasets import load_boxes
from autoanchor.core.differential import differential_evolution
from autoanchor.core.evolve import evolve, mutate, mutation_factors
from autoanchor.core.objectives import make_objective
from autoanchor.core.polish import _DIRECTIONS, _Scores, polish
from autoanchor.core.metrics import anchor_fitness, avg_iou
from autoanchor.core.parallel import LocalReducer
from helpers import generator

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


P5_ANCHORS = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]]






def random_sizes(shape, *, seed, low=2.0, high=600.0, device="cpu") -> torch.Tensor:
    u = torch.rand(*shape, generator=generator(seed), dtype=torch.float64)
    return (math.log(low) + u * (math.log(high) - math.log(low))).exp().float().to(device)


@pytest.fixture(scope="module")
def coco_wh() -> torch.Tensor:
    """coco128 box sizes at 640 px, without the boxes the search leaves out (both sides < 2 px)."""
    wh = load_boxes(None, verbose=False).pixel_wh(640)
    return searchable_boxes(wh)


def reference(metric, wh, anchors, weights, thr=4.0):
    if metric == "ratio":
        return anchor_fitness(wh, anchors, thr=thr, weights=weights)
    return avg_iou(wh, anchors, weights=weights)


# ---- Objective --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["ratio", "iou"])
@pytest.mark.parametrize("population", [None, 1, 5])
@pytest.mark.parametrize("chunk", [1, 37, 1 << 21])
@pytest.mark.parametrize("thr", [2.5, 4.0])
def test_objective_equals_metrics(device, metric, population, chunk, thr):
    wh = random_sizes((97, 2), seed=1, device=device)
    weights = torch.rand(97, generator=generator(2)).add(0.05).to(device)
    anchors = random_sizes((4, 2) if population is None else (population, 4, 2), seed=3, low=5, high=300, device=device)
    objective = make_objective(metric, wh, weights, thr=thr, chunk=chunk)
    got = objective(anchors)
    assert got.dtype == torch.float64 and got.device.type == device.type
    assert got.shape == (() if population is None else (population,))
    torch.testing.assert_close(got, reference(metric, wh, anchors, weights, thr), rtol=1e-6, atol=1e-7)
    # without weights every box counts once
    plain = make_objective(metric, wh, thr=thr, chunk=chunk)(anchors)
    torch.testing.assert_close(plain, reference(metric, wh, anchors, None, thr), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("metric", ["ratio", "iou"])
@pytest.mark.parametrize("chunk", [10, 1 << 21])  # 10 forces the chunked fall-back of log_sums
def test_log_sums_equals_call(device, metric, chunk):
    wh = random_sizes((80, 2), seed=4, device=device)
    objective = make_objective(metric, wh, torch.rand(80, generator=generator(5)).to(device), chunk=chunk)
    anchors = random_sizes((6, 3, 2), seed=6, low=4, high=300, device=device)
    torch.testing.assert_close(objective.log_sums(anchors.log()) / objective.total_weight, objective(anchors), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("metric", ["ratio", "iou"])
def test_objective_sums_through_the_reducer(metric):
    class Doubling(LocalReducer):  # a twin process holding the same boxes
        def sum(self, tensor):
            return tensor * 2

    wh = random_sizes((50, 2), seed=7)
    anchors = random_sizes((3, 4, 2), seed=8, low=5, high=300)
    alone = make_objective(metric, wh)
    shared = make_objective(metric, wh, reducer=Doubling())
    assert shared.total_weight.item() == 100
    torch.testing.assert_close(shared(anchors), alone(anchors))
    torch.testing.assert_close(shared.log_sums(anchors.log()) / shared.total_weight, alone(anchors))


def test_objective_bad_input():
    wh = random_sizes((5, 2), seed=0)
    with pytest.raises(ValueError, match=re.escape("('ratio', 'iou')") + ".*'giou'"):
        make_objective("giou", wh)
    with pytest.raises(ValueError, match="0.5"):
        make_objective("ratio", wh, thr=0.5)
    with pytest.raises(TypeError, match="torch.int64"):
        make_objective("ratio", wh.long())
    with pytest.raises(ValueError, match=re.escape("[5, 3]")):
        make_objective("ratio", torch.ones(5, 3))
    with pytest.raises(ValueError, match=re.escape("[2, 3]")):
        make_objective("ratio", wh)(torch.ones(2, 3))


# ---- mutation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 2), (5, 3, 2), (2, 4, 9, 2)])
def test_mutation_factors_shape(device, shape):
    factors = mutation_factors(shape, generator=generator(0, device), device=device)
    assert factors.shape == shape
    assert factors.device.type == device.type
    assert factors.dtype == torch.float32


def test_mutation_factors_clipped():
    factors = mutation_factors((20000, 3, 2), mutation_prob=1.0, sigma=10.0, generator=generator(1))
    assert factors.min().item() == pytest.approx(0.3) and factors.max().item() == pytest.approx(3.0)
    assert bool(((factors >= 0.3) & (factors <= 3.0)).all())
    # both clips are hit often at sigma 10, and values in between exist
    assert (factors == factors.min()).float().mean() > 0.1 and (factors == factors.max()).float().mean() > 0.1
    assert bool(((factors > 0.35) & (factors < 2.9)).any())


def test_no_mutant_is_all_ones():
    # K = 1 and p = 0.5: 25 % of the raw draws would mutate nothing; none may come out unchanged.
    factors = mutation_factors((40000, 1, 2), mutation_prob=0.5, sigma=1.0, generator=generator(2))
    changed = (factors != 1).flatten(1).any(1)
    assert bool(changed.all())


@pytest.mark.parametrize("k,p", [(1, 0.5), (3, 0.3), (2, 0.9), (9, 0.9), (1, 0.05)])
def test_mutated_fraction_follows_conditional_law(k, p):
    # Given that a mutant changes something, each coordinate is mutated with probability p / (1 - (1-p)^(2K)),
    # and exactly one coordinate is with probability 2K p (1-p)^(2K-1) / (1 - (1-p)^(2K)).
    draws = 30000
    factors = mutation_factors((draws, k, 2), mutation_prob=p, sigma=1.0, generator=generator(3 + k))
    mutated = (factors != 1).flatten(1)  # [draws, 2K]
    nonempty = 1 - (1 - p) ** (2 * k)
    marginal = p / nonempty
    per_position = mutated.double().mean(0)
    # each position's share: standard error sqrt(m(1-m)/draws) <= 0.003, tolerance 0.015
    assert per_position.tolist() == pytest.approx([marginal] * (2 * k), abs=0.015)
    single = 2 * k * p * (1 - p) ** (2 * k - 1) / nonempty
    assert (mutated.sum(1) == 1).double().mean().item() == pytest.approx(single, abs=0.015)


def test_mutation_prob_one_mutates_everything():
    factors = mutation_factors((1000, 4, 2), mutation_prob=1.0, sigma=1.0, generator=generator(4))
    assert (factors != 1).double().mean().item() > 0.999  # a factor of exactly 1 only by rounding


def test_mutation_step_size_law():
    # factor - 1 = step * N(0,1) * sigma with step ~ U(0,1): variance sigma^2 * E[step^2] = sigma^2 / 3
    sigma = 0.1
    factors = mutation_factors((30000, 3, 2), mutation_prob=1.0, sigma=sigma, generator=generator(5))
    scaled = (factors.double() - 1) / sigma
    assert scaled.mean().item() == pytest.approx(0.0, abs=0.01)
    assert scaled.var().item() == pytest.approx(1 / 3, abs=0.01)


def test_mutation_factors_reproducible():
    a = mutation_factors((10, 3, 2), generator=generator(6))
    b = mutation_factors((10, 3, 2), generator=generator(6))
    c = mutation_factors((10, 3, 2), generator=generator(7))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5, float("nan")])
def test_mutation_prob_out_of_range(p):
    with pytest.raises(ValueError, match=re.escape(str(p))):
        mutation_factors((3, 2, 2), mutation_prob=p)


def test_mutate_keeps_two_pixels(device):
    parent = torch.tensor([[2.0, 2.5], [2.1, 40.0]], device=device)
    copy = parent.clone()
    mutants = mutate(parent, 500, sigma=1.0, generator=generator(8, device))
    assert mutants.shape == (500, 2, 2)
    assert bool((mutants >= MIN_ANCHOR_PX).all())
    assert bool((mutants < parent * 0.99).any())  # some went down (to the floor at least)
    assert torch.equal(parent, copy)


# ---- evolve, differential evolution -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco_objectives(coco_wh):
    return {metric: make_objective(metric, coco_wh) for metric in ("ratio", "iou")}


def bad_start() -> torch.Tensor:
    """yolov5's P5 anchors, stretched: a start the search can clearly improve on."""
    return torch.tensor(P5_ANCHORS, dtype=torch.float32) * torch.tensor([1.6, 0.7])


@pytest.mark.parametrize("metric", ["ratio", "iou"])
@pytest.mark.parametrize("population", [1, 6])
def test_evolve_never_lowers_fitness(coco_objectives, metric, population):
    objective = coco_objectives[metric]
    start = bad_start()
    start_fitness = objective(start)
    seen = []
    anchors, fitness = evolve(
        objective, start, gen=60, population=population, generator=generator(0),
        progress=lambda g, f: seen.append((g, float(f))),
    )
    assert anchors.shape == (9, 2)
    assert fitness >= start_fitness
    assert fitness > start_fitness + 1e-3  # the stretched start is easy to improve on
    assert float(objective(anchors)) == pytest.approx(float(fitness), abs=1e-7)
    assert bool((anchors >= MIN_ANCHOR_PX).all())
    # progress saw every generation, and the best so far never went down
    assert [g for g, _ in seen] == list(range(60))
    values = [f for _, f in seen]
    assert values == sorted(values) and values[-1] == pytest.approx(float(fitness))


def test_evolve_from_an_optimum_stays_put_or_improves(coco_objectives):
    objective = coco_objectives["ratio"]
    start, start_fitness = polish(objective, torch.tensor(P5_ANCHORS, dtype=torch.float32))
    anchors, fitness = evolve(objective, start, gen=30, population=4, generator=generator(1))
    assert fitness >= start_fitness
    assert float(objective(anchors)) >= float(start_fitness)


def test_evolve_gen_zero_returns_the_start(coco_objectives):
    objective = coco_objectives["ratio"]
    start = torch.tensor(P5_ANCHORS, dtype=torch.float32)
    anchors, fitness = evolve(objective, start, gen=0, generator=generator(0))
    assert float(fitness) == float(objective(start))
    assert torch.equal(anchors, start)  # the very start, not exp(log(start)) a few ulps away


def test_evolve_deterministic(coco_objectives):
    objective = coco_objectives["ratio"]
    runs = [evolve(objective, bad_start(), gen=30, population=3, generator=generator(s)) for s in (11, 11, 12)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])


def test_evolve_keeps_anchors_above_two_pixels(device):
    wh = random_sizes((200, 2), seed=9, low=0.5, high=3.0, device=device)  # tiny boxes pull anchors down
    objective = make_objective("ratio", wh)
    start = torch.tensor([[2.2, 2.2], [3.0, 2.5]], device=device)
    anchors, fitness = evolve(objective, start, gen=100, population=4, sigma=0.5, generator=generator(3, device))
    assert anchors.device.type == device.type
    assert bool((anchors >= MIN_ANCHOR_PX).all())
    assert fitness >= objective(start)


@pytest.mark.parametrize("gen,population,match", [(-1, 1, "-1"), (5, 0, "0")])
def test_evolve_bad_options(coco_objectives, gen, population, match):
    with pytest.raises(ValueError, match=match):
        evolve(coco_objectives["ratio"], bad_start(), gen=gen, population=population)


@pytest.mark.parametrize("metric", ["ratio", "iou"])
def test_differential_evolution_never_below_start(coco_objectives, metric):
    objective = coco_objectives[metric]
    start = bad_start()
    seen = []
    anchors, fitness = differential_evolution(
        objective, start, gen=40, population=8, generator=generator(0), progress=lambda g, f: seen.append(float(f))
    )
    assert fitness >= objective(start)
    assert fitness > objective(start) + 1e-3
    assert float(objective(anchors)) == pytest.approx(float(fitness), abs=1e-7)
    assert len(seen) == 40 and seen == sorted(seen)
    again = differential_evolution(objective, start, gen=40, population=8, generator=generator(0))
    assert torch.equal(anchors, again[0])


def test_differential_evolution_gen_zero_is_the_start(coco_objectives):
    objective = coco_objectives["ratio"]
    start = torch.tensor(P5_ANCHORS, dtype=torch.float32)
    anchors, fitness = differential_evolution(objective, start, gen=0, generator=generator(0))
    assert float(fitness) == pytest.approx(float(objective(start)), abs=1e-7)
    torch.testing.assert_close(anchors, start)


def test_differential_evolution_bad_options(coco_objectives):
    with pytest.raises(ValueError, match="3"):
        differential_evolution(coco_objectives["ratio"], bad_start(), population=3)
    with pytest.raises(ValueError, match="-2"):
        differential_evolution(coco_objectives["ratio"], bad_start(), gen=-2)


# ---- polish ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["ratio", "iou"])
@pytest.mark.parametrize("relocations", [0, 16])
def test_polish_never_below_start(coco_objectives, metric, relocations):
    objective = coco_objectives[metric]
    for start in (bad_start(), torch.tensor(P5_ANCHORS, dtype=torch.float32)):
        anchors, fitness = polish(objective, start, relocations=relocations, generator=generator(0))
        assert fitness >= objective(start)
        assert torch.equal(fitness, objective(anchors))
        assert bool((anchors >= MIN_ANCHOR_PX).all())


def test_polish_without_relocations_is_deterministic(coco_objectives):
    objective = coco_objectives["ratio"]
    first = polish(objective, bad_start())
    second = polish(objective, bad_start())
    assert torch.equal(first[0], second[0])


def planted_trap():
    """Three clusters 8x apart (beyond thr 4), and anchors two on the smallest, one between the others."""
    centres = torch.tensor([[8.0, 8.0], [64.0, 64.0], [512.0, 512.0]])
    g = generator(0)
    wh = torch.cat([c * (1 + 0.05 * torch.randn(100, 2, generator=g)) for c in centres])
    start = torch.tensor([[8.0, 8.0], [8.5, 8.5], [180.0, 180.0]])
    return centres, wh, start


@pytest.mark.parametrize("metric", ["ratio", "iou"])
def test_polish_relocations_escape_a_planted_optimum(metric):
    centres, wh, start = planted_trap()
    objective = make_objective(metric, wh)
    # the trap is real: climbing alone keeps two anchors on the small cluster
    stuck, stuck_fitness = polish(objective, start)
    near = (stuck.log()[:, None] - centres.log()[None]).abs().amax(-1) < math.log(1.5)  # [K,3]
    assert not bool(near.any(0).all())
    anchors, fitness = polish(objective, start, relocations=16, generator=generator(0))
    near = (anchors.log()[:, None] - centres.log()[None]).abs().amax(-1) < math.log(1.2)  # [K,3]
    assert bool(near.any(0).all()), anchors  # every cluster has an anchor within 20 %
    assert fitness > stuck_fitness + 0.1
    assert torch.equal(fitness, objective(anchors))


# ---- _Scores: single-anchor moves against recomputing the objective -------------------------------------------


def loop_moves(objective, anchors, which, positions):
    out = []
    for k, position in zip(which, positions):
        moved = anchors.clone()
        moved[k] = position
        out.append(float(objective(moved)))
    return torch.tensor(out, dtype=torch.float64)


@pytest.fixture(scope="module", params=["ratio", "iou"])
def scored(request, coco_wh):
    weights = torch.randint(1, 4, (coco_wh.shape[0],), generator=generator(10)).float()
    objective = make_objective(request.param, coco_wh, weights)
    anchors = torch.tensor(P5_ANCHORS, dtype=torch.float32)
    return objective, anchors


def test_scores_fitness_matches(scored):
    objective, anchors = scored
    scores = _Scores(objective, anchors)
    assert float(scores.fitness()) == pytest.approx(float(objective(anchors)), abs=1e-9)


def test_try_moves_matches_loop(scored):
    objective, anchors = scored
    scores = _Scores(objective, anchors)
    which = torch.randint(0, 9, (20,), generator=generator(11))
    positions = random_sizes((20, 2), seed=12, low=4, high=500)
    got = scores.try_moves(which, positions)
    expected = loop_moves(objective, anchors, which.tolist(), positions)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)


@pytest.fixture(params=["dense", "pruned"])
def move_path(request, monkeypatch):
    """Score near moves on every box at once, or only on the boxes each move can reach."""
    if request.param == "pruned":
        monkeypatch.setattr(polish_module, "_DENSE_MOVES", 0)
    return request.param


@pytest.mark.parametrize("step", [0.2, 0.05, 0.004])
def test_try_near_moves_matches_loop(scored, step, move_path):
    objective, anchors = scored
    scores = _Scores(objective, anchors)
    positions = anchors[:, None, :] * (_DIRECTIONS * step).exp()[None]  # [K,8,2]
    got = scores.try_near_moves(positions, step)
    assert got.shape == (9, 8)
    which = torch.arange(9).repeat_interleave(8).tolist()
    expected = loop_moves(objective, anchors, which, positions.reshape(-1, 2)).view(9, 8)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    assert float((expected - float(objective(anchors))).abs().max()) > 1e-5  # the moves do change the fitness


def test_try_near_moves_after_moves_and_copies(scored, move_path):
    """Move scores after single moves, and in a copy taken before them (tables are not shared)."""
    objective, anchors = scored
    scores = _Scores(objective, anchors)
    offsets = (_DIRECTIONS * 0.05).exp()[None]  # [1,8,2]
    which = torch.arange(9).repeat_interleave(8).tolist()
    twin = None
    for anchor, position in [(2, [40.0, 20.0]), (7, [150.0, 260.0]), (2, [30.0, 30.0])]:
        scores.try_near_moves(scores.anchors[:, None, :] * offsets, 0.05)
        twin = scores.copy()
        scores.move(anchor, torch.tensor(position))
        got = scores.try_near_moves(scores.anchors[:, None, :] * offsets, 0.05)
        expected = loop_moves(objective, scores.anchors, which, (scores.anchors[:, None, :] * offsets).reshape(-1, 2))
        torch.testing.assert_close(got, expected.view(9, 8), rtol=0, atol=1e-7)
    # the copy taken before the last move still scores its own anchors
    got = twin.try_near_moves(twin.anchors[:, None, :] * offsets, 0.05)
    expected = loop_moves(objective, twin.anchors, which, (twin.anchors[:, None, :] * offsets).reshape(-1, 2))
    torch.testing.assert_close(got, expected.view(9, 8), rtol=0, atol=1e-7)


def test_try_relocations_matches_loop(scored, coco_wh):
    objective, anchors = scored
    scores = _Scores(objective, anchors)
    targets = torch.cat([coco_wh[torch.randint(0, len(coco_wh), (5,), generator=generator(13))],
                         random_sizes((3, 2), seed=14, low=3, high=600)])  # [8,2]
    got = scores.try_relocations(targets)
    assert got.shape == (8, 9)
    which = list(range(9)) * 8
    expected = loop_moves(objective, anchors, which, targets.repeat_interleave(9, 0)).view(8, 9)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)


def test_scores_move_and_copy(scored):
    objective, anchors = scored
    scores = _Scores(objective, anchors)
    twin = scores.copy()
    twin.move(4, torch.tensor([80.0, 20.0]))
    moved = anchors.clone()
    moved[4] = torch.tensor([80.0, 20.0])
    assert float(twin.fitness()) == pytest.approx(float(objective(moved)), abs=1e-9)
    # the original is untouched by the copy's move
    assert torch.equal(scores.anchors, anchors)
    assert float(scores.fitness()) == pytest.approx(float(objective(anchors)), abs=1e-9)


def test_climb_keeps_move_scores_right(coco_objectives, monkeypatch):
    """A climb keeps its moves' scores between rounds on few boxes (the dense path) and re-scores the
    moved anchors only; it must climb exactly as the pruned path, which scores afresh every round."""
    objective = coco_objectives["ratio"]
    kept = polish(objective, bad_start(), step=0.1, min_step=0.002)
    monkeypatch.setattr(polish_module, "_DENSE_MOVES", 0)
    fresh = polish(objective, bad_start(), step=0.1, min_step=0.002)
    torch.testing.assert_close(kept[0], fresh[0], rtol=1e-6, atol=0)
    assert float(kept[1]) == pytest.approx(float(fresh[1]), abs=1e-9)
    assert float(kept[1]) > float(objective(bad_start())) + 0.05  # it did climb
