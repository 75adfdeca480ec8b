"""mmyolo's anchor setting: a ``prior_generator=dict(...)`` to paste into a config."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ..core.levels import level_name
from .modelyaml import round_anchors

__all__ = ["mmyolo_snippet"]


def mmyolo_snippet(anchors: Tensor | Sequence, strides: Sequence[int]) -> str:
    """An mmyolo ``prior_generator=dict(...)`` argument holding the anchors.

    Args:
        anchors: Tensor[levels, per_level, 2], anchors in pixels, finest level first.
        strides: the stride of each level in pixels.

    Returns:
        Python text ending with a newline, to paste into the ``bbox_head`` of an mmyolo
        config, e.g.::

            prior_generator=dict(
                type='mmdet.YOLOAnchorGenerator',
                base_sizes=[
                    [(10, 13), (16, 30), (33, 23)],  # P3/8
                    ...
                ],
                strides=[8, 16, 32]),
    """
    levels = round_anchors(anchors)
    strides = [int(s) for s in strides]
    if len(strides) != len(levels):
        raise ValueError(f"got {len(strides)} strides for {len(levels)} levels")
    lines = ["prior_generator=dict(", "    type='mmdet.YOLOAnchorGenerator',", "    base_sizes=["]
    for level, stride in zip(levels, strides):
        pairs = ", ".join(f"({w}, {h})" for w, h in level)
        lines.append(f"        [{pairs}],  # {level_name(stride, with_stride=True)}")
    lines += ["    ],", f"    strides={strides}),"]
    return "\n".join(lines) + "\n"
