"""Grow-and-thin kicks: a many-box search adds anchors where boxes lose most, climbs, thins back.

Checked on a hand-made optimum (two anchors on one cluster, a cluster without one), as
properties (never less fit, the same for a seed, within stride bounds, judged on the fine
pooling when grown on a rough one), through the settings' defaults by box count, and by
what the search hands them: never called with at most ``fine_points`` boxes (that path is
the search as before, bit for bit), and on the middle pooling only after a coarse gain."""

from __future__ import annotations

import pytest
import torch

from autoanchor.core.crossover import regrow
from autoanchor.core.levels import stride_bounds, within_stride_bounds
from autoanchor.core.objectives import make_objective, objective_class
from autoanchor.core.polish import polish
from autoanchor.core.search import pool_sizes, search_anchors
from autoanchor.core.settings import HOPS, MANY_BOX_GROWS_PER_ANCHOR, MANY_BOX_HOPS, MIDDLE_GROWS, SearchSettings


def _three_clusters() -> torch.Tensor:
    # 30 boxes near 10 px, 100 px and 1000 px squares: no anchor serves two clusters within thr=4.
    base = torch.tensor([10.0, 100.0, 1000.0]).repeat_interleave(10)
    jitter = 1 + 0.02 * torch.arange(10.0).repeat(3)
    return torch.stack([base * jitter, base * jitter.flip(0)], 1)


def _log_uniform(count: int, seed: int) -> torch.Tensor:
    """``count`` sizes from 4 px to about 600 px, log-uniform in each side."""
    return torch.rand(count, 2, generator=torch.Generator().manual_seed(seed)).mul(5).exp() * 4


@pytest.mark.parametrize("metric", ["ratio", "iou"])
def test_regrow_escapes_an_optimum_no_climb_leaves(metric):
    # Two anchors share the 10 px cluster and none serves the 1000 px one: every climb keeps them
    # there (the 1000 px boxes are beyond any small move). A kick that adds an anchor at a size the
    # boxes lose most on (the 1000 px ones) and thins the crowded pair gives one anchor per cluster.
    objective = make_objective(metric, _three_clusters(), thr=4.0)
    start = torch.tensor([[10.0, 10.0], [11.0, 11.0], [100.0, 100.0]])
    climbed, climbed_fitness = polish(objective, start)
    assert max(float(w) for w, _ in climbed) < 200  # the climb alone leaves the large cluster unserved
    kicked, fitness = regrow(objective, climbed, grows=4, generator=torch.Generator().manual_seed(0))
    assert sorted(int(round(float(w), -1)) for w, _ in kicked) == pytest.approx([10, 100, 1000], rel=0.2)
    assert float(fitness) > float(climbed_fitness) + 0.2  # a third of the boxes now matched


