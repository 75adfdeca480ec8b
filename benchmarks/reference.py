"""A faithful re-implementation of yolov5's ``kmean_anchors`` search, the baseline for the benchmarks.

Written from a description of the algorithm's behaviour (no code copied). It keeps
everything that costs time or shapes the result in the original:

1. count the boxes with a side under 3 px (yolov5 warns about them);
2. keep the boxes with *any* side of at least 2 px;
3. whiten by the per-column standard deviation and run
   ``scipy.cluster.vq.kmeans(wh / std, n, iter=30)`` (Euclidean k-means, best of 30
   runs), then scale the centroids back; if k-means returns fewer than ``n``
   centroids (or there are fewer than ``n`` boxes), fall back to sorted uniform
   random anchors in ``[0, img_size)`` as yolov5 does;
4. ``gen`` generations of a (1+1) evolution: one mutant per generation,
   ``v = ((U[K,2] < 0.9) * U() * N[K,2] * 0.1 + 1).clip(0.3, 3.0)`` (redrawn while
   every factor is exactly 1), mutant ``(k * v).clip(min=2.0)``, kept only if it is
   strictly fitter;
5. fitness ``mean(best * (best > 1/thr))`` where ``best`` is, for each box, the best
   anchor's ratio metric ``min over (w, h) of min(r, 1/r)``, ``r = wh / anchor``.
   Like yolov5 it is computed in float32 torch on the CPU, and every evaluation
   turns the numpy anchors into a fresh tensor and builds the full ``[N, K, 2]``
   temporaries: that per-generation cost is the point of the comparison;
6. anchors returned sorted by area, small to large.

Differences from yolov5, on purpose:
- randomness comes from an explicit ``np.random.Generator`` (``seed``/``rng``) for
  both scipy's k-means and the mutation, so a run can be repeated. yolov5 draws
  from the global ``np.random`` state (and scipy's k-means from its own global
  default), so its runs differ from one call to the next;
- no printing, no progress bar, no yaml/dataset loading: the caller passes the
  letterboxed pixel sizes (see ``benchmarks/datasets.py`` for the letterboxing,
  which the speed benchmark times together with this function).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.cluster.vq import kmeans

__all__ = ["ReferenceResult", "reference_kmean_anchors", "reference_fitness"]

MUTATION_PROB = 0.9
MUTATION_SIGMA = 0.1
SMALL_WARN_PX = 3.0
KEEP_MIN_PX = 2.0

# scipy >= 1.15 names the generator argument ``rng``; older releases call it ``seed``.
_KMEANS_RNG_ARG = "rng" if "rng" in inspect.signature(kmeans).parameters else "seed"


@dataclass
class ReferenceResult:
    """Outcome and timings of one reference search.

    Attributes:
        anchors: ``[n, 2]`` float64 anchor (width, height) in pixels, sorted by area.
        fitness: final fitness as the reference computes it (float32 torch).
        kmeans_fitness: fitness of the k-means start.
        n_small: boxes with a side under 3 px (yolov5 warns about them).
        n_kept: boxes searched (any side >= 2 px).
        generations: generations actually run (may be fewer than asked with
            ``max_generations``).
        kmeans_fallback: True if k-means returned too few centroids and the
            start was random.
        seconds: wall-clock seconds of each phase: ``filter`` (small-box count,
            filtering, tensor conversion), ``kmeans`` (whitening, scipy k-means
            and the start's fitness) and ``evolve`` (the generations run).
    """

    anchors: np.ndarray
    fitness: float
    kmeans_fitness: float
    n_small: int
    n_kept: int
    generations: int
    kmeans_fallback: bool
    seconds: dict[str, float] = field(default_factory=dict)

    def seconds_for(self, generations: int) -> float:
        """Total seconds, with the evolution scaled linearly to ``generations``."""
        evolve = self.seconds["evolve"]
        if self.generations and generations != self.generations:
            evolve = evolve * generations / self.generations
        return self.seconds["filter"] + self.seconds["kmeans"] + evolve


def reference_fitness(anchors: np.ndarray, wh: torch.Tensor, thr: float = 4.0) -> torch.Tensor:
    """yolov5's anchor fitness, computed the way yolov5 computes it.

    Args:
        anchors: ``[K, 2]`` numpy anchor (width, height) in pixels (any float dtype).
        wh: ``Tensor[N, 2]`` float32 box (width, height) in pixels, on the CPU.
        thr: largest allowed side ratio (yolov5's ``anchor_t``).

    Returns:
        0-d float32 tensor ``mean(best * (best > 1/thr))``.
    """
    k = torch.tensor(anchors, dtype=torch.float32)  # a fresh tensor every call, as in yolov5
    r = wh[:, None] / k[None]  # [N,K,2]
    ratio = torch.min(r, 1 / r).min(2)[0]  # [N,K]
    best = ratio.max(1)[0]  # [N]
    return (best * (best > 1 / thr).float()).mean()


def reference_kmean_anchors(
    wh_px: np.ndarray,
    n: int = 9,
    *,
    thr: float = 4.0,
    gen: int = 1000,
    img_size: float = 640,
    seed: int | None = 0,
    rng: np.random.Generator | None = None,
    max_generations: int | None = None,
) -> ReferenceResult:
    """yolov5's k-means + (1+1) evolution of anchors, on letterboxed box sizes.

    Args:
        wh_px: ``[N, 2]`` float32 box (width, height) in pixels of the letterboxed
            training image (long side ``img_size``).
        n: number of anchors.
        thr: largest allowed side ratio (yolov5's ``anchor_t``).
        gen: generations of the evolution.
        img_size: training image size in pixels; only used by the random start
            when k-means fails, as in yolov5.
        seed: seed of the ``np.random.Generator`` used when ``rng`` is not given.
        rng: the random generator for k-means and the mutations.
        max_generations: stop after this many generations (for timing
            extrapolation); ``result.seconds_for(gen)`` scales the time back up.

    Returns:
        A :class:`ReferenceResult`.

    Raises:
        ValueError: if ``wh_px`` is not ``[N, 2]`` or no box has a side >= 2 px.
    """
    wh0 = np.asarray(wh_px)
    if wh0.ndim != 2 or wh0.shape[1] != 2:
        raise ValueError(f"wh_px must have shape [N, 2], got {wh0.shape}")
    if rng is None:
        rng = np.random.default_rng(seed)
    n_run = gen if max_generations is None else min(gen, max_generations)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    n_small = int((wh0 < SMALL_WARN_PX).any(1).sum())
    wh = wh0[(wh0 >= KEEP_MIN_PX).any(1)]
    if len(wh) == 0:
        raise ValueError(f"no box of {len(wh0)} has a side of at least {KEEP_MIN_PX} px")
    wh_t = torch.tensor(wh, dtype=torch.float32)
    seconds["filter"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    fallback = False
    k = None
    if n <= len(wh):
        sigma = wh.std(0)  # whitening
        centroids, _ = kmeans(wh / sigma, n, iter=30, **{_KMEANS_RNG_ARG: rng})
        if len(centroids) == n:
            k = centroids * sigma
    if k is None:  # yolov5 switches to a random start when k-means cannot deliver n points
        fallback = True
        k = np.sort(rng.random(n * 2)).reshape(n, 2) * img_size
    k = k[np.argsort(k.prod(1))]
    fitness = reference_fitness(k, wh_t, thr)
    kmeans_fitness = float(fitness)
    seconds["kmeans"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    shape = k.shape
    for _ in range(n_run):
        while True:  # redraw until some factor differs from 1
            v = (
                (rng.random(shape) < MUTATION_PROB) * rng.random() * rng.standard_normal(shape) * MUTATION_SIGMA + 1
            ).clip(0.3, 3.0)
            if not (v == 1).all():
                break
        candidate = (k.copy() * v).clip(min=KEEP_MIN_PX)
        candidate_fitness = reference_fitness(candidate, wh_t, thr)
        if candidate_fitness > fitness:
            fitness, k = candidate_fitness, candidate.copy()
    seconds["evolve"] = time.perf_counter() - t0

    k = k[np.argsort(k.prod(1))]
    return ReferenceResult(
        anchors=k,
        fitness=float(fitness),
        kmeans_fitness=kmeans_fitness,
        n_small=n_small,
        n_kept=len(wh),
        generations=n_run,
        kmeans_fallback=fallback,
        seconds=seconds,
    )
