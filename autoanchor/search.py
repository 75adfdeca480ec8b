"""The anchor search: k-means start, evolution, polish, on any device, reproducibly.

:func:`search_anchors` works on box sizes in pixels; :func:`kmean_anchors` is the
drop-in for yolov5's function of the same name, taking a dataset.

How the search stays fast on millions of boxes: box sizes are pooled into cells
of a grid in log space (few boxes are merged only where identical), each pool
standing for its boxes by their weighted mean log size and count. The evolution
runs on the coarsest pooling (a few hundred sizes), k-means and the relocation
hops on a coarse one (about a thousand), the last climbs on finer ones, and the
figures reported are computed on every box. The search's cost therefore hardly
depends on the number of boxes; only letterboxing, pooling and the final figures
grow with it, linearly.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ._format import format_anchors
from ._warn import warn
from .evolve import Objective, differential_evolution, evolve, polish
from .kmeans import kmeans
from .metrics import AnchorStats, Metric, anchor_stats, check_metric, check_thr, check_wh
from .parallel import LocalReducer, Reducer

__all__ = ["SearchResult", "search_anchors", "kmean_anchors", "pool_sizes"]

logger = logging.getLogger(__name__)

Method = Literal["ga", "de"]
METHODS = ("ga", "de")

# Boxes with both sides under this many pixels are left out of the search (yolov5's rule).
MIN_BOX_PX = 2.0
# Boxes with a side under this many pixels are counted in a warning.
SMALL_BOX_PX = 3.0
# Finest pooling cell, in log units (0.005 ≈ 0.5 % of a size).
FINE_CELL = 0.005
# Where climbs on the coarse pooling stop, in log units.
HOP_MIN_STEP = 0.008


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
    """What was maximised: ``"ratio"`` (yolov5 fitness) or ``"iou"`` (Avg IoU)."""
    n_boxes: int
    """Boxes searched: all boxes but those with both sides under 2 px."""
    n_small: int
    """Boxes with a side under 3 px."""

    @property
    def objective(self) -> float:
        """The maximised figure: :attr:`stats` ``.fitness`` or ``.avg_iou``."""
        return self.stats.fitness if self.metric == "ratio" else self.stats.avg_iou


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def _check_cell(name: str, value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a cell size of at least 0 (log units), got {value!r}")
    return float(value)


def pool_sizes(wh: Tensor, weights: Tensor | None = None, *, cell: float = 0.0) -> tuple[Tensor, Tensor]:
    """Pool box sizes: identical sizes, or sizes within one cell of a log-space grid.

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels, all positive.
        weights (Tensor[N], optional): how many boxes each row stands for.
        cell: grid cell in log units; 0 merges only identical sizes.

    Returns:
        ``(points [M, 2], weights [M])``: each pool's weighted geometric-mean size
        and its total weight, ``M <= N``, ordered by cell.
    """
    if weights is None:
        weights = torch.ones(wh.shape[0], dtype=torch.float64, device=wh.device)
    weights = weights.double()
    if wh.shape[0] == 0:  # a process may hold no boxes of its own
        return wh, weights
    log_wh = wh.double().log()
    if cell > 0:
        key_wh = torch.floor(log_wh / cell).long()  # integer cell coordinates
    else:
        key_wh = wh.float().view(torch.int32).long()  # the exact float bits
    key_wh = key_wh - key_wh.amin(0)
    key = key_wh[:, 0] * (int(key_wh[:, 1].max()) + 1) + key_wh[:, 1]
    # Group equal keys with one sort (torch.unique's inverse is several times slower on the CPU).
    sorted_key, order = key.sort()
    starts = torch.ones_like(sorted_key, dtype=torch.bool)
    starts[1:] = sorted_key[1:] != sorted_key[:-1]
    groups = int(starts.sum())
    inverse = torch.empty_like(order).index_put_((order,), starts.cumsum(0) - 1)
    pooled_weight = torch.zeros(groups, dtype=torch.float64, device=wh.device).index_add_(0, inverse, weights)
    if cell == 0:  # identical sizes: keep them bit-exact rather than round-tripped through log/exp
        return wh[order[starts]], pooled_weight
    pooled_log = torch.zeros(groups, 2, dtype=torch.float64, device=wh.device).index_add_(
        0, inverse, log_wh * weights[:, None]
    )
    return (pooled_log / pooled_weight[:, None]).exp().to(wh.dtype), pooled_weight


def _gather_pools(points: Tensor, weights: Tensor, reducer: Reducer) -> tuple[Tensor, Tensor]:
    """Every process's pools, merged, identical on every process."""
    if reducer.world_size == 1:
        return points, weights
    gathered = reducer.gather(torch.cat([points.double(), weights[:, None]], 1))
    return pool_sizes(gathered[:, :2].to(points.dtype), gathered[:, 2])


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run torch's CPU kernels on one thread for a while (restored afterwards)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Bar:
    """A tqdm bar over generations that reads the fitness back only now and then."""

    def __init__(self, total: int, desc: str, enabled: bool, every: int = 25) -> None:
        self.every = every
        self.bar = None
        if enabled and total > 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False)

    def __call__(self, generation: int, fitness: Tensor) -> None:
        if self.bar is None:
            return
        if generation % self.every == 0 or generation + 1 == self.bar.total:
            self.bar.set_postfix_str(f"fitness={float(fitness):.4f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def search_anchors(
    wh: Tensor,
    n: int = 9,
    *,
    thr: float = 4.0,
    gen: int = 1000,
    metric: Metric = "ratio",
    method: Method = "ga",
    seed: int = 0,
    population: int | None = None,
    starts: int = 4,
    kmeans_iters: int = 10,
    evolve_cell: float | None = None,
    coarse_cell: float | None = None,
    middle_cell: float | None = None,
    fine_points: int = 16384,
    relocations: int = 16,
    tries: int = 6,
    patience: int = 3,
    hops: int = 48,
    reducer: Reducer | None = None,
    progress: bool = False,
) -> SearchResult:
    """Find ``n`` anchors that fit the box sizes ``wh``.

    The stages:

    1. Boxes with both sides under 2 px are left out (yolov5's rule); those with
       a side under 3 px are counted in a warning.
    2. The sizes are pooled (:func:`pool_sizes`) four times: a fine pooling of
       at most ``fine_points`` sizes (identical sizes only, when there are few
       boxes), then ever coarser ones with cells of ``middle_cell``,
       ``coarse_cell`` and ``evolve_cell`` (log units: 0.04, 0.12 and 0.24 for
       the ratio metric; 0.02, 0.06 and 0.12 for IoU, whose optima lie closer
       together).
    3. k-means on the coarse pooling from ``starts`` k-means++ seeds (whitened
       Euclidean for ``metric="ratio"``, as yolov5; ``1 - IoU`` with median
       updates for ``"iou"``); the start with the best objective is kept.
    4. ``gen`` generations of evolution on the coarsest pooling: yolov5's
       mutation with ``population`` mutants per generation (``method="ga"``), or
       differential evolution (``"de"``). It only has to bring the start near a
       good optimum; the stages after it work on finer poolings.
    5. :func:`~autoanchor.evolve.polish` on the coarse pooling: a climb, then up
       to ``hops`` relocation hops (``relocations`` sizes drawn per hop, the best
       ``tries`` climbed from, ending after ``patience`` draws without gain).
    6. Climbs on the middle and then the fine pooling, each stopping at steps
       near its cell size. (With so many distinct sizes that the fine pooling
       needs cells as large as ``middle_cell``, the two are one.)

    Every figure in the result is measured on all kept boxes, and the result is
    never less fit than the k-means start.

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels of the letterboxed
            training image. With a ``reducer``, this process's share of the boxes.
        n: number of anchors.
        thr: largest allowed side ratio (yolov5's ``anchor_t``).
        gen: generations of evolution (0 skips it).
        metric: ``"ratio"`` maximises yolov5's fitness, ``"iou"`` the Avg IoU.
        method: ``"ga"`` or ``"de"``.
        seed: seeds the search's own generator; the same inputs and seed give the
            same anchors on the same device.
        population: candidates per generation; 4 for ``"ga"`` and 16 for ``"de"``
            when omitted.
        starts, kmeans_iters, evolve_cell, coarse_cell, middle_cell, fine_points,
            relocations, tries, patience, hops: the stages' settings, as above (``kmeans_iters``
            bounds the Lloyd iterations of each k-means start); with the defaults
            the search takes about a quarter of a second on two CPU cores.
        reducer: combines the work of several processes (see
            :mod:`autoanchor.parallel`); every process must pass the same options
            and seed, and gets the same result.
        progress: show a progress bar over the generations.

    Returns:
        A :class:`SearchResult` with the anchors sorted by area.

    Raises:
        ValueError: for empty, non-finite or negative sizes, no box of at least
            2 px, or an invalid option (the message names it).
        TypeError: if ``wh`` is not a floating-point tensor.

    Example:
        >>> from autoanchor import load_boxes
        >>> wh = load_boxes(None).pixel_wh(640)
        >>> result = search_anchors(wh, 9, seed=0)
        >>> result.anchors.shape, round(result.stats.bpr, 3)  # doctest: +SKIP
        (torch.Size([9, 2]), 0.996)
    """
    check_wh(wh)
    n = _check_int("n", n, 1)
    thr = check_thr(thr)
    gen = _check_int("gen", gen, 0)
    metric = check_metric(metric)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    seed = _check_int("seed", seed, 0)
    starts = _check_int("starts", starts, 1)
    if population is None:
        population = 4 if method == "ga" else 16
    population = _check_int("population", population, 1 if method == "ga" else 4)
    reducer = reducer if reducer is not None else LocalReducer()
    kmeans_iters = _check_int("kmeans_iters", kmeans_iters, 1)
    fine_points = _check_int("fine_points", fine_points, 1)
    relocations = _check_int("relocations", relocations, 0)
    tries = _check_int("tries", tries, 1)
    patience = _check_int("patience", patience, 1)
    hops = _check_int("hops", hops, 0)
    coarse_cell = _check_cell("coarse_cell", coarse_cell, 0.12 if metric == "ratio" else 0.06)
    middle_cell = _check_cell("middle_cell", middle_cell, 0.04 if metric == "ratio" else 0.02)
    evolve_cell = _check_cell("evolve_cell", evolve_cell, 2 * coarse_cell)

    finite = torch.isfinite(wh).all(1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0])
        raise ValueError(f"box {row} has a non-finite size {wh[row].tolist()}")
    if bool((wh < 0).any()):
        row = int((wh < 0).any(1).nonzero()[0])
        raise ValueError(f"box {row} has a negative size {wh[row].tolist()}")
    counts = reducer.sum(
        torch.stack([torch.tensor(wh.shape[0]), ((wh < SMALL_BOX_PX).any(1)).sum().cpu()]).to(wh.device)
    )
    total_boxes, n_small = int(counts[0]), int(counts[1])
    if total_boxes == 0:
        raise ValueError("no boxes to search anchors for (wh is empty)")
    if n_small:
        warn(
            f"{n_small} of {total_boxes} boxes have a side under {SMALL_BOX_PX:g} px; "
            "such small objects are hard to detect"
        )
    # yolov5 keeps a box when either side reaches 2 px; a zero side has no log size, so drop that too.
    kept = wh[((wh >= MIN_BOX_PX).any(1)) & (wh > 0).all(1)].float()
    n_boxes = int(reducer.sum(torch.tensor([kept.shape[0]], device=wh.device))[0])
    if n_boxes == 0:
        raise ValueError(f"all {total_boxes} boxes are under {MIN_BOX_PX:g} px on both sides; nothing to search")

    device = wh.device
    generator = torch.Generator(device=device).manual_seed(seed)

    # Pool finely, then ever coarser; every process ends up with the same pools.
    fine_cell = 0.0 if n_boxes <= fine_points else FINE_CELL
    fine_set = _gather_pools(*pool_sizes(kept, cell=fine_cell), reducer)
    cell = FINE_CELL
    while fine_set[0].shape[0] > fine_points:
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
    coarse, middle = (Objective(*pools, metric=metric, thr=thr) for pools in (coarse_set, middle_set))

    # The search works on a few thousand pooled sizes: tensors too small for several CPU threads,
    # whose barriers cost more than they save and stall badly when another process holds a core.
    with _one_cpu_thread(device):
        distance, update = ("euclidean", "mean") if metric == "ratio" else ("iou", "median")
        candidates = kmeans(
            coarse_set[0], n, weights=coarse_set[1], distance=distance, update=update, restarts=starts,
            iters=kmeans_iters, generator=generator, every_start=True,
        )  # [starts,n,2]
        start = candidates[middle(candidates).argmax()]

        bar = _Bar(gen, f"Evolving {n} anchors", progress)
        try:
            search = evolve if method == "ga" else differential_evolution
            best, _ = search(
                Objective(*evolve_set, metric=metric, thr=thr), start, gen=gen, population=population,
                generator=generator, progress=bar,
            )
        finally:
            bar.close()
        # Steps much finer than a pooling's cells only chase its rounding: each stage stops near them.
        best, _ = polish(
            coarse, best, relocations=relocations, tries=tries, patience=patience, hops=hops,
            min_step=HOP_MIN_STEP, hop_min_step=HOP_MIN_STEP, generator=generator,
        )
        best, _ = polish(middle, best, step=0.02, min_step=0.004)
        if not fine_is_middle:  # a quarter of a percent is enough
            best, _ = polish(Objective(*fine_set, metric=metric, thr=thr), best, step=0.01, min_step=0.002)

    start_stats, stats = anchor_stats(kept, torch.stack([start, best]), thr=thr, reducer=reducer)
    objective = (lambda s: s.fitness) if metric == "ratio" else (lambda s: s.avg_iou)
    if objective(stats) < objective(start_stats):  # pooling can mislead; never return worse than the start
        best, stats = start, start_stats
    order = best.prod(-1).argsort()
    return SearchResult(
        anchors=best[order].float(),
        stats=stats,
        start_stats=start_stats,
        metric=metric,
        n_boxes=n_boxes,
        n_small=n_small,
    )


