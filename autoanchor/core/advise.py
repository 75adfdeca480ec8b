"""How many levels and anchors a dataset needs: a sweep of configurations and a recommendation.

:func:`advise` searches anchors for a range of anchor counts, splits each result
into the levels of a few level sets (yolov5's P3-P5, P2-P5 with a stride-4 level
for small objects, P3-P6 with a stride-64 level for large ones), and tabulates
fitness, best possible recall and how the anchors sit on each level. It then
recommends the smallest configuration whose fitness is within ``margin`` of the
best, and notes when many boxes are smaller than the finest stride.

Fitness grows with every anchor added (a 15-anchor set fits better than a
9-anchor one), so the margin is what trades fit against size: with the default
10 %, coco128 and VOC 2012 both get yolov5's 9 anchors on P3-P5 (8 % and 6 % below
the fitness of 15 anchors; 6 anchors are 14 % and 12 % below it).
"Smallest" means, in this order: the fewest anchors under one stride of their
level (such anchors are smaller than the grid cell they predict on), the fewest
levels (an extra level is a different head, a P2 level a much larger one), the
fewest anchors.
:func:`format_advice` turns the result into text lines (the CLI prints them).

Counts and level sets: a level set of ``nl`` levels takes only the counts that
are multiples of ``nl`` (every level holds the same number of anchors, as in
yolov5's heads). With the default counts 3 to 15, P3-P5 gets 3, 6, 9, 12 and 15
anchors (1 to 5 per level) and the 4-level sets get 4, 8 and 12 (1 to 3 per
level).

Unbounded (the default), a count's anchors do not depend on the level set: each
count is searched once and its anchors are split by area into the levels of
every set that takes that count, as yolov5 assigns them. With
``min_stride_units`` (or ``max_stride_units``) the search keeps every anchor
within those many strides of its level, so each (level set, count) is searched
with that set's strides.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor

from .defaults import DEFAULT_GEN, DEFAULT_IMGSZ, DEFAULT_SEED, DEFAULT_THR
from .boxes import BoxSizes, searchable_mask
from .jitter import jitter_wh, scale_jittered_wh
from .levels import LevelStats, anchors_below_stride, level_name, level_stats, split_levels
from .metrics import check_thr, check_wh
from .search import has_distinct, search_anchors
from .validate import check_float, check_int, check_scale, check_seed, check_stride_units, is_integer, is_number

__all__ = ["LEVEL_SETS", "AdviceRow", "Advice", "advise", "format_advice"]

logger = logging.getLogger(__name__)

LEVEL_SETS: dict[str, tuple[int, ...]] = {
    "P3-P5": (8, 16, 32),
    "P2-P5": (4, 8, 16, 32),
    "P3-P6": (8, 16, 32, 64),
}
"""The level sets compared by default: name -> strides in pixels, finest first."""

SMALL_SHARE = 0.10
"""Share of boxes under the finest stride from which :func:`advise` suggests a finer level."""

SWEEP_GEN = 100
"""Generations of evolution per count in the sweep. The search's later stages (climbs and
relocation hops) do most of its work: on coco128 and VOC, 100 generations reach the fitness of
1000 within 0.001 for 3 to 15 anchors. The recommended configuration is searched again in full."""

_SWEEP_HOPS = 12
"""Relocation hops per count in the sweep (48 in a full search): on coco128 this halves a
sweep search's time and lowered no fitness by more than 0.002 (of about 0.7)."""

_SWEEP_CHAINS = 1
"""Chains per count in the sweep (a full search on at most ``fine_points`` boxes runs two, see
:attr:`~autoanchor.core.settings.SearchSettings.chains`): the second chain narrows the spread between
seeds to well under the margins the sweep compares, at twice the time."""

_SWEEP_GROWS = 0
"""Grow-and-thin kicks per count in the sweep (a full search on more than ``fine_points`` boxes runs
:data:`~autoanchor.core.settings.MANY_BOX_GROWS_PER_ANCHOR` per anchor): like the second chain, they
narrow the spread between seeds to well under the margins the sweep compares."""

Data = Union[Tensor, BoxSizes]


