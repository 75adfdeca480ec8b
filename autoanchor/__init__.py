"""autoanchor: fast, reproducible anchor boxes for YOLO-style detectors.

The drop-ins for yolov5's ``utils/autoanchor.py`` are :func:`check_anchors`,
:func:`kmean_anchors` and :func:`check_anchor_order`; :func:`search_anchors`
works on box sizes in pixels, and :mod:`autoanchor.core.metrics` holds the metrics.

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
    "anchor_stats_batch": "core.metrics",
    "Objective": "core.objectives",
    "objective_class": "core.objectives",
    "register_objective": "core.objectives",
    "SearchSettings": "core.settings",
    "Advice": "core.advise",
    "AdviceRow": "core.advise",
    "advise": "core.advise",
    "format_advice": "core.advise",
    "jitter_wh": "core.jitter",
    "scale_jittered_wh": "core.jitter",
    "BelowStride": "core.levels",
    "LevelStats": "core.levels",
    "anchors_below_stride": "core.levels",
    "format_level_table": "core.levels",
    "level_stats": "core.levels",
    "BoxSizes": "core.boxes",
    "LoadSummary": "io.datasets",
    "load_boxes": "io.datasets",
    "load_boxes_with_report": "io.datasets",
    "DistributedReducer": "training.distributed",
    "PeerFailure": "training.distributed",
    "AnchorReport": "training.hook",
    "check_anchor_order": "training.hook",
    "check_anchors": "training.hook",
    "find_detect": "training.hook",
    "restore_anchors": "training.rebuild",
    "AnchorStats": "core.metrics",
    "anchor_fitness": "core.metrics",
    "anchor_stats": "core.metrics",
    "anchors_above_threshold": "core.metrics",
    "avg_iou": "core.metrics",
    "best_possible_recall": "core.metrics",
    "ratio_metric": "core.metrics",
    "wh_iou": "core.metrics",
    "SearchResult": "core.search",
    "kmean_anchors": "training.dropins",
    "search_anchors": "core.search",
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
    "restore_anchors",
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
