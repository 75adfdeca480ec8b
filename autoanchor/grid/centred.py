"""Matching and fitting for anchors on explicit centre grids (SSD default boxes, EfficientDet).

Both families place their boxes at cell centres of a finite grid over one fixed-size
input image, and both match as torchvision's ``SSDMatcher`` / effdet's
``ArgMaxMatcher(force_match_for_each_row=True)`` do: an anchor is positive for a box
when their IoU reaches the threshold (0.5), and each box's best anchor is positive
for it whatever its IoU (the *forced* match). So:

* ``matched``: the share of boxes whose best anchor reaches the threshold (the forced
  match gives every box one positive; this is the share that earns one on merit);
* ``mean_iou``: the mean best IoU;
* ``positives``: the mean number of positive anchors per box, the forced one included
  (``max(count, 1)``), as the matcher assigns them to a box alone in its image.

As in :mod:`autoanchor.grid.matching`, IoU never rises as the centre offset grows on
either axis, so the best anchor of a level sits at the grid centre nearest the box
centre on each axis (clamped to the grid). Everything is in input pixels, float64.

Where a box's position is unknown, it is counted at a fixed lattice of positions
spread evenly over the places its image allows (the box inside the image content),
each with weight ``1 / positions``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from .anchors import lattice_offsets
from .matching import MatchStats, Samples, _check_threshold, offset_iou

__all__ = ["CentredLevel", "best_iou_centred", "fit_centred", "image_samples", "match_stats_centred"]

logger = logging.getLogger(__name__)

#: log2 step ladder of the coordinate search.
STEPS = (0.5, 0.25, 0.125, 0.0625, 0.03125)
_MOVES = (-3.0, -2.0, -1.0, 1.0, 2.0, 3.0)


@dataclass(frozen=True)
class CentredLevel:
    """One level: its centres per axis and its anchor sizes, in input pixels.

    Attributes:
        xs: ``[Px]`` centre x coordinates, increasing.
        ys: ``[Py]`` centre y coordinates, increasing.
        wh: ``[A, 2]`` anchor (width, height).
    """

    xs: Tensor
    ys: Tensor
    wh: Tensor


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread for the many small CPU tensors of matching and search
    (restored afterwards): extra threads only add barriers, which stall for seconds
    when another process holds a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def image_samples(
    wh: Tensor, xy: Tensor | None, extent: Tensor, *, positions: int = 8, max_boxes: int | None = None,
    generator: torch.Generator | None = None,
) -> Samples:
    """Rows for matching: boxes at their centres, or at lattice positions in their image.

    Args:
        wh: ``[N, 2]`` box (width, height) in input pixels, positive.
        xy: ``[N, 2]`` box centres in input pixels, or None when unknown.
        extent: ``[N, 2]`` (width, height) of each box's image content in input pixels.
        positions: lattice positions per box whose centre is unknown.
        max_boxes: keep a seeded random subset of at most this many boxes (weights
            scaled so the total is still ``N``).
        generator: draws the subset.

    Returns:
        Samples (``extent`` unset: the grids are clamped by their own extent).
    """
    wh = torch.as_tensor(wh, dtype=torch.float64)
    extent = torch.as_tensor(extent, dtype=torch.float64).expand_as(wh)
    if wh.dim() != 2 or wh.shape[1] != 2 or wh.shape[0] == 0 or not bool((wh > 0).all()):
        raise ValueError(f"wh must be [N, 2] positive box sizes with N >= 1, got shape {tuple(wh.shape)}")
    if isinstance(positions, bool) or not isinstance(positions, int) or positions < 1:
        raise ValueError(f"positions must be an integer >= 1, got {positions!r}")
    n = wh.shape[0]
    weight_per_box = 1.0
    if max_boxes is not None and n > max_boxes:
        keep = torch.randperm(n, generator=generator)[:max_boxes].sort().values
        weight_per_box = n / max_boxes
        wh, extent = wh[keep], extent[keep]
        xy = None if xy is None else torch.as_tensor(xy, dtype=torch.float64)[keep]
    if xy is not None:
        xy = torch.as_tensor(xy, dtype=torch.float64)
        return Samples(wh, xy, torch.full((wh.shape[0],), weight_per_box, dtype=torch.float64))
    points = lattice_offsets(positions, dtype=torch.float64)  # [M,2] in [0,1)
    room = (extent - wh).clamp(min=0)  # [n,2] where the centre may go, less the box
    centres = wh[:, None, :] / 2 + points[None] * room[:, None, :]  # [n,M,2]
    centres = torch.where(extent[:, None, :] < wh[:, None, :], extent[:, None, :] / 2, centres)
    return Samples(
        wh.repeat_interleave(positions, dim=0),
        centres.reshape(-1, 2),
        torch.full((wh.shape[0] * positions,), weight_per_box / positions, dtype=torch.float64),
    )


def _nearest(centres: Tensor, values: Tensor) -> Tensor:
    """The centre nearest each value (``centres`` sorted), ``[S]``."""
    index = torch.searchsorted(centres, values.contiguous()).clamp(max=centres.numel() - 1)
    below = (index - 1).clamp(min=0)
    pick_below = (values - centres[below]).abs() <= (centres[index] - values).abs()
    return torch.where(pick_below, centres[below], centres[index])


def nearest_offsets(samples: Samples, levels: list[CentredLevel]) -> list[Tensor]:
    """Per level the ``[S, 2]`` offset from the nearest centre to each row's centre."""
    xy = samples.xy
    return [
        torch.stack([xy[:, 0] - _nearest(level.xs, xy[:, 0]), xy[:, 1] - _nearest(level.ys, xy[:, 1])], dim=1)
        for level in levels
    ]