@dataclass(frozen=True, eq=False)
class AdviceRow:
    """One configuration: a level set with a number of anchors per level."""

    levels: str
    """The level set's name, e.g. ``"P3-P5"``."""
    strides: tuple[float, ...]
    """Its strides in pixels, finest first."""
    per_level: int
    """Anchors per level."""
    fitness: float
    """yolov5 fitness of all the anchors on all the boxes."""
    bpr: float
    """Best possible recall of all the anchors."""
    level_stats: tuple[LevelStats, ...]
    """Per-level figures (see :func:`~autoanchor.core.levels.level_stats`)."""
    below_stride: int
    """How many anchors are smaller than one stride of their level."""

    @property
    def n_anchors(self) -> int:
        """Anchors in all: levels times anchors per level."""
        return len(self.strides) * self.per_level

    @property
    def anchors(self) -> Tensor:
        """Tensor[nl, per_level, 2]: the anchors in pixels, level by level."""
        return torch.stack([level.anchors for level in self.level_stats])

    @property
    def spread(self) -> list[tuple[float, float]]:
        """Per level, the smallest and largest anchor size in strides of that level."""
        return [(float(s.size_in_strides.min()), float(s.size_in_strides.max())) for s in self.level_stats]


@dataclass(frozen=True, eq=False)
class Advice:
    """What :func:`advise` found."""

    rows: tuple[AdviceRow, ...]
    """Every configuration of the sweep, by level set then count."""
    recommended: AdviceRow
    """The recommended configuration, its anchors from a full search."""
    margin: float
    """Relative fitness margin: a row qualifies when ``fitness >= (1 - margin) * best``."""
    best_fitness: float
    """The highest fitness of the sweep."""
    warnings: tuple[str, ...]
    """Notes the user can act on (too many boxes under the finest stride, ...)."""
    n_boxes: int
    """Boxes measured."""
    thr: float
    """The ratio threshold used (yolov5's ``anchor_t``)."""


def _check_level_sets(level_sets: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, ...]]:
    if not isinstance(level_sets, Mapping) or not level_sets:
        raise ValueError(f"level_sets must be a non-empty mapping of name -> strides, got {level_sets!r}")
    checked = {}
    for name, strides in level_sets.items():
        if (
            isinstance(strides, (str, bytes))
            or not isinstance(strides, Sequence)
            or not strides
            or not all(is_number(s) and math.isfinite(s) and s > 0 for s in strides)
        ):
            raise ValueError(f"level set {name!r} must be a non-empty sequence of positive strides, got {strides!r}")
        if list(strides) != sorted(strides) or len(set(strides)) != len(strides):
            raise ValueError(f"level set {name!r} must list distinct strides finest first, got {list(strides)}")
        checked[str(name)] = tuple(float(s) for s in strides)
    return checked


def _check_counts(counts: Iterable[int]) -> list[int]:
    values = list(counts)
    if not values or not all(is_integer(c) and c >= 1 for c in values):
        raise ValueError(f"counts must be positive integers, got {values!r}")
    return sorted({int(c) for c in values})


def _box_sizes(data: Data, img_size: float, scale: float | None, seed: int) -> Tensor:
    if isinstance(data, BoxSizes):
        if scale is None:
            return data.pixel_wh(img_size)
        return scale_jittered_wh(data, img_size, scale=scale, seed=seed)
    if not isinstance(data, Tensor):
        raise TypeError(f"data must be a BoxSizes or a Tensor[N, 2] of pixel sizes, got {type(data).__name__}")
    check_wh(data, "data")
    return data if scale is None else jitter_wh(data, scale=scale, seed=seed)


def _row(name: str, strides: tuple[float, ...], anchors: Tensor, wh: Tensor, thr: float, fitness: float,
         bpr: float) -> AdviceRow:
    levels = split_levels(anchors, len(strides))  # [nl,na,2]
    return AdviceRow(
        levels=name,
        strides=strides,
        per_level=levels.shape[1],
        fitness=fitness,
        bpr=bpr,
        level_stats=tuple(level_stats(wh, levels, strides, thr=thr)),
        below_stride=len(anchors_below_stride(levels, strides)),
    )


def _small_box_warnings(wh: Tensor, finest: float) -> list[str]:
    """Suggest a finer level when many boxes have a long side under the finest stride."""
    share = float((wh.amax(1) < finest).double().mean())
    if share < SMALL_SHARE:
        return []
    finer = finest / 2
    return [
        f"{share:.0%} of boxes are under {finest:g} px (long side), the finest stride: "
        f"add a {level_name(finer)} level, stride {finer:g}"
    ]


