"""Fit the sizes and aspect ratios of a grid anchor generator to a dataset's boxes.

The generator's structure is kept so the detector's head still fits: the same levels
and strides, the same number of sizes and of ratios per level (anchors per location
unchanged), ratios shared across levels when the start shares them. Sizes are free
per level.

Fitness (maximised): ``matched + iou_weight * mean_best_iou`` on the pooled boxes, where
``matched`` is the share of boxes with an anchor at IoU >= the foreground threshold at
its grid position (see :mod:`autoanchor.grid.matching`). The share matched is
what the detector trains on (unmatched boxes get no positive anchor above the
threshold); the IoU term breaks its ties and steers the search between the steps of
the share, and with the default weight 0.5 a point of share is worth two points of
mean IoU.

Method: the boxes are pooled by log size (``bins_per_octave`` bins per octave on each
axis); a pool keeps at most ``positions_per_pool`` box positions (a seeded random
subset of its boxes' real centres, modulo the grid's period) or, where positions are
unknown, a fixed lattice of offsets in the coarsest cell. The cost is therefore
bounded by the number of occupied size bins, not the number of boxes. From the better
of two starts (the given anchors, and sizes at the quantiles of box scale spread over
the levels in stride order), a coordinate climb moves one log size or one log ratio at
a time over a ladder of shrinking steps, re-scoring only the anchors that move (the
best IoU of every row without the moving anchors is read from the per-level top two,
kept current); a few seeded random kicks of all parameters are then climbed again and
kept if better. This search ignores the level order (one-size moves cannot carry a
level past its neighbour); under the order, its result dealt out again in stride order
and the ordered start are each climbed keeping the order, and the better one wins. The climb and the kicks run on a coarser pool (half the bins per
octave and half the positions, ``coarse_factor``); the best point is then climbed on
the full pool at the finest step.
Sizes are rounded to whole pixels and ratios to 3 decimals while scoring, so the
score is that of the generator that gets written.

Level rules (:class:`LevelRules`), kept by every start, move and kick: with
``level_order`` (the default) levels are in scale order, as an FPN assigns objects:
**every size of a level is larger (by at least one pixel) than every size of each
level of a smaller stride** (levels of equal stride are not ordered among
themselves); with ``min_stride_units`` / ``max_stride_units`` every size of a level
of stride ``s`` lies in ``[min * s, max * s]`` pixels.

The scores here are the search's proxy (pooled boxes, nominal strides, positions
modulo the grid's period); the figures to report come from
:func:`~autoanchor.grid.matching.match_stats` on every box.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.validate import check_float, check_int, check_seed
from .anchors import GridAnchors
from .matching import MatchStats, Samples, _check_threshold, _one_cpu_thread, nearest_offset
from .pooling import pool_samples
from .rules import LevelRules, _pixels, _project_log

__all__ = ["FitResult", "LevelRules", "fit_grid_anchors"]

logger = logging.getLogger(__name__)

_STEPS = (0.5, 0.25, 0.125, 0.0625)  # log2 units
_MOVES = (-3.0, -2.0, -1.0, 1.0, 2.0, 3.0)
_POLISH_STEPS = _STEPS[-1:]  # the climb on the full pool after the coarse search


@dataclass(frozen=True)
class FitResult:
    """Outcome of :func:`fit_grid_anchors`.

    Attributes:
        generator: the fitted anchors (sizes in whole pixels, ratios to 3 decimals).
        start: the anchors the search started from (the given ones).
        before: stats of ``start`` on the pooled boxes (positives not counted).
        after: stats of ``generator`` on the pooled boxes (positives not counted).
        fitness_before: fitness of ``start``.
        fitness_after: fitness of ``generator``; never below ``fitness_before``.
        pools: number of pooled rows the search scored.
    """

    generator: GridAnchors
    start: GridAnchors
    before: MatchStats
    after: MatchStats
    fitness_before: float
    fitness_after: float
    pools: int


class _Scorer:
    """Scores parameter sets on pooled samples; only moved anchors are re-scored.

    Rows are scored in float32. A move of one size changes anchors of a single area
    (``size**2`` for every ratio), and IoU is at most the ratio of the smaller to the
    larger area whatever the positions, so only rows whose area is close enough to
    beat their current best IoU are re-scored.
    """

    def __init__(self, samples: Samples, strides: tuple[int, ...], threshold: float, iou_weight: float):
        self.wh = samples.wh.float()
        self.area = self.wh.prod(dim=1)  # [S]
        self.weight = (samples.weight / samples.weight.sum()).float()
        self.threshold = threshold
        self.iou_weight = iou_weight
        self.offsets = [nearest_offset(samples.xy, s, samples.extent).float() for s in strides]  # L x [S,2]

    @staticmethod
    def anchor_wh(log_sizes: Tensor, log_ratios: Tensor) -> Tensor:
        """``[..., r, k, 2]`` rounded anchor (w, h) from log2 sizes ``[..., k]`` and log2 ratios ``[..., r]``."""
        sizes = torch.round(torch.exp2(log_sizes)).clamp(min=1).float()
        ratios = (torch.round(torch.exp2(log_ratios) * 1000).clamp(min=1) / 1000).float()
        height_factor = torch.sqrt(ratios)
        width_factor = 1 / height_factor
        widths = torch.round(width_factor[..., :, None] * sizes[..., None, :] / 2) * 2
        heights = torch.round(height_factor[..., :, None] * sizes[..., None, :] / 2) * 2
        return torch.stack([widths, heights], dim=-1).clamp(min=1)

    def level_iou(self, level: int, anchor_wh: Tensor, rows: Tensor | None = None) -> Tensor:
        """IoU ``[S, *batch]`` of the rows (all, or the given indices) with anchors ``[*batch, 2]`` on ``level``."""
        shape = anchor_wh.shape[:-1]
        wh, offset, area = self.wh, self.offsets[level].abs(), self.area
        if rows is not None:
            wh, offset, area = wh[rows], offset[rows], area[rows]
        anchors = anchor_wh.reshape(-1, 2)
        # offset_iou, unrolled per axis for the hot loop (float32, no [S,A,2] temporaries).
        aw, ah = anchors[:, 0], anchors[:, 1]  # [A]
        w, h = wh[:, 0:1], wh[:, 1:2]  # [S,1]
        overlap_x = torch.minimum(torch.minimum(w, aw), (w + aw) * 0.5 - offset[:, 0:1]).clamp_(min=0)  # [S,A]
        overlap_y = torch.minimum(torch.minimum(h, ah), (h + ah) * 0.5 - offset[:, 1:2]).clamp_(min=0)
        inter = overlap_x.mul_(overlap_y)
        iou = inter / (area[:, None] + aw * ah - inter)
        return iou.reshape(-1, *shape)

    def gain(self, best: Tensor) -> Tensor:
        """Per-row fitness of best IoUs ``[S, ...]``."""
        return (best >= self.threshold).float() + self.iou_weight * best

    def score(self, best: Tensor) -> Tensor:
        """Fitness of best IoUs ``[S, ...]`` -> ``[...]``."""
        return torch.tensordot(self.weight, self.gain(best), dims=([0], [0]))

    def table(self, log_sizes: list[Tensor], log_ratios: list[Tensor]) -> list[Tensor]:
        """Per level, IoU ``[S, r, k]`` of every row with every anchor."""
        return [self.level_iou(l, self.anchor_wh(s, r)) for l, (s, r) in enumerate(zip(log_sizes, log_ratios))]


def _level_best(table: list[Tensor]) -> Tensor:
    return torch.stack([t.flatten(1).max(dim=1).values for t in table], dim=1)  # [S,L]


def _top2(values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per row of ``[S, n]``: the largest value, the second largest (0 when n == 1) and
    the index of the largest."""
    if values.shape[1] == 1:
        zeros = torch.zeros_like(values[:, 0])
        return values[:, 0], zeros, torch.zeros_like(values[:, 0], dtype=torch.long)
    top = values.topk(2, dim=1)
    return top.values[:, 0], top.values[:, 1], top.indices[:, 0]


