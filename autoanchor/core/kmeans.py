"""k-means for anchor sizes: Euclidean on whitened sizes (yolov5) or ``1 - IoU`` (YOLOv2).

Both variants share the same machinery: k-means++ seeding, Lloyd iterations with
(weighted) mean or median updates, empty clusters re-seeded at the worst-served
point, and several restarts of which the one with the lowest distortion is kept.
:func:`kmeans` returns the best start's anchors ``[n, 2]``; :func:`kmeans_starts`
returns every start's, ``[restarts, n, 2]``. Randomness comes only from the
``generator`` passed in, or from a fresh one seeded with
:data:`~autoanchor.core.rng.DEFAULT_SEED`.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import torch
from torch import Tensor

from ._warn import warn
from .boxes import sort_by_area
from .metrics import check_wh, wh_iou
from .rng import resolve_generator
from .validate import check_int

__all__ = ["kmeans", "kmeans_starts"]

logger = logging.getLogger(__name__)

Distance = Literal["euclidean", "iou"]
Update = Literal["mean", "median"]


def _distances(points: Tensor, centroids: Tensor, distance: Distance) -> Tensor:
    """Distance of every point to every centroid of each start: ``[M, 2], [S, n, 2] -> [S, M, n]``."""
    if distance == "euclidean":
        return (points[None, :, None, :] - centroids[:, None]).square_().sum(-1)  # cdist is slower for 2-D
    return 1 - wh_iou(points, centroids)


def _weighted_medians(values: Tensor, weights: Tensor, groups: Tensor, count: int) -> Tensor:
    """Lower weighted median of each column of ``values [m, d]`` within each group: ``[count, d]``.

    ``groups [m]`` gives each row's group in ``[0, count)``; a group without rows gets NaN.
    All groups are done at once: the rows are sorted by value, then stably by group, and
    each group's median is its first row where the group's running weight reaches half
    of its total.
    """
    medians = torch.full((count, values.shape[1]), math.nan, dtype=values.dtype, device=values.device)
    rows = torch.bincount(groups, minlength=count)
    present = (rows > 0).nonzero().flatten()
    last = rows.cumsum(0)[present] - 1  # each group's last row in the sorted order
    first = last - rows[present] + 1
    for column in range(values.shape[1]):
        by_value = values[:, column].argsort()
        order = by_value[groups[by_value].argsort(stable=True)]  # by group, then by value
        running = weights[order].cumsum(0)
        before = torch.where(first > 0, running[(first - 1).clamp(min=0)], 0.0)
        half = before + (running[last] - before) / 2
        index = torch.searchsorted(running, half[:, None])[:, 0]  # first row reaching half
        medians[present, column] = values[order[index.clamp(first, last)], column]
    return medians


def _seed_plus_plus(
    points: Tensor, weights: Tensor, n: int, starts: int, distance: Distance, generator: torch.Generator
) -> Tensor:
    """k-means++ seeding of ``starts`` independent starts: ``[S, n, 2]``.

    Each next centre is drawn with probability ∝ weight · distance to the nearest centre so far.
    """
    mass = weights.expand(starts, -1)
    centroids = points[torch.multinomial(mass, 1, generator=generator)]  # [S,1,2]
    nearest = _distances(points, centroids, distance)[..., 0]  # [S,M]
    for _ in range(1, n):
        mass = weights * nearest.clamp(min=0)
        # Only rounding gets a start here with no mass left; Lloyd re-seeds its duplicates.
        mass = torch.where(mass.sum(1, keepdim=True) > 0, mass, weights)
        pick = points[torch.multinomial(mass, 1, generator=generator)]  # [S,1,2]
        centroids = torch.cat([centroids, pick], 1)
        nearest = torch.minimum(nearest, _distances(points, pick, distance)[..., 0])
    return centroids


def _lloyd(
    points: Tensor,
    weights: Tensor,
    centroids: Tensor,
    *,
    distance: Distance,
    update: Update,
    iters: int,
) -> tuple[Tensor, Tensor]:
    """Lloyd iterations of every start ``[S, n, 2]`` at once, until no assignment changes.

    Returns the centroids ``[S, n, 2]`` and each start's distortion ``[S]`` (weighted mean
    distance to the nearest centre). A ``[n, 2]`` start gives ``[n, 2]`` and a 0-dim distortion.
    """
    single = centroids.ndim == 2
    centroids = centroids[None] if single else centroids
    count, n = centroids.shape[:2]
    group_base = torch.arange(count, device=points.device)[:, None] * n  # [S,1]
    all_points, all_weights = points.repeat(count, 1), weights.repeat(count)  # one row per (start, point)
    weighted_points = all_points * all_weights[:, None]
    labels = None
    for _ in range(iters):
        nearest, new_labels = _distances(points, centroids, distance).min(2)  # [S,M]
        if labels is not None and torch.equal(new_labels, labels):
            break
        labels = new_labels
        groups = (labels + group_base).flatten()  # cluster of each (start, point)
        counts = torch.zeros(count * n, dtype=weights.dtype, device=points.device).index_add_(0, groups, all_weights)
        if update == "mean":
            sums = torch.zeros(count * n, 2, dtype=points.dtype, device=points.device).index_add_(
                0, groups, weighted_points
            )
            moved = sums / counts.clamp(min=1e-30)[:, None]
        else:
            moved = _weighted_medians(all_points, all_weights, groups, count * n)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids.reshape(-1, 2), moved).view(count, n, 2)
        # An empty cluster takes over the point its start serves worst, weighted by its count.
        for start, k in (empty.view(count, n)).nonzero().tolist():
            worst = int((nearest[start] * weights).argmax())
            centroids[start, k] = points[worst]
            nearest[start, worst] = 0
    distortion = (_distances(points, centroids, distance).min(2).values * weights).sum(1) / weights.sum()
    return (centroids[0], distortion[0]) if single else (centroids, distortion)


def kmeans(
    wh: Tensor,
    n: int,
    *,
    weights: Tensor | None = None,
    distance: Distance = "euclidean",
    update: Update = "mean",
    restarts: int = 3,
    iters: int = 100,
    whiten: bool | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Cluster box sizes into ``n`` anchors.

    ``distance="euclidean"`` with ``whiten=True`` is yolov5's initialiser (scipy's
    ``kmeans`` on sizes divided by their standard deviation); ``distance="iou"``
    uses ``1 - IoU`` of the sizes, YOLOv2's dimension clusters, usually with
    ``update="median"``.

    Args:
        wh (Tensor[M, 2]): box (width, height) in pixels.
        n: number of anchors.
        weights (Tensor[M], optional): how many boxes each row stands for.
        distance: ``"euclidean"`` or ``"iou"``.
        update: how a centre follows its members: ``"mean"`` or ``"median"``
            (both weighted).
        restarts: independent k-means++ starts, run together as one batch; the one
            with the lowest mean distance is kept (:func:`kmeans_starts` returns
            them all).
        iters: the most Lloyd iterations per start.
        whiten: divide each coordinate by its standard deviation before
            clustering; defaults to True for ``"euclidean"``. Ignored for
            ``"iou"``, which is scale-invariant already.
        generator: source of randomness (on ``wh.device``); a fresh one seeded with
            :data:`~autoanchor.core.rng.DEFAULT_SEED` when omitted, so results repeat.

    Returns:
        Tensor[n, 2]: anchors in pixels on ``wh.device``, sorted by area.
        Exactly ``n`` rows: with fewer than ``n`` distinct sizes, the distinct sizes
        are repeated (a ``UserWarning`` says so) instead of failing.

    Raises:
        ValueError: for empty input, ``n < 1``, ``restarts < 1``, ``iters < 1`` or an
            unknown ``distance``/``update``.

    Example:
        >>> wh = torch.tensor([[10.0, 10.0], [11.0, 11.0], [100.0, 50.0], [110.0, 55.0]])
        >>> kmeans(wh, 2)
        tensor([[ 10.5000,  10.5000],
                [105.0000,  52.5000]])
    """
    centroids, distortion = _run(
        wh, n, weights=weights, distance=distance, update=update, restarts=restarts, iters=iters, whiten=whiten,
        generator=generator,
    )
    best = int(distortion.argmin())
    logger.debug("kmeans: %d anchors, mean distance %.6g", n, float(distortion[best]))
    return centroids[best]


