"""Grid anchor generators: torchvision's ``AnchorGenerator`` family (RetinaNet, Faster R-CNN).

:mod:`.grid` holds the geometry, :mod:`.matching` the position-aware matching the
detector itself does, :mod:`.fit` the search of sizes and ratios, and
:mod:`.torchvision_model` reads and writes a detector's generator. Only the last one
touches an ``nn.Module``; none of them imports torchvision.
"""

from .fit import FitResult, fit_grid_anchors, pool_samples
from .anchors import GridAnchors, ResizeRule, cell_anchors, grid_anchors, lattice_offsets
from .matching import MatchStats, Samples, best_iou, make_samples, match_stats, offset_iou, positive_counts
from .objective import PositionIoUObjective

__all__ = [
    "FitResult",
    "GridAnchors",
    "MatchStats",
    "PositionIoUObjective",
    "ResizeRule",
    "Samples",
    "best_iou",
    "cell_anchors",
    "fit_grid_anchors",
    "grid_anchors",
    "lattice_offsets",
    "make_samples",
    "match_stats",
    "offset_iou",
    "pool_samples",
    "positive_counts",
]
