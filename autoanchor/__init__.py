"""autoanchor: fast, reproducible anchor boxes for YOLO-style detectors.

The drop-ins for yolov5's ``utils/autoanchor.py`` are :func:`check_anchors`,
:func:`kmean_anchors` and :func:`check_anchor_order`; :func:`search_anchors`
works on box sizes in pixels, and :mod:`autoanchor.metrics` holds the metrics.
"""

from .advise import Advice, AdviceRow, advise, format_advice
from .boxes import BoxSizes
from .datasets import LoadSummary, load_boxes, load_boxes_with_report
from .distributed import DistributedReducer, PeerFailure
from .hook import AnchorReport, check_anchor_order, check_anchors, find_detect
from .jitter import jitter_wh, scale_jittered_wh
from .levels import BelowStride, LevelStats, anchors_below_stride, format_level_table, level_stats
from .metrics import (
    AnchorStats,
    anchor_fitness,
    anchor_stats,
    anchors_above_threshold,
    avg_iou,
    best_possible_recall,
    ratio_metric,
    wh_iou,
)
from .search import SearchResult, kmean_anchors, search_anchors

__version__ = "0.1.0"

__all__ = [
    "Advice",
    "AdviceRow",
    "AnchorReport",
    "AnchorStats",
    "BelowStride",
    "BoxSizes",
    "DistributedReducer",
    "LevelStats",
    "LoadSummary",
    "PeerFailure",
    "SearchResult",
    "advise",
    "anchor_fitness",
    "anchor_stats",
    "anchors_above_threshold",
    "anchors_below_stride",
    "avg_iou",
    "best_possible_recall",
    "check_anchor_order",
    "check_anchors",
    "find_detect",
    "format_advice",
    "format_level_table",
    "jitter_wh",
    "kmean_anchors",
    "level_stats",
    "load_boxes",
    "load_boxes_with_report",
    "ratio_metric",
    "scale_jittered_wh",
    "search_anchors",
    "wh_iou",
]