@pytest.mark.parametrize("metric", ["ratio", "iou"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regrow_is_never_less_fit_and_repeats_per_seed(metric, seed):
    objective = make_objective(metric, _log_uniform(400, seed), thr=4.0)
    start, start_fitness = polish(objective, _log_uniform(9, 100 + seed))
    runs = [
        regrow(objective, start, grows=6, generator=torch.Generator().manual_seed(seed)) for _ in range(2)
    ]
    assert float(runs[0][1]) >= float(start_fitness) - 1e-12
    assert float(runs[0][1]) == pytest.approx(float(objective(runs[0][0])), abs=1e-12)  # judged by the objective
    assert torch.equal(runs[0][0], runs[1][0])
    unchanged, fitness = regrow(objective, start, grows=0)
    assert torch.equal(unchanged, start) and float(fitness) == float(objective(start))


@pytest.mark.parametrize("metric", ["ratio", "iou"])
def test_regrow_on_a_rough_pooling_is_judged_on_the_fine_one(metric):
    wh = _log_uniform(2000, 5)
    fine = make_objective(metric, *pool_sizes(wh, cell=0.02), thr=4.0)
    rough = make_objective(metric, *pool_sizes(wh, cell=0.12), thr=4.0)
    start, start_fitness = polish(fine, _log_uniform(9, 6))
    kicked, fitness = regrow(fine, start, grows=6, generator=torch.Generator().manual_seed(1), rough=rough)
    assert float(fitness) >= float(start_fitness) - 1e-12
    assert float(fitness) == pytest.approx(float(fine(kicked)), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_regrow_stays_within_stride_bounds(seed):
    objective = make_objective("ratio", _log_uniform(500, seed), thr=4.0)
    low, high = stride_bounds((8.0, 16.0, 32.0), 9, min_units=1.0, max_units=8.0)
    start = torch.tensor([[10.0, 10.0], [12.0, 14.0], [14.0, 12.0], [20.0, 20.0], [30.0, 25.0], [40.0, 40.0],
                          [60.0, 50.0], [90.0, 100.0], [150.0, 120.0]])
    start, _ = polish(objective, start, bounds=(low, high))
    assert bool(within_stride_bounds(start, low, high))
    kicked, fitness = regrow(
        objective, start, grows=8, generator=torch.Generator().manual_seed(seed), bounds=(low, high)
    )
    assert bool(within_stride_bounds(kicked, low, high))
    assert float(fitness) >= float(objective(start)) - 1e-12


def test_default_grows_and_hops_follow_the_box_count():
    settings = SearchSettings()
    assert settings.grows_for(settings.fine_points, 9) == 0
    assert settings.grows_for(settings.fine_points + 1, 9) == 9 * MANY_BOX_GROWS_PER_ANCHOR == 18
    assert settings.grows_for(settings.fine_points + 1, 12) == 24
    assert settings.hops_for(settings.fine_points) == HOPS == 48
    assert settings.hops_for(settings.fine_points + 1) == MANY_BOX_HOPS == 24
    assert SearchSettings(grows=5).grows_for(10, 9) == 5 and SearchSettings(grows=0).grows_for(10**6, 9) == 0
    assert SearchSettings(hops=7).hops_for(10**6) == 7
    # on the middle pooling: a few for the ratio metric, as many as on the coarse one for IoU
    assert settings.middle_grows_for(9) == settings.middle_grows_for(12) == MIDDLE_GROWS == 3
    iou = SearchSettings(metric="iou")
    assert (iou.middle_grows_for(9), iou.middle_grows_for(12), iou.middle_grows_for(1)) == (18, 24, MIDDLE_GROWS)
    assert SearchSettings(middle_grows=0, metric="iou").middle_grows_for(12) == 0
    for name in ("grows", "hops", "middle_grows"):
        for bad in (-1, 1.5, True):
            with pytest.raises(ValueError, match=f"{name} must be an integer of at least 0, got {bad!r}"):
                SearchSettings(**{name: bad})


def _record_regrows(monkeypatch) -> list[dict]:
    import autoanchor.core.search as search_module

    calls = []
    real_regrow = search_module.regrow

    def recording_regrow(objective, anchors, **kwargs):
        kicked, fitness = real_regrow(objective, anchors, **kwargs)
        calls.append({"points": objective.wh.shape[0], "grows": kwargs["grows"], "rough": kwargs.get("rough"),
                      "gained": not torch.equal(kicked, anchors.to(kicked.dtype))})
        return kicked, fitness

    monkeypatch.setattr(search_module, "regrow", recording_regrow)
    return calls


def test_few_box_searches_never_regrow(monkeypatch):
    # With at most fine_points boxes the search is the one before the kicks, stage for stage.
    calls = _record_regrows(monkeypatch)
    wh = _log_uniform(600, 3)
    search_anchors(wh, 6, gen=20, seed=0)
    search_anchors(wh, 6, gen=20, seed=0, metric="iou", chains=1)
    assert calls == []
    search_anchors(wh, 6, gen=20, seed=0, grows=3)  # asked for, they run with few boxes too
    assert [call["grows"] for call in calls][:1] == [3]


@pytest.mark.parametrize("metric, middle_grows", [("ratio", MIDDLE_GROWS), ("iou", 9 * 2)])
@pytest.mark.parametrize("seed", range(4))
def test_many_box_searches_regrow_and_go_finer_only_after_a_gain(monkeypatch, seed, metric, middle_grows):
    calls = _record_regrows(monkeypatch)
    wh = _log_uniform(3000, 10 + seed)
    # 3000 boxes count as many
    first = search_anchors(wh, 9, gen=50, seed=seed, fine_points=2000, metric=metric)
    coarse = calls[0]
    assert coarse["grows"] == 9 * MANY_BOX_GROWS_PER_ANCHOR and coarse["rough"] is None
    if coarse["gained"]:
        assert len(calls) == 2 and calls[1]["grows"] == middle_grows
        assert calls[1]["rough"] is not None and calls[1]["rough"].wh.shape[0] == coarse["points"]
        assert calls[1]["points"] >= coarse["points"]  # judged on the middle pooling (as fine or finer)
    else:
        assert len(calls) == 1
    again = search_anchors(wh, 9, gen=50, seed=seed, fine_points=2000, metric=metric)
    assert torch.equal(first.anchors, again.anchors)  # the same seed, the same anchors
    start_figure = objective_class(metric).figure(first.start_stats)
    assert first.objective >= start_figure - 1e-9  # never below the k-means start
