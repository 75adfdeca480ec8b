"""Position-aware matching of boxes to grid anchors, as the detector itself matches.

A box counts as *matched* when some anchor of the generator, placed on the grid of its
level, reaches IoU >= the detector's foreground threshold with it (RetinaNet 0.5, the
RPN of Faster R-CNN 0.7). Everything is in pixels of the model's input image.

Two facts make this cheap. IoU between a box and an anchor shape depends only on the
offset between their centres, and it never rises as ``|dx|`` or ``|dy|`` grows (the
overlap on each axis shrinks, the union grows), so the best anchor position on a level
of stride ``s`` is the grid point nearest the box centre on each axis. Positive anchors
(IoU >= threshold) lie within ``(1 - t) / t`` anchor widths of the centre, so counting
them needs only the few grid points within that reach.

Where a box's position is unknown, it is counted at a fixed lattice of offsets spread
evenly over a cell of the coarsest stride (:func:`~autoanchor.grid.anchors.lattice_offsets`),
each with weight ``1 / count``: the figures are then expectations over a uniformly
placed box.
"""

from __future__ import annotations

import math
import sys

from dataclasses import dataclass

import torch
from torch import Tensor

from .anchors import GridAnchors, lattice_offsets

__all__ = [
    "pool_samples",
    "MatchStats",
    "Samples",
    "best_iou",
    "make_samples",
    "match_stats",
    "nearest_offset",
    "offset_iou",
    "positive_counts",
]

#: Lattice points per box whose position is unknown, for evaluation.
DEFAULT_LATTICE = 64


def offset_iou(wh: Tensor, anchor_wh: Tensor, offset: Tensor) -> Tensor:
    """IoU of boxes and anchor shapes whose centres are ``offset`` apart.

    Args:
        wh: ``[N, 2]`` box (width, height) in pixels.
        anchor_wh: ``[A, 2]`` anchor (width, height) in pixels.
        offset: ``[N, 2]`` box centre minus anchor centre, or ``[N, A, 2]`` per anchor.

    Returns:
        Tensor[N, A] in ``[0, 1]``.
    """
    dtype = torch.promote_types(torch.promote_types(wh.dtype, anchor_wh.dtype), torch.float32)
    wh = wh.to(dtype)
    anchor_wh = anchor_wh.to(dtype)
    offset = offset.to(dtype).abs()
    if offset.dim() == 2:
        offset = offset[:, None, :]  # [N,1,2]
    box = wh[:, None, :]  # [N,1,2]
    anchor = anchor_wh[None, :, :]  # [1,A,2]
    overlap = torch.minimum(torch.minimum(box, anchor), (box + anchor) / 2 - offset).clamp(min=0)  # [N,A,2]
    inter = overlap.prod(-1)  # [N,A]
    union = box.prod(-1) + anchor.prod(-1) - inter
    return inter / union.clamp(min=torch.finfo(dtype).tiny)


def nearest_offset(xy: Tensor, stride: int, extent: Tensor | None = None) -> Tensor:
    """Offset from the nearest grid point of a level to each box centre.

    Args:
        xy: ``[N, 2]`` box centres in input pixels.
        stride: the level's stride in pixels; grid points at ``i * stride``.
        extent: optional ``[N, 2]`` padded input (width, height) of each box's image;
            the grid then has ``extent / stride`` points per axis and the nearest
            point is clamped to it, as on the real feature map.

    Returns:
        Tensor[N, 2]: centre minus grid point, within ``[-stride/2, stride/2]`` where
        no clamp applies.
    """
    index = torch.round(xy / stride)
    if extent is not None:
        last = torch.floor(extent / stride) - 1
        index = torch.minimum(index.clamp(min=0), last)
    return xy - index * stride


