"""Read and rewrite the anchors of a darknet ``.cfg``; darknet's resize of the boxes.

A darknet cfg lists its layers as ``[section]`` blocks of ``key = value`` lines. Every
``[yolo]`` section repeats the same ``anchors =`` line (all anchors of the model, in
pixels of the network input) and picks its own with ``mask =`` (indices into that
line); ``num`` counts the anchors of the line. The yolo layers do not state their
strides, so :func:`parse_cfg` follows the layers (convolution and pooling strides,
upsampling, routes) to find the stride of each one.

Levels are the ``[yolo]`` sections ordered from the finest stride to the coarsest,
whatever their order in the file: yolov3 lists the stride-32 section first
(``mask = 6,7,8``), yolov4 the stride-8 one (``mask = 0,1,2``); both give the finest
level the first, smallest anchors of the line. :func:`rewrite_cfg_anchors` writes the
new anchors sorted by area into every section's ``anchors =`` line and changes no other
byte; the masks stay as they are, so the smallest anchors land on the finest level as
long as the masks, read from the finest level to the coarsest, never go back to a
smaller index. A cfg whose masks do (darknet issue #3860) is refused rather than
silently "fixed".

Quirks that darknet accepts (anchors in no mask, anchors in two masks as in
yolov4-tiny, sections whose ``anchors =`` lines differ) are kept and described in
:attr:`DarknetConfig.notes` for the caller to log or warn about.
"""

from __future__ import annotations

from .cfg import DarknetConfig, YoloSection, parse_cfg, read_cfg
from .resize import darknet_pixel_wh
from .rewrite import darknet_lines, rewrite_cfg_anchors, write_cfg_anchors

__all__ = [
    "DarknetConfig",
    "YoloSection",
    "darknet_lines",
    "darknet_pixel_wh",
    "parse_cfg",
    "read_cfg",
    "rewrite_cfg_anchors",
    "write_cfg_anchors",
]