def _drop(top: tuple[Tensor, Tensor, Tensor], index: int) -> Tensor:
    """Per row, the largest value once column ``index`` is left out."""
    first, second, where = top
    return torch.where(where == index, second, first)


class _Best:
    """Per-row best IoUs of a climb's table, by level, size and ratio, kept current as
    levels change: the best IoU without one size or one ratio of a level is then a
    lookup in the top two values instead of a maximum over the level's table."""

    def __init__(self, table: list[Tensor]):
        self.table = table
        self.size_top: list[tuple[Tensor, Tensor, Tensor]] = []
        self.ratio_top: list[tuple[Tensor, Tensor, Tensor]] = []
        for level, rows in enumerate(table):
            self.size_top.append(_top2(rows.max(dim=1).values))  # over ratios -> [S,k]
            self.ratio_top.append(_top2(rows.max(dim=2).values))  # over sizes -> [S,r]
        self.level_best = torch.stack([top[0] for top in self.size_top], dim=1)  # [S,L]
        self.level_top = _top2(self.level_best)

    def best(self) -> Tensor:
        """Best IoU per row over every anchor ``[S]``."""
        return self.level_top[0]

    def set(self, level: int, rows: Tensor) -> None:
        """Replace level ``level``'s table ``[S, r, k]`` (call :meth:`refresh` after the last one)."""
        self.table[level] = rows
        self.size_top[level] = _top2(rows.max(dim=1).values)
        self.ratio_top[level] = _top2(rows.max(dim=2).values)
        self.level_best[:, level] = self.size_top[level][0]

    def refresh(self) -> None:
        self.level_top = _top2(self.level_best)

    def without(self, levels: list[int], ratio: int | None, size: int | None) -> Tensor:
        """Best IoU per row over all anchors except one size or one ratio on ``levels``."""
        if len(levels) == 1:
            best = _drop(self.level_top, levels[0])
        else:
            keep = [level for level in range(len(self.table)) if level not in levels]
            best = self.level_best[:, keep].max(dim=1).values if keep else torch.zeros_like(self.level_best[:, 0])
        for level in levels:
            if size is not None and self.table[level].shape[2] > 1:
                best = torch.maximum(best, _drop(self.size_top[level], size))
            if ratio is not None and self.table[level].shape[1] > 1:
                best = torch.maximum(best, _drop(self.ratio_top[level], ratio))
        return best