@dataclass(frozen=True)
class Samples:
    """Boxes ready for matching: one row per (box, position), with weights.

    Attributes:
        wh: ``[S, 2]`` box (width, height) in input pixels.
        xy: ``[S, 2]`` box centre in input pixels (or an offset within the coarsest
            cell, which matches the same way when no extent is given).
        weight: ``[S]`` weight of each row; the weights of one box sum to 1 before
            pooling, so weighted means are shares of boxes.
        extent: optional ``[S, 2]`` padded input (width, height), for clamping to
            the real grid.
    """

    wh: Tensor
    xy: Tensor
    weight: Tensor
    extent: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.wh.shape[0]
        if self.wh.dim() != 2 or self.wh.shape[1] != 2:
            raise ValueError(f"wh must be [S, 2], got shape {tuple(self.wh.shape)}")
        if self.xy.shape != (n, 2):
            raise ValueError(f"xy must be [{n}, 2] like wh, got shape {tuple(self.xy.shape)}")
        if self.weight.shape != (n,):
            raise ValueError(f"weight must be [{n}], got shape {tuple(self.weight.shape)}")
        if self.extent is not None and self.extent.shape != (n, 2):
            raise ValueError(f"extent must be [{n}, 2], got shape {tuple(self.extent.shape)}")

    @property
    def total_weight(self) -> float:
        return float(self.weight.sum())


def make_samples(
    wh: Tensor,
    xy: Tensor | None,
    cell: int,
    *,
    extent: Tensor | None = None,
    lattice: int = DEFAULT_LATTICE,
) -> Samples:
    """Rows for matching from box sizes and, where known, box centres.

    Args:
        wh: ``[N, 2]`` box (width, height) in input pixels.
        xy: ``[N, 2]`` box centres in input pixels, or None when the loader does not
            know them; each box is then counted at ``lattice`` offsets spread over a
            cell of ``cell`` pixels (see :func:`~autoanchor.grid.anchors.lattice_offsets`),
            each with weight ``1 / lattice``.
        cell: period of the grid in pixels (:attr:`GridAnchors.cell`).
        extent: optional ``[N, 2]`` padded input size per box (used with ``xy``).
        lattice: points per box whose position is unknown.

    Returns:
        Samples with ``N`` rows (positions known) or ``N * lattice`` rows.

    Raises:
        ValueError: on wrong shapes or non-finite, non-positive sizes.
    """
    wh = torch.as_tensor(wh)
    if not wh.is_floating_point():
        wh = wh.double()
    if wh.dim() != 2 or wh.shape[1] != 2:
        raise ValueError(f"wh must be [N, 2] (width, height), got shape {tuple(wh.shape)}")
    if not torch.isfinite(wh).all() or (wh <= 0).any():
        bad = int(torch.nonzero(~torch.isfinite(wh).all(1) | (wh <= 0).any(1))[0])
        raise ValueError(f"box {bad} has size {wh[bad].tolist()}; sizes must be finite and positive")
    if xy is not None:
        xy = torch.as_tensor(xy, dtype=wh.dtype, device=wh.device)
        if xy.shape != wh.shape:
            raise ValueError(f"xy must be [{wh.shape[0]}, 2] like wh, got shape {tuple(xy.shape)}")
        if not torch.isfinite(xy).all():
            bad = int(torch.nonzero(~torch.isfinite(xy).all(1))[0])
            raise ValueError(f"box {bad} has centre {xy[bad].tolist()}; centres must be finite")
        weight = torch.ones(wh.shape[0], dtype=wh.dtype, device=wh.device)
        if extent is not None:
            extent = torch.as_tensor(extent, dtype=wh.dtype, device=wh.device)
        return Samples(wh, xy, weight, extent)
    points = lattice_offsets(lattice, dtype=wh.dtype, device=wh.device) * cell  # [M,2]
    n = wh.shape[0]
    return Samples(
        wh.repeat_interleave(lattice, dim=0),
        points.repeat(n, 1),
        torch.full((n * lattice,), 1.0 / lattice, dtype=wh.dtype, device=wh.device),
        None,
    )