def best_iou_centred(samples: Samples, levels: list[CentredLevel]) -> Tensor:
    """Best IoU of each row over every anchor at any centre, ``[S]`` in ``[0, 1]``."""
    best = torch.zeros(samples.wh.shape[0], dtype=torch.float64)
    for level, offset in zip(levels, nearest_offsets(samples, levels)):
        best = torch.maximum(best, offset_iou(samples.wh, level.wh.double(), offset).max(dim=1).values)
    return best


def positive_counts_centred(samples: Samples, levels: list[CentredLevel], threshold: float, *, chunk: int = 1024) -> Tensor:
    """Number of anchors (over every centre and level) at IoU >= ``threshold`` per row, ``[S]``."""
    threshold = _check_threshold(threshold)
    wh, xy = samples.wh, samples.xy
    counts = torch.zeros(wh.shape[0], dtype=torch.float64)
    for level in levels:
        anchor = level.wh.double()  # [A,2]
        for start in range(0, wh.shape[0], chunk):
            part = slice(start, start + chunk)
            box = wh[part]  # [n,2]
            # Per axis, the overlap with each anchor at each centre: [n,A,P].
            def overlap(axis: int, centres: Tensor) -> Tensor:
                delta = (xy[part, axis][:, None] - centres[None, :]).abs()  # [n,P]
                b, a = box[:, axis][:, None, None], anchor[:, axis][None, :, None]
                return torch.minimum(torch.minimum(b, a), (b + a) / 2 - delta[:, None, :]).clamp(min=0)

            overlap_x, overlap_y = overlap(0, level.xs), overlap(1, level.ys)
            # IoU >= t  <=>  inter * (1 + t) >= t * (box area + anchor area).
            need = threshold * (box.prod(1)[:, None] + anchor.prod(1)[None, :]) / (1 + threshold)  # [n,A]
            sorted_y = torch.sort(overlap_y, dim=-1).values.contiguous()
            floor_y = (need[..., None] / overlap_x).contiguous()  # [n,A,Px]; inf where overlap_x is 0
            below = torch.searchsorted(sorted_y, floor_y * (1 - 1e-12))
            counts[part] += (sorted_y.shape[-1] - below).sum(dim=(1, 2)).double()
    return counts


def match_stats_centred(
    samples: Samples, levels: list[CentredLevel], *, threshold: float, positives: bool = True
) -> MatchStats:
    """Share matched at ``threshold``, mean best IoU and positives per box (forced match included)."""
    threshold = _check_threshold(threshold)
    with one_thread():
        return _match_stats(samples, levels, threshold, positives)


