"""Anchors seen level by level: what each output level of a detector gets from them.

yolov5's AutoAnchor treats a model's anchors as one bag of sizes. A detector,
though, uses them per output level: level ``l`` predicts on a grid of
``stride_l`` pixels per cell, and yolov5's loss (``build_targets``) hands a
training box to *every* anchor of a level whose width and height ratios are both
within ``thr`` (``anchor_t``), before copying it to neighbouring cells. This
module measures that assignment per level (:func:`level_stats`), points out
anchors smaller than the grid they predict on (:func:`anchors_below_stride`),
and formats both as text lines for reports (:func:`format_level_table`).

All sizes are in pixels of the letterboxed training image; strides in pixels
per grid cell.

Example:
    >>> from autoanchor.io.configs import anchors_by_name, strides_by_name
    >>> wh = torch.tensor([[12.0, 14.0], [100.0, 80.0]])
    >>> levels = level_stats(wh, anchors_by_name("yolov5-p5"), strides_by_name("yolov5-p5"))
    >>> [(level.name, level.matched, level.targets) for level in levels]
    [('P3', 1.0, 2.0), ('P4', 0.5, 1.5), ('P5', 0.5, 1.0)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor

from .boxes import sort_by_area
from .defaults import DEFAULT_THR
from .metrics import check_thr, check_wh, ratio_metric
from .validate import check_int, check_stride_units

__all__ = [
    "LevelStats",
    "BelowStride",
    "level_stats",
    "level_name",
    "anchors_below_stride",
    "format_level_table",
    "format_below_stride",
    "split_levels",
    "stride_bounds",
    "clamp_to_strides",
    "within_stride_bounds",
]

Strides = Union[Sequence[float], Tensor]


def level_name(stride: float, *, with_stride: bool = False) -> str:
    """yolov5's name of the level with this stride: ``P3`` for 8, ``P5`` for 32 (``P3/8`` ``with_stride``).

    A level ``Pk`` has stride ``2**k``; a stride that is not a power of two is
    named by its value (``"s12"``, or ``"stride 12"`` ``with_stride``).

    Example:
        >>> level_name(8), level_name(8, with_stride=True), level_name(12, with_stride=True)
        ('P3', 'P3/8', 'stride 12')
    """
    exponent = math.log2(stride) if stride > 0 else math.nan
    if math.isfinite(exponent) and exponent == round(exponent):
        return f"P{int(exponent)}/{stride:g}" if with_stride else f"P{int(exponent)}"
    return f"stride {stride:g}" if with_stride else f"s{stride:g}"


@dataclass(frozen=True, eq=False)
class LevelStats:
    """How one output level's anchors fit a set of boxes.

    The tensors live on the device of the anchors passed to :func:`level_stats`;
    the shares are plain floats.
    """

    stride: float
    """Pixels per grid cell of this level."""
    anchors: Tensor
    """Tensor[na, 2]: this level's anchor (width, height) in pixels, in the order given."""
    size_in_strides: Tensor
    """Tensor[na]: each anchor's size ``sqrt(w * h)`` in strides of this level (1 = one grid cell)."""
    matched: float
    """Share of boxes, in [0, 1], with at least one anchor of this level within ``thr``
    (both side ratios); this level's own best possible recall."""
    targets: float
    """Mean number of this level's anchors within ``thr`` per box: exactly the targets
    yolov5's ``build_targets`` keeps on this level per box, before it adds the
    neighbouring cells. In [0, na]."""
    best: float
    """Share of boxes, in [0, 1], whose best anchor (highest ratio metric over all
    levels, ties to the finer level) is on this level. The shares of all levels add to 1."""
    n_boxes: int
    """Number of boxes measured."""

    @property
    def name(self) -> str:
        """``P3``, ``P4``, ... (see :func:`level_name`)."""
        return level_name(self.stride)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (for JSON): anchors as ``[[w, h], ...]`` pixels."""
        return {
            "name": self.name,
            "stride": self.stride,
            "anchors": self.anchors.tolist(),
            "size_in_strides": self.size_in_strides.tolist(),
            "matched": self.matched,
            "targets": self.targets,
            "best": self.best,
            "n_boxes": self.n_boxes,
        }


@dataclass(frozen=True)
class BelowStride:
    """An anchor smaller than ``min_units`` strides of its level."""

    level: int
    """Index of the level (0 is the first level given, normally the smallest stride)."""
    stride: float
    """The level's stride in pixels."""
    anchor: tuple[float, float]
    """The anchor's (width, height) in pixels."""
    size_in_strides: float
    """The anchor's ``sqrt(w * h) / stride``."""
    min_units: float
    """The bound it falls below, in strides."""

    @property
    def shortfall(self) -> float:
        """How far below the bound, as a share of it (0.25: a quarter too small)."""
        return 1 - self.size_in_strides / self.min_units

    def __str__(self) -> str:
        w, h = self.anchor
        bound = "one stride" if self.min_units == 1 else f"{self.min_units:g} strides"
        return (
            f"{level_name(self.stride)} (stride {self.stride:g}): anchor {w:.0f}x{h:.0f} px is "
            f"{self.size_in_strides:.2f} strides, {self.shortfall:.0%} under {bound}"
        )