def level_iou(samples: Samples, anchor_wh: Tensor, stride: int) -> Tensor:
    """IoU of each row with each anchor of one level at the nearest grid point, ``[S, A]``."""
    offset = nearest_offset(samples.xy, stride, samples.extent)
    return offset_iou(samples.wh, anchor_wh.to(samples.wh), offset)


def best_iou(samples: Samples, generator: GridAnchors) -> Tensor:
    """Best IoU of each row over every anchor of the generator at any grid position.

    Args:
        samples: rows from :func:`make_samples`.
        generator: the anchors (rounded as the model rounds them).

    Returns:
        Tensor[S] in ``[0, 1]``.
    """
    anchors = generator.anchor_wh(dtype=samples.wh.dtype, device=samples.wh.device)
    best = torch.zeros(samples.wh.shape[0], dtype=samples.wh.dtype, device=samples.wh.device)
    for wh_l, stride in zip(anchors, generator.strides):
        best = torch.maximum(best, level_iou(samples, wh_l, stride).max(dim=1).values)
    return best


def positive_counts(samples: Samples, generator: GridAnchors, threshold: float, *, chunk: int = 2048) -> Tensor:
    """Number of anchors with IoU >= ``threshold`` for each row, over all levels.

    Only grid points within reach are visited: IoU >= t needs the centre offset on
    each axis to be at most ``anchor_side * (1 - t) / t``.

    Args:
        samples: rows from :func:`make_samples`.
        generator: the anchors.
        threshold: foreground IoU threshold in ``(0, 1]``.
        chunk: rows processed at once (bounds memory).

    Returns:
        Tensor[S] of counts (in the samples' float dtype).
    """
    threshold = _check_threshold(threshold)
    wh, xy, extent = samples.wh, samples.xy, samples.extent
    counts = torch.zeros(wh.shape[0], dtype=wh.dtype, device=wh.device)
    anchors = generator.anchor_wh(dtype=wh.dtype, device=wh.device)
    area = wh.prod(dim=1)  # [S]
    for wh_l, stride in zip(anchors, generator.strides):
        level_reach = int(float(wh_l.max()) * (1 - threshold) / threshold // stride) + 1
        # IoU <= smaller area / larger area: rows no anchor of the level can reach are skipped.
        anchor_area = wh_l.prod(dim=1)  # [A]
        ratio = torch.minimum(area[:, None] / anchor_area, anchor_area / area[:, None]).max(dim=1).values
        rows = torch.nonzero(ratio >= threshold * (1 - 1e-6)).flatten()
        start = 0
        while start < rows.shape[0]:
            # Grid points within reach of the next rows, bounded by the boxes and the image, not by the
            # largest anchor alone (an anchor 1e6 px wide and 1e-3 px tall reaches no point at all).
            reach = min(level_reach, _reach(wh[rows[start : start + chunk]], wh_l, threshold, stride))
            if extent is not None:
                reach = min(reach, int(float(extent[rows[start : start + chunk]].max()) // stride) + 1)
            # Rows per step so that the [n, A, J] tensors stay near _ELEMENTS_PER_STEP values.
            step = max(1, min(chunk, _ELEMENTS_PER_STEP // (wh_l.shape[0] * (2 * reach + 1))))
            part = rows[start : start + step]
            start += step
            steps = torch.arange(-reach, reach + 1, dtype=wh.dtype, device=wh.device) * stride  # [J]
            centre = xy[part]
            nearest = torch.round(centre / stride) * stride  # [n,2]
            points = nearest[:, None, :] + steps[None, :, None]  # [n,J,2] grid coordinates per axis
            valid = points >= 0
            if extent is not None:
                valid &= points <= (torch.floor(extent[part] / stride)[:, None, :] - 1) * stride
            delta = (centre[:, None, :] - points).abs()  # [n,J,2]
            box = wh[part][:, None, None, :]  # [n,1,1,2]
            anchor = wh_l[None, :, None, :]  # [1,A,1,2]
            overlap = torch.minimum(torch.minimum(box, anchor), (box + anchor) / 2 - delta[:, None]).clamp(min=0)
            overlap = overlap * valid[:, None].to(wh.dtype)  # [n,A,J,2]
            # IoU >= t  <=>  inter * (1 + t) >= t * (box area + anchor area), and inter is
            # overlap_x * overlap_y: count the (x, y) pairs with a sorted search, not J*J products.
            need = threshold * (box.prod(-1) + anchor.prod(-1)) / (1 + threshold)  # [n,A,1]
            overlap_y = torch.sort(overlap[..., 1], dim=-1).values.contiguous()  # [n,A,J] ascending
            floor_y = (need / overlap[..., 0]).contiguous()  # [n,A,J]; inf where overlap_x is 0
            below = torch.searchsorted(overlap_y, floor_y * (1 - 1e-12))  # y points under the floor
            counts[part] += (overlap_y.shape[-1] - below).sum(dim=(1, 2)).to(wh.dtype)
    return counts


# Values per [n, A, J] tensor in positive_counts (float64: 16 MiB each).
_ELEMENTS_PER_STEP = 2**21


def _reach(wh: Tensor, anchor_wh: Tensor, threshold: float, stride: int) -> int:
    """Grid steps beyond which no anchor of ``anchor_wh [A, 2]`` reaches IoU >= ``threshold`` with any box of
    ``wh [n, 2]``, on either axis.

    IoU >= t needs the intersection ``ox * oy >= t * max(box area, anchor area)``, and ``oy`` is at most
    the smaller height, so ``ox >= t * max area / min height``; ``ox`` is at most
    ``(box w + anchor w) / 2 - |dx|``, which bounds the centre offset ``|dx|`` (and likewise ``|dy|``).
    """
    box, anchor = wh[:, None, :], anchor_wh[None, :, :]  # [n,1,2], [1,A,2]
    larger_area = torch.maximum(box.prod(-1), anchor.prod(-1))  # [n,A]
    smaller = torch.minimum(box, anchor)  # [n,A,2]
    offset = (box + anchor) / 2 - threshold * larger_area[..., None] / smaller.flip(-1)  # [n,A,2]
    farthest = float(offset.max()) if offset.numel() else 0.0
    if not math.isfinite(farthest):
        return sys.maxsize  # no bound from here: the caller's others apply
    return max(0, int(farthest // stride) + 1)


def _rows(samples: Samples, part: slice) -> Samples:
    extent = None if samples.extent is None else samples.extent[part]
    return Samples(samples.wh[part], samples.xy[part], samples.weight[part], extent)


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be an IoU in (0, 1], got {threshold!r}")
    return float(threshold)


@dataclass(frozen=True)
class MatchStats:
    """How well a generator's anchors cover a set of boxes.

    Attributes:
        matched: share of boxes with an anchor at IoU >= ``threshold`` (the analogue
            of yolov5's best possible recall), in ``[0, 1]``.
        mean_iou: mean over boxes of the best anchor IoU, in ``[0, 1]``.
        positives: mean number of anchors at IoU >= ``threshold`` per box.
        threshold: the foreground IoU threshold used.
        boxes: number of boxes (total weight of the rows).
    """

    matched: float
    mean_iou: float
    positives: float
    threshold: float
    boxes: float

    def __str__(self) -> str:
        # positives is NaN when they were not counted (match_stats(..., positives=False)).
        positives = "" if math.isnan(self.positives) else f", {self.positives:.2f} positive anchors/box"
        return (
            f"matched {self.matched:.2%} at IoU>={self.threshold:g}, mean best IoU {self.mean_iou:.3f}"
            f"{positives} ({self.boxes:g} boxes)"
        )


def match_stats(samples: Samples, generator: GridAnchors, *, threshold: float, positives: bool = True) -> MatchStats:
    """Share matched, mean best IoU and positives per box, weighted by the rows' weights.

    Args:
        samples: rows from :func:`make_samples`.
        generator: the anchors.
        threshold: foreground IoU threshold in ``(0, 1]``.
        positives: count positive anchors (the slower part); NaN when False.

    Returns:
        MatchStats.
    """
    threshold = _check_threshold(threshold)
    best = torch.cat(
        [best_iou(_rows(samples, slice(i, i + 65536)), generator) for i in range(0, samples.wh.shape[0], 65536)]
    )
    weight = samples.weight
    total = weight.sum()
    matched = float((weight * (best >= threshold).to(weight.dtype)).sum() / total)
    mean_iou = float((weight * best).sum() / total)
    mean_positives = float("nan")
    if positives:
        mean_positives = float((weight * positive_counts(samples, generator, threshold)).sum() / total)
    return MatchStats(matched, mean_iou, mean_positives, threshold, float(total))


def pool_samples(
    wh: Tensor,
    xy: Tensor | None,
    cell: int,
    *,
    bins_per_octave: int = 8,
    positions_per_pool: int = 16,
    generator: torch.Generator | None = None,
) -> Samples:
    """Pool boxes by log size, keeping a bounded set of positions per pool.

    Args:
        wh: ``[N, 2]`` box (width, height) in input pixels, finite and positive.
        xy: ``[N, 2]`` box centres in input pixels, or None if unknown.
        cell: period of the grid in pixels (positions are taken modulo it).
        bins_per_octave: size bins per factor of 2 on each axis.
        positions_per_pool: positions kept per pool (lattice points if unknown).
        generator: draws the subset of positions of large pools (known positions).

    Returns:
        Samples whose weights sum to ``N``; at most
        ``occupied_bins * positions_per_pool`` rows.
    """
    if bins_per_octave < 1 or positions_per_pool < 1:
        raise ValueError(
            f"bins_per_octave and positions_per_pool must be >= 1, got {bins_per_octave} and {positions_per_pool}"
        )
    log_wh = torch.log2(wh.double())
    bins = torch.round(log_wh * bins_per_octave).long()  # [N,2]
    bins = bins - bins.min(dim=0).values
    key = bins[:, 0] * (int(bins[:, 1].max()) + 1) + bins[:, 1]
    unique, pool, counts = torch.unique(key, return_inverse=True, return_counts=True)
    n_pools = unique.shape[0]
    dtype, device = torch.float64, wh.device
    if xy is None:
        mean_log = torch.zeros(n_pools, 2, dtype=dtype, device=device).index_add_(0, pool, log_wh)
        pool_wh = torch.exp2(mean_log / counts[:, None].to(dtype))  # [P,2] geometric means
        points = lattice_offsets(positions_per_pool, dtype=dtype, device=device) * cell  # [M,2]
        return Samples(
            pool_wh.repeat_interleave(positions_per_pool, dim=0),
            points.repeat(n_pools, 1),
            (counts.to(dtype) / positions_per_pool).repeat_interleave(positions_per_pool),
        )
    priority = torch.rand(wh.shape[0], generator=generator, dtype=dtype).to(device)
    order = torch.argsort(pool.to(dtype) + priority * 0.5)  # by pool, random within a pool
    sorted_pool = pool[order]
    first = torch.cumsum(counts, 0) - counts  # [P] first row of each pool in `order`
    rank = torch.arange(wh.shape[0], device=device) - first[sorted_pool]
    keep = order[rank < positions_per_pool]
    kept = torch.clamp(counts, max=positions_per_pool).to(dtype)
    return Samples(
        wh[keep].to(dtype),
        torch.remainder(xy[keep].to(dtype), cell),
        (counts.to(dtype) / kept)[pool[keep]],
    )
