"""k-means: known clusters recovered for both distances, degenerate data, weights, determinism, bad input."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch

from autoanchor.core.kmeans import _lloyd, _weighted_medians, kmeans, kmeans_starts
from helpers import generator

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


CENTRES = [[10.0, 10.0], [50.0, 100.0], [200.0, 60.0]]  # sorted by area: 100, 5000, 12000
COUNTS = [40, 25, 15]






def blobs(seed: int = 0, jitter: float = 0.03, dtype=torch.float32, device="cpu") -> list[torch.Tensor]:
    """Three tight clusters of box sizes, each size multiplied by 1 + jitter * N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.tensor(c, dtype=torch.float64) * (1 + jitter * torch.randn(m, 2, generator=g, dtype=torch.float64)))
        .to(dtype=dtype, device=device)
        for c, m in zip(CENTRES, COUNTS)
    ]


def loop_lower_median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def assert_sorted_by_area(anchors: torch.Tensor) -> None:
    area = anchors.prod(-1)
    assert bool((area[1:] >= area[:-1]).all()), anchors


@pytest.mark.parametrize(
    "distance,update",
    [("euclidean", "mean"), ("iou", "median"), ("iou", "mean"), ("euclidean", "median")],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_separated_clusters(device, distance, update, seed):
    parts = blobs(seed, device=device)
    wh = torch.cat(parts)[torch.randperm(80, generator=generator(seed))]  # order must not matter
    anchors = kmeans(wh, 3, distance=distance, update=update, generator=generator(seed, device))
    assert anchors.shape == (3, 2)
    assert anchors.device.type == device.type and anchors.dtype == wh.dtype
    centres = torch.tensor(CENTRES, device=device)
    # within a few % of the sizes the blobs were drawn around ...
    assert bool(((anchors - centres).abs() / centres <= 0.03).all()), anchors
    # ... and, once the clusters are found, exactly each blob's mean or (lower) median
    for anchor, part in zip(anchors.cpu().tolist(), parts):
        columns = part.double().cpu().T.tolist()
        if update == "mean":
            expected = [sum(c) / len(c) for c in columns]
        else:
            expected = [loop_lower_median(c) for c in columns]
        assert anchor == pytest.approx(expected, rel=1e-6)


def test_exactly_n_rows_sorted_by_area(device):
    wh = (torch.rand(300, 2, generator=generator(5)) * 300 + 2).to(device)
    for n in (1, 2, 5, 9):
        for distance in ("euclidean", "iou"):
            anchors = kmeans(wh, n, distance=distance, generator=generator(n, device))
            assert anchors.shape == (n, 2)
            assert bool(torch.isfinite(anchors).all())
            assert_sorted_by_area(anchors)
            # anchors lie inside the data's range (means and medians of members)
            assert bool((anchors >= wh.amin(0) - 1e-4).all() and (anchors <= wh.amax(0) + 1e-4).all())


def test_n_equal_to_m_returns_the_points():
    wh = torch.tensor([[30.0, 10.0], [5.0, 5.0], [10.0, 40.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        anchors = kmeans(wh, 3)
    # sorted by area: 25, 300, 400
    assert torch.equal(anchors, torch.tensor([[5.0, 5.0], [30.0, 10.0], [10.0, 40.0]]))


@pytest.mark.parametrize("distance,update", [("euclidean", "mean"), ("iou", "median"), ("iou", "mean")])
@pytest.mark.parametrize("n", [1, 3, 9])
def test_all_boxes_equal(device, distance, update, n):
    wh = torch.tensor([[32.0, 48.0]], device=device).repeat(50, 1)
    if n > 1:
        with pytest.warns(UserWarning, match=rf"asked for {n} anchors .* only 1 distinct"):
            anchors = kmeans(wh, n, distance=distance, update=update, generator=generator(0, device))
    else:
        anchors = kmeans(wh, n, distance=distance, update=update, generator=generator(0, device))
    assert anchors.shape == (n, 2)
    assert not bool(anchors.isnan().any())
    assert torch.equal(anchors, wh[:n])


@pytest.mark.parametrize("distance", ["euclidean", "iou"])
def test_fewer_distinct_sizes_than_n(device, distance):
    sizes = torch.tensor([[8.0, 8.0], [40.0, 20.0], [100.0, 150.0]], device=device)
    wh = sizes.repeat_interleave(torch.tensor([5, 9, 2], device=device), dim=0)  # 40x20 the most frequent
    with pytest.warns(UserWarning, match="only 3 distinct"):
        anchors = kmeans(wh, 5, distance=distance, generator=generator(0, device))
    assert anchors.shape == (5, 2)
    assert bool(torch.isfinite(anchors).all())
    assert_sorted_by_area(anchors)
    rows = [tuple(r) for r in anchors.tolist()]
    assert set(rows) == {tuple(s) for s in sizes.tolist()}  # every distinct size, nothing made up
    # the two extra rows repeat the most frequent sizes: 40x20 (9 boxes) and 8x8 (5 boxes)
    assert rows.count((40.0, 20.0)) == 2 and rows.count((8.0, 8.0)) == 2 and rows.count((100.0, 150.0)) == 1


def test_zero_variance_coordinate_is_warned_not_crashed():
    wh = torch.stack([torch.full((30,), 16.0), torch.linspace(4, 400, 30)], 1)  # every width 16
    with pytest.warns(UserWarning, match="zero variance"):
        anchors = kmeans(wh, 3, generator=generator(0))
    assert anchors.shape == (3, 2)
    assert bool(torch.isfinite(anchors).all())
    assert bool((anchors[:, 0] == 16).all())


@pytest.mark.parametrize(
    "distance,update",
    [("euclidean", "mean"), ("iou", "median"), ("iou", "mean"), ("euclidean", "median")],
)
def test_weights_equal_repeated_rows(device, distance, update):
    wh = torch.cat(blobs(3, jitter=0.05, device=device))
    counts = torch.randint(1, 5, (wh.shape[0],), generator=generator(4)).to(device)
    repeated = wh.repeat_interleave(counts, dim=0)
    weighted = kmeans(
        wh, 3, weights=counts.double(), distance=distance, update=update, generator=generator(0, device)
    )
    plain = kmeans(repeated, 3, distance=distance, update=update, generator=generator(0, device))
    torch.testing.assert_close(weighted, plain, rtol=1e-6, atol=1e-5)
    # and the weights matter: unweighted clustering of the distinct rows gives other centres
    unweighted = kmeans(wh, 3, distance=distance, update=update, generator=generator(0, device))
    assert not torch.allclose(unweighted, plain, rtol=1e-4)


@pytest.mark.parametrize("distance,update", [("euclidean", "mean"), ("iou", "median")])
def test_same_generator_seed_same_result(device, distance, update):
    # spread-out data, where k-means++ seeding decides the outcome
    wh = (torch.rand(150, 2, generator=generator(9), dtype=torch.float64) * 5).exp().float().to(device) + 2
    first = kmeans(wh, 6, distance=distance, update=update, generator=generator(123, device))
    second = kmeans(wh, 6, distance=distance, update=update, generator=generator(123, device))
    assert torch.equal(first, second)
    # without a generator a fixed default seed (0) is used: still repeatable
    default = kmeans(wh, 6, distance=distance, update=update)
    assert torch.equal(default, kmeans(wh, 6, distance=distance, update=update, generator=generator(0, device)))


def test_generator_is_advanced_not_reset():
    g = generator(0)
    state = g.get_state()
    kmeans((torch.rand(100, 2, generator=generator(1)) * 100 + 2), 4, generator=g)
    assert not torch.equal(g.get_state(), state)


def test_input_not_modified(device):
    wh = torch.cat(blobs(0, device=device))
    copy = wh.clone()
    kmeans(wh, 3, generator=generator(0, device))
    kmeans(wh, 3, distance="iou", update="median", generator=generator(0, device))
    assert torch.equal(wh, copy)


def test_float64_in_float64_out(device):
    wh = torch.cat(blobs(0, dtype=torch.float64, device=device))
    anchors = kmeans(wh, 3, generator=generator(0, device))
    assert anchors.dtype == torch.float64


def test_empty_cluster_is_reseeded():
    # Lloyd from a start whose third centre is far from every point: its cluster is empty and must be
    # re-seeded at the worst-served point, which lies in the blob that has no centre.
    parts = blobs(0)
    points = torch.cat(parts).double()
    weights = torch.ones(points.shape[0], dtype=torch.float64)
    start = torch.tensor([[10.0, 10.0], [60.0, 90.0], [1e5, 1e5]], dtype=torch.float64)
    centroids, distortion = _lloyd(points, weights, start, distance="euclidean", update="mean", iters=100)
    order = centroids.prod(-1).argsort()
    expected = torch.stack([p.double().mean(0) for p in parts])
    torch.testing.assert_close(centroids[order], expected, rtol=1e-9, atol=1e-9)
    # distortion is the mean squared distance to the nearest centre
    assert distortion == pytest.approx(
        float(torch.cdist(points, expected).square().min(1).values.mean()), rel=1e-9
    )


def loop_weighted_median(values: list[float], weights: list[float]) -> float:
    """The first value, in sorted order, at which the running weight reaches half the total."""
    pairs = sorted(zip(values, weights), key=lambda pair: pair[0])
    half, running = sum(weights) / 2, 0.0
    for value, weight in pairs:
        running += weight
        if running >= half:
            return value
    return pairs[-1][0]


def test_weighted_medians_match_loop():
    g = generator(3)
    values = torch.rand(200, 2, generator=g, dtype=torch.float64) * 100
    weights = torch.randint(1, 5, (200,), generator=g).double()
    groups = torch.randint(0, 7, (200,), generator=g)
    groups[groups == 5] = 6  # group 5 has no rows
    medians = _weighted_medians(values, weights, groups, 8)
    for group in range(8):
        rows = (groups == group).nonzero().flatten().tolist()
        for column in range(2):
            if not rows:
                assert math.isnan(float(medians[group, column]))
                continue
            expected = loop_weighted_median(values[rows, column].tolist(), weights[rows].tolist())
            assert float(medians[group, column]) == expected


@pytest.mark.parametrize("distance,update", [("euclidean", "mean"), ("iou", "median")])
def test_lloyd_runs_starts_together_as_alone(distance, update):
    """Starts batched in one Lloyd run end exactly where each would alone (including the iteration cap)."""
    points = torch.cat(blobs(1)).double()
    weights = torch.randint(1, 4, (points.shape[0],), generator=generator(4)).double()
    starts = points[torch.randint(0, points.shape[0], (4, 3), generator=generator(5))]  # [4,3,2]
    starts[3, 2] = 1e5  # a start with an empty cluster
    for iters in (2, 100):
        together, distortions = _lloyd(points, weights, starts, distance=distance, update=update, iters=iters)
        for index in range(4):
            alone, distortion = _lloyd(points, weights, starts[index], distance=distance, update=update, iters=iters)
            assert torch.equal(together[index], alone)
            assert float(distortions[index]) == pytest.approx(float(distortion), rel=1e-12)


def test_kmeans_starts_returns_every_start():
    wh = torch.cat(blobs(2))
    every = kmeans_starts(wh, 3, restarts=5, generator=generator(6))
    assert every.shape == (5, 3, 2)
    areas = every.prod(-1)
    assert bool((areas[:, 1:] >= areas[:, :-1]).all())  # each start sorted by area
    best = kmeans(wh, 3, restarts=5, generator=generator(6))
    assert any(torch.equal(best, row) for row in every)


def test_starts_with_few_distinct_sizes_are_all_the_same():
    # two distinct sizes for three anchors: every start is the repeated sizes, [restarts, n, 2] still
    wh = torch.tensor([[10.0, 10.0], [10.0, 10.0], [50.0, 20.0]])
    with pytest.warns(UserWarning, match="only 2 distinct sizes"):
        every = kmeans_starts(wh, 3, restarts=4)
    assert every.shape == (4, 3, 2)
    with pytest.warns(UserWarning, match="only 2 distinct sizes"):
        best = kmeans(wh, 3, restarts=4)
    assert best.shape == (3, 2) and all(torch.equal(best, row) for row in every)


# ---- bad input ------------------------------------------------------------------------------------------

WH = torch.tensor([[10.0, 10.0], [11.0, 12.0], [100.0, 50.0], [110.0, 55.0]])


@pytest.mark.parametrize("n", [0, -1, 2.5, "3", True, None])
def test_bad_n(n):
    with pytest.raises((ValueError, TypeError), match=re.escape(repr(n))):
        kmeans(WH, n)


@pytest.mark.parametrize("option", ["restarts", "iters"])
@pytest.mark.parametrize("value", [0, -2, 1.5, "2"])
def test_bad_restarts_and_iters(option, value):
    with pytest.raises((ValueError, TypeError), match=re.escape(str(value))) as error:
        kmeans(WH, 2, **{option: value})
    assert option in str(error.value)


@pytest.mark.parametrize("distance", ["manhattan", "IOU", ""])
def test_bad_distance(distance):
    with pytest.raises(ValueError, match=re.escape(repr(distance))):
        kmeans(WH, 2, distance=distance)


@pytest.mark.parametrize("update", ["mode", "Mean", ""])
def test_bad_update(update):
    with pytest.raises(ValueError, match=re.escape(repr(update))):
        kmeans(WH, 2, update=update)


def test_bad_wh():
    with pytest.raises(ValueError, match="empty"):
        kmeans(torch.zeros(0, 2), 2)
    with pytest.raises(ValueError, match=re.escape("[4, 3]")):
        kmeans(torch.ones(4, 3), 2)
    with pytest.raises(TypeError, match="torch.int64"):
        kmeans(WH.long(), 2)
    with pytest.raises(TypeError, match="list"):
        kmeans(WH.tolist(), 2)
