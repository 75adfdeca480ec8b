"""The anchor search: k-means start, evolution, polish, on any device, reproducibly.

:func:`search_anchors` works on box sizes in pixels; its options are one
:class:`~autoanchor.core.settings.SearchSettings`. (The drop-in that takes a dataset,
:func:`~autoanchor.training.dropins.kmean_anchors`, sits in :mod:`autoanchor.training.dropins`: the
search core never reads files.) The stages, their numbers and why the cost hardly grows with
the number of boxes (pooling in log space): ``docs/search.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._warn import warn
from .blocks import SizeBlocks, pool_blocks, pool_sizes, stats_over
from .boxes import MIN_BOX_PX, searchable_mask
from .differential import differential_evolution
from .evolve import Projection, evolve
from .jitter import DEFAULT_DRAWS, jitter_blocks
from .kmeans import kmeans_starts
from .levels import clamp_to_strides, stride_bounds
from .metrics import AnchorStats, check_wh
from .objectives import Objective, objective_class
from .parallel import LocalReducer, Reducer
from .crossover import crossover, regrow
from .defaults import DEFAULT_N
from .pairs import pair_moves
from .polish import polish
from .settings import _FINE_CELL, _FINE_CLIMB, _GROW_ADDED, _HOP_MIN_STEP, _KICK_SIZE, _MIDDLE_CLIMB
from .settings import SearchSettings, cpu_threads
from .validate import check_int

__all__ = ["SearchResult", "search_anchors", "pool_sizes"]

logger = logging.getLogger(__name__)

# Boxes with a side under this many pixels are counted in a warning.
_SMALL_BOX_PX = 3.0


@dataclass(frozen=True)
class SearchResult:
    """What :func:`search_anchors` found.

    All figures are measured on every searched box (not on the pooled points).
    """

    anchors: Tensor
    """Tensor[n, 2] float32 anchor (width, height) in pixels, sorted by area."""
    stats: AnchorStats
    """Fitness, BPR, anchors/target and Avg IoU of :attr:`anchors`."""
    start_stats: AnchorStats
    """The same figures for the k-means start."""
    metric: str
    """What was maximised: the objective's name, ``"ratio"`` (yolov5 fitness) or ``"iou"`` (Avg IoU)."""
    n_boxes: int
    """Boxes searched: all boxes but those with both sides under 2 px."""
    n_small: int
    """Boxes with a side under 3 px."""

    @property
    def objective(self) -> float:
        """The maximised figure, e.g. :attr:`stats` ``.fitness`` or ``.avg_iou``."""
        return objective_class(self.metric).figure(self.stats)


def _gather_pools(points: Tensor, weights: Tensor, reducer: Reducer) -> tuple[Tensor, Tensor]:
    """Every process's pools, merged, identical on every process."""
    if reducer.world_size == 1:
        return points, weights
    gathered = reducer.gather(torch.cat([points.double(), weights[:, None]], 1))
    return pool_sizes(gathered[:, :2].to(points.dtype), gathered[:, 2])