def _climb(
    scorer: _Scorer, log_sizes: list[Tensor], log_ratios: list[Tensor], shared: bool, steps, rules: LevelRules
) -> tuple[list[Tensor], list[Tensor], float]:
    best = _Best(scorer.table(log_sizes, log_ratios))
    fitness = float(scorer.score(best.best()))
    n_levels = len(log_sizes)
    moves = torch.tensor(_MOVES, dtype=torch.float64, device=scorer.wh.device)
    groups = [list(range(n_levels))] if shared else [[level] for level in range(n_levels)]
    for step in steps:
        for _round in range(2):
            improved = False
            # Sizes: one (level, size) at a time; its r anchors move together.
            for level in range(n_levels):
                for j in range(log_sizes[level].shape[0]):
                    other = best.without([level], None, j)
                    base = scorer.score(other)
                    trials = log_sizes[level][j] + step * moves  # [T]
                    trial_wh = scorer.anchor_wh(
                        trials[:, None], log_ratios[level][None, :].expand(len(trials), -1)
                    )  # [T,r,1,2]
                    areas = trial_wh.prod(-1).flatten()
                    # IoU <= smaller area / larger area, whatever the positions.
                    bound = torch.minimum(scorer.area / areas.min(), areas.max() / scorer.area).clamp(max=1)  # [S]
                    rows = torch.nonzero(bound > other).flatten()
                    trial_iou = scorer.level_iou(level, trial_wh[:, :, 0], rows).max(dim=2).values  # [n,T]
                    old = other[rows, None]
                    delta = scorer.gain(torch.maximum(old, trial_iou)) - scorer.gain(old)
                    scores = base + torch.tensordot(scorer.weight[rows], delta, dims=([0], [0]))
                    low, high = rules.bounds(level, _pixels(log_sizes))
                    pixels = torch.round(torch.exp2(trials)).clamp(min=1).to(scores.device)
                    scores = torch.where((pixels >= low) & (pixels <= high), scores, torch.full_like(scores, -math.inf))
                    best_t = int(torch.argmax(scores))
                    if float(scores[best_t]) > fitness + 1e-7:
                        fitness = float(scores[best_t])
                        log_sizes[level] = log_sizes[level].clone()
                        log_sizes[level][j] = trials[best_t]
                        best.set(level, scorer.level_iou(level, scorer.anchor_wh(log_sizes[level], log_ratios[level])))
                        best.refresh()
                        improved = True
            # Ratios: one ratio index at a time, on every level when shared.
            for levels in groups:
                for i in range(log_ratios[levels[0]].shape[0]):
                    other = best.without(levels, i, None)
                    trials = log_ratios[levels[0]][i] + step * moves  # [T]
                    trial_best = torch.zeros(other.shape[0], len(trials), device=other.device)
                    for level in levels:
                        trial_wh = scorer.anchor_wh(
                            log_sizes[level][None, :].expand(len(trials), -1), trials[:, None]
                        )  # [T,1,k,2]
                        areas = trial_wh.prod(-1).flatten()
                        bound = torch.minimum(scorer.area / areas.min(), areas.max() / scorer.area).clamp(max=1)  # [S]
                        rows = torch.nonzero(bound > other).flatten()
                        trial_iou = scorer.level_iou(level, trial_wh[:, 0], rows).max(dim=2).values  # [n,T]
                        trial_best[rows] = torch.maximum(trial_best[rows], trial_iou)
                    scores = scorer.score(torch.maximum(other[:, None], trial_best))
                    best_t = int(torch.argmax(scores))
                    if float(scores[best_t]) > fitness + 1e-7:
                        fitness = float(scores[best_t])
                        for level in levels:
                            log_ratios[level] = log_ratios[level].clone()
                            log_ratios[level][i] = trials[best_t]
                            best.set(
                                level, scorer.level_iou(level, scorer.anchor_wh(log_sizes[level], log_ratios[level]))
                            )
                        best.refresh()  # every level of the group changed (shared ratios)
                        improved = True
            if not improved:
                break
    return log_sizes, log_ratios, fitness


