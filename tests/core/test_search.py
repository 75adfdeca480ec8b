"""The anchor search: coco128 fitness, determinism, untouched global RNGs, the drop-in, logging, bad input."""

from __future__ import annotations

import logging
import math
import random
import re
import warnings

import numpy as np
import pytest
import torch
from helpers import shared_npz

from autoanchor.core.boxes import BoxSizes, searchable_boxes
from autoanchor.io.datasets import load_boxes
from autoanchor.core.metrics import anchor_stats
from autoanchor.core.parallel import LocalReducer
from autoanchor.training.dropins import kmean_anchors
from autoanchor.core.search import SearchResult, pool_sizes, search_anchors





@pytest.fixture(scope="module")
def coco_sizes() -> BoxSizes:
    return load_boxes(None, verbose=False)


@pytest.fixture(scope="module")
def coco_wh(coco_sizes) -> torch.Tensor:
    return coco_sizes.pixel_wh(640)


def quiet_search(wh, *args, **kwargs) -> SearchResult:
    """search_anchors without the (expected, tested elsewhere) small-box warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*boxes have a side under", category=UserWarning)
        return search_anchors(wh, *args, **kwargs)


def quiet_kmean_anchors(*args, **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*boxes have a side under", category=UserWarning)
        return kmean_anchors(*args, **kwargs)


@pytest.fixture(scope="module")
def default_runs(coco_wh) -> dict[int, SearchResult]:
    """The issue's benchmark: coco128 at 640 px, every default (gen=1000), seeds 0, 1, 2."""
    return {seed: quiet_search(coco_wh, seed=seed) for seed in (0, 1, 2)}


def kept_boxes(wh: torch.Tensor) -> torch.Tensor:
    return searchable_boxes(wh)


# ---- coco128 with the defaults --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco128_defaults_reach_fitness(default_runs, seed):
    result = default_runs[seed]
    # issue requirement: yolov5 gets 0.644-0.688 depending on its seed; every seed here must reach 0.688
    assert result.stats.fitness >= 0.688, result.stats
    assert result.metric == "ratio" and result.objective == result.stats.fitness
    assert result.stats.fitness >= result.start_stats.fitness


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_result_is_consistent(default_runs, coco_wh, seed):
    result = default_runs[seed]
    anchors = result.anchors
    assert anchors.shape == (9, 2) and anchors.dtype == torch.float32
    area = anchors.prod(-1)
    assert bool((area[1:] >= area[:-1]).all())
    assert bool((anchors >= 2).all()) and bool(torch.isfinite(anchors).all())
    # coco128: 929 boxes, one with both sides under 2 px is left out; three have a side under 3 px
    assert result.n_boxes == 928 and result.n_small == 3
    # the reported figures are those of the returned anchors on every kept box
    kept = kept_boxes(coco_wh)
    assert result.stats == pytest.approx(tuple(anchor_stats(kept, anchors)), rel=1e-6)
    assert result.stats.n_boxes == 928
    assert result.stats.bpr > 0.99


@pytest.mark.slow
def test_same_seed_bit_identical(default_runs, coco_wh):
    again = quiet_search(coco_wh, seed=0)
    assert torch.equal(again.anchors, default_runs[0].anchors)
    assert again.stats == default_runs[0].stats
    assert again.start_stats == default_runs[0].start_stats


@pytest.mark.slow
def test_global_seed_has_no_influence(coco_wh):
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    first = quiet_search(coco_wh, gen=50, seed=3)
    torch.manual_seed(2)
    np.random.seed(2)
    random.seed(2)
    second = quiet_search(coco_wh, gen=50, seed=3)
    assert torch.equal(first.anchors, second.anchors)


def test_thread_count_restored(coco_wh):
    threads = torch.get_num_threads()
    quiet_search(coco_wh, gen=10)
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError):
        search_anchors(coco_wh, 0)
    assert torch.get_num_threads() == threads


@pytest.mark.slow
def test_global_rng_states_untouched(coco_wh):
    torch.manual_seed(12345)
    np.random.seed(12345)
    random.seed(12345)
    torch_state, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    quiet_search(coco_wh, gen=50, seed=1)
    quiet_search(coco_wh, gen=20, seed=1, metric="iou", method="de")
    quiet_kmean_anchors(None, gen=20, verbose=False)
    quiet_kmean_anchors(None, gen=20, verbose=True, seed=4)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
    assert random.getstate() == python_state