def _check_levels(anchors: Tensor, strides: Strides) -> Tensor:
    """Validate ``anchors [nl, na, 2]`` and ``strides [nl]``; return the strides as float64 on the CPU."""
    if not isinstance(anchors, Tensor):
        raise TypeError(f"anchors must be a torch.Tensor, got {type(anchors).__name__}")
    if anchors.ndim != 3 or anchors.shape[-1] != 2 or anchors.shape[0] == 0 or anchors.shape[1] == 0:
        raise ValueError(
            f"anchors must have shape [nl, na, 2] (levels, anchors per level, width/height) "
            f"with nl, na >= 1, got {list(anchors.shape)}"
        )
    if not anchors.is_floating_point():
        raise TypeError(f"anchors must be a floating-point tensor, got {anchors.dtype}")
    if not bool(torch.isfinite(anchors).all()) or bool((anchors <= 0).any()):
        raise ValueError(f"anchors must be finite and positive (pixels), got {anchors.tolist()}")
    if isinstance(strides, Tensor):
        values = strides.detach().double().cpu()
    else:
        if isinstance(strides, (str, bytes)) or not isinstance(strides, Sequence):
            raise TypeError(f"strides must be a sequence of numbers or a Tensor, got {type(strides).__name__}")
        if not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in strides):
            raise TypeError(f"strides must hold numbers, got {list(strides)!r}")
        values = torch.tensor([float(s) for s in strides], dtype=torch.float64)
    if values.shape != (anchors.shape[0],):
        raise ValueError(
            f"strides must have one value per level ({anchors.shape[0]}), got shape {list(values.shape)}"
        )
    if not bool(torch.isfinite(values).all()) or bool((values <= 0).any()):
        raise ValueError(f"strides must be finite and positive (pixels), got {values.tolist()}")
    return values


def _size_in_strides(anchors: Tensor, strides: Tensor) -> Tensor:
    """``sqrt(w * h) / stride`` of ``anchors [nl, na, 2]``: ``Tensor[nl, na]`` on the anchors' device."""
    stride = strides.to(device=anchors.device, dtype=torch.float64)[:, None]  # [nl,1]
    return (anchors.double().prod(-1).sqrt() / stride).to(anchors.dtype)


