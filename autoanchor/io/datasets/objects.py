"""In-memory sources: a :class:`BoxSizes` as it is, or a yolov5-style dataset object.

A yolov5 ``LoadImagesAndLabels`` (or anything with ``.shapes`` ``[I, 2]`` (width,
height) px and ``.labels``, one ``[m, 5]`` array ``class, x, y, w, h`` per image) gives
its box sizes; image names come from ``.im_files`` (or the older ``.img_files``).
"""

from __future__ import annotations

import numpy as np

from ...core.boxes import BoxSizes
from .registry import Request, register_format

__all__: list[str] = []


def _read_object(request: Request) -> BoxSizes:
    source = request.source
    if not (hasattr(source, "shapes") and hasattr(source, "labels")):
        raise TypeError(f"format 'object' needs .shapes and .labels, got {type(source).__name__}")
    files = getattr(source, "im_files", None) or getattr(source, "img_files", None)
    return BoxSizes.from_labels(
        np.asarray(source.shapes), list(source.labels), image_names=files, source=type(source).__name__
    )


def _read_boxsizes(request: Request) -> BoxSizes:
    if not isinstance(request.source, BoxSizes):
        raise TypeError(f"format 'boxsizes' needs a BoxSizes, got {type(request.source).__name__}")
    return request.source


register_format(
    "boxsizes", description="a BoxSizes, used as it is",
    accept=lambda request: isinstance(request.source, BoxSizes), read=_read_boxsizes, priority=0,
)
register_format(
    "object", description="a yolov5-style dataset object with .shapes and .labels",
    accept=lambda request: hasattr(request.source, "shapes") and hasattr(request.source, "labels"),
    read=_read_object, priority=1,
)