# ---- never worse than the start, both metrics and both methods ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["ratio", "iou"])
@pytest.mark.parametrize("method", ["ga", "de"])
def test_never_worse_than_start(coco_wh, metric, method):
    result = quiet_search(coco_wh, gen=100, metric=metric, method=method, seed=5)
    assert result.metric == metric
    if metric == "ratio":
        assert result.objective == result.stats.fitness
        assert result.stats.fitness >= result.start_stats.fitness
    else:
        assert result.objective == result.stats.avg_iou
        assert result.stats.avg_iou >= result.start_stats.avg_iou
        assert result.stats.avg_iou > 0.6  # k-means on 1 - IoU plus evolution; yolov5's P5 anchors give 0.609
    kept = kept_boxes(coco_wh)
    assert result.start_stats.n_boxes == result.stats.n_boxes == 928
    assert result.stats == pytest.approx(tuple(anchor_stats(kept, result.anchors)), rel=1e-6)


@pytest.mark.slow
def test_de_is_deterministic(coco_wh):
    first = quiet_search(coco_wh, gen=60, method="de", seed=7)
    second = quiet_search(coco_wh, gen=60, method="de", seed=7)
    assert torch.equal(first.anchors, second.anchors)
    assert first.stats.fitness >= first.start_stats.fitness


def test_gen_zero_still_never_worse(coco_wh):
    result = quiet_search(coco_wh, gen=0, seed=0)
    assert result.stats.fitness >= result.start_stats.fitness


@pytest.mark.parametrize("n", [1, 3, 12])
def test_other_anchor_counts(coco_wh, n):
    result = quiet_search(coco_wh, n, gen=30, seed=0)
    assert result.anchors.shape == (n, 2)
    assert result.stats.fitness >= result.start_stats.fitness


@pytest.mark.slow
def test_runs_on_the_input_device(device):
    g = torch.Generator().manual_seed(0)
    wh = (torch.rand(300, 2, generator=g) * 5).exp().add(3).to(device)
    result = search_anchors(wh, 5, gen=30)
    assert result.anchors.device.type == device.type
    again = search_anchors(wh, 5, gen=30)
    assert torch.equal(result.anchors, again.anchors)


@pytest.mark.slow
def test_float64_input(coco_wh):
    result = quiet_search(coco_wh.double(), gen=30)
    assert result.anchors.dtype == torch.float32
    assert torch.equal(result.anchors, quiet_search(coco_wh, gen=30).anchors)


class CountingReducer(LocalReducer):
    """One process that splits nothing, but counts what the search asks of it."""

    def __init__(self) -> None:
        self.sums = 0
        self.gathers = 0

    def sum(self, tensor):
        self.sums += 1
        return tensor

    def gather(self, tensor):
        self.gathers += 1
        return tensor


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["ratio", "iou"])
def test_local_reducer_same_as_none(coco_wh, metric):
    reducer = CountingReducer()
    with_reducer = quiet_search(coco_wh, gen=100, metric=metric, reducer=reducer)
    without = quiet_search(coco_wh, gen=100, metric=metric)
    assert torch.equal(with_reducer.anchors, without.anchors)
    assert with_reducer.stats == without.stats
    assert reducer.sums > 0  # the reducer is really used


# ---- the drop-in ----------------------------------------------------------------------------------------------


class Yolov5Dataset:
    """What yolov5's LoadImagesAndLabels offers: .shapes [I,2] (w, h) and .labels, [m,5] per image."""

    def __init__(self, sizes: BoxSizes) -> None:
        self.shapes = sizes.shapes.copy()
        self.labels = []
        for i in range(sizes.n_images):
            wh = sizes.wh[sizes.image_index == i]
            rows = np.zeros((len(wh), 5), dtype=np.float32)
            rows[:, 0] = i % 80  # class
            rows[:, 1:3] = 0.5  # centre
            rows[:, 3:5] = wh
            self.labels.append(rows)


@pytest.fixture(scope="module")
def dropin_reference(coco_sizes) -> np.ndarray:
    return quiet_kmean_anchors(coco_sizes, gen=100, verbose=False)


@pytest.mark.slow
def test_kmean_anchors_builtin(coco_sizes, coco_wh, dropin_reference):
    anchors = quiet_kmean_anchors(None, gen=100, verbose=False)
    assert isinstance(anchors, np.ndarray)
    assert anchors.dtype == np.float32 and anchors.shape == (9, 2)
    area = anchors.prod(1)
    assert (area[1:] >= area[:-1]).all()
    assert np.array_equal(anchors, dropin_reference)
    assert np.array_equal(anchors, quiet_search(coco_wh, gen=100).anchors.numpy())


