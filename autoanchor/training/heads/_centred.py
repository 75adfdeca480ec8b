"""What the SSD and EfficientDet families share: boxes in input pixels, figures, the report line.

Both match boxes to anchors on centred grids of one fixed-size input image
(:mod:`autoanchor.grid.centred`); the **score is the share of boxes whose best anchor
reaches the matcher's IoU** (the forced best match gives every box one positive
anchor; the share above the threshold is what the anchors earn), the figures add the
mean best IoU and the positives per box (forced match included).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from ...grid.centred import CentredLevel, image_samples, match_stats_centred
from ...grid.matching import Samples
from .base import Measure

__all__ = ["CentredData", "centred_data", "centred_measure", "format_centred"]

EVAL_POSITIONS = 8
"""Lattice positions per box (when the data has no centres) for the figures."""
EVAL_MAX_BOXES = 50000
"""The figures are measured on a seeded subset of at most this many boxes."""


class CentredData(NamedTuple):
    """The boxes in the model's input pixels.

    Attributes:
        wh: ``[N, 2]`` float64 box (width, height), positive.
        xy: ``[N, 2]`` float64 centres, or None when the dataset has none.
        extent: ``[N, 2]`` (width, height) of each box's image content.
        samples: the rows the figures are measured on (seeded).
        seed: the check's seed.
    """

    wh: Tensor
    xy: Tensor | None
    extent: Tensor
    samples: Samples
    seed: int


def centred_data(wh: Tensor, xy: Tensor | None, extent: Tensor, *, seed: int, source: str) -> CentredData:
    """Drop boxes of zero size, and build the measuring rows."""
    usable = (wh > 0).all(dim=1)
    if not bool(usable.any()):
        raise ValueError(f"no box of positive size in {source or 'the dataset'}")
    wh, extent = wh[usable], extent[usable]
    xy = None if xy is None else xy[usable]
    samples = image_samples(
        wh, xy, extent, positions=EVAL_POSITIONS, max_boxes=EVAL_MAX_BOXES, generator=torch.Generator().manual_seed(seed)
    )
    return CentredData(wh, xy, extent, samples, seed)


def centred_measure(levels: list[CentredLevel], data: CentredData, threshold: float) -> Measure:
    stats = match_stats_centred(data.samples, levels, threshold=threshold)
    figures = {"matched": stats.matched, "mean IoU": stats.mean_iou, "positives": stats.positives}
    return Measure(stats.matched, figures)


def format_centred(measure: Measure) -> str:
    figures = measure.figures
    return (
        f"matched {figures['matched']:.4f}, mean best IoU {figures['mean IoU']:.4f}, "
        f"positives/box {figures['positives']:.2f} (forced best match included)"
    )


def positions_note(data: Any) -> str:
    return "real box positions" if data.xy is not None else "lattice positions in each image (no box centres in the data)"