def _match_stats(samples: Samples, levels: list[CentredLevel], threshold: float, positives: bool) -> MatchStats:
    best = torch.cat([
        best_iou_centred(Samples(samples.wh[i : i + 65536], samples.xy[i : i + 65536], samples.weight[i : i + 65536]), levels)
        for i in range(0, samples.wh.shape[0], 65536)
    ])
    weight = samples.weight
    total = weight.sum()
    matched = float((weight * (best >= threshold).double()).sum() / total)
    mean_iou = float((weight * best).sum() / total)
    mean_positives = float("nan")
    if positives:
        counts = positive_counts_centred(samples, levels, threshold).clamp(min=1)  # the forced best match
        mean_positives = float((weight * counts).sum() / total)
    return MatchStats(matched, mean_iou, mean_positives, threshold, float(total))


class _Scorer:
    """Fitness of anchor sizes on fixed rows (float32); trials of one move are scored together."""

    def __init__(self, samples: Samples, levels: list[CentredLevel], threshold: float, iou_weight: float):
        self.wh = samples.wh.float()
        self.area = self.wh.prod(dim=1)  # [S]
        self.offsets = [o.abs().float() for o in nearest_offsets(samples, levels)]  # the centres never move
        self.weight = (samples.weight / samples.weight.sum()).float()
        self.threshold = threshold
        self.iou_weight = iou_weight

    def level_best(self, level: int, anchors: Tensor, trials: int = 1) -> Tensor:
        """Best IoU ``[S, trials]`` of every row with ``[trials * A, 2]`` anchors on ``level``."""
        anchors = anchors.float()
        aw, ah = anchors[:, 0], anchors[:, 1]  # [T*A]
        w, h, offset = self.wh[:, 0:1], self.wh[:, 1:2], self.offsets[level]
        overlap_x = torch.minimum(torch.minimum(w, aw), (w + aw) * 0.5 - offset[:, 0:1]).clamp_(min=0)  # [S,T*A]
        overlap_y = torch.minimum(torch.minimum(h, ah), (h + ah) * 0.5 - offset[:, 1:2]).clamp_(min=0)
        inter = overlap_x.mul_(overlap_y)
        iou = inter / (self.area[:, None] + aw * ah - inter)
        return iou.reshape(iou.shape[0], trials, -1).max(dim=2).values

    def table(self, sizes: list[Tensor]) -> Tensor:
        """Per row and level the best IoU ``[S, L]``."""
        return torch.cat([self.level_best(level, wh) for level, wh in enumerate(sizes)], dim=1)

    def scores(self, best: Tensor) -> Tensor:
        """Fitness of best IoUs ``[S, T]`` -> ``[T]``."""
        gain = (best >= self.threshold).float() + self.iou_weight * best
        return self.weight @ gain

    def trials(self, table: Tensor, current: list[Tensor], candidates: list[list[Tensor]]) -> Tensor:
        """Fitness ``[T]`` of candidate sizes that differ from ``current`` on some levels."""
        n_levels = len(current)
        changed = [
            level for level in range(n_levels) if any(not torch.equal(c[level], current[level]) for c in candidates)
        ]
        kept = [level for level in range(n_levels) if level not in changed]
        base = table[:, kept].max(dim=1).values if kept else torch.zeros_like(table[:, 0])
        best = base[:, None].expand(-1, len(candidates))
        for level in changed:
            anchors = torch.cat([c[level] for c in candidates])
            best = torch.maximum(best, self.level_best(level, anchors, len(candidates)))
        return self.scores(best)