def advise(
    data: Data,
    *,
    img_size: float = DEFAULT_IMGSZ,
    counts: Iterable[int] = range(3, 16),
    level_sets: Mapping[str, Sequence[float]] = LEVEL_SETS,
    thr: float = DEFAULT_THR,
    seed: int = DEFAULT_SEED,
    margin: float = 0.1,
    scale: float | None = None,
    sweep_gen: int = SWEEP_GEN,
    gen: int = DEFAULT_GEN,
    min_stride_units: float | None = None,
    max_stride_units: float | None = None,
) -> Advice:
    """Compare anchor counts and level sets on a dataset and recommend one.

    For every count in ``counts`` that some level set can split evenly, anchors
    are searched once (``sweep_gen`` generations); each level set that takes the
    count gets a row with the anchors split by area into its levels. The
    recommendation is the smallest qualifying row (fitness at least
    ``(1 - margin)`` times the best): the fewest anchors under one stride of their
    level, then the fewest levels, then the fewest anchors, then the first level
    set. Its anchors are then searched again with ``gen`` generations, and the
    new ones kept if at least as fit with no more anchors under one stride.

    Small boxes: when at least 10 % of the boxes have a long side under the finest
    stride of the first level set, :attr:`Advice.warnings` suggests a level of
    half that stride ("62% of boxes are under 8 px (long side), the finest
    stride: add a P2 level, stride 4"). The notes are returned, not warned: the
    advice is the result.

    Args:
        data: a :class:`~autoanchor.core.boxes.BoxSizes` (letterboxed to ``img_size``)
            or box sizes ``Tensor[N, 2]`` already in pixels (``img_size`` unused).
        img_size: training image size in pixels (long side).
        counts: anchor counts to try; a level set of ``nl`` levels takes the
            multiples of ``nl`` among them.
        level_sets: name -> strides in pixels, finest first. The first set is the
            baseline the small-box note refers to (its finest stride).
        thr: largest allowed side ratio (yolov5's ``anchor_t``).
        seed: seeds every search (and the scale draws).
        margin: relative fitness margin, in [0, 1): 0.1 accepts rows with at
            least 90 % of the best fitness of the sweep.
        scale: yolov5's ``hyp['scale']``: when given, the sizes are pooled over
            seeded draws of the training-time scale (see :mod:`autoanchor.core.jitter`).
        sweep_gen: generations per count in the sweep (see :data:`SWEEP_GEN`).
        gen: generations of the final search of the recommended configuration.
        min_stride_units, max_stride_units: bounds on every anchor's size
            ``sqrt(w * h)`` in strides of its level, kept by each search (see
            :func:`~autoanchor.core.search.search_anchors`); ``None`` (default): unbounded.

    Returns:
        An :class:`Advice`; :func:`format_advice` renders it.

    Raises:
        ValueError: for bad options (naming them), no count that any level set
            can split evenly, or no boxes (from the search).
        TypeError: if ``data`` is neither a BoxSizes nor a floating-point tensor.

    Example:
        >>> from autoanchor import load_boxes
        >>> advice = advise(load_boxes(None), img_size=640)  # doctest: +SKIP
        >>> print("\\n".join(format_advice(advice)))  # doctest: +SKIP
    """
    thr = check_thr(thr)
    sets = _check_level_sets(level_sets)
    count_values = _check_counts(counts)
    margin = check_float("margin", margin, low=0, high=1, high_open=True, what="(a relative fitness margin)")
    seed = check_seed("seed", seed)
    scale = check_scale(scale, optional=True)
    sweep_gen, gen = check_int("sweep_gen", sweep_gen, low=0), check_int("gen", gen, low=0)
    min_stride_units, max_stride_units = check_stride_units(min_stride_units, max_stride_units)
    wh = _box_sizes(data, img_size, scale, seed)
    plan = [(name, strides, n) for name, strides in sets.items() for n in count_values if n % len(strides) == 0]
    if not plan:
        raise ValueError(
            f"no count in {count_values} is a multiple of the levels of any level set "
            f"({', '.join(f'{name}: {len(s)}' for name, s in sets.items())})"
        )
    plan_max = max(n for _, _, n in plan)
    kept = wh[searchable_mask(wh)] if wh.shape[0] else wh
    if not has_distinct(kept, plan_max):  # checked before any search, which would refuse it only on reaching it
        distinct = int(torch.unique(kept, dim=0).shape[0]) if kept.shape[0] else 0
        raise ValueError(
            f"counts up to {plan_max} anchors, but the {kept.shape[0]} searchable boxes have only {distinct} "
            f"distinct sizes: no more than {distinct} anchors can differ; give counts of at most {distinct}"
        )

    bounded = min_stride_units is not None or max_stride_units is not None

    def bounds(strides: tuple[float, ...]) -> dict:
        if not bounded:
            return {}
        return {"strides": strides, "min_stride_units": min_stride_units, "max_stride_units": max_stride_units}

    def key(strides: tuple[float, ...], n: int) -> tuple:
        return (strides if bounded else None, n)  # unbounded, a count's search serves every level set

    searched = {}
    for name, strides, n in plan:
        if key(strides, n) in searched:
            continue
        result = search_anchors(
            wh, n, thr=thr, gen=sweep_gen, hops=_SWEEP_HOPS, chains=_SWEEP_CHAINS, grows=_SWEEP_GROWS, seed=seed,
            **bounds(strides),
        )
        searched[key(strides, n)] = result
        logger.info("advise: %d anchors, fitness %.4f, BPR %.4f", n, result.stats.fitness, result.stats.bpr)
    # level_stats counts every box (also those under 2 px, which the search leaves out), as yolov5's
    # check does; fitness and BPR are the search's, on the boxes it kept.
    rows = tuple(
        _row(name, strides, found.anchors, wh, thr, found.stats.fitness, found.stats.bpr)
        for name, strides, n in plan
        for found in (searched[key(strides, n)],)
    )
    best_fitness = max(row.fitness for row in rows)
    qualifying = [row for row in rows if row.fitness >= (1 - margin) * best_fitness]
    order = list(sets)
    choice = min(
        qualifying, key=lambda row: (row.below_stride, len(row.strides), row.n_anchors, order.index(row.levels))
    )
    final = search_anchors(wh, choice.n_anchors, thr=thr, gen=gen, seed=seed, **bounds(choice.strides))
    full = _row(choice.levels, choice.strides, final.anchors, wh, thr, final.stats.fitness, final.stats.bpr)
    if full.fitness >= choice.fitness and full.below_stride <= choice.below_stride:  # as chosen, or better
        choice = full
    notes = _small_box_warnings(wh, next(iter(sets.values()))[0])
    if choice.below_stride:
        notes.append(
            f"{choice.below_stride} of the recommended anchors are under one stride of their level "
            "(see the per-level sizes)"
        )
    return Advice(
        rows=rows,
        recommended=choice,
        margin=float(margin),
        best_fitness=best_fitness,
        warnings=tuple(notes),
        n_boxes=int(wh.shape[0]),
        thr=thr,
    )