@pytest.mark.slow
def test_kmean_anchors_yolov5_object(coco_sizes, dropin_reference):
    anchors = quiet_kmean_anchors(Yolov5Dataset(coco_sizes), gen=100, verbose=False)
    assert np.array_equal(anchors, dropin_reference)


@pytest.mark.slow
def test_kmean_anchors_shared_npz(dropin_reference):
    path = shared_npz("coco128")  # the shared data beside the repository (a fresh clone may lack it)
    assert np.array_equal(quiet_kmean_anchors(str(path), gen=100, verbose=False), dropin_reference)


@pytest.mark.slow
def test_kmean_anchors_npz(tmp_path, coco_sizes, dropin_reference):
    path = tmp_path / "boxes.npz"
    np.savez(path, shapes=coco_sizes.shapes, wh=coco_sizes.wh, image_index=coco_sizes.image_index)
    assert np.array_equal(quiet_kmean_anchors(str(path), gen=100, verbose=False), dropin_reference)
    assert np.array_equal(quiet_kmean_anchors(path, gen=100, verbose=False), dropin_reference)


@pytest.mark.slow
def test_kmean_anchors_options_reach_the_search(coco_wh):
    anchors = quiet_kmean_anchors(None, n=4, img_size=320, thr=3.0, gen=40, verbose=False, seed=2, metric="iou")
    expected = quiet_search(coco_wh / 2, 4, thr=3.0, gen=40, seed=2, metric="iou").anchors
    assert anchors.shape == (4, 2)
    np.testing.assert_allclose(anchors, expected.numpy(), rtol=1e-5)


@pytest.mark.slow
def test_verbose_false_is_silent(caplog, capsys):
    with caplog.at_level(logging.INFO):
        quiet_kmean_anchors(None, gen=30, verbose=False)
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_true_logs_a_summary(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="autoanchor"):
        anchors = quiet_kmean_anchors(None, gen=30, verbose=True)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("autoanchor"))
    assert "best possible recall" in text and "fitness" in text
    # the anchors are logged as w,h pairs
    assert ", ".join(f"{w:.0f},{h:.0f}" for w, h in anchors[:2].tolist()).replace(", ", ",  ") in text
    captured = capsys.readouterr()
    # a tqdm bar over the generations, on stderr (its fitness postfix appears only once tqdm refreshes,
    # which depends on timing, so it is not asserted); nothing on stdout
    assert "Evolving 9 anchors" in captured.err
    assert captured.out == ""


# ---- small boxes and degenerate data ------------------------------------------------------------------------


def test_small_boxes_warned_and_tiny_ones_left_out():
    g = torch.Generator().manual_seed(1)
    normal = (torch.rand(50, 2, generator=g) * 190 + 10)
    small_kept = torch.tensor([[2.5, 10.0], [10.0, 2.9], [2.5, 2.5], [1.0, 2.0]])  # a side < 3 px, one side >= 2
    tiny = torch.tensor([[1.0, 1.5], [1.9, 1.9]])  # both sides < 2 px: left out
    wh = torch.cat([normal, small_kept, tiny])
    with pytest.warns(UserWarning, match=r"\b6 of 56 boxes") as record:
        result = search_anchors(wh, 3, gen=20)
    assert "3 px" in str(record[0].message)
    assert result.n_small == 6
    assert result.n_boxes == 54 and result.stats.n_boxes == 54
    assert result.start_stats.n_boxes == 54


def test_no_warning_without_small_boxes():
    wh = torch.rand(40, 2, generator=torch.Generator().manual_seed(2)) * 100 + 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = search_anchors(wh, 3, gen=20)
    assert result.n_small == 0 and result.n_boxes == 40


@pytest.mark.parametrize("metric", ["ratio", "iou"])
@pytest.mark.parametrize("sizes", [[[8.0, 8.0], [40.0, 20.0], [100.0, 150.0]], [[32.0, 48.0]]])
def test_fewer_distinct_sizes_than_n(metric, sizes):
    wh = torch.tensor(sizes).repeat(20, 1)
    # More anchors than distinct sizes could only repeat them: refused, with the reason (issue 22, item 7).
    with pytest.raises(ValueError, match=rf"n=9 anchors, but the {20 * len(sizes)} searchable boxes have only {len(sizes)} distinct"):
        search_anchors(wh, 9, gen=50, metric=metric)
    # As many anchors as distinct sizes: every size has an anchor equal to it, a perfect fit the search keeps.
    result = search_anchors(wh, len(sizes), gen=50, metric=metric)
    assert result.anchors.shape == (len(sizes), 2)
    assert result.stats.fitness == pytest.approx(1.0) and result.stats.bpr == 1.0
    assert result.stats.avg_iou == pytest.approx(1.0)


