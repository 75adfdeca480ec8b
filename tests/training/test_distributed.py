"""check_anchors and DistributedReducer in a real 2-process gloo group on the CPU.

One pair of processes is spawned for the whole module and runs every scenario in
order (spawning costs seconds); each rank saves what it saw, and the tests below
compare the two ranks. Between scenarios the group must remain usable, which is
itself checked: a failure handled badly would leave a collective pending and the
next scenario would hang (the join has a timeout, so a hang fails the tests
rather than blocking them).
"""

from __future__ import annotations

import datetime
import os
import time
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from autoanchor.io.configs import anchors_by_name

# Spawning the pair of processes costs about 10 s: the whole module runs with -m slow.
pytestmark = pytest.mark.slow

WORLD_SIZE = 2
GEN = 50
JOIN_TIMEOUT_S = 240  # a safety net against hangs, not a timing assertion

# yolov5's P5 anchors in pixels, one flat w,h row per level (the shipped config).
P5 = anchors_by_name("yolov5-p5").view(3, -1).tolist()
POOR = [[3, 3, 4, 4, 5, 5], [6, 6, 7, 7, 8, 8], [9, 9, 10, 10, 11, 11]]


def _model(anchors_px, dtype=torch.float32):
    """A yolov5-style model with a v6+ Detect head (anchors in stride units, lazy grids)."""
    from torch import nn

    class Detect(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.grid = [torch.empty(0)] * 3
            self.anchor_grid = [torch.empty(0)] * 3
            self.stride = torch.tensor([8.0, 16.0, 32.0])
            anchors = torch.tensor(anchors_px, dtype=torch.float32).view(3, -1, 2) / self.stride.view(-1, 1, 1)
            self.register_buffer("anchors", anchors)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = nn.Sequential(nn.Identity(), Detect())

    return Model().to(dtype)


def _outcome(call):
    """``("ok", value)`` or ``("error", type name, message)``: exceptions become data."""
    try:
        return ("ok", call())
    except Exception as error:  # recorded for the parent to inspect, not hidden
        return ("error", type(error).__name__, str(error))


def _report_fields(report):
    return {
        "replaced": report.replaced,
        "searched": report.searched,
        "figures": [report.bpr_before, report.bpr_after, report.aat_before, report.aat_after,
                    report.fitness_before, report.fitness_after],
        "anchors_before": report.anchors_before,
        "anchors_after": report.anchors_after,
        "line": str(report),
        "levels": [level.to_dict() for level in report.levels],
    }


def _group_alive() -> float:
    value = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(value)
    return float(value)  # 1 + 2 = 3 on both ranks


def _scenarios(rank: int, out: dict) -> None:
    from autoanchor.io.datasets import load_boxes
    from autoanchor.training.distributed import DistributedReducer, PeerFailure
    from autoanchor.training.hook import CheckOptions, check_anchors, run_check
    from autoanchor.core.search import SearchResult, search_anchors

    reducer = DistributedReducer()

    # The reducer on its own.
    with reducer.guard():
        out["sum"] = reducer.sum(torch.tensor([1.0, float(rank)], dtype=torch.float64))
        out["gather"] = reducer.gather(torch.full((rank * 2 + 1, 2), float(rank)))
        out["gather_empty"] = reducer.gather(torch.ones(0 if rank == 0 else 3, 2))
        out["broadcast"] = reducer.broadcast(torch.tensor([10.0 + rank, 20.0 + rank]), src=1)
    out["alive_0"] = _group_alive()

    # A guard that fails on rank 1 only, before any collective.
    def fail_on_rank_1():
        with reducer.guard():
            if rank == 1:
                raise KeyError("rank 1 broke")
            reducer.sum(torch.ones(2))
            reducer.sum(torch.ones(2))

    out["guard_failure"] = _outcome(fail_on_rank_1)
    out["alive_1"] = _group_alive()

    # Poor anchors, a different seed on each rank: the same anchors and report everywhere.
    model = _model(POOR)
    pointer = model.model[-1].anchors.data_ptr()
    report = check_anchors(None, model, gen=GEN, seed=0 if rank == 0 else 12345, verbose=rank == 0)
    out["poor"] = _report_fields(report)
    out["poor_anchors"] = model.model[-1].anchors.clone()
    out["poor_same_storage"] = model.model[-1].anchors.data_ptr() == pointer
    out["alive_2"] = _group_alive()

    # float16 anchors, and a search that (wrongly) answers differently on each rank:
    # rank 0's answer is broadcast and stored bit for bit on both ranks.
    def rank_dependent_search(wh, n=9, *, reducer=None, **options):
        from autoanchor.core.metrics import anchor_stats

        reducer.sum(torch.ones(1))  # the same collectives on every rank
        wide = torch.tensor(P5, dtype=torch.float32).view(-1, 2) * (1.0 if rank == 0 else 0.5)
        anchors = wide * 1.01  # not exact in float16
        stats = anchor_stats(wh, anchors, reducer=reducer)
        return SearchResult(anchors, stats, stats, "ratio", wh.shape[0], 0)

    model = _model(POOR, torch.float16)
    options = CheckOptions(gen=GEN, seed=rank, verbose=False)
    report = run_check(None, model, options, search=rank_dependent_search, reducer=reducer)
    out["poor_fp16"] = _report_fields(report)
    out["poor_fp16_anchors"] = model.model[-1].anchors.clone()

    # Good anchors are kept bit for bit on both ranks.
    model = _model(P5)
    before = model.model[-1].anchors.clone()
    out["good"] = _report_fields(check_anchors(None, model, verbose=False, seed=rank))
    out["good_untouched"] = torch.equal(model.model[-1].anchors, before)

    # Bad data on rank 1 only: both ranks raise, nobody hangs, nothing changes.
    sizes = load_boxes(None)

    class Labels:
        def __init__(self, broken: bool) -> None:
            self.shapes = sizes.shapes.copy()
            self.labels = []
            for i in range(sizes.n_images):
                rows = torch.zeros(int((sizes.image_index == i).sum()), 5).numpy()
                rows[:, 3:5] = sizes.wh[sizes.image_index == i]
                self.labels.append(rows)
            if broken:
                self.labels[5][0, 3] = float("nan")

    model = _model(POOR)
    before = model.model[-1].anchors.clone()
    out["bad_data"] = _outcome(lambda: check_anchors(Labels(rank == 1), model, gen=GEN, verbose=False))
    out["bad_data_untouched"] = torch.equal(model.model[-1].anchors, before)
    out["alive_3"] = _group_alive()

    # The search fails half-way on rank 1 only, after some collectives: both raise.

    def flaky_search(wh, n=9, *, reducer=None, **options):
        reducer.sum(torch.ones(1))
        reducer.sum(torch.ones(1))
        if rank == 1:
            raise RuntimeError("search failed half-way on rank 1")
        return search_anchors(wh, n, reducer=reducer, **options)

    model = _model(POOR)
    before = model.model[-1].anchors.clone()
    out["search_failure"] = _outcome(
        lambda: run_check(None, model, CheckOptions(gen=GEN, verbose=False), search=flaky_search, reducer=reducer)
    )
    out["search_failure_untouched"] = torch.equal(model.model[-1].anchors, before)
    out["alive_4"] = _group_alive()

    # NaN anchors in rank 1's model only: rank 1 names them, rank 0 stops too.
    model = _model(P5)
    if rank == 1:
        with torch.no_grad():
            model.model[-1].anchors[2, 0, 1] = float("nan")
    before = model.model[-1].anchors.clone()
    out["nan_anchors"] = _outcome(lambda: check_anchors(None, model, gen=GEN, verbose=False))
    out["nan_anchors_untouched"] = model.model[-1].anchors.numpy().tobytes() == before.numpy().tobytes()
    out["alive_7"] = _group_alive()

    # Ranks that disagree on the settings are told so, on every rank.
    out["mismatch"] = _outcome(lambda: check_anchors(None, _model(POOR), thr=4.0 + rank, gen=GEN, verbose=False))
    out["alive_5"] = _group_alive()

    # yolov5's train.py calls check_anchors on rank 0 only: distributed=False must not
    # wait for the other ranks.
    if rank == 0:
        out["rank0_only"] = _report_fields(check_anchors(None, _model(P5), verbose=False, distributed=False))
    out["alive_6"] = _group_alive()

    # A PeerFailure names the failed rank.
    out["peer_failure_type"] = PeerFailure.__mro__[1].__name__


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    out: dict = {}
    try:
        dist.init_process_group(
            "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE,
            timeout=datetime.timedelta(seconds=60),
        )
        _scenarios(rank, out)
    except BaseException:
        out["crash"] = traceback.format_exc()
    finally:
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Spawn the pair, wait (bounded), and load what each rank saved."""
    work = tmp_path_factory.mktemp("dist")
    context = mp.spawn(
        _worker, args=(str(work / "init"), str(work)), nprocs=WORLD_SIZE, join=False, daemon=True
    )
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    finished = False
    while time.monotonic() < deadline:
        if context.join(timeout=1):
            finished = True
            break
    if not finished:
        for process in context.processes:
            if process.is_alive():
                process.kill()
        pytest.fail(f"the 2-process group did not finish within {JOIN_TIMEOUT_S} s: a rank hung")
    results = [torch.load(work / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]
    for rank, result in enumerate(results):
        assert "crash" not in result, f"rank {rank} crashed:\n{result['crash']}"
    return results


def test_reducer_sum_gather_broadcast(ranks):
    for out in ranks:
        assert out["sum"].tolist() == [2.0, 1.0]  # [1+1, 0+1]
        # rank 0 gives 1 row of 0s, rank 1 gives 3 rows of 1s: concatenated in rank order
        assert out["gather"].tolist() == [[0.0, 0.0]] + [[1.0, 1.0]] * 3
        assert out["gather_empty"].shape == (3, 2)
        assert out["broadcast"].tolist() == [11.0, 21.0]  # rank 1's values


def test_group_stays_usable_after_every_scenario(ranks):
    for out in ranks:
        assert [out[f"alive_{i}"] for i in range(8)] == [3.0] * 8


def test_guard_raises_on_every_rank(ranks):
    assert ranks[0]["guard_failure"][:2] == ("error", "PeerFailure")
    assert "rank 1" in ranks[0]["guard_failure"][2]
    assert ranks[1]["guard_failure"][:2] == ("error", "KeyError")
    assert ranks[0]["peer_failure_type"] == "RuntimeError"


@pytest.mark.parametrize("case", ["poor", "poor_fp16"])
def test_every_rank_ends_with_the_same_anchors(ranks, case):
    first, second = ranks[0][case], ranks[1][case]
    assert first["replaced"] and second["replaced"]
    assert first["figures"] == second["figures"]
    assert first["line"] == second["line"]
    assert torch.equal(first["anchors_after"], second["anchors_after"])
    assert torch.equal(ranks[0][case + "_anchors"], ranks[1][case + "_anchors"])  # bit-identical
    bpr_before, bpr_after = first["figures"][:2]
    assert bpr_before < 0.5 and bpr_after > 0.98
    area = first["anchors_after"].double().prod(-1)
    assert (area[:-1].amax(1) <= area[1:].amin(1)).all()


def test_rank0_result_is_broadcast(ranks):
    """The float16 search answered P5 × 1.01 on rank 0 and half that on rank 1."""
    expected = (torch.tensor(P5, dtype=torch.float32).view(3, 3, 2) * 1.01).double()  # as searched
    strides = torch.tensor([8.0, 16.0, 32.0], dtype=torch.float64).view(-1, 1, 1)
    stored = (expected / strides).half()
    for out in ranks:
        assert torch.equal(out["poor_fp16_anchors"], stored)
        assert torch.equal(out["poor_fp16"]["anchors_after"], (stored.double() * strides).float())


def test_storage_is_kept(ranks):
    assert ranks[0]["poor_same_storage"] and ranks[1]["poor_same_storage"]
    assert ranks[0]["poor_fp16_anchors"].dtype == torch.float16


def test_rank0_seed_is_used_everywhere(ranks):
    """Rank 1 passed seed 12345 yet measured with rank 0's seed: the single-process
    figures of the current anchors with seed 0."""
    from autoanchor.core.metrics import anchor_stats
    from autoanchor.io.datasets import load_boxes

    wh = load_boxes(None).pixel_wh(640, scale_jitter=(0.9, 1.1), generator=torch.Generator().manual_seed(0))
    stats = anchor_stats(wh, torch.tensor(POOR, dtype=torch.float32).view(-1, 2))
    for out in ranks:
        assert out["poor"]["figures"][0] == pytest.approx(stats.bpr, abs=1e-12)
        assert out["poor"]["figures"][4] == pytest.approx(stats.fitness, abs=1e-12)


def test_good_anchors_kept_on_every_rank(ranks):
    for out in ranks:
        assert out["good_untouched"] and not out["good"]["replaced"] and not out["good"]["searched"]
    assert ranks[0]["good"]["figures"] == ranks[1]["good"]["figures"]


def test_level_figures_are_over_every_rank_s_boxes(ranks):
    """Each rank measured half of the boxes; the per-level shares are those of all of them."""
    from autoanchor.io.datasets import load_boxes
    from autoanchor.core.levels import level_stats

    wh = load_boxes(None).pixel_wh(640, scale_jitter=(0.9, 1.1), generator=torch.Generator().manual_seed(0))
    expected = level_stats(wh, torch.tensor(P5, dtype=torch.float32).view(3, 3, 2), [8, 16, 32])
    assert ranks[0]["good"]["levels"] == ranks[1]["good"]["levels"]
    for got, want in zip(ranks[0]["good"]["levels"], expected):
        assert got["n_boxes"] == want.n_boxes == 929
        for key in ("matched", "targets", "best"):
            assert got[key] == pytest.approx(getattr(want, key), abs=1e-12)


def test_bad_data_on_one_rank_raises_on_both(ranks):
    assert ranks[1]["bad_data"][:2] == ("error", "ValueError")
    assert "image 5" in ranks[1]["bad_data"][2]
    assert ranks[0]["bad_data"][:2] == ("error", "PeerFailure")
    assert "rank 1" in ranks[0]["bad_data"][2]
    assert ranks[0]["bad_data_untouched"] and ranks[1]["bad_data_untouched"]


def test_search_failing_on_one_rank_raises_on_both(ranks):
    assert ranks[1]["search_failure"] == ("error", "RuntimeError", "search failed half-way on rank 1")
    assert ranks[0]["search_failure"][:2] == ("error", "PeerFailure")
    assert ranks[0]["search_failure_untouched"] and ranks[1]["search_failure_untouched"]


def test_bad_anchors_on_one_rank_raise_on_both(ranks):
    assert ranks[1]["nan_anchors"][:2] == ("error", "ValueError")
    assert "level 2, anchor 0 is (" in ranks[1]["nan_anchors"][2] and "nan" in ranks[1]["nan_anchors"][2]
    assert ranks[0]["nan_anchors"][:2] == ("error", "PeerFailure")
    assert ranks[0]["nan_anchors_untouched"] and ranks[1]["nan_anchors_untouched"]  # bytes: NaN included


def test_mismatched_settings_are_refused_everywhere(ranks):
    for out in ranks:
        assert out["mismatch"][:2] == ("error", "ValueError")
        assert "same thr" in out["mismatch"][2]


def test_rank0_only_call_does_not_wait(ranks):
    assert not ranks[0]["rank0_only"]["replaced"]
    assert "rank0_only" not in ranks[1]


def test_reducer_needs_a_group():
    from autoanchor.training.distributed import DistributedReducer, is_distributed

    assert not is_distributed()
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedReducer()


def test_peer_failure_pickles():
    import pickle

    from autoanchor.training.distributed import PeerFailure

    error = pickle.loads(pickle.dumps(PeerFailure([1, 3], 0)))
    assert isinstance(error, RuntimeError)
    assert error.failed_ranks == (1, 3) and error.rank == 0
    assert "ranks 1, 3" in str(error)