def format_advice(advice: Advice) -> list[str]:
    """The advice as text lines: the table, the recommendation with its anchors, the notes.

    Columns: level set, anchors (levels x per level), fitness, BPR, anchors
    under one stride, each level's anchor sizes in strides (smallest-largest),
    and each level's share of boxes whose best anchor it holds.
    """
    header = ("levels", "anchors", "fitness", "BPR", "<1 stride", "size in strides per level", "best share")
    table = []
    for row in advice.rows:
        sizes = "  ".join(f"{s.name} {lo:.1f}-{hi:.1f}" for s, (lo, hi) in zip(row.level_stats, row.spread))
        shares = "/".join(f"{s.best:.0%}" for s in row.level_stats)
        mark = "*" if row is advice.recommended or _same_config(row, advice.recommended) else " "
        table.append((
            f"{mark}{row.levels}", f"{row.n_anchors} ({len(row.strides)}x{row.per_level})", f"{row.fitness:.4f}",
            f"{row.bpr:.4f}", str(row.below_stride), sizes, shares,
        ))
    widths = [max(len(cells[i]) for cells in [(" " + header[0],) + header[1:]] + table) for i in range(len(header))]
    right = {1, 2, 3, 4}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines = [line((" " + header[0],) + header[1:])] + [line(cells) for cells in table]
    chosen = advice.recommended
    lines.append("")
    lines.append(
        f"recommended: {chosen.levels} with {chosen.n_anchors} anchors ({chosen.per_level} per level), "
        f"fitness {chosen.fitness:.4f}, BPR {chosen.bpr:.4f} (full search): the smallest configuration within "
        f"{advice.margin:.0%} of the best fitness ({advice.best_fitness:.4f})"
    )
    for stats in chosen.level_stats:
        anchors = ", ".join(f"{w:.0f},{h:.0f}" for w, h in stats.anchors.tolist())
        lines.append(f"  {stats.name} (stride {stats.stride:g}): {anchors}")
    lines.extend(f"note: {text}" for text in advice.warnings)
    return lines


def _same_config(a: AdviceRow, b: AdviceRow) -> bool:
    return a.levels == b.levels and a.per_level == b.per_level