def _quantile_start(samples: Samples, start: GridAnchors) -> list[Tensor]:
    """Sizes at the weighted quantiles of box scale, small ones on the finest strides."""
    scale = 0.5 * torch.log2(samples.wh.prod(dim=1))  # [S] log2 sqrt(area)
    order = torch.argsort(scale)
    cumulative = torch.cumsum(samples.weight[order], 0)
    cumulative = cumulative / cumulative[-1]
    counts = [len(s) for s in start.sizes]
    total = sum(counts)
    levels = sorted(range(start.num_levels), key=lambda level: start.strides[level])
    result: list[Tensor] = [torch.empty(0)] * start.num_levels
    position = 0
    for level in levels:
        quantiles = (torch.arange(counts[level], dtype=torch.float64) + position + 0.5) / total
        index = torch.searchsorted(cumulative, quantiles.to(cumulative.device)).clamp(max=scale.shape[0] - 1)
        result[level] = scale[order][index].double()
        position += counts[level]
    return result


def _to_generator(log_sizes: list[Tensor], log_ratios: list[Tensor], strides: tuple[int, ...]) -> GridAnchors:
    sizes = tuple(tuple(sorted(max(float(round(2.0 ** float(v))), 1.0) for v in level)) for level in log_sizes)
    ratios = tuple(tuple(sorted(max(round(2.0 ** float(v), 3), 0.001) for v in level)) for level in log_ratios)
    return GridAnchors(sizes, ratios, strides)


def _pooled_stats(scorer: _Scorer, generator: GridAnchors, total: float) -> tuple[MatchStats, float]:
    log_sizes = [torch.log2(torch.tensor(s, dtype=torch.float64, device=scorer.wh.device)) for s in generator.sizes]
    log_ratios = [
        torch.log2(torch.tensor(r, dtype=torch.float64, device=scorer.wh.device)) for r in generator.aspect_ratios
    ]
    best = _level_best(scorer.table(log_sizes, log_ratios)).max(dim=1).values
    matched = float(torch.dot(scorer.weight, (best >= scorer.threshold).float()))
    mean_iou = float(torch.dot(scorer.weight, best))
    fitness = float(scorer.score(best))
    return MatchStats(matched, mean_iou, float("nan"), scorer.threshold, total), fitness


