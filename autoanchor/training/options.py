"""The settings of one anchor check (:func:`autoanchor.check_anchors`), validated once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.defaults import DEFAULT_BPR_THRESHOLD, DEFAULT_GEN, DEFAULT_IMGSZ, DEFAULT_SEED, DEFAULT_THR
from ..core.validate import check_device, check_float, check_int, check_scale, check_seed, check_stride_units
from ..core.validate import check_thr, is_integer

__all__ = ["CheckOptions", "DEFAULT_IMGSZ", "DEFAULT_THR"]


@dataclass(frozen=True)
class CheckOptions:
    """The settings of one check, validated on construction (see :func:`check_anchors`).

    Numbers may be Python or numpy scalars; they are stored as Python ``int`` / ``float``
    (:mod:`autoanchor.core.validate` gives the rules).

    Raises:
        ValueError: for a value out of range or a device this machine lacks; the message
            names the option and value.
        TypeError: for a value of the wrong type (also a ``ValueError``:
            :class:`~autoanchor.core.validate.OptionTypeError`).
    """

    thr: float = DEFAULT_THR
    imgsz: float = DEFAULT_IMGSZ
    gen: int = DEFAULT_GEN
    bpr_threshold: float | None = None
    """The anchors are kept when their score is above this; ``None``: the family's own
    (:attr:`~autoanchor.training.heads.HeadFamily.keep_threshold`: 0.98 for YOLO's BPR,
    0.5 for the share a torchvision detector matches)."""
    seed: int = DEFAULT_SEED
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
        set_ = object.__setattr__
        set_(self, "thr", check_thr(self.thr))
        low, high = check_stride_units(self.min_stride_units, self.max_stride_units)
        set_(self, "min_stride_units", low)
        set_(self, "max_stride_units", high)
        set_(self, "scale", check_scale(self.scale, optional=True))
        imgsz = check_float("imgsz", self.imgsz, low=0, low_open=True, what="(pixels)")
        set_(self, "imgsz", int(self.imgsz) if is_integer(self.imgsz) else imgsz)  # an int stays an int
        set_(self, "gen", check_int("gen", self.gen, low=0))
        if self.bpr_threshold is not None:
            set_(self, "bpr_threshold", check_float("bpr_threshold", self.bpr_threshold, low=0, high=1))
        set_(self, "seed", check_seed("seed", self.seed))
        set_(self, "device", check_device(self.device))

    def keep_threshold(self, family: Any) -> float:
        """``bpr_threshold``, or ``family``'s own default when it is ``None``."""
        if self.bpr_threshold is not None:
            return self.bpr_threshold
        return float(getattr(family, "keep_threshold", DEFAULT_BPR_THRESHOLD))

    def settings_key(self) -> bytes:
        """What every rank of a distributed check must agree on, as bytes."""
        return repr(
            (self.thr, float(self.imgsz), self.gen, self.bpr_threshold, self.scale,
             self.min_stride_units, self.max_stride_units)
        ).encode()