class _Bar:
    """A tqdm bar over generations that reads the fitness back only now and then."""

    def __init__(self, total: int, desc: str, enabled: bool, label: str = "fitness", every: int = 25) -> None:
        self.every, self.label = every, label
        self.bar = None
        if enabled and total > 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False)

    def __call__(self, generation: int, fitness: Tensor) -> None:
        if self.bar is None:
            return
        if generation % self.every == 0 or generation + 1 == self.bar.total:
            self.bar.set_postfix_str(f"{self.label}={float(fitness):.4f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def search_anchors(
    wh: Tensor,
    n: int = DEFAULT_N,
    *,
    settings: SearchSettings | None = None,
    reducer: Reducer | None = None,
    progress: bool = False,
    **options: Any,
) -> SearchResult:
    """Find ``n`` anchors that fit the box sizes ``wh``.

    k-means++ starts on pooled sizes, then ``gen`` generations of evolution, then climbs,
    relocation hops and split-and-merge kicks, with two chains crossed when there are few
    boxes and grow-and-thin kicks when there are many, last climbs on finer poolings and
    moves of two neighbouring anchors at once;
    ``docs/search.md`` describes each stage and its numbers. Every figure in the result is
    measured on all kept boxes (both sides of at least 2 px), and the result is never less fit
    than the k-means start.

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels of the letterboxed
            training image. With a ``reducer``, this process's share of the boxes.
        n: number of anchors.
        settings: the search's options as one object; the keyword ``options``
            replace its fields (or the defaults' when it is omitted).
        reducer: combines the work of several processes (see
            :mod:`autoanchor.core.parallel`); every process must pass the same options
            and seed, and gets the same result.
        progress: show a progress bar over the generations.
        **options: any field of :class:`~autoanchor.core.settings.SearchSettings`
            (``thr``, ``gen``, ``metric``, ``method``, ``seed``, ``strides``,
            ``min_stride_units``, ``max_stride_units``, ``scale``, ...), documented there.

    Returns:
        A :class:`SearchResult` with the anchors sorted by area.

    Raises:
        ValueError: for empty, non-finite or negative sizes, no box of at least
            2 px, sizes on the meta device, an invalid option (the message names it and
            the value; see :mod:`autoanchor.core.validate`), or ``n`` not a multiple of the
            number of ``strides``.
        TypeError: if ``wh`` is not a floating-point tensor, for an option of the wrong
            type, or for an unknown option.

    Example:
        >>> from autoanchor import load_boxes
        >>> wh = load_boxes(None).pixel_wh(640)
        >>> result = search_anchors(wh, 9, seed=0)
        >>> result.anchors.shape, round(result.stats.bpr, 3)  # doctest: +SKIP
        (torch.Size([9, 2]), 0.996)
    """
    n = check_int("n", n, low=1)
    settings = SearchSettings.from_options(settings, **options)
    settings.check_levels(n)
    reducer = reducer if reducer is not None else LocalReducer()
    rows = _rows(wh, settings)
    kept, n_boxes, n_small = _searchable(rows, reducer)
    _check_supported(kept, n, n_boxes, reducer)
    objective = settings.objective
    thr = settings.thr
    evolve_cell, coarse_cell, middle_cell = settings.cells_for()

    device = rows.device
    generator = torch.Generator(device=device).manual_seed(settings.seed)

    # Pool finely, then ever coarser; every process ends up with the same pools.
    fine_cell = 0.0 if settings.few_boxes(n_boxes) else _FINE_CELL
    fine_set = _gather_pools(*pool_blocks(kept, cell=fine_cell), reducer)
    cell = _FINE_CELL
    while fine_set[0].shape[0] > settings.fine_points:
        fine_set = pool_sizes(*fine_set, cell=cell)
        fine_cell, cell = cell, cell * 2
    # Many distinct sizes can leave the fine pooling as coarse as the middle one: then it is the middle one.
    fine_is_middle = fine_cell >= middle_cell
    middle_set = fine_set if fine_is_middle else pool_sizes(*fine_set, cell=middle_cell)
    coarse_set = pool_sizes(*middle_set, cell=coarse_cell)
    evolve_set = pool_sizes(*coarse_set, cell=evolve_cell)
    # The pools are small and the same on every process, so every process searches them in full:
    # the same seed gives the same anchors everywhere, with no collective per generation or step.
    # Only the work that grows with the boxes (pooling them, measuring the result) is split.
    coarse, middle = (objective(*pools, thr=thr) for pools in (coarse_set, middle_set))

    bounds, project = _stride_bounds(settings, n, device)

    chains = settings.chains_for(n_boxes)
    kick_patience = settings.kick_patience_for(n_boxes)
    hops, grows = settings.hops_for(n_boxes), settings.grows_for(n_boxes, n)
    middle_grows = settings.middle_grows_for(n)
    with cpu_threads(settings.threads, device):
        # Stages 3-5 once per chain, drawing one after another from the same generator: the first
        # chain is exactly a one-chain search. Then the fittest chain is crossed with each other one.
        runs = [  # (k-means start, polished anchors, coarse fitness) per chain
            _chain(
                objective, coarse_set, evolve_set, coarse, middle, n, settings, hops, kick_patience, generator,
                progress, project, bounds, label=f" (chain {chain + 1} of {chains})" if chains > 1 else "",
            )
            for chain in range(chains)
        ]
        start = runs[0][0]
        runs.sort(key=lambda run: -float(run[2]))  # fittest first; a stable sort keeps ties in chain order
        best = runs[0][1]
        for _, other, _ in runs[1:]:
            best, _ = crossover(coarse, best, other, min_step=_HOP_MIN_STEP, bounds=bounds)
        if grows:
            best = _regrow(coarse, middle, best, grows, middle_grows, generator, bounds)
        best, _ = polish(middle, best, step=_MIDDLE_CLIMB[0], min_step=_MIDDLE_CLIMB[1], bounds=bounds)
        fine = middle if fine_is_middle else objective(*fine_set, thr=thr)
        if not fine_is_middle:
            best, _ = polish(fine, best, step=_FINE_CLIMB[0], min_step=_FINE_CLIMB[1], bounds=bounds)
        candidates = [start, best]
        if settings.pairs:  # stage 9: neighbouring anchors moved together, then the last climb again
            moved, _ = pair_moves(fine, best, near=settings.pairs, bounds=bounds)
            if not torch.equal(moved, best):
                moved, _ = polish(fine, moved, step=_FINE_CLIMB[0], min_step=_FINE_CLIMB[1], bounds=bounds)
                candidates.append(moved)

    # Pooling can mislead: judged on every box, the last stage's move is kept only if it gains, and
    # the result is never worse than the k-means start (all in one pass over the boxes).
    measured = stats_over(kept, torch.stack(candidates), thr=thr, reducer=reducer)
    start_stats = measured[0]
    figures = [objective.figure(stats) for stats in measured]
    chosen = len(figures) - 1 if figures[-1] > figures[1] else 1
    if figures[chosen] < figures[0]:
        chosen = 0
    best, stats = candidates[chosen], measured[chosen]
    order = best.prod(-1).argsort()
    return SearchResult(
        anchors=best[order].float(),
        stats=stats,
        start_stats=start_stats,
        metric=objective.name,
        n_boxes=n_boxes,
        n_small=n_small,
    )