# ---- bad input --------------------------------------------------------------------------------------------------

WH = torch.tensor([[10.0, 13.0], [30.0, 61.0], [62.0, 45.0], [116.0, 90.0]])


@pytest.mark.parametrize(
    "wh,error,match",
    [
        (torch.zeros(0, 2), ValueError, "empty"),
        (torch.tensor([[10.0, 13.0], [float("nan"), 5.0]]), ValueError, "nan"),
        (torch.tensor([[10.0, float("inf")], [3.0, 5.0]]), ValueError, "inf"),
        (torch.tensor([[10.0, 13.0], [4.0, -3.0]]), ValueError, "-3.0"),
        (torch.ones(4, 3), ValueError, re.escape("[4, 3]")),
        (torch.ones(8), ValueError, re.escape("[8]")),
        (torch.ones(4, 2, dtype=torch.int64), TypeError, "torch.int64"),
        (torch.ones(4, 2, dtype=torch.int32), TypeError, "torch.int32"),
        (torch.tensor([[1.0, 1.5], [0.5, 0.5]]), ValueError, "under 2 px"),
    ],
    ids=["empty", "nan", "inf", "negative", "shape-3", "shape-1d", "int64", "int32", "all-tiny"],
)
def test_bad_wh(wh, error, match):
    with pytest.raises(error, match=match):
        quiet_search(wh, 2)


def test_bad_values_named_with_their_row():
    with pytest.raises(ValueError, match=r"box 1\b.*nan"):
        search_anchors(torch.tensor([[10.0, 13.0], [float("nan"), 5.0]]), 2)
    with pytest.raises(ValueError, match=r"box 2\b.*-3.0"):
        search_anchors(torch.tensor([[10.0, 13.0], [4.0, 3.0], [4.0, -3.0]]), 2)


@pytest.mark.parametrize(
    "option,value",
    [
        ("n", 0), ("n", -1), ("n", 2.5), ("n", "9"), ("n", None),
        ("thr", 1), ("thr", 1.0), ("thr", 0.25), ("thr", float("nan")), ("thr", float("inf")),
        ("gen", -1), ("gen", 1.5),
        ("metric", "giou"), ("metric", "IoU"),
        ("method", "cmaes"), ("method", ""),
        ("seed", -1), ("seed", 0.5),
        ("starts", 0), ("population", 0), ("kmeans_iters", 0), ("fine_points", 0), ("relocations", -1),
        ("tries", 0), ("patience", 0), ("hops", -2), ("hops", 1.5),
        ("coarse_cell", -0.1), ("middle_cell", float("nan")), ("evolve_cell", float("inf")), ("evolve_cell", "0.2"),
    ],
)
def test_bad_options(option, value):
    with pytest.raises((ValueError, TypeError), match=re.escape(repr(value))) as error:
        search_anchors(WH, **{"n": 2, option: value})
    assert option in str(error.value)


@pytest.mark.parametrize(
    "option,value",
    [("n", 0), ("thr", 0.5), ("gen", -5), ("metric", "giou"), ("method", "cmaes"), ("img_size", -640)],
)
def test_kmean_anchors_bad_options(option, value):
    with pytest.raises((ValueError, TypeError), match=re.escape(repr(value))):
        quiet_kmean_anchors(None, **{"verbose": False, option: value})


def test_kmean_anchors_empty_dataset():
    class Empty:
        def __init__(self) -> None:
            self.shapes = np.array([[640.0, 480.0], [320.0, 320.0]])
            self.labels = [np.zeros((0, 5)), np.zeros((0, 5))]

    with pytest.raises(ValueError, match="no boxes"):
        kmean_anchors(Empty(), verbose=False)


# ---- pool_sizes against a plain loop ------------------------------------------------------------------------