def fit_centred(
    samples: Samples,
    levels: list[CentredLevel],
    theta: Tensor,
    build: Callable[[Tensor], list[Tensor] | None],
    *,
    threshold: float,
    iou_weight: float = 0.5,
    kicks: int = 2,
    kick_scale: float = 0.2,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, float, float]:
    """Coordinate search of the parameters ``theta`` (log2 units) of a centred-grid family.

    One parameter at a time moves by ``-3 .. 3`` steps of a shrinking ladder
    (:data:`STEPS`); the six trials are scored together, re-scoring only the levels
    they change. A few seeded random kicks are then climbed again and kept if better.

    Args:
        samples: the rows to score (see :func:`image_samples`).
        levels: the grid (only the centres are used; sizes come from ``build``).
        theta: ``[P]`` float64 start parameters.
        build: parameters -> per level ``[A_l, 2]`` anchor sizes in pixels (rounded as
            they will be stored), or None for parameters outside the family's
            constraints (e.g. scales out of order).
        threshold: foreground IoU.
        iou_weight: weight of the mean best IoU next to the share matched.
        kicks, kick_scale: seeded random restarts (log2 standard deviation).
        generator: draws the kicks.

    Returns:
        ``(theta, fitness, fitness_start)``; ``theta`` is the start if nothing scored higher.
    """
    threshold = _check_threshold(threshold)
    if not math.isfinite(iou_weight) or iou_weight < 0:
        raise ValueError(f"iou_weight must be finite and >= 0, got {iou_weight!r}")
    with one_thread():
        return _search(samples, levels, theta, build, threshold, iou_weight, kicks, kick_scale, generator)


def _search(samples, levels, theta, build, threshold, iou_weight, kicks, kick_scale, generator):
    scorer = _Scorer(samples, levels, threshold, iou_weight)
    start_sizes = build(theta)
    if start_sizes is None:
        raise ValueError("the start parameters are outside the family's constraints")
    start_fitness = float(scorer.scores(scorer.table(start_sizes).max(dim=1, keepdim=True).values)[0])

    def climb(point: Tensor, steps) -> tuple[Tensor, float]:
        sizes = build(point)
        table = scorer.table(sizes)
        fitness = float(scorer.scores(table.max(dim=1, keepdim=True).values)[0])
        for step in steps:
            for _round in range(3):
                improved = False
                for index in range(point.numel()):
                    trials, candidates = [], []
                    for move in _MOVES:
                        trial = point.clone()
                        trial[index] += move * step
                        built = build(trial)
                        if built is not None:
                            trials.append(trial)
                            candidates.append(built)
                    if not candidates:
                        continue
                    values = scorer.trials(table, sizes, candidates)
                    pick = int(torch.argmax(values))
                    if float(values[pick]) > fitness + 1e-7:
                        point, sizes, fitness, improved = trials[pick], candidates[pick], float(values[pick]), True
                        table = scorer.table(sizes)
                if not improved:
                    break
        return point, fitness

    best, best_fitness = climb(theta.clone(), STEPS)
    for kick in range(kicks):
        trial = best + kick_scale * torch.randn(best.shape, generator=generator, dtype=torch.float64)
        if build(trial) is None:
            continue
        point, fitness = climb(trial, STEPS[1:])
        logger.debug("kick %d reached fitness %.5f (best %.5f)", kick, fitness, best_fitness)
        if fitness > best_fitness:
            best, best_fitness = point, fitness
    if best_fitness <= start_fitness:
        return theta.clone(), start_fitness, start_fitness
    return best, best_fitness, start_fitness


@dataclass(frozen=True)
class CentredFit:
    """Outcome of a centred-grid fit (:func:`~autoanchor.grid.default_boxes.fit_default_boxes`,
    :func:`~autoanchor.grid.effdet_anchors.fit_effdet_anchors`).

    Attributes:
        anchors: the fitted settings (``DefaultBoxes`` or ``EffdetAnchors``), rounded
            as written; the start when nothing scored higher.
        start: the settings fitted from.
        before, after: stats on the rows the search scored (positives not counted).
        fitness_before, fitness_after: ``matched + iou_weight * mean best IoU``.
        rows: number of rows scored.
    """

    anchors: object
    start: object
    before: MatchStats
    after: MatchStats
    fitness_before: float
    fitness_after: float
    rows: int


def fit_summary(samples: Samples, start_levels: list[CentredLevel], fitted_levels: list[CentredLevel], *,
                threshold: float) -> tuple[MatchStats, MatchStats]:
    """Stats of the start and the fitted anchors on the scored rows (positives not counted)."""
    return (
        match_stats_centred(samples, start_levels, threshold=threshold, positives=False),
        match_stats_centred(samples, fitted_levels, threshold=threshold, positives=False),
    )