def fit_grid_anchors(
    wh: Tensor,
    xy: Tensor | None,
    start: GridAnchors,
    *,
    threshold: float,
    seed: int = 0,
    generator: torch.Generator | None = None,
    iou_weight: float = 0.5,
    bins_per_octave: int = 6,
    positions_per_pool: int = 8,
    kicks: int = 2,
    kick_scale: float = 0.2,
    coarse_factor: int = 2,
    level_order: bool = True,
    min_stride_units: float | None = None,
    max_stride_units: float | None = None,
    extent: Tensor | None = None,
) -> FitResult:
    """Search sizes per level and aspect ratios that match the most boxes.

    Args:
        wh: ``[N, 2]`` box (width, height) in the model's input pixels (after the
            resize; see :class:`~autoanchor.grid.anchors.ResizeRule`). Any device.
        xy: ``[N, 2]`` box centres in input pixels, or None when unknown (then each
            box is placed at a fixed lattice of offsets within the coarsest cell).
        start: the generator whose structure is kept (levels, strides, sizes and
            ratios per level, shared ratios).
        threshold: the detector's foreground IoU threshold, in ``(0, 1]``.
        seed: seeds a fresh ``torch.Generator`` when ``generator`` is None.
        generator: source of every random draw (position subsets, kicks).
        iou_weight: weight of the mean best IoU next to the share matched.
        bins_per_octave: size bins per factor of 2 when pooling.
        positions_per_pool: positions scored per size bin.
        kicks: random restarts from the best point found.
        kick_scale: standard deviation of a kick, in log2 units.
        coarse_factor: the climb and the kicks run on a coarser pool
            (``bins_per_octave`` and ``positions_per_pool`` divided by this), then the
            best point is polished on the full pool at the finest step; 1 searches on
            the full pool throughout.
        level_order: keep the levels in scale order (see :class:`LevelRules`):
            every size of a level above every size of the levels of smaller stride.
        min_stride_units, max_stride_units: bounds on every size of a level, in
            strides of that level (None: unbounded).
        extent: ``[N, 2]`` padded input (width, height) of each box's image, with
            ``xy``: boxes are then scored at their real centres on their image's real
            grid (:func:`~autoanchor.grid.matching.level_grid`), as the figures are
            measured, instead of at their centres modulo the grid's period.

    Returns:
        FitResult; ``generator`` equals ``start`` (rounded) if nothing scored higher.

    Raises:
        ValueError: on bad shapes, non-positive sizes, a bad threshold or settings.
    """
    threshold = _check_threshold(threshold)
    if not isinstance(start, GridAnchors):
        raise TypeError(f"start must be a GridAnchors, got {type(start).__name__}")
    wh = torch.as_tensor(wh)
    if wh.dim() != 2 or wh.shape[1] != 2 or wh.shape[0] == 0:
        raise ValueError(f"wh must be [N, 2] with N >= 1, got shape {tuple(wh.shape)}")
    if not torch.isfinite(wh).all() or (wh <= 0).any():
        bad = int(torch.nonzero(~torch.isfinite(wh).all(1) | (wh <= 0).any(1))[0])
        raise ValueError(f"box {bad} has size {wh[bad].tolist()}; sizes must be finite and positive")
    if xy is not None:
        xy = torch.as_tensor(xy, device=wh.device)
        if xy.shape != wh.shape or not torch.isfinite(xy).all():
            raise ValueError(f"xy must be finite and [{wh.shape[0]}, 2] like wh, got shape {tuple(xy.shape)}")
    if extent is not None:
        extent = torch.as_tensor(extent, device=wh.device)
        if xy is None or extent.shape != wh.shape or not (extent > 0).all():
            raise ValueError(
                f"extent needs xy and must be positive and [{wh.shape[0]}, 2] like wh, got shape {tuple(extent.shape)}"
            )
    iou_weight = check_float("iou_weight", iou_weight, low=0)
    kicks = check_int("kicks", kicks, low=0)
    coarse_factor = check_int("coarse_factor", coarse_factor, low=1)
    seed = check_seed("seed", seed)
    if not isinstance(level_order, bool):
        raise TypeError(f"level_order must be True or False, got {level_order!r}")
    rules = LevelRules(start.strides, level_order, min_stride_units, max_stride_units)
    rules.project([list(level) for level in start.sizes])  # raises when no sizes keep the rules
    if generator is None:
        generator = torch.Generator().manual_seed(seed)

    with _one_cpu_thread(wh.device):
        return _fit(
            wh, xy, start, threshold, generator, iou_weight, bins_per_octave, positions_per_pool, kicks, kick_scale,
            coarse_factor, rules, extent,
        )