def kmean_anchors(
    dataset: Any = None,
    n: int = 9,
    img_size: int = 640,
    thr: float = 4.0,
    gen: int = 1000,
    verbose: bool = True,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    metric: Metric = "ratio",
    method: Method = "ga",
) -> np.ndarray:
    """Anchors evolved from a dataset's boxes: the drop-in for yolov5's ``kmean_anchors``.

    Args:
        dataset: anything :func:`autoanchor.datasets.load_boxes` reads: a
            yolov5-style dataset object (``.shapes`` and ``.labels``), a path to a
            dataset, or ``None`` for the built-in coco128 statistics.
        n: number of anchors.
        img_size: training image size in pixels; each image's long side is
            scaled to it (letterbox) before its boxes are measured.
        thr: largest allowed side ratio (yolov5's ``anchor_t``).
        gen: generations of evolution.
        verbose: show a progress bar and log a summary at INFO.
        seed: the same dataset and seed give the same anchors (on one device).
        device: where to search (``"cpu"``, ``"cuda"``, ...); defaults to the CPU.
        metric: ``"ratio"`` (yolov5's fitness) or ``"iou"`` (Avg IoU, YOLOv2).
        method: ``"ga"`` (yolov5's mutation, batched) or ``"de"`` (differential evolution).

    Returns:
        numpy.ndarray ``[n, 2]`` float32 of anchor (width, height) in pixels,
        sorted by area, like yolov5's.

    Raises:
        ValueError, TypeError: for an unreadable dataset or an invalid option.

    Example:
        >>> anchors = kmean_anchors(None, n=9, img_size=640, gen=1000, verbose=False)
        >>> anchors.shape
        (9, 2)
    """
    from .datasets import load_boxes

    sizes = load_boxes(dataset, verbose=verbose)
    wh = sizes.pixel_wh(img_size, device=device)
    result = search_anchors(wh, n, thr=thr, gen=gen, metric=metric, method=method, seed=seed, progress=verbose)
    if verbose:
        stats, start = result.stats, result.start_stats
        logger.info(
            "k-means start: fitness %.4f, BPR %.4f, Avg IoU %.4f", start.fitness, start.bpr, start.avg_iou
        )
        logger.info(
            "thr=%.2f: %.4f best possible recall, %.2f anchors past thr, fitness %.4f, Avg IoU %.4f "
            "(%d boxes, n=%d, img_size=%d)",
            thr, stats.bpr, stats.aat, stats.fitness, stats.avg_iou, result.n_boxes, n, img_size,
        )
        logger.info("anchors: %s", format_anchors(result.anchors))
    return result.anchors.cpu().numpy().astype(np.float32)
