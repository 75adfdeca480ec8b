"""The yolov7 ``IDetect`` / yolov5 v5.0 ``Detect`` family: ``anchor_grid`` is a registered buffer.

Besides ``anchors`` (stride units) and ``stride``, these heads register
``anchor_grid`` of shape ``[nl, 1, na, 1, 1, 2]`` holding the anchors **in
pixels** (it is saved in checkpoints and used directly by forward). A write
rewrites it in place from the stored anchors × stride, in its own dtype and device.
Their ``grid`` list depends only on the feature map size and is left alone.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from .base import HeadNotFound, HeadState, register_family
from .yolov5 import YoloHead, meta_error

__all__ = ["Yolov7Detect"]


class _AnchorGridExtra(NamedTuple):
    anchors: Tensor  # the live buffer [nl,na,2], stride units
    stride: Tensor  # float64 [nl] on the CPU, pixels
    anchor_grid: Tensor  # the live buffer [nl,1,na,1,1,2], pixels


@register_family
class Yolov7Detect(YoloHead):
    """yolov7 ``IDetect`` / ``Detect`` and yolov5 v5.0 ``Detect`` (registered ``anchor_grid``)."""

    name = "yolov7"

    def recognise(self, head: Any, where: str) -> None:
        super().recognise(head, where)
        if not isinstance(getattr(head, "anchor_grid", None), Tensor):
            raise HeadNotFound(f"{where} has no registered anchor_grid tensor")

    def _read_caches(self, head: Any, where: str, anchors: Tensor, stride: Tensor) -> _AnchorGridExtra:
        grid = head.anchor_grid
        nl, na = anchors.shape[0], anchors.shape[1]
        if grid.numel() != nl * na * 2 or grid.shape[-1] != 2:
            raise ValueError(
                f"{where}.anchor_grid is a tensor of shape {list(grid.shape)}; expected "
                f"{nl * na * 2} values [nl, 1, na, 1, 1, 2] = [{nl}, 1, {na}, 1, 1, 2] (anchors in pixels)"
            )
        if not grid.is_floating_point():
            raise TypeError(f"{where}.anchor_grid must be a floating-point tensor, got {grid.dtype}")
        if grid.is_meta:
            raise meta_error(f"{where}.anchor_grid")
        return _AnchorGridExtra(anchors, stride, grid)

    def _prepare_caches(self, state: HeadState, stored_px: Tensor) -> Tensor:
        # What the head itself would hold: stored anchors × stride, in the buffer's dtype.
        grid = state.extra.anchor_grid
        return stored_px.reshape(grid.shape).to(grid.dtype).to(grid.device)

    def _write_caches(self, state: HeadState, caches: Tensor) -> None:
        with torch.no_grad():
            state.extra.anchor_grid.copy_(caches)
