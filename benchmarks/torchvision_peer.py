"""The public peer for RetinaNet anchors, re-implemented from its description.

Zlocha et al.'s ``anchor-optimization`` (MICCAI 2019, written for keras-retinanet) is
described as: scipy differential evolution (population 15, mutation 0.5) over one
aspect-ratio value ``r`` in [1, 4] (ratios ``1/r, 1, r`` around 1:1) and three scales
in [0.4, 2] shared by every level, anchors of keras-retinanet's sizes 32, 64, ..., 512
on strides 8 ... 128; each box is compared, centred on the origin, with every anchor
centred on the origin, and the objective is the mean over boxes of
``-(1 - IoU)**2 * log(IoU)`` of the box's best anchor (a focal-loss-shaped penalty).
Nothing of its code is used here; this follows that description only.

For a generator with ``k`` sizes per level the peer's scheme is carried over with
``k`` scales: for RetinaNet (sizes ``base_l * 2**(j/3)``) a level's sizes are
``base_l * scale_j`` with ``base_l`` its smallest default size, as in keras-retinanet;
for other generators each default size is multiplied by its scale.

Run by hand (``python benchmarks/torchvision_table.py``); never a timed test.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import differential_evolution

from autoanchor.grid import GridAnchors

__all__ = ["PeerResult", "peer_generator", "peer_objective"]


def _anchor_wh(base: np.ndarray, scales: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """``[A, 2]`` anchor (w, h): every base size times its scale, at every ratio (h / w)."""
    sizes = (base * scales).reshape(-1)  # [L*k]
    width = sizes[None, :] / np.sqrt(ratios)[:, None]  # [r, L*k]
    height = sizes[None, :] * np.sqrt(ratios)[:, None]
    return np.stack([width.reshape(-1), height.reshape(-1)], axis=1)


def peer_objective(wh: np.ndarray, anchor_wh: np.ndarray) -> float:
    """Mean over boxes of ``-(1 - IoU)**2 * log(IoU)`` of each box's best origin-centred anchor."""
    inter = np.minimum(wh[:, None, 0], anchor_wh[None, :, 0]) * np.minimum(wh[:, None, 1], anchor_wh[None, :, 1])
    union = wh[:, None, 0] * wh[:, None, 1] + anchor_wh[None, :, 0] * anchor_wh[None, :, 1] - inter
    best = (inter / union).max(axis=1).clip(1e-9, 1.0)
    return float(np.mean(-((1 - best) ** 2) * np.log(best)))


@dataclass
class PeerResult:
    generator: GridAnchors
    objective: float
    seconds: float
    evaluations: int


def peer_generator(wh: np.ndarray, start: GridAnchors, *, seed: int = 0, retinanet_bases: bool = True) -> PeerResult:
    """Run the peer on box sizes ``wh`` ``[N, 2]`` (input pixels) for the structure of ``start``.

    Args:
        wh: box (width, height) in the model's input pixels.
        start: the model's generator (levels, sizes per level, 3 shared ratios).
        seed: scipy's seed.
        retinanet_bases: sizes are ``base_l * scale_j`` with ``base_l = start.sizes[l][0]``
            (keras-retinanet); otherwise each default size times its scale.

    Returns:
        PeerResult with the generator (sizes rounded to pixels, ratios to 3 decimals).
    """
    if any(len(r) != 3 for r in start.aspect_ratios):
        raise ValueError(f"the peer searches 3 ratios (1/r, 1, r) per level, got {start.aspect_ratios}")
    k = len(start.sizes[0])
    if any(len(s) != k for s in start.sizes):
        raise ValueError(f"the peer needs the same number of sizes on every level, got {start.sizes}")
    if retinanet_bases:
        base = np.array([[level[0]] * k for level in start.sizes], dtype=np.float64)  # [L,k]
    else:
        base = np.array(start.sizes, dtype=np.float64)
    wh = np.asarray(wh, dtype=np.float64)
    calls = 0

    def objective(x: np.ndarray) -> float:
        nonlocal calls
        calls += 1
        ratio, scales = x[0], np.sort(x[1:])
        return peer_objective(wh, _anchor_wh(base, scales[None, :], np.array([1 / ratio, 1.0, ratio])))

    bounds = [(1.0, 4.0)] + [(0.4, 2.0)] * k
    began = time.perf_counter()
    found = differential_evolution(objective, bounds, popsize=15, mutation=0.5, seed=seed, polish=False)
    seconds = time.perf_counter() - began
    ratio, scales = float(found.x[0]), np.sort(found.x[1:])
    sizes = tuple(tuple(float(max(round(v), 1)) for v in row) for row in base * scales[None, :])
    ratios = (round(1 / ratio, 3), 1.0, round(ratio, 3))
    generator = GridAnchors(sizes, (ratios,) * start.num_levels, start.strides)
    if not math.isfinite(found.fun):
        raise RuntimeError(f"the peer's objective is not finite: {found.fun}")
    return PeerResult(generator, float(found.fun), seconds, calls)
