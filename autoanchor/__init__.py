"""autoanchor: fast, reproducible anchor boxes for YOLO-style detectors.

The drop-ins for yolov5's ``utils/autoanchor.py`` are :func:`check_anchors`,
:func:`kmean_anchors` and :func:`check_anchor_order`; :func:`search_anchors`
works on box sizes in pixels, and :mod:`autoanchor.metrics` holds the metrics.

The public names are imported on first use (PEP 562), so that ``autoanchor --help``
and ``python -m autoanchor --version`` answer without importing torch;
``from autoanchor import check_anchors`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the submodule that defines it. Adding a public name is one line here.
_LAZY = {
    "anchor_stats_batch": "metrics",
    "Objective": "objectives",
    "objective_class": "objectives",
    "register_objective": "objectives",
    "SearchSettings": "settings",
    "Advice": "advise",
    "AdviceRow": "advise",
    "advise": "advise",
    "format_advice": "advise",
    "jitter_wh": "jitter",
    "scale_jittered_wh": "jitter",
    "BelowStride": "levels",
    "LevelStats": "levels",
    "anchors_below_stride": "levels",
    "format_level_table": "levels",
    "level_stats": "levels",
    "BoxSizes": "boxes",
    "LoadSummary": "datasets",
    "load_boxes": "datasets",
    "load_boxes_with_report": "datasets",
    "DistributedReducer": "distributed",
    "PeerFailure": "distributed",
    "AnchorReport": "hook",
    "check_anchor_order": "hook",
    "check_anchors": "hook",
    "find_detect": "hook",
    "AnchorStats": "metrics",
    "anchor_fitness": "metrics",
    "anchor_stats": "metrics",
    "anchors_above_threshold": "metrics",
    "avg_iou": "metrics",
    "best_possible_recall": "metrics",
    "ratio_metric": "metrics",
    "wh_iou": "metrics",
    "SearchResult": "search",
    "kmean_anchors": "dropins",
    "search_anchors": "search",
}

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
    "Objective",
    "SearchResult",
    "advise",
    "SearchSettings",
    "anchor_fitness",
    "anchor_stats",
    "anchor_stats_batch",
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
    "objective_class",
    "ratio_metric",
    "scale_jittered_wh",
    "register_objective",
    "search_anchors",
    "wh_iou",
]


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first access and keep the name (PEP 562)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
