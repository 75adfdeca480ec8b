"""Drop-ins for yolov5's ``utils/autoanchor.py`` that start from a dataset.

This is an edge module: it joins the dataset layer (:mod:`autoanchor.io.datasets`)
to the search core (:mod:`autoanchor.core.search`), which knows nothing of files.
:func:`kmean_anchors` keeps yolov5's signature and returns what yolov5's does.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ..core._format import format_anchors
from ..core.defaults import DEFAULT_GEN, DEFAULT_IMGSZ, DEFAULT_METHOD, DEFAULT_METRIC, DEFAULT_N, DEFAULT_SEED
from ..core.defaults import DEFAULT_THR
from ..io.datasets import load_boxes
from ..core.jitter import jitter_blocks
from ..core.objectives import Objective
from ..core.search import search_anchors
from ..core.settings import SearchSettings
from ..core.validate import check_device, check_float, check_int, check_scale

__all__ = ["kmean_anchors"]

logger = logging.getLogger(__name__)


def kmean_anchors(
    dataset: Any = None,
    n: int = DEFAULT_N,
    img_size: int = DEFAULT_IMGSZ,
    thr: float = DEFAULT_THR,
    gen: int = DEFAULT_GEN,
    verbose: bool = True,
    *,
    seed: int = DEFAULT_SEED,
    device: torch.device | str | None = None,
    metric: str | type[Objective] = DEFAULT_METRIC,
    method: str = DEFAULT_METHOD,
    scale: float | None = None,
) -> np.ndarray:
    """Anchors evolved from a dataset's boxes: the drop-in for yolov5's ``kmean_anchors``.

    Args:
        dataset: anything :func:`autoanchor.io.datasets.load_boxes` reads: a
            yolov5-style dataset object (``.shapes`` and ``.labels``), a path to a
            dataset, or ``None`` for the built-in coco128 statistics.
        n: number of anchors.
        img_size: training image size in pixels; each image's long side is
            scaled to it (letterbox) before its boxes are measured.
        thr: largest allowed side ratio (yolov5's ``anchor_t``).
        gen: generations of evolution.
        verbose: show a progress bar and log a summary at INFO.
        seed: an integer from 0 to ``2**64 - 1``; the same dataset and seed give the
            same anchors (on one device).
        device: where to search (``"cpu"``, ``"cuda"``, ...); defaults to the CPU. A device
            this machine lacks is refused before any work.
        metric: ``"ratio"`` (yolov5's fitness) or ``"iou"`` (Avg IoU, YOLOv2), or any
            registered objective (see :mod:`autoanchor.core.objectives`).
        method: ``"ga"`` (yolov5's mutation, batched) or ``"de"`` (differential evolution).
        scale: yolov5's ``hyp['scale']`` in [0, 1): fit the boxes as training sees
            them under its random scale augmentation, every image scaled by
            :data:`~autoanchor.core.jitter.DEFAULT_DRAWS` factors from
            U(1 - scale, 1 + scale), drawn with ``seed``
            (:func:`~autoanchor.core.jitter.scale_jittered_wh`); ``None``: the plain sizes.

    Returns:
        numpy.ndarray ``[n, 2]`` float32 of anchor (width, height) in pixels,
        sorted by area, like yolov5's.

    Raises:
        ValueError, TypeError: for an unreadable dataset or an invalid option (checked
            before the dataset is read; the message names the option and the value).

    Example:
        >>> anchors = kmean_anchors(None, n=9, img_size=640, gen=1000, verbose=False)
        >>> anchors.shape
        (9, 2)
    """
    # Every option is checked before the dataset is read.
    settings = SearchSettings(thr=thr, gen=gen, metric=metric, method=method, seed=seed)
    n = check_int("n", n, low=1)
    check_float("img_size", img_size, low=0, low_open=True, what="(pixels)")
    scale = check_scale(scale, optional=True)
    device = check_device(device)
    sizes = load_boxes(dataset, verbose=verbose)
    if scale is None:
        wh = sizes.pixel_wh(img_size, device=device)
    else:  # per image, as training draws it (search_anchors's own scale= has no images and draws per box),
        # made a block at a time (the values of scale_jittered_wh, never all held at once)
        index = torch.as_tensor(sizes.image_index, dtype=torch.long, device=device)
        wh = jitter_blocks(sizes.pixel_wh(img_size, device=device), scale=scale, image_index=index, seed=settings.seed)
    result = search_anchors(wh, n, settings=settings, progress=verbose)
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
