"""autoanchor: fast, reproducible anchor boxes for YOLO-style detectors.

The drop-ins for yolov5's ``utils/autoanchor.py`` are :func:`check_anchors`,
:func:`kmean_anchors` and :func:`check_anchor_order`; :func:`search_anchors`
works on box sizes in pixels (:func:`load_boxes` reads them from a dataset), and
:func:`anchor_stats` measures anchors. Everything else is imported from its
subpackage: :mod:`autoanchor.core` (metrics, objectives, search), :mod:`autoanchor.grid`,
:mod:`autoanchor.io` (datasets, configs), :mod:`autoanchor.training` (the hook, head
families, reports) and :mod:`autoanchor.cli`.

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
    "check_anchors": "training.hook",
    "check_anchor_order": "training.hook",
    "AnchorReport": "training.report",
    "kmean_anchors": "training.dropins",
    "search_anchors": "core.search",
    "SearchSettings": "core.settings",
    "load_boxes": "io.datasets",
    "BoxSizes": "core.boxes",
    "anchor_stats": "core.metrics",
    "advise": "core.advise",
    "Objective": "core.objectives",
    "register_objective": "core.objectives",
    "restore_anchors": "training.rebuild",
}

# Names autoanchor 0.1 exported here -> the subpackage they are imported from now (for the error).
_MOVED = {
    **dict.fromkeys(
        ("AnchorStats", "anchor_fitness", "anchor_stats_batch", "anchors_above_threshold", "avg_iou",
         "best_possible_recall", "ratio_metric", "wh_iou"),
        "core.metrics",
    ),
    **dict.fromkeys(("objective_class",), "core.objectives"),
    **dict.fromkeys(("Advice", "AdviceRow", "format_advice"), "core.advise"),
    **dict.fromkeys(("jitter_wh", "scale_jittered_wh"), "core.jitter"),
    **dict.fromkeys(("BelowStride", "LevelStats", "anchors_below_stride", "format_level_table", "level_stats"), "core.levels"),
    **dict.fromkeys(("LoadSummary", "load_boxes_with_report"), "io.datasets"),
    **dict.fromkeys(("DistributedReducer", "PeerFailure"), "training.distributed"),
    **dict.fromkeys(("find_detect",), "training.hook"),
    **dict.fromkeys(("SearchResult",), "core.search"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first access and keep the name (PEP 562)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        if name in _MOVED:
            raise AttributeError(
                f"module {__name__!r} no longer exports {name!r}: import it from {__name__}.{_MOVED[name]}"
            )
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
