"""autoanchor: fast, reproducible anchor boxes for YOLO-style detectors.

The drop-ins for yolov5's ``utils/autoanchor.py`` are :func:`check_anchors`,
:func:`kmean_anchors` and :func:`check_anchor_order`; :func:`search_anchors`
works on box sizes in pixels, and :mod:`autoanchor.metrics` holds the metrics.
"""

from .boxes import BoxSizes
from .datasets import LoadSummary, load_boxes, load_boxes_with_report
from .distributed import DistributedReducer, PeerFailure
from .hook import AnchorReport, check_anchor_order, check_anchors, find_detect
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
from .dropins import kmean_anchors
from .metrics import anchor_stats_batch
from .objectives import Objective, objective_class, register_objective
from .search import SearchResult, search_anchors
from .settings import SearchSettings

__version__ = "0.1.0"

__all__ = [
    "AnchorReport",
    "AnchorStats",
    "BoxSizes",
    "DistributedReducer",
    "LoadSummary",
    "PeerFailure",
    "Objective",
    "SearchResult",
    "SearchSettings",
    "anchor_fitness",
    "anchor_stats",
    "anchor_stats_batch",
    "anchors_above_threshold",
    "avg_iou",
    "best_possible_recall",
    "check_anchor_order",
    "check_anchors",
    "find_detect",
    "kmean_anchors",
    "load_boxes",
    "load_boxes_with_report",
    "objective_class",
    "ratio_metric",
    "register_objective",
    "search_anchors",
    "wh_iou",
]
