"""The grid fit's objective as an object: "score these candidates", nothing else.

:class:`PositionIoUObjective` is what :func:`~autoanchor.grid.fit.fit_grid_anchors`
maximises, usable on its own (to compare candidate generators, or by another search):
``matched + iou_weight * mean best IoU`` on the boxes pooled by log size, each box
matched at its grid position as the detector matches it. It has the shape of the core's
objectives (a name and a ``score`` method over candidates), so it can be registered next
to them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .fit import _pooled_stats, _Scorer, pool_samples
from .anchors import GridAnchors
from .matching import MatchStats, _check_threshold

__all__ = ["PositionIoUObjective"]


class PositionIoUObjective:
    """Fitness of grid anchor generators on a set of boxes, by position-aware IoU.

    Args:
        wh: ``[N, 2]`` box (width, height) in the model's input pixels, finite and positive.
        xy: ``[N, 2]`` box centres in input pixels, or None (a lattice of positions).
        strides: the generator's strides per level, in pixels.
        cell: the period of the grid in pixels (``GridAnchors.cell`` of the candidates).
        threshold: the detector's foreground IoU, in (0, 1].
        iou_weight: weight of the mean best IoU next to the share matched.
        bins_per_octave, positions_per_pool: the pooling (see
            :func:`~autoanchor.grid.fit.pool_samples`).
        generator: draws the position subsets of large pools (known positions only).

    Example:
        >>> objective = PositionIoUObjective(
        ...     wh, None, strides=start.strides, cell=start.cell, threshold=0.5
        ... )  # doctest: +SKIP
        >>> objective.score([start, fitted])  # doctest: +SKIP
        tensor([1.1950, 1.2838], dtype=torch.float64)
    """

    name = "position-iou"

    def __init__(
        self,
        wh: Tensor,
        xy: Tensor | None,
        *,
        strides: tuple[int, ...],
        cell: int,
        threshold: float,
        iou_weight: float = 0.5,
        bins_per_octave: int = 6,
        positions_per_pool: int = 8,
        generator: torch.Generator | None = None,
    ):
        wh = torch.as_tensor(wh)
        if wh.dim() != 2 or wh.shape[1] != 2 or wh.shape[0] == 0:
            raise ValueError(f"wh must be [N, 2] with N >= 1, got shape {tuple(wh.shape)}")
        if not torch.isfinite(wh).all() or (wh <= 0).any():
            raise ValueError("wh must hold finite, positive box sizes")
        self.threshold = _check_threshold(threshold)
        self.strides = tuple(strides)
        self.boxes = float(wh.shape[0])
        samples = pool_samples(
            wh, xy, cell, bins_per_octave=bins_per_octave, positions_per_pool=positions_per_pool, generator=generator
        )
        self._scorer = _Scorer(samples, self.strides, self.threshold, iou_weight)

    def _check(self, candidate: GridAnchors) -> None:
        if not isinstance(candidate, GridAnchors):
            raise TypeError(f"candidates must be GridAnchors, got {type(candidate).__name__}")
        if candidate.strides != self.strides:
            raise ValueError(f"a candidate has strides {candidate.strides}, the objective {self.strides}")

    def score(self, candidates: Sequence[GridAnchors]) -> Tensor:
        """Fitness of each candidate (higher is better), ``Tensor[P]`` float64 on the CPU."""
        values = []
        for candidate in candidates:
            self._check(candidate)
            values.append(_pooled_stats(self._scorer, candidate, self.boxes)[1])
        return torch.tensor(values, dtype=torch.float64)

    def stats(self, candidate: GridAnchors) -> MatchStats:
        """Share matched and mean best IoU of one candidate on the pooled boxes (positives not counted)."""
        self._check(candidate)
        return _pooled_stats(self._scorer, candidate, self.boxes)[0]
