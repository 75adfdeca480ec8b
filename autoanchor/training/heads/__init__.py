"""Detector-head adapters: one module per family of heads, all behind one protocol.

The hook (:mod:`autoanchor.training.hook`) talks to heads only through
:class:`~autoanchor.training.heads.base.HeadFamily`; :func:`find_head` asks every registered
family in turn. Adding a family is one new module with a ``@register_family``
class, imported below.
"""

from __future__ import annotations

from .base import (
    FAMILIES,
    HeadFamily,
    HeadNotFound,
    HeadState,
    Measure,
    Write,
    family_names,
    find_head,
    get_family,
    register_family,
)

# The families, in the order they are tried; each registers itself on import.
from . import yolov5  # noqa: E402,F401  yolov5 v6+ Detect (lazy grid lists)
from . import yolov7  # noqa: E402,F401  yolov7 IDetect / yolov5 v5.0 Detect (anchor_grid buffer)
from . import torchvision  # noqa: E402,F401  torchvision AnchorGenerator (RetinaNet, Faster/Mask/Keypoint R-CNN)
from . import ssd  # noqa: E402,F401  torchvision DefaultBoxGenerator (SSD300, SSDlite320)
from . import effdet  # noqa: E402,F401  effdet Anchors (EfficientDet DetBenchTrain / DetBenchPredict)

__all__ = [
    "FAMILIES",
    "HeadFamily",
    "HeadNotFound",
    "HeadState",
    "Measure",
    "Write",
    "family_names",
    "find_head",
    "get_family",
    "register_family",
]