def kmeans_starts(
    wh: Tensor,
    n: int,
    *,
    weights: Tensor | None = None,
    distance: Distance = "euclidean",
    update: Update = "mean",
    restarts: int = 3,
    iters: int = 100,
    whiten: bool | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Every start of :func:`kmeans`: ``Tensor[restarts, n, 2]``, each set sorted by area.

    The arguments are those of :func:`kmeans`, which returns the row of this
    result with the lowest mean distance. With ``n`` or fewer distinct sizes every
    row is the same.

    Example:
        >>> wh = torch.tensor([[10.0, 10.0], [11.0, 11.0], [100.0, 50.0], [110.0, 55.0]])
        >>> kmeans_starts(wh, 2, restarts=4).shape
        torch.Size([4, 2, 2])
    """
    return _run(
        wh, n, weights=weights, distance=distance, update=update, restarts=restarts, iters=iters, whiten=whiten,
        generator=generator,
    )[0]


def _run(
    wh: Tensor,
    n: int,
    *,
    weights: Tensor | None,
    distance: Distance,
    update: Update,
    restarts: int,
    iters: int,
    whiten: bool | None,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """Validate, then cluster from every start: ``(centroids [S, n, 2], distortion [S])``."""
    check_wh(wh)
    n = check_int("n", n, low=1)
    if wh.shape[0] == 0:
        raise ValueError("kmeans needs at least one box, got an empty wh [0, 2]")
    if distance not in ("euclidean", "iou"):
        raise ValueError(f"distance must be 'euclidean' or 'iou', got {distance!r}")
    if update not in ("mean", "median"):
        raise ValueError(f"update must be 'mean' or 'median', got {update!r}")
    restarts, iters = check_int("restarts", restarts, low=1), check_int("iters", iters, low=1)
    generator = resolve_generator(generator, wh.device)

    points = wh.double()
    weights = torch.ones(len(points), dtype=torch.float64, device=wh.device) if weights is None else weights.double()

    distinct, inverse = torch.unique(points, dim=0, return_inverse=True)
    if distinct.shape[0] <= n:
        counts = torch.zeros(len(distinct), dtype=torch.float64, device=wh.device).index_add_(0, inverse, weights)
        if distinct.shape[0] < n:
            warn(
                f"kmeans: asked for {n} anchors but the data has only {distinct.shape[0]} distinct sizes; "
                "the most frequent sizes are repeated to make up the number"
            )
        order = counts.argsort(descending=True, stable=True)
        centroids = sort_by_area(distinct[order.repeat(math.ceil(n / len(order)))[:n]]).to(wh.dtype)
        return centroids.expand(restarts, n, 2).clone(), torch.zeros(restarts, dtype=torch.float64, device=wh.device)

    scale = torch.ones(2, dtype=torch.float64, device=wh.device)
    if distance == "euclidean" and (whiten is None or whiten):
        mean = (points * weights[:, None]).sum(0) / weights.sum()
        std = (((points - mean) ** 2 * weights[:, None]).sum(0) / weights.sum()).sqrt()
        if bool((std == 0).any()):
            warn(f"kmeans: a coordinate has zero variance (std {std.tolist()}); it is not whitened")
        scale = torch.where(std > 0, std, torch.ones_like(std))
    points = points / scale

    # All starts are seeded and iterated together, as one batch.
    start = _seed_plus_plus(points, weights, n, restarts, distance, generator)
    centroids, distortion = _lloyd(points, weights, start, distance=distance, update=update, iters=iters)
    return sort_by_area(centroids * scale).to(wh.dtype), distortion
