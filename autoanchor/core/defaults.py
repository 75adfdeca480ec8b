"""The user-facing defaults, written once (no torch here: the command line reads them for ``--help``).

:class:`~autoanchor.core.settings.SearchSettings` and
:class:`~autoanchor.training.options.CheckOptions` take their field defaults from
these constants, the public functions take theirs from the dataclasses' fields,
and the command line shows and uses the same values. The shipped
``configs/search.yaml`` repeats them for readers; a test keeps it equal to them.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_BPR_THRESHOLD",
    "DEFAULT_MATCHED_THRESHOLD",
    "DEFAULT_GEN",
    "DEFAULT_IMGSZ",
    "DEFAULT_LEVELS",
    "DEFAULT_METRIC",
    "DEFAULT_METHOD",
    "DEFAULT_N",
    "DEFAULT_SEED",
    "DEFAULT_THR",
    "MAX_SEED",
]

DEFAULT_THR = 4.0
"""Largest allowed side ratio between a box and an anchor: yolov5's ``hyp['anchor_t']``."""
DEFAULT_IMGSZ = 640
"""Training image size in pixels (long side after letterboxing)."""
DEFAULT_N = 9
"""Anchors searched when no model says how many."""
DEFAULT_LEVELS = 3
"""Output levels the anchors are split into when no model says how many (yolov5's P3-P5)."""
DEFAULT_GEN = 1000
"""Generations of evolution after the k-means start."""
DEFAULT_METRIC = "ratio"
"""What the search maximises: yolov5's fitness (``"ratio"``)."""
DEFAULT_METHOD = "ga"
"""How the search evolves: yolov5's mutation (``"ga"``)."""
DEFAULT_SEED = 0
"""The seed of every generator made when the caller passes neither a generator nor a seed."""
DEFAULT_BPR_THRESHOLD = 0.98
"""A check keeps YOLO anchors when their best possible recall is above this (yolov5's 0.98)."""
DEFAULT_MATCHED_THRESHOLD = 0.5
"""A check keeps a torchvision detector's anchors when more than this share of the boxes has an
anchor at the detector's foreground IoU. Measured by training (``docs/training-effect.md``): where
torchvision's RetinaNet anchors matched 67 % (elongated VOC boxes) and 84 % (VOC) of the boxes,
refitted anchors trained worse (mAP@0.5 -0.10 and -0.09); where they matched 23 % (WIDER FACE
sizes) the refit gained +0.41, and +0.10 for a Faster R-CNN whose RPN anchors matched 10 %."""
MAX_SEED = 2**64 - 1
"""The largest seed: ``torch.Generator.manual_seed`` takes any integer of 64 unsigned bits."""