def level_stats(
    wh: Tensor, anchors: Tensor, strides: Strides, *, thr: float = DEFAULT_THR, chunk: int = 1 << 16
) -> list[LevelStats]:
    """Per-level figures of a detector's anchors on box sizes.

    A box counts as a target of an anchor when ``max(r, 1/r) < thr`` for both the
    width and the height ratio ``r = box / anchor``: yolov5's ``build_targets`` rule,
    applied level by level.

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels of the letterboxed
            training image. A box with a zero side matches no anchor.
        anchors (Tensor[nl, na, 2]): each level's anchor (width, height) in pixels.
        strides (Sequence[float] or Tensor[nl]): each level's stride in pixels.
        thr: largest allowed side ratio (yolov5's ``anchor_t``).
        chunk: boxes measured at a time (bounds the memory of the temporaries).

    Returns:
        One :class:`LevelStats` per level, in the order of ``anchors``; its tensors
        on the device of ``anchors``.

    Raises:
        TypeError: if ``wh`` or ``anchors`` is not a floating-point tensor, or the
            strides are not numbers.
        ValueError: for wrong shapes (the message gives them), no boxes at all
            (shares over no boxes are undefined, as for :func:`anchor_stats`),
            negative or non-finite box sizes (naming the first such box), or
            non-positive anchors or strides.

    Example:
        >>> level = level_stats(torch.tensor([[20.0, 20.0]]), torch.tensor([[[10.0, 10.0], [30.0, 30.0]]]), [8])[0]
        >>> level.targets, level.matched, level.size_in_strides.tolist()
        (2.0, 1.0, [1.25, 3.75])
    """
    thr = check_thr(thr)
    check_wh(wh)
    stride_values = _check_levels(anchors, strides)
    chunk = check_int("chunk", chunk, low=1)
    if wh.shape[0] == 0:
        raise ValueError("level_stats needs at least one box, got wh of shape [0, 2]")
    bad = ~torch.isfinite(wh).all(1) | (wh < 0).any(1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0])
        raise ValueError(f"box {row} has size {wh[row].tolist()}; box sizes must be finite and non-negative")
    nl, na, _ = anchors.shape
    dtype = torch.promote_types(wh.dtype, anchors.dtype)
    flat = anchors.to(dtype).reshape(nl * na, 2)
    counts = torch.zeros(3, nl, dtype=torch.float64, device=anchors.device)  # matched, targets, best
    for start in range(0, wh.shape[0], chunk):  # no [N, K, 2] temporaries for millions of boxes
        box = wh[start : start + chunk].to(device=anchors.device, dtype=dtype)
        r = box[:, None, :] / flat[None]  # [n,K,2]
        within = (torch.maximum(r, 1 / r).amax(-1) < thr).view(-1, nl, na)  # [n,nl,na], build_targets' test
        best_level = torch.div(ratio_metric(box, flat).argmax(-1), na, rounding_mode="floor")  # [n], first on ties
        counts[0] += within.any(-1).sum(0)
        counts[1] += within.sum((0, 2))
        counts[2] += torch.bincount(best_level, minlength=nl)
    n = wh.shape[0]
    matched, targets, best = (counts / n).tolist()  # [nl] each
    size = _size_in_strides(anchors, stride_values)
    return [
        LevelStats(
            stride=float(stride_values[level]),
            anchors=anchors[level].clone(),
            size_in_strides=size[level],
            matched=matched[level],
            targets=targets[level],
            best=best[level],
            n_boxes=n,
        )
        for level in range(nl)
    ]


def anchors_below_stride(anchors: Tensor, strides: Strides, *, min_units: float = 1.0) -> list[BelowStride]:
    """The anchors smaller than ``min_units`` strides of their level.

    An anchor under one stride is smaller than a grid cell of the level it predicts
    on: the level sees such objects at a resolution too coarse for them (the "box
    in box" complaint about yolov5's refitted anchors).

    Args:
        anchors (Tensor[nl, na, 2]): each level's anchor (width, height) in pixels.
        strides (Sequence[float] or Tensor[nl]): each level's stride in pixels.
        min_units: the bound on ``sqrt(w * h) / stride``.

    Returns:
        One :class:`BelowStride` per offending anchor, by level then anchor order;
        empty when every anchor reaches the bound.

    Raises:
        TypeError, ValueError: for malformed anchors or strides (as :func:`level_stats`),
            or a ``min_units`` that is not a positive finite number.

    Example:
        >>> [str(b) for b in anchors_below_stride(torch.tensor([[[4.0, 9.0]], [[22.0, 30.0]]]), [8, 32])]
        ['P3 (stride 8): anchor 4x9 px is 0.75 strides, 25% under one stride', \
'P5 (stride 32): anchor 22x30 px is 0.80 strides, 20% under one stride']
    """
    stride_values = _check_levels(anchors, strides)
    if (
        isinstance(min_units, bool)
        or not isinstance(min_units, (int, float))
        or not math.isfinite(min_units)
        or min_units <= 0
    ):
        raise ValueError(f"min_units must be a positive number of strides, got {min_units!r}")
    size = _size_in_strides(anchors, stride_values).double().cpu()
    pixels = anchors.double().cpu()
    found = []
    for level, anchor in (size < min_units).nonzero().tolist():
        w, h = pixels[level, anchor].tolist()
        found.append(
            BelowStride(
                level=level,
                stride=float(stride_values[level]),
                anchor=(w, h),
                size_in_strides=float(size[level, anchor]),
                min_units=float(min_units),
            )
        )
    return found


