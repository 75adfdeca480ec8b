"""k-means for anchor sizes: Euclidean on whitened sizes (yolov5) or ``1 - IoU`` (YOLOv2).

Both variants share the same machinery: k-means++ seeding, Lloyd iterations with
(weighted) mean or median updates, empty clusters re-seeded at the worst-served
point, and several restarts of which the one with the lowest distortion is kept.
Randomness comes only from the ``generator`` passed in.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import torch
from torch import Tensor

from ._warn import warn
from .metrics import check_wh, wh_iou

__all__ = ["kmeans"]

logger = logging.getLogger(__name__)

Distance = Literal["euclidean", "iou"]
Update = Literal["mean", "median"]


def _distances(points: Tensor, centroids: Tensor, distance: Distance) -> Tensor:
    """Distance of every point to every centroid: ``[M, n]``."""
    if distance == "euclidean":
        return (points[:, None, :] - centroids[None]).square_().sum(-1)  # [M,n]; cdist is slower for 2-D
    return 1 - wh_iou(points, centroids)


def _weighted_median(values: Tensor, weights: Tensor) -> Tensor:
    """Lower weighted median of each column of ``values [m, d]``: ``[d]``."""
    order = values.argsort(0)  # [m,d]
    sorted_values = values.gather(0, order)
    cumulative = weights[order].cumsum(0)  # [m,d]
    half = cumulative[-1] / 2
    index = (cumulative < half).sum(0).clamp_(max=values.shape[0] - 1)  # first index reaching half
    return sorted_values.gather(0, index[None])[0]


def _seed_plus_plus(points: Tensor, weights: Tensor, n: int, distance: Distance, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: each next centre drawn with probability ∝ weight · distance to the nearest centre."""
    first = torch.multinomial(weights, 1, generator=generator)
    centroids = points[first]
    nearest = _distances(points, centroids, distance)[:, 0]
    for _ in range(1, n):
        mass = weights * nearest.clamp(min=0)
        if not bool((mass > 0).any()):  # only rounding can get here; Lloyd re-seeds duplicates
            mass = weights
        pick = torch.multinomial(mass, 1, generator=generator)
        centroids = torch.cat([centroids, points[pick]])
        nearest = torch.minimum(nearest, _distances(points, points[pick], distance)[:, 0])
    return centroids


def _lloyd(
    points: Tensor,
    weights: Tensor,
    centroids: Tensor,
    *,
    distance: Distance,
    update: Update,
    iters: int,
) -> tuple[Tensor, float]:
    """Lloyd iterations from ``centroids`` until assignments settle; returns centroids and distortion."""
    n = centroids.shape[0]
    labels = None
    for _ in range(iters):
        dist = _distances(points, centroids, distance)  # [M,n]
        nearest, new_labels = dist.min(1)
        if labels is not None and torch.equal(new_labels, labels):
            break
        labels = new_labels
        counts = torch.zeros(n, dtype=weights.dtype, device=points.device).index_add_(0, labels, weights)
        empty = (counts == 0).nonzero().flatten().tolist()
        if update == "mean":
            sums = torch.zeros_like(centroids).index_add_(0, labels, points * weights[:, None])
            centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1e-30)[:, None], centroids)
        else:
            centroids = centroids.clone()
            for k in range(n):
                members = labels == k
                if bool(members.any()):
                    centroids[k] = _weighted_median(points[members], weights[members])
        # An empty cluster takes over the point that is served worst, weighted by its count.
        for k in empty:
            worst = int((nearest * weights).argmax())
            centroids[k] = points[worst]
            nearest[worst] = 0
    dist = _distances(points, centroids, distance)
    distortion = float((dist.min(1).values * weights).sum() / weights.sum())
    return centroids, distortion


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
        restarts: independent k-means++ starts; the one with the lowest mean
            distance is kept.
        iters: the most Lloyd iterations per start.
        whiten: divide each coordinate by its standard deviation before
            clustering; defaults to True for ``"euclidean"``. Ignored for
            ``"iou"``, which is scale-invariant already.
        generator: source of randomness (on ``wh.device``); a fixed default seed
            when omitted, so results repeat.

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
    check_wh(wh)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if wh.shape[0] == 0:
        raise ValueError("kmeans needs at least one box, got an empty wh [0, 2]")
    if distance not in ("euclidean", "iou"):
        raise ValueError(f"distance must be 'euclidean' or 'iou', got {distance!r}")
    if update not in ("mean", "median"):
        raise ValueError(f"update must be 'mean' or 'median', got {update!r}")
    for name, value in (("restarts", restarts), ("iters", iters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer of at least 1, got {value!r}")
    if generator is None:
        generator = torch.Generator(device=wh.device).manual_seed(0)

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
        centroids = distinct[order.repeat(math.ceil(n / len(order)))[:n]]
        return _sort_by_area(centroids).to(wh.dtype)

    scale = torch.ones(2, dtype=torch.float64, device=wh.device)
    if distance == "euclidean" and (whiten is None or whiten):
        mean = (points * weights[:, None]).sum(0) / weights.sum()
        std = (((points - mean) ** 2 * weights[:, None]).sum(0) / weights.sum()).sqrt()
        if bool((std == 0).any()):
            warn(f"kmeans: a coordinate has zero variance (std {std.tolist()}); it is not whitened")
        scale = torch.where(std > 0, std, torch.ones_like(std))
    points = points / scale

    best, best_distortion = None, math.inf
    for _ in range(restarts):
        start = _seed_plus_plus(points, weights, n, distance, generator)
        centroids, distortion = _lloyd(points, weights, start, distance=distance, update=update, iters=iters)
        if distortion < best_distortion:
            best, best_distortion = centroids, distortion
    logger.debug("kmeans: %d anchors, mean distance %.6g", n, best_distortion)
    return _sort_by_area(best * scale).to(wh.dtype)


def _sort_by_area(anchors: Tensor) -> Tensor:
    return anchors[anchors.prod(-1).argsort(stable=True)]
