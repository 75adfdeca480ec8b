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

import contextlib
import math
import sys
from collections.abc import Iterator

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.validate import check_float
from .anchors import GridAnchors, lattice_offsets

__all__ = [
    "MatchStats",
    "Samples",
    "best_iou",
    "make_samples",
    "match_stats",
    "lattice_centres",
    "level_grid",
    "level_match_stats",
    "nearest_offset",
    "offset_iou",
    "positive_counts",
]

#: Lattice points per box whose position is unknown, for evaluation.
DEFAULT_LATTICE = 64


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread while matching on the CPU (restored afterwards).

    The rows are a few thousand; extra threads only add barriers, which stall for
    seconds when another process holds a core.
    """
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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


def level_grid(stride: int, extent: Tensor | None) -> tuple[Tensor | float, Tensor | None]:
    """Spacing and size of one level's grid on each row's padded input, as torchvision lays it.

    A backbone of padded stride-2 convolutions gives a level of nominal stride ``s`` a
    feature map of ``ceil(E / s)`` cells on an input side of ``E`` pixels, and
    torchvision's ``AnchorGenerator`` spaces the anchors ``E // cells`` pixels apart
    (so 61 pixels, not 64, on the stride-64 level of an 800-pixel side).

    Args:
        stride: the level's nominal stride in pixels.
        extent: ``[S, 2]`` padded input (width, height) per row, or None (an unbounded
            grid at the nominal stride).

    Returns:
        ``(step, cells)``: the spacing in pixels (``stride`` itself, or ``[S, 2]``) and
        the number of grid points per axis (None, or ``[S, 2]``).
    """
    if extent is None:
        return float(stride), None
    cells = torch.ceil(extent / stride)
    return torch.floor(extent / cells), cells


def nearest_offset(xy: Tensor, stride: int, extent: Tensor | None = None) -> Tensor:
    """Offset from the nearest grid point of a level to each box centre.

    Args:
        xy: ``[N, 2]`` box centres in input pixels.
        stride: the level's stride in pixels; grid points at ``i * stride``.
        extent: optional ``[N, 2]`` padded input (width, height) of each box's image;
            the grid then is torchvision's on that input (see :func:`level_grid`)
            and the nearest point is clamped to it, as on the real feature map.

    Returns:
        Tensor[N, 2]: centre minus grid point, within ``[-step/2, step/2]`` where
        no clamp applies.
    """
    step, cells = level_grid(stride, extent)
    index = torch.round(xy / step)
    if cells is not None:
        index = torch.minimum(index.clamp(min=0), cells - 1)
    return xy - index * step


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


def lattice_centres(wh: Tensor, count: int) -> Tensor:
    """Centres spread evenly over the places where each box lies inside its image.

    For boxes whose position the dataset does not give: box ``i`` is counted at
    ``count`` centres ``w/2 + u * (1 - w)`` (per axis, normalised), ``u`` the points
    ``i * count .. i * count + count - 1`` of one :func:`lattice_offsets` sequence, so
    each box gets its own points and together they cover the image evenly.

    Args:
        wh: ``[N, 2]`` box (width, height) normalised by its image.
        count: centres per box, at least 1.

    Returns:
        Tensor[N, count, 2]: normalised centres (float64), each box inside its image.
    """
    wh = torch.as_tensor(wh, dtype=torch.float64)
    u = lattice_offsets(wh.shape[0] * count, dtype=torch.float64, device=wh.device).reshape(-1, count, 2)
    free = (1 - wh).clamp(min=0)[:, None, :]  # [N,1,2]
    return torch.minimum(wh, torch.ones_like(wh))[:, None, :] / 2 + u * free


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
    each axis to be at most ``anchor_side * (1 - t) / t``, and (tighter for extreme
    anchors) at most what the row's box and the level's anchors allow together
    (:func:`_reach`); with an extent, no further than the image. The work is done in
    steps of a bounded number of values, so it is bounded by the problem, not by an
    anchor's size.

    Args:
        samples: rows from :func:`make_samples`.
        generator: the anchors.
        threshold: foreground IoU threshold in ``(0, 1]``.
        chunk: rows processed at once at most (bounds memory).

    Returns:
        Tensor[S] of counts (in the samples' float dtype).
    """
    threshold = _check_threshold(threshold)
    wh, xy, extent = samples.wh, samples.xy, samples.extent
    counts = torch.zeros(wh.shape[0], dtype=wh.dtype, device=wh.device)
    anchors = generator.anchor_wh(dtype=wh.dtype, device=wh.device)
    area = wh.prod(dim=1)  # [S]
    for wh_l, stride in zip(anchors, generator.strides):
        step, cells = level_grid(stride, extent)
        smallest_step = step if cells is None else float(step.min())
        level_reach = int(float(wh_l.max()) * (1 - threshold) / threshold // smallest_step) + 1
        # IoU <= smaller area / larger area: rows no anchor of the level can reach are skipped.
        anchor_area = wh_l.prod(dim=1)  # [A]
        ratio = torch.minimum(area[:, None] / anchor_area, anchor_area / area[:, None]).max(dim=1).values
        rows = torch.nonzero(ratio >= threshold * (1 - 1e-6)).flatten()
        start = 0
        while start < rows.shape[0]:
            # Grid points within reach of the next rows, bounded by the boxes and the image, not by the
            # largest anchor alone (an anchor 1e6 px wide and 1e-3 px tall reaches no point at all).
            ahead = rows[start : start + chunk]
            reach = min(level_reach, _reach(wh[ahead], wh_l, threshold, smallest_step))
            if cells is not None:
                reach = min(reach, int(float(cells[ahead].max())) + 1)
            # Rows per step so that the [n, A, J] tensors stay near _ELEMENTS_PER_STEP values.
            n_rows = max(1, min(chunk, _ELEMENTS_PER_STEP // (wh_l.shape[0] * (2 * reach + 1))))
            part = rows[start : start + n_rows]
            start += n_rows
            steps = torch.arange(-reach, reach + 1, dtype=wh.dtype, device=wh.device)  # [J] grid indices around the nearest
            centre = xy[part]
            spacing = step if cells is None else step[part]  # scalar or [n,2]
            index = torch.round(centre / spacing)[:, None, :] + steps[None, :, None]  # [n,J,2] per axis
            points = index * (spacing if cells is None else spacing[:, None, :])
            # Without an extent the grid is unbounded (a box away from every border).
            valid = torch.ones_like(index, dtype=torch.bool)
            if cells is not None:
                valid = (index >= 0) & (index <= cells[part][:, None, :] - 1)
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


def _reach(wh: Tensor, anchor_wh: Tensor, threshold: float, stride: float) -> int:
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
    return check_float("threshold", threshold, low=0, low_open=True, high=1, what="(an IoU)")


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
        unmatched_iou: mean best IoU of the boxes below ``threshold`` (the ones a
            matcher with low-quality matches serves through their best anchor
            only); NaN when every box is matched or it was not measured.
    """

    matched: float
    mean_iou: float
    positives: float
    threshold: float
    boxes: float
    unmatched_iou: float = float("nan")

    @property
    def low_quality_only(self) -> float:
        """Share of boxes with no anchor at IoU >= ``threshold``: torchvision's matchers
        (``allow_low_quality_matches=True``) still make each one's best anchor a positive."""
        return 1.0 - self.matched

    def __str__(self) -> str:
        # positives is NaN when they were not counted (match_stats(..., positives=False)).
        positives = "" if math.isnan(self.positives) else f", positives/box {self.positives:.2f}"
        return f"matched {self.matched:.4f} at IoU >= {self.threshold:g}, mean best IoU {self.mean_iou:.4f}{positives}"


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
    with _one_cpu_thread(samples.wh.device):
        return _match_stats(samples, generator, threshold, positives)


def _match_stats(samples: Samples, generator: GridAnchors, threshold: float, positives: bool) -> MatchStats:
    best = torch.cat(
        [best_iou(_rows(samples, slice(i, i + 65536)), generator) for i in range(0, samples.wh.shape[0], 65536)]
    )
    weight = samples.weight
    total = weight.sum()
    hit = best >= threshold
    matched = float((weight * hit.to(weight.dtype)).sum() / total)
    mean_iou = float((weight * best).sum() / total)
    missed = weight * (~hit).to(weight.dtype)
    unmatched_iou = float((missed * best).sum() / missed.sum()) if float(missed.sum()) > 0 else float("nan")
    mean_positives = float("nan")
    if positives:
        mean_positives = float((weight * positive_counts(samples, generator, threshold)).sum() / total)
    return MatchStats(matched, mean_iou, mean_positives, threshold, float(total), unmatched_iou)


def level_match_stats(samples: Samples, generator: GridAnchors, *, threshold: float) -> list[dict[str, float]]:
    """Per level: ``matched`` (share of boxes with an anchor of this level at IoU >=
    ``threshold``), ``positives`` (mean positive anchors of this level per box) and
    ``best`` (share of boxes whose best anchor is on this level; ties go to the
    finer stride). Weighted by the rows' weights.
    """
    threshold = _check_threshold(threshold)
    anchors = generator.anchor_wh(dtype=samples.wh.dtype, device=samples.wh.device)
    per_level = torch.stack(
        [level_iou(samples, wh_l, stride).max(dim=1).values for wh_l, stride in zip(anchors, generator.strides)], 1
    )  # [S,L]
    order = sorted(range(generator.num_levels), key=lambda level: generator.strides[level])
    # argmax takes the first maximum: look at the levels finest first so ties go to the finer stride.
    winner = torch.tensor(order, device=per_level.device)[per_level[:, order].argmax(dim=1)]
    weight = samples.weight / samples.weight.sum()
    result = []
    for level in range(generator.num_levels):
        single = GridAnchors((generator.sizes[level],), (generator.aspect_ratios[level],), (generator.strides[level],))
        result.append(
            {
                "matched": float((weight * (per_level[:, level] >= threshold).to(weight.dtype)).sum()),
                "positives": float((weight * positive_counts(samples, single, threshold)).sum()),
                "best": float((weight * (winner == level).to(weight.dtype)).sum()),
            }
        )
    return result