def _fit(
    wh, xy, start, threshold, generator, iou_weight, bins_per_octave, positions_per_pool, kicks, kick_scale,
    coarse_factor, rules, extent,
) -> FitResult:
    samples = pool_samples(
        wh, xy, start.cell, bins_per_octave=bins_per_octave, positions_per_pool=positions_per_pool,
        generator=generator, extent=extent,
    )
    scorer = _Scorer(samples, start.strides, threshold, iou_weight)
    device = samples.wh.device
    shared = start.shared_ratios
    given_sizes = [torch.log2(torch.tensor(s, dtype=torch.float64, device=device)) for s in start.sizes]
    given_ratios = [torch.log2(torch.tensor(r, dtype=torch.float64, device=device)) for r in start.aspect_ratios]
    total = float(wh.shape[0])
    before, fitness_before = _pooled_stats(scorer, start, total)

    quantile_sizes = _project_log(_quantile_start(samples, start), rules)
    quantile_fitness = _pooled_stats(scorer, _to_generator(quantile_sizes, given_ratios, start.strides), total)[1]
    given_fitness = fitness_before
    if not rules.keeps(_pixels(given_sizes)):
        given_sizes = _project_log(given_sizes, rules)
        given_fitness = _pooled_stats(scorer, _to_generator(given_sizes, given_ratios, start.strides), total)[1]
    first = quantile_sizes if quantile_fitness > given_fitness else given_sizes
    explore = scorer
    if coarse_factor > 1:
        coarse = pool_samples(
            wh, xy, start.cell, bins_per_octave=max(1, bins_per_octave // coarse_factor),
            positions_per_pool=max(1, positions_per_pool // coarse_factor), generator=generator, extent=extent,
        )
        if coarse.wh.shape[0] < samples.wh.shape[0]:
            explore = _Scorer(coarse, start.strides, threshold, iou_weight)
    # The search (climb, then seeded kicks) runs without the level order: moves of one size at a
    # time cannot carry a level past its neighbour, so under the order it stalls early.
    free = LevelRules(rules.strides, False, rules.min_stride_units, rules.max_stride_units)
    best_sizes, best_ratios, best_fitness = _climb(
        explore, [s.clone() for s in first], [r.clone() for r in given_ratios], shared, _STEPS, free
    )
    logger.debug("climb reached fitness %.5f", best_fitness)
    for kick in range(kicks):
        noise_sizes = _project_log([
            s + kick_scale * torch.randn(s.shape, generator=generator, dtype=torch.float64).to(device)
            for s in best_sizes
        ], free)
        ratio_noise = [
            kick_scale * torch.randn(r.shape, generator=generator, dtype=torch.float64).to(device) for r in best_ratios
        ]
        if shared:
            ratio_noise = [ratio_noise[0]] * len(ratio_noise)
        noise_ratios = [r + n for r, n in zip(best_ratios, ratio_noise)]
        sizes, ratios, fitness = _climb(explore, noise_sizes, noise_ratios, shared, _STEPS[1:], free)
        logger.debug("kick %d reached fitness %.5f (best %.5f)", kick, fitness, best_fitness)
        if fitness > best_fitness:
            best_sizes, best_ratios, best_fitness = sizes, ratios, fitness
    if rules.level_order:
        # Under the order: the free result's sizes dealt out again in stride order (itself when it
        # keeps the order), and the ordered start, each climbed under the order; the better one wins.
        best_sizes, best_ratios, best_fitness = _climb(
            explore, _project_log(best_sizes, rules), best_ratios, shared, _STEPS[1:], rules
        )
        sizes, ratios, fitness = _climb(
            explore, [s.clone() for s in first], [r.clone() for r in given_ratios], shared, _STEPS, rules
        )
        logger.debug("under the level order: %.5f from the free search, %.5f from the start", best_fitness, fitness)
        if fitness > best_fitness:
            best_sizes, best_ratios, best_fitness = sizes, ratios, fitness
    if explore is not scorer:
        # Polish on the fine pool: the finest steps only, from the best point of the coarse search.
        best_sizes, best_ratios, best_fitness = _climb(scorer, best_sizes, best_ratios, shared, _POLISH_STEPS, rules)
        logger.debug("polish on %d rows reached fitness %.5f", samples.wh.shape[0], best_fitness)

    fitted = _to_generator(best_sizes, best_ratios, start.strides)
    after, fitness_after = _pooled_stats(scorer, fitted, total)
    if fitness_after <= fitness_before:
        fitted, after, fitness_after = start, before, fitness_before
    logger.debug("search proxy: %s -> %s (%d pooled rows)", before, after, samples.wh.shape[0])
    return FitResult(fitted, start, before, after, fitness_before, fitness_after, int(samples.wh.shape[0]))