def _chain(
    objective: type[Objective],
    coarse_set: tuple[Tensor, Tensor],
    evolve_set: tuple[Tensor, Tensor],
    coarse: Objective,
    middle: Objective,
    n: int,
    settings: SearchSettings,
    hops: int,
    kick_patience: int,
    generator: torch.Generator,
    progress: bool,
    project: Projection | None,
    bounds: tuple[Tensor, Tensor] | None,
    label: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """Stages 3-5 once: ``(k-means start [n, 2], polished anchors [n, 2], their coarse fitness [])``."""
    candidates = kmeans_starts(
        coarse_set[0], n, weights=coarse_set[1], distance=objective.kmeans_distance,
        update=objective.kmeans_update, restarts=settings.starts, iters=settings.kmeans_iters,
        generator=generator,
    )  # [starts,n,2]
    if project is not None:
        candidates = project(candidates)
    start = candidates[middle(candidates).argmax()]
    best = _evolve(objective(*evolve_set, thr=settings.thr), start, settings, generator, progress, project, label)
    if project is not None:  # the evolution ends in log space: undo an ulp's drift past a bound
        best = project(best)
    # Steps much finer than a pooling's cells only chase its rounding: each stage stops near them.
    best, fitness = polish(
        coarse, best, relocations=settings.relocations, tries=settings.tries, patience=settings.patience,
        hops=hops, kicks=settings.kicks, kick_size=_KICK_SIZE, kick_patience=kick_patience,
        min_step=_HOP_MIN_STEP, hop_min_step=_HOP_MIN_STEP, generator=generator, bounds=bounds,
    )
    return start, best, fitness


def _regrow(
    coarse: Objective,
    middle: Objective,
    anchors: Tensor,
    grows: int,
    middle_grows: int,
    generator: torch.Generator,
    bounds: tuple[Tensor, Tensor] | None,
) -> Tensor:
    """Stage 7, grow-and-thin kicks: ``grows`` on the coarse pooling; if any gained, ``middle_grows`` judged on
    the middle one (grown and thinned on the coarse one), where the optima they leave can differ."""
    kicked, _ = regrow(
        coarse, anchors, grows=grows, most_added=_GROW_ADDED, min_step=_HOP_MIN_STEP, generator=generator,
        bounds=bounds,
    )
    if torch.equal(kicked, anchors):  # no kick gained: the optimum does not move this way, finer kicks would not pay
        return anchors
    kicked, _ = regrow(
        middle, kicked, grows=middle_grows, most_added=_GROW_ADDED, min_step=_HOP_MIN_STEP, generator=generator,
        bounds=bounds, rough=coarse,
    )
    return kicked


def has_distinct(wh: Tensor, n: int) -> bool:
    """Whether the rows of ``wh [N, 2]`` hold at least ``n`` distinct sizes.

    Counted on ever longer prefixes: real data shows ``n`` distinct sizes in its first few boxes,
    so the check costs next to nothing; only data with few distinct sizes is counted in full.
    """
    rows = min(wh.shape[0], max(1024, 4 * n))
    while n <= wh.shape[0]:
        if torch.unique(wh[:rows], dim=0).shape[0] >= n:
            return True
        if rows == wh.shape[0]:
            break
        rows = min(wh.shape[0], 4 * rows)
    return False


def _check_supported(kept: SizeBlocks, n: int, n_boxes: int, reducer: Reducer) -> None:
    """Refuse more anchors than the boxes have distinct sizes: the extra ones could only repeat others
    (and the search's work grows with ``n``)."""
    # Any process's share with n distinct sizes settles it; all must agree on whether to pool.
    if int(reducer.sum(torch.tensor([int(has_distinct(kept.first(), n))], device=kept.device))[0]) > 0:
        return
    distinct = _gather_pools(*pool_blocks(kept, cell=0.0), reducer)[0].shape[0]
    if distinct < n:
        raise ValueError(
            f"n={n} anchors, but the {n_boxes} searchable boxes have only {distinct} distinct sizes: no more than "
            f"{distinct} anchors can differ; ask for at most {distinct}"
        )


def _rows(wh: Tensor | SizeBlocks, settings: SearchSettings) -> SizeBlocks:
    """The rows to search: ``wh`` in blocks, under ``settings.scale``'s draws when it is set."""
    if isinstance(wh, SizeBlocks):
        if settings.scale is not None:
            raise ValueError(
                f"scale={settings.scale} with sizes given as SizeBlocks: give the plain sizes to jitter them, "
                "or blocks already jittered without scale="
            )
        check_wh(wh.wh)
        return wh
    check_wh(wh)
    if settings.scale is None:
        return SizeBlocks(wh)
    # Its own generator from the search's seed: the draws leave the search's stream untouched. Made a
    # draw at a time (the same values as jitter_wh's), so the rows are never all held at once.
    return jitter_blocks(wh, scale=settings.scale, draws=DEFAULT_DRAWS, seed=settings.seed)


def _searchable(rows: SizeBlocks, reducer: Reducer) -> tuple[SizeBlocks, int, int]:
    """Check the sizes' values, warn about small boxes and keep the searchable ones.

    Returns ``(kept: the searchable rows as float32 blocks, rows kept on all processes, rows with a
    side under 3 px)``. Under scale draws every draw's rows count.
    """
    wh = rows.wh
    finite = torch.isfinite(wh).all(1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0])
        raise ValueError(f"box {row} has a non-finite size {wh[row].tolist()}")
    if bool((wh < 0).any()):
        row = int((wh < 0).any(1).nonzero()[0])
        raise ValueError(f"box {row} has a negative size {wh[row].tolist()}")
    local = torch.zeros(3, dtype=torch.long)  # rows, rows with a small side, searchable rows
    for block in rows:
        local += torch.stack(
            [torch.tensor(block.shape[0]), (block < _SMALL_BOX_PX).any(1).sum().cpu(), searchable_mask(block).sum().cpu()]
        )
    counts = reducer.sum(local[:2].to(wh.device))
    total_boxes, n_small = int(counts[0]), int(counts[1])
    if total_boxes == 0:
        raise ValueError("no boxes to search anchors for (wh is empty)")
    if n_small:
        warn(
            f"{n_small} of {total_boxes} boxes have a side under {_SMALL_BOX_PX:g} px; "
            "such small objects are hard to detect"
        )
    kept = rows.where(searchable_mask, dtype=torch.float32)
    n_boxes = int(reducer.sum(local[2:].to(wh.device))[0])
    if n_boxes == 0:
        raise ValueError(f"all {total_boxes} boxes are under {MIN_BOX_PX:g} px on both sides; nothing to search")
    return kept, n_boxes, n_small


def _stride_bounds(
    settings: SearchSettings, n: int, device: torch.device
) -> tuple[tuple[Tensor, Tensor] | None, Projection | None]:
    """The settings' bounds per area rank on the device, and the projection onto them; ``(None, None)`` if none."""
    if not settings.bounded:
        return None, None
    low, high = stride_bounds(
        settings.strides, n, min_units=settings.min_stride_units, max_units=settings.max_stride_units
    )
    low, high = low.to(device), high.to(device)
    return (low, high), lambda anchors: clamp_to_strides(anchors, low, high)


def _evolve(
    objective: Objective,
    start: Tensor,
    settings: SearchSettings,
    generator: torch.Generator,
    progress: bool,
    project: Projection | None = None,
    label: str = "",
) -> Tensor:
    """Stage 4: ``settings.gen`` generations of the settings' method from ``start [K, 2]``."""
    bar = _Bar(settings.gen, f"Evolving {start.shape[0]} anchors{label}", progress, label=objective.label)
    try:
        search = evolve if settings.method == "ga" else differential_evolution
        best, _ = search(
            objective, start, gen=settings.gen, population=settings.population_size, generator=generator,
            progress=bar, project=project,
        )
    finally:
        bar.close()
    return best