def loop_pools(wh: torch.Tensor, weights: torch.Tensor, cell: float) -> dict:
    """Plain-Python pools: key -> (total weight, weighted mean log w, weighted mean log h)."""
    pools: dict = {}
    for (w, h), weight in zip(wh.tolist(), weights.tolist()):
        key = (w, h) if cell == 0 else (math.floor(math.log(w) / cell), math.floor(math.log(h) / cell))
        total, lw, lh = pools.get(key, (0.0, 0.0, 0.0))
        pools[key] = (total + weight, lw + weight * math.log(w), lh + weight * math.log(h))
    return {key: (t, lw / t, lh / t) for key, (t, lw, lh) in pools.items()}


@pytest.mark.parametrize("cell", [0.0, 0.05, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_pool_sizes_matches_a_plain_loop(cell, weighted):
    gen = torch.Generator().manual_seed(21)
    # few distinct sizes, each repeated, so that cell 0 merges something too
    distinct = (torch.rand(40, 2, generator=gen, dtype=torch.float64) * 5).exp().float() + 2  # [40,2]
    wh = distinct[torch.randint(0, 40, (300,), generator=gen)]
    weights = torch.rand(300, generator=gen, dtype=torch.float64) + 0.5 if weighted else None
    points, pooled = pool_sizes(wh, weights, cell=cell)
    expected = loop_pools(wh, torch.ones(300, dtype=torch.float64) if weights is None else weights, cell)
    assert points.shape == (len(expected), 2) and pooled.shape == (len(expected),)
    assert points.dtype == wh.dtype and pooled.dtype == torch.float64
    assert float(pooled.sum()) == pytest.approx(300 if weights is None else float(weights.sum()), rel=1e-12)
    got = {}
    for (w, h), weight in zip(points.tolist(), pooled.tolist()):
        if cell == 0:
            key = (w, h)  # identical sizes are kept bit-exact
        else:  # the pool's mean size lies in its own cell
            key = (math.floor(math.log(w) / cell), math.floor(math.log(h) / cell))
        got[key] = (weight, math.log(w), math.log(h))
    assert got.keys() == expected.keys()
    for key, (weight, lw, lh) in expected.items():
        assert got[key][0] == pytest.approx(weight, rel=1e-12)
        assert got[key][1:] == pytest.approx((lw, lh), abs=1e-6)  # float32 sizes


def test_pool_sizes_empty_and_cell_order():
    points, weights = pool_sizes(torch.zeros(0, 2))
    assert points.shape == (0, 2) and weights.shape == (0,)
    # cell 0.5: 10 and 11 px share a cell (log 2.30, 2.40 -> floor 4), 100 px does not (log 4.6 -> 9)
    wh = torch.tensor([[100.0, 100.0], [10.0, 10.0], [11.0, 11.0]])
    points, weights = pool_sizes(wh, cell=0.5)
    assert weights.tolist() == [2.0, 1.0]
    assert points[0].tolist() == pytest.approx([math.sqrt(110)] * 2, rel=1e-6)  # geometric mean of 10 and 11


# ---- settings object and threads -------------------------------------------------------------------------------


@pytest.mark.slow
def test_settings_object_gives_the_same_search_as_keywords(coco_wh):
    from autoanchor.core.settings import SearchSettings

    options = dict(gen=30, seed=5, metric="iou", starts=2, hops=4)
    by_keywords = quiet_search(coco_wh, 6, **options)
    by_settings = quiet_search(coco_wh, 6, settings=SearchSettings(**options))
    overridden = quiet_search(coco_wh, 6, settings=SearchSettings(**{**options, "seed": 9}), seed=5)
    for other in (by_settings, overridden):
        assert torch.equal(by_keywords.anchors, other.anchors) and by_keywords.stats == other.stats


@pytest.mark.slow
def test_threads_option(coco_wh, monkeypatch):
    before = torch.get_num_threads()
    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    quiet_search(coco_wh, 3, gen=5, threads=None)
    assert calls == []  # None leaves torch's thread count alone
    quiet_search(coco_wh, 3, gen=5)
    assert calls == [1, before]  # the default pins one thread and restores the count
    assert torch.get_num_threads() == before


def test_unknown_option_is_a_type_error_listing_the_options():
    with pytest.raises(TypeError, match=r"\['generations'\].*'gen'"):
        search_anchors(WH, 2, generations=10)


def test_the_removed_alias_is_gone():
    # autoanchor.search.kmean_anchors (deprecated in 0.1.x) was removed with the layout of 0.2
    import autoanchor.core.search

    assert not hasattr(autoanchor.core.search, "kmean_anchors")
