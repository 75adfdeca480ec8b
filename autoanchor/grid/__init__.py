"""Grid anchor generators: torchvision's ``AnchorGenerator`` family (RetinaNet, Faster R-CNN).

:mod:`.anchors` holds the geometry, :mod:`.matching` the position-aware matching the
detector itself does (on torchvision's padded grid), :mod:`.inputs` the boxes in a
detector's input pixels at each training size, :mod:`.rules` the level rules (scale
order, stride bounds), :mod:`.fit` the search of sizes and ratios, and
``training.heads.torchvision_model`` reads and writes a detector's generator. Only the last one
touches an ``nn.Module``; none of them imports torchvision.
"""

from .fit import FitResult, fit_grid_anchors, pool_samples
from .anchors import GridAnchors, ResizeRule, cell_anchors, grid_anchors, lattice_offsets
from .inputs import boxes_to_input, input_samples
from .matching import (
    MatchStats,
    Samples,
    best_iou,
    lattice_centres,
    level_grid,
    level_match_stats,
    make_samples,
    match_stats,
    offset_iou,
    positive_counts,
)
from .objective import PositionIoUObjective
from .rules import LevelRules

__all__ = [
    "FitResult",
    "GridAnchors",
    "LevelRules",
    "MatchStats",
    "PositionIoUObjective",
    "ResizeRule",
    "Samples",
    "best_iou",
    "boxes_to_input",
    "cell_anchors",
    "fit_grid_anchors",
    "grid_anchors",
    "input_samples",
    "lattice_centres",
    "lattice_offsets",
    "level_grid",
    "level_match_stats",
    "make_samples",
    "match_stats",
    "offset_iou",
    "pool_samples",
    "positive_counts",
]
