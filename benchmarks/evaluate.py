"""An evaluator independent of the code under test, and YOLOv2's plain 1 - IoU k-means.

Every anchor set in the tables (reference, autoanchor, k-means) is scored here, in
float64 numpy on the same boxes, so the columns compare like with like.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Scores", "kept_boxes", "score", "iou_kmeans"]

KEEP_MIN_PX = 2.0


class Scores(NamedTuple):
    fitness: float
    """yolov5 fitness ``mean(best * (best > 1/thr))`` of the ratio metric."""
    bpr: float
    """Best possible recall: share of boxes whose best ratio metric passes ``1/thr``."""
    avg_iou: float
    """Mean over boxes of the IoU with the best anchor (YOLOv2's Avg IoU)."""


def kept_boxes(wh_px: np.ndarray) -> np.ndarray:
    """The boxes both searches use: any side >= 2 px, as float64 ``[M, 2]``."""
    wh_px = np.asarray(wh_px)
    return wh_px[(wh_px >= KEEP_MIN_PX).any(1)].astype(np.float64)


def score(wh: np.ndarray, anchors: np.ndarray, *, thr: float = 4.0, chunk: int = 1 << 18) -> Scores:
    """Fitness, BPR and Avg IoU of ``anchors [K, 2]`` on boxes ``wh [N, 2]`` (pixels).

    Processed in chunks of ``chunk`` boxes to keep temporaries small.
    """
    anchors = np.asarray(anchors, dtype=np.float64)
    fitness = recall = iou = 0.0
    for start in range(0, len(wh), chunk):
        part = np.asarray(wh[start : start + chunk], dtype=np.float64)[:, None, :]  # [n,1,2]
        r = part / anchors[None]  # [n,K,2]
        best_ratio = np.minimum(r, 1 / r).min(2).max(1)  # [n]
        passed = best_ratio > 1 / thr
        fitness += float((best_ratio * passed).sum())
        recall += float(passed.sum())
        inter = np.minimum(part, anchors[None]).prod(2)  # [n,K]
        union = part.prod(2) + anchors.prod(1)[None] - inter
        iou += float((inter / union).max(1).sum())
    n = len(wh)
    return Scores(fitness / n, recall / n, iou / n)


def _iou_matrix(wh: np.ndarray, centres: np.ndarray) -> np.ndarray:
    inter = np.minimum(wh[:, None, :], centres[None]).prod(2)  # [N,K]
    return inter / (wh.prod(1)[:, None] + centres.prod(1)[None] - inter)


def iou_kmeans(
    wh: np.ndarray, k: int, *, update: str = "median", seed: int = 0, max_iter: int = 1000
) -> tuple[np.ndarray, int]:
    """YOLOv2-style k-means with distance 1 - IoU (boxes aligned at a corner).

    Starts from ``k`` distinct boxes drawn at random, assigns every box to the
    centre of highest IoU, moves each centre to the median (or mean) of its boxes,
    and stops when no assignment changes. A centre that loses all its boxes stays
    where it is.

    Args:
        wh: ``[N, 2]`` box (width, height) in pixels.
        k: number of centres.
        update: ``"median"`` or ``"mean"``.
        seed: seed of the ``np.random.Generator`` for the start.
        max_iter: safety cap on the iterations.

    Returns:
        ``(centres [k, 2] sorted by area, iterations run)``.
    """
    if update not in ("median", "mean"):
        raise ValueError(f"update must be 'median' or 'mean', got {update!r}")
    reduce = np.median if update == "median" else np.mean
    rng = np.random.default_rng(seed)
    distinct = np.unique(wh, axis=0)
    centres = distinct[rng.choice(len(distinct), k, replace=False)].copy()
    assignment = None
    iterations = 0
    for iterations in range(1, max_iter + 1):
        new_assignment = _iou_matrix(wh, centres).argmax(1)
        if assignment is not None and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        for j in range(k):
            members = wh[assignment == j]
            if len(members):
                centres[j] = reduce(members, axis=0)
    return centres[np.argsort(centres.prod(1))], iterations
