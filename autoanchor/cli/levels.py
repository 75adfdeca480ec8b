"""What ``fit`` and ``check`` share about levels: the training scale and the per-level figures.

Imported only inside a command's ``run`` (it imports torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..core.boxes import BoxSizes
from ..core.jitter import DEFAULT_DRAWS, jitter_wh
from ..core.levels import BelowStride, LevelStats, anchors_below_stride, level_stats

__all__ = ["below_stride_dict", "per_level", "scale_fields", "scale_text", "training_wh"]


def training_wh(sizes: BoxSizes, wh: Tensor, device: torch.device, *, scale: float | None, seed: int) -> Tensor:
    """The box sizes a command works on: ``wh`` (the sizes as resized for training,
    yolov5's letterbox or darknet's resize) when ``scale`` is None, else
    ``DEFAULT_DRAWS`` seeded draws per image of yolov5's training scale applied to
    them, pooled: ``Tensor[N * 8, 2]`` pixels on ``device``."""
    if scale is None:
        return wh
    image_index = torch.as_tensor(sizes.image_index, dtype=torch.long, device=device)
    return jitter_wh(wh.to(device), scale=scale, draws=DEFAULT_DRAWS, image_index=image_index, seed=seed)


def scale_text(scale: float | None, seed: int) -> str:
    """``", scale 0.5 (8 draws per image, seed 0)"`` for an output header; empty without a scale."""
    if scale is None:
        return ""
    return f", scale {scale:g} ({DEFAULT_DRAWS} draws per image, seed {seed})"


def scale_fields(scale: float | None) -> dict[str, Any]:
    """``scale`` and ``draws`` for a JSON document (``draws`` 1 and ``scale`` null without a scale)."""
    return {"scale": scale, "draws": DEFAULT_DRAWS if scale is not None else 1}


def per_level(
    wh: Tensor, anchors: Tensor, strides: Sequence[float] | None, *, thr: float
) -> tuple[tuple[LevelStats, ...], tuple[BelowStride, ...]]:
    """Per-level figures of ``anchors [nl, na, 2]`` (pixels) on ``wh`` and the anchors
    under one stride of their level; both empty when the strides are unknown."""
    if strides is None:
        return (), ()
    levels = anchors.to(device=wh.device, dtype=torch.float32)
    return tuple(level_stats(wh, levels, list(strides), thr=thr)), tuple(anchors_below_stride(levels, list(strides)))


def below_stride_dict(item: BelowStride) -> dict[str, Any]:
    """One anchor under one stride, for JSON."""
    return {
        "level": item.level,
        "stride": item.stride,
        "anchor": list(item.anchor),
        "size_in_strides": item.size_in_strides,
        "shortfall": item.shortfall,
    }
