"""How well anchors fit box sizes: the ratio and IoU metrics and the figures built on them.

Every function takes box sizes ``wh: Tensor[N, 2]`` and anchors ``Tensor[K, 2]``
(or a population ``Tensor[P, K, 2]``), both as (width, height) in pixels of the
letterboxed training image, and returns results on the input's device. Optional
per-box ``weights: Tensor[N]`` count a box several times (identical sizes can be
stored once with their count).

The ratio metric is yolov5's matching rule: a box matches an anchor when neither
side is more than ``thr`` times larger or smaller than the anchor's, that is when
``min(r, 1/r) > 1/thr`` for ``r = wh / anchor`` in both width and height.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .defaults import DEFAULT_THR
from .parallel import Reducer
from .validate import check_not_meta, check_thr

__all__ = [
    "AnchorStats",
    "ratio_metric",
    "wh_iou",
    "size_iou",
    "best_possible_recall",
    "anchors_above_threshold",
    "anchor_fitness",
    "avg_iou",
    "anchor_stats",
    "anchor_stats_batch",
]


def check_wh(wh: Tensor, name: str = "wh") -> Tensor:
    """Validate the shape and dtype of box sizes ``[N, 2]`` (no device sync)."""
    if not isinstance(wh, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(wh).__name__}")
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise ValueError(f"{name} must have shape [N, 2] (width, height), got {list(wh.shape)}")
    if not wh.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {wh.dtype}")
    check_not_meta(wh, name)
    return wh


def check_anchors(anchors: Tensor, name: str = "anchors") -> Tensor:
    """Validate anchors ``[K, 2]`` or a population ``[P, K, 2]`` (no device sync)."""
    if not isinstance(anchors, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(anchors).__name__}")
    if anchors.ndim not in (2, 3) or anchors.shape[-1] != 2 or anchors.shape[-2] == 0:
        raise ValueError(f"{name} must have shape [K, 2] or [P, K, 2] with K >= 1, got {list(anchors.shape)}")
    if not anchors.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {anchors.dtype}")
    return anchors


def _check_weights(weights: Tensor | None, wh: Tensor) -> None:
    """Validate ``wh`` first (so a non-tensor is a TypeError), then ``weights [N]``."""
    n = check_wh(wh).shape[0]
    if weights is not None and not isinstance(weights, Tensor):
        raise TypeError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
    if weights is not None and (weights.ndim != 1 or weights.shape[0] != n):
        raise ValueError(f"weights must have shape [{n}] (one per box), got {list(weights.shape)}")


def _pair(wh: Tensor, anchors: Tensor) -> tuple[Tensor, Tensor]:
    """Broadcast boxes ``[N,2]`` against anchors ``[...,K,2]`` to ``[...,N,K,2]`` views."""
    check_wh(wh)
    check_anchors(anchors)
    dtype = torch.promote_types(wh.dtype, anchors.dtype)
    return wh.to(dtype)[:, None, :], anchors.to(dtype).unsqueeze(-3)  # [N,1,2], [...,1,K,2]


def ratio_metric(wh: Tensor, anchors: Tensor) -> Tensor:
    """yolov5's width/height ratio metric of every box against every anchor.

    For ``r = wh / anchor`` the metric is ``min(r, 1/r)`` of the worse of width and
    height: 1 for a perfect fit, towards 0 as the sizes diverge. A zero-size side
    gives 0.

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels.
        anchors (Tensor[K, 2] or Tensor[P, K, 2]): anchor (width, height) in pixels.

    Returns:
        Tensor[N, K] or Tensor[P, N, K] in [0, 1].

    Example:
        >>> ratio_metric(torch.tensor([[10.0, 40.0]]), torch.tensor([[20.0, 20.0]]))
        tensor([[0.5000]])
    """
    box, anchor = _pair(wh, anchors)
    r = box / anchor  # [...,N,K,2]
    return torch.minimum(r, 1 / r).amin(-1)


def wh_iou(wh: Tensor, anchors: Tensor) -> Tensor:
    """IoU of box and anchor sizes, both placed at the same corner (YOLOv2's measure).

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels.
        anchors (Tensor[K, 2] or Tensor[P, K, 2]): anchor (width, height) in pixels.

    Returns:
        Tensor[N, K] or Tensor[P, N, K] in [0, 1].

    Example:
        >>> wh_iou(torch.tensor([[10.0, 40.0]]), torch.tensor([[20.0, 20.0]]))
        tensor([[0.3333]])
    """
    box, anchor = _pair(wh, anchors)
    return size_iou(box, anchor)  # [...,N,K]


def size_iou(a: Tensor, b: Tensor, dim: int = -1) -> Tensor:
    """IoU of sizes placed at the same corner, broadcast: the one IoU kernel of autoanchor.

    ``a`` and ``b`` hold (width, height) along dimension ``dim`` (of length 2) and
    broadcast against each other in the others; no validation (callers check).

    Args:
        a (Tensor[..., 2, ...]): sizes in pixels.
        b (Tensor[..., 2, ...]): sizes in pixels.
        dim: the dimension of (width, height).

    Returns:
        The broadcast shape of ``a`` and ``b`` without ``dim``, in [0, 1].

    Example:
        >>> size_iou(torch.tensor([10.0, 40.0]), torch.tensor([20.0, 20.0]))  # 200 / (400 + 400 - 200)
        tensor(0.3333)
    """
    a_w, a_h, b_w, b_h = a.select(dim, 0), a.select(dim, 1), b.select(dim, 0), b.select(dim, 1)
    inter = torch.minimum(a_w, b_w) * torch.minimum(a_h, b_h)
    return inter / (a_w * a_h + b_w * b_h - inter)


def _mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """(Weighted) mean over the last dimension, accumulated in float64."""
    values = values.double()
    if weights is None:
        return values.mean(-1)
    weights = weights.double()
    return (values * weights).sum(-1) / weights.sum()


def best_possible_recall(
    wh: Tensor, anchors: Tensor, *, thr: float = DEFAULT_THR, weights: Tensor | None = None
) -> Tensor:
    """Best possible recall: the share of boxes whose best anchor passes ``1/thr``.

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels.
        anchors (Tensor[K, 2] or Tensor[P, K, 2]): anchor (width, height) in pixels.
        thr: largest allowed side ratio (yolov5's ``anchor_t``).
        weights (Tensor[N], optional): how many boxes each row stands for.

    Returns:
        float64 Tensor[] (or Tensor[P]) in [0, 1].
    """
    thr = check_thr(thr)
    _check_weights(weights, wh)
    return _mean(ratio_metric(wh, anchors).amax(-1) > 1 / thr, weights)


def anchors_above_threshold(
    wh: Tensor, anchors: Tensor, *, thr: float = DEFAULT_THR, weights: Tensor | None = None
) -> Tensor:
    """Mean number of anchors per box that pass ``1/thr`` (yolov5's "anchors/target")."""
    thr = check_thr(thr)
    _check_weights(weights, wh)
    return _mean((ratio_metric(wh, anchors) > 1 / thr).sum(-1), weights)


def anchor_fitness(
    wh: Tensor, anchors: Tensor, *, thr: float = DEFAULT_THR, weights: Tensor | None = None
) -> Tensor:
    """yolov5's anchor fitness ``mean(best * (best > 1/thr))`` of the ratio metric.

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels.
        anchors (Tensor[K, 2] or Tensor[P, K, 2]): anchor (width, height) in pixels.
        thr: largest allowed side ratio (yolov5's ``anchor_t``).
        weights (Tensor[N], optional): how many boxes each row stands for.

    Returns:
        float64 Tensor[] (or Tensor[P]) in [0, 1]; higher is better.
    """
    thr = check_thr(thr)
    _check_weights(weights, wh)
    best = ratio_metric(wh, anchors).amax(-1)
    return _mean(best * (best > 1 / thr), weights)


def avg_iou(wh: Tensor, anchors: Tensor, *, weights: Tensor | None = None) -> Tensor:
    """YOLOv2's Avg IoU: the mean over boxes of the IoU with the best anchor.

    Returns:
        float64 Tensor[] (or Tensor[P]) in [0, 1].
    """
    _check_weights(weights, wh)
    return _mean(wh_iou(wh, anchors).amax(-1), weights)


class AnchorStats(NamedTuple):
    """How well one set of anchors fits a set of boxes (plain Python numbers)."""

    fitness: float
    """yolov5 fitness of the ratio metric, ``mean(best * (best > 1/thr))``."""
    bpr: float
    """Best possible recall at ``thr``."""
    aat: float
    """Anchors above threshold: mean number of anchors per box passing ``1/thr``."""
    avg_iou: float
    """Mean IoU of each box with its best anchor."""
    n_boxes: float
    """How many boxes were measured (the sum of the weights)."""


def anchor_stats(
    wh: Tensor,
    anchors: Tensor,
    *,
    thr: float = DEFAULT_THR,
    weights: Tensor | None = None,
    reducer: Reducer | None = None,
    chunk: int = 1 << 13,
) -> AnchorStats:
    """Every figure of :class:`AnchorStats` for one set of anchors, in one pass over the boxes.

    Boxes are processed in chunks of ``chunk`` rows so that millions of boxes need
    no ``[N, K]`` temporaries of their full size.

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels; with a ``reducer``, this
            process's share of the boxes.
        anchors (Tensor[K, 2]): anchor (width, height) in pixels. For a population
            ``[P, K, 2]`` use :func:`anchor_stats_batch`.
        thr: largest allowed side ratio (yolov5's ``anchor_t``).
        weights (Tensor[N], optional): how many boxes each row stands for.
        reducer: adds up the partial sums of all processes (see
            :mod:`autoanchor.core.parallel`); every process then gets the same figures.
        chunk: boxes per pass.

    Returns:
        :class:`AnchorStats`.

    Raises:
        ValueError: if there are no boxes at all, or ``anchors`` is not ``[K, 2]``.

    Example:
        >>> wh = torch.tensor([[10.0, 10.0], [30.0, 10.0]])
        >>> stats = anchor_stats(wh, torch.tensor([[10.0, 10.0]]))
        >>> stats.bpr, stats.fitness  # ratios 1 and 1/3 (float32) both pass 1/4: (1 + 1/3) / 2
        (1.0, 0.6667)
    """
    check_anchors(anchors)
    if anchors.ndim != 2:
        raise ValueError(
            f"anchor_stats takes one anchor set [K, 2], got {list(anchors.shape)}; "
            "use anchor_stats_batch for a population [P, K, 2]"
        )
    return _stats(wh, anchors[None], thr=thr, weights=weights, reducer=reducer, chunk=chunk)[0]


def anchor_stats_batch(
    wh: Tensor,
    population: Tensor,
    *,
    thr: float = DEFAULT_THR,
    weights: Tensor | None = None,
    reducer: Reducer | None = None,
    chunk: int = 1 << 13,
) -> list[AnchorStats]:
    """:func:`anchor_stats` of every anchor set of a population, in one pass over the boxes.

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels.
        population (Tensor[P, K, 2]): ``P`` anchor sets, (width, height) in pixels.
        thr, weights, reducer, chunk: as for :func:`anchor_stats`.

    Returns:
        A list of ``P`` :class:`AnchorStats`, in the population's order.

    Raises:
        ValueError: if there are no boxes at all, or ``population`` is not ``[P, K, 2]``.
    """
    check_anchors(population, "population")
    if population.ndim != 3:
        raise ValueError(
            f"anchor_stats_batch takes a population [P, K, 2], got {list(population.shape)}; "
            "use anchor_stats for one anchor set [K, 2]"
        )
    return _stats(wh, population, thr=thr, weights=weights, reducer=reducer, chunk=chunk)


def _stats(
    wh: Tensor, population: Tensor, *, thr: float, weights: Tensor | None, reducer: Reducer | None, chunk: int
) -> list[AnchorStats]:
    """The pass behind :func:`anchor_stats` and :func:`anchor_stats_batch`: ``[P, K, 2]`` -> ``P`` stats."""
    thr = check_thr(thr)
    check_wh(wh)
    _check_weights(weights, wh)
    return stats_of_totals(stat_totals(wh, population, thr=thr, weights=weights, chunk=chunk), reducer)


def stat_totals(wh: Tensor, population: Tensor, *, thr: float, weights: Tensor | None = None, chunk: int = 1 << 13) -> Tensor:
    """The sums behind :func:`anchor_stats_batch` (inputs already validated): ``float64 [P * 4 + 1]``,
    the four column sums of every anchor set, then the box count. Sums of several pieces of the boxes
    add up to the sums of all of them (:func:`stats_of_totals` turns them into figures)."""
    dtype = torch.promote_types(wh.dtype, population.dtype)
    # Boxes run along the last, contiguous dimension: [P, K, 2, n] pairs, reduced over sides and anchors.
    anchor = population.to(dtype)[..., None]  # [P,K,2,1]
    inv_thr = 1 / thr
    sums = torch.zeros(population.shape[0], 4, dtype=torch.float64, device=wh.device)
    for start in range(0, wh.shape[0], chunk):
        box = wh[start : start + chunk].to(dtype).T  # [2,n]
        r = box / anchor  # [P,K,2,n]
        ratio = torch.minimum(r, 1 / r).amin(2)  # [P,K,n], as ratio_metric
        best = ratio.amax(1)  # [P,n]
        passed = best > inv_thr
        iou = size_iou(box, anchor, dim=-2)  # [P,K,n]
        columns = torch.stack(
            [best * passed, passed, (ratio > inv_thr).sum(1), iou.amax(1)], 1
        ).double()  # [P,4,n]
        sums += columns.sum(-1) if weights is None else columns @ weights[start : start + chunk].double()
    count = torch.tensor(
        [float(wh.shape[0]) if weights is None else float(weights.double().sum())],
        dtype=torch.float64,
        device=wh.device,
    )
    return torch.cat([sums.flatten(), count])


def stats_of_totals(totals: Tensor, reducer: Reducer | None = None) -> list[AnchorStats]:
    """:class:`AnchorStats` per anchor set from :func:`stat_totals` (summed over processes by ``reducer``)."""
    if reducer is not None:
        totals = reducer.sum(totals)
    count_all = float(totals[-1])
    if count_all <= 0:
        raise ValueError("anchor_stats needs at least one box, got none")
    figures = (totals[:-1].view(-1, 4) / count_all).tolist()
    return [AnchorStats(*row, count_all) for row in figures]
