"""The settings of one anchor check (:func:`autoanchor.check_anchors`), validated once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.jitter import scale_range
from ..core.metrics import check_thr

__all__ = ["CheckOptions", "DEFAULT_IMGSZ", "DEFAULT_THR"]

DEFAULT_THR = 4.0
"""check_anchors' default ``thr`` (yolov5's ``hyp['anchor_t']``)."""
DEFAULT_IMGSZ = 640
"""check_anchors' default ``imgsz`` in pixels."""


def _is_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


@dataclass(frozen=True)
class CheckOptions:
    """The settings of one check, validated on construction (see :func:`check_anchors`).

    Raises:
        ValueError: for a value out of range; the message names the option and value.
    """

    thr: float = DEFAULT_THR
    imgsz: float = DEFAULT_IMGSZ
    gen: int = 1000
    bpr_threshold: float = 0.98
    seed: int = 0
    device: Any = None
    verbose: bool = True
    scale: float | None = None
    """yolov5's ``hyp['scale']``, in [0, 1): measure and fit under that training-time
    scale augmentation; ``None`` keeps yolov5's check jitter U(0.9, 1.1)."""
    min_stride_units: float | None = None
    """A search keeps every anchor at least this many strides of its level (``sqrt(w * h)``)."""
    max_stride_units: float | None = None
    """A search keeps every anchor at most this many strides of its level."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "thr", check_thr(self.thr))
        for name in ("min_stride_units", "max_stride_units"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number of strides or None, got {value!r}")
            object.__setattr__(self, name, float(value))
        low, high = self.min_stride_units, self.max_stride_units
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_stride_units ({low!r}) exceeds max_stride_units ({high!r})")
        if self.scale is not None:
            scale_range(self.scale)  # ValueError naming scale unless 0 <= scale < 1
            object.__setattr__(self, "scale", float(self.scale))
        imgsz = self.imgsz
        if isinstance(imgsz, bool) or not isinstance(imgsz, (int, float)) or not math.isfinite(imgsz) or imgsz <= 0:
            raise ValueError(f"imgsz must be a positive number of pixels, got {imgsz!r}")
        if not _is_int(self.gen) or self.gen < 0:
            raise ValueError(f"gen must be a non-negative integer (generations), got {self.gen!r}")
        threshold = self.bpr_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ValueError(f"bpr_threshold must be a number in [0, 1], got {threshold!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        object.__setattr__(self, "gen", int(self.gen))
        object.__setattr__(self, "seed", int(self.seed))
        if self.device is not None:
            try:
                device = torch.device(self.device)
            except (RuntimeError, TypeError, ValueError) as error:
                raise ValueError(f"device must name a torch device ('cpu', 'cuda:0', ...), got {self.device!r}") from error
            if device.type == "meta":
                raise ValueError(
                    f"device={self.device!r}: the meta device holds no values (only shapes), so nothing can be "
                    "measured or searched there; pass 'cpu' or 'cuda'"
                )
            object.__setattr__(self, "device", device)

    def settings_key(self) -> bytes:
        """What every rank of a distributed check must agree on, as bytes."""
        return repr(
            (self.thr, float(self.imgsz), self.gen, float(self.bpr_threshold), self.scale,
             self.min_stride_units, self.max_stride_units)
        ).encode()