def split_levels(anchors: Tensor, n_levels: int) -> Tensor:
    """Flat anchors ``[K, 2]`` to levels ``[n_levels, K / n_levels, 2]``, as yolov5 assigns them.

    The anchors are sorted by area (stably) and cut into equal groups: the
    smallest go to the first level (the finest stride).

    Raises:
        ValueError: if ``K`` is not a multiple of ``n_levels``.
    """
    n_levels = check_int("n_levels", n_levels, low=1)
    if anchors.ndim != 2 or anchors.shape[1] != 2 or anchors.shape[0] % n_levels:
        raise ValueError(
            f"anchors must have shape [K, 2] with K a multiple of {n_levels} levels, got {list(anchors.shape)}"
        )
    return sort_by_area(anchors).reshape(n_levels, -1, 2)


def stride_bounds(
    strides: Strides, n_anchors: int, *, min_units: float | None = None, max_units: float | None = None
) -> tuple[Tensor, Tensor]:
    """Per area rank, the bounds on ``sqrt(w * h)`` in pixels that a stride-bounded search keeps.

    ``n_anchors`` anchors sorted by area go onto the levels in equal groups (the
    smallest onto the first level); the anchor of rank ``i`` sits on level
    ``i // (n_anchors / nl)`` and must satisfy
    ``min_units * stride <= sqrt(w * h) <= max_units * stride`` there.

    Args:
        strides (Sequence[float] or Tensor[nl]): strides in pixels, strictly increasing.
        n_anchors: anchors in all, a multiple of the number of levels.
        min_units, max_units: the bounds in strides; ``None`` leaves that side open.

    Returns:
        ``(low, high)``: float64 ``Tensor[n_anchors]`` each on the CPU, non-decreasing
        in rank (``0`` and ``inf`` where open).

    Raises:
        ValueError: for strides that are not positive and strictly increasing, a count
            that is not a multiple of the levels, bounds that are not positive finite
            numbers, or ``min_units > max_units``.
    """
    values = _check_levels(torch.ones(len(strides), 1, 2), strides)
    if bool((values[1:] <= values[:-1]).any()):
        raise ValueError(f"strides must be strictly increasing, got {values.tolist()}")
    nl = values.shape[0]
    n_anchors = check_int("n_anchors", n_anchors, low=1)
    if n_anchors % nl:
        raise ValueError(f"n_anchors must be a positive multiple of the {nl} levels, got {n_anchors!r}")
    min_units, max_units = check_stride_units(min_units, max_units, names=("min_units", "max_units"))
    per_rank = values.repeat_interleave(n_anchors // nl)  # [K] stride of each area rank
    low = per_rank * min_units if min_units is not None else torch.zeros_like(per_rank)
    high = per_rank * max_units if max_units is not None else torch.full_like(per_rank, math.inf)
    return low, high


def clamp_to_strides(anchors: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Scale every anchor that breaks its rank's bounds onto them, keeping its aspect ratio.

    The projection a stride-bounded search applies to its candidates. Each anchor
    is ranked by area within its set; its size ``g = sqrt(w * h)`` is raised to
    ``low[rank]`` or lowered to ``high[rank]`` (both by a hair inside, so that the
    rounded result still passes), width and height by the same factor. Anchors
    within bounds are returned bit for bit. The bounds grow with rank, so the
    clamped sizes keep the order of the originals: every anchor stays on its level.

    Args:
        anchors (Tensor[..., K, 2]): anchor sets (a population ``[P, K, 2]`` too),
            any order, in pixels.
        low, high (Tensor[K]): per area rank, from :func:`stride_bounds`.

    Returns:
        Tensor of the shape, order, dtype and device of ``anchors``.

    Example:
        >>> low, high = stride_bounds([8, 32], 2, min_units=1.0)
        >>> clamped = clamp_to_strides(torch.tensor([[4.0, 9.0], [22.0, 30.0]]), low, high)
        >>> clamped.round(decimals=2)  # 4x9 (6 px) x 8/6; 22x30 (25.7 px) x 32/25.7
        tensor([[ 5.3300, 12.0000],
                [27.4000, 37.3700]])
        >>> clamped.prod(-1).sqrt() >= torch.tensor([8.0, 32.0])
        tensor([True, True])
    """
    if not isinstance(anchors, Tensor) or anchors.ndim < 2 or anchors.shape[-1] != 2:
        raise ValueError(f"anchors must be a Tensor[..., K, 2], got {getattr(anchors, 'shape', anchors)!r}")
    k = anchors.shape[-2]
    if low.shape != (k,) or high.shape != (k,):
        raise ValueError(f"low and high must have shape [{k}], got {list(low.shape)} and {list(high.shape)}")
    hair = 8 * torch.finfo(anchors.dtype).eps
    size = anchors.double().prod(-1).sqrt()  # [...,K]
    rank = torch.argsort(size, dim=-1, stable=True).argsort(-1)  # [...,K] area rank of each anchor
    lo, hi = low.to(size.device)[rank], high.to(size.device)[rank]
    target = torch.where(size < lo, lo * (1 + hair), torch.where(size > hi, hi * (1 - hair), size))
    clamped = (anchors.double() * (target / size)[..., None]).to(anchors.dtype)
    return torch.where((target == size)[..., None], anchors, clamped)


def within_stride_bounds(anchors: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Whether every anchor of a set is within its rank's bounds: ``Tensor[...]`` bool.

    The test a climb can apply to its moves (a move that breaks a bound is not taken).
    """
    size = anchors.double().prod(-1).sqrt()  # [...,K]
    ordered = size.sort(-1).values
    return ((ordered >= low.to(size.device)) & (ordered <= high.to(size.device))).all(-1)


def format_below_stride(found: Sequence[BelowStride]) -> list[str]:
    """One line per anchor of :func:`anchors_below_stride`, headed by a count; no lines if none."""
    if not found:
        return []
    bound = found[0].min_units
    what = "one stride" if bound == 1 else f"{bound:g} strides"
    return [f"{len(found)} anchor(s) under {what} of their level:"] + [f"  {item}" for item in found]


def format_level_table(levels: Sequence[LevelStats]) -> list[str]:
    """The per-level table: one header line and one line per level, no trailing newlines.

    Columns: level name, stride (px), the anchors (``w x h`` px), their sizes in
    strides, the share of boxes matched by the level, targets per box, and the
    share of boxes whose best anchor is on the level.

    Example:
        >>> wh = torch.tensor([[12.0, 14.0], [100.0, 80.0]])
        >>> anchors = torch.tensor([[[10.0, 13.0], [16.0, 30.0]], [[116.0, 90.0], [156.0, 198.0]]])
        >>> print("\\n".join(format_level_table(level_stats(wh, anchors, [8, 32]))))
        level  stride  anchors (px)     size (strides)  matched  targets/box   best
        P3          8  10x13  16x30     1.4  2.7          50.0%         1.00  50.0%
        P5         32  116x90  156x198  3.2  5.5          50.0%         1.00  50.0%
    """
    anchor_text = ["  ".join(f"{w:.0f}x{h:.0f}" for w, h in level.anchors.tolist()) for level in levels]
    size_text = ["  ".join(f"{s:.1f}" for s in level.size_in_strides.tolist()) for level in levels]
    anchor_width = max([len("anchors (px)")] + [len(t) for t in anchor_text])
    size_width = max([len("size (strides)")] + [len(t) for t in size_text])
    lines = [
        f"{'level':<5}  {'stride':>6}  {'anchors (px)':<{anchor_width}}  {'size (strides)':<{size_width}}  "
        f"{'matched':>7}  {'targets/box':>11}  {'best':>5}"
    ]
    for level, anchors, sizes in zip(levels, anchor_text, size_text):
        lines.append(
            f"{level.name:<5}  {level.stride:>6g}  {anchors:<{anchor_width}}  {sizes:<{size_width}}  "
            f"{level.matched:>7.1%}  {level.targets:>11.2f}  {level.best:>5.1%}"
        )
    return lines
