"""Crossing two anchor sets: their union thinned back to ``K`` anchors, then climbed.

:func:`thin` removes anchors greedily by their exact loss; :func:`crossover` uses it
to combine two local optima of an :class:`~autoanchor.core.objectives.Objective`,
then climbs the result with :func:`autoanchor.core.polish.polish`'s pattern search.
Neither lowers the fitness.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .levels import within_stride_bounds
from .objectives import Objective
from .polish import Bounds, _climb, _Scores
from .validate import check_int

__all__ = ["crossover", "thin"]


def _thinned(objective: Objective, anchors: Tensor, k: int) -> _Scores:
    """:func:`thin`, returning the scores of the kept anchors."""
    scores = _Scores(objective, anchors.to(objective.device, torch.float32))
    while scores.anchors.shape[0] > k:
        losses = objective.reducer.sum(scores.removal_losses())
        scores.drop(int(losses.argmin()))  # the first of equal losses
    return scores


def thin(objective: Objective, anchors: Tensor, k: int) -> Tensor:
    """Remove anchors one at a time, each time the one whose loss lowers the fitness least, until ``k`` are left.

    A removed anchor's boxes fall back to their second-best anchor, so its
    loss is known from each box's best and second-best score without scoring
    the set again: ``O(K M)`` per removal.

    Args:
        objective: scores anchor sets.
        anchors (Tensor[K, 2]): anchors in pixels, ``K >= k``.
        k: how many to keep, at least 1.

    Returns:
        The ``k`` kept anchors ``[k, 2]``, in their order in ``anchors``.

    Raises:
        ValueError: if ``k`` is not between 1 and the number of anchors.

    Example:
        >>> from autoanchor.core.objectives import make_objective
        >>> objective = make_objective("ratio", torch.tensor([[10.0, 10.0], [100.0, 100.0]]))
        >>> thin(objective, torch.tensor([[10.0, 10.0], [11.0, 11.0], [100.0, 100.0]]), 2).tolist()
        [[10.0, 10.0], [100.0, 100.0]]
    """
    k = check_int("k", k, low=1, high=anchors.shape[0])
    return _thinned(objective, anchors, k).anchors


def crossover(
    objective: Objective,
    anchors: Tensor,
    other: Tensor,
    *,
    step: float = 0.05,
    min_step: float = 1e-3,
    max_rounds: int = 2000,
    bounds: Bounds | None = None,
) -> tuple[Tensor, Tensor]:
    """Cross two anchor sets: their union, thinned greedily back to ``K`` anchors, then climbed.

    Each thinning step removes the anchor whose loss costs the fitness least
    (its boxes fall back to their second-best anchor); so where the two sets
    serve some sizes equally well one of each such pair goes, and where one
    set serves a range of sizes better its anchors stay. Two local optima
    that went wrong in different places thus give one that went wrong in
    neither, which no move of single anchors reaches from either. The
    result is kept only when it ends fitter than ``anchors``, so it is never
    less fit.

    Args:
        objective: scores anchor sets.
        anchors (Tensor[K, 2]): the first set, in pixels; what is returned if crossing gains nothing.
        other (Tensor[K2, 2]): the second set.
        step, min_step, max_rounds: the climb after the thinning (see :func:`polish`).
        bounds: ``(low [K], high [K])`` stride bounds by area rank; a thinned set outside them
            is not climbed (``anchors`` is returned).

    Returns:
        ``(anchors [K, 2], fitness [])``.

    Example:
        >>> from autoanchor.core.objectives import make_objective
        >>> wh = torch.tensor([[10.0, 10.0], [12.0, 9.0], [100.0, 100.0], [90.0, 110.0]])
        >>> objective = make_objective("iou", wh)
        >>> small_right = torch.tensor([[11.0, 9.5], [30.0, 30.0]])
        >>> large_right = torch.tensor([[30.0, 30.0], [95.0, 105.0]])
        >>> crossed, fitness = crossover(objective, small_right, large_right)
        >>> crossed.round().tolist(), bool(fitness > objective(small_right))
        ([[12.0, 9.0], [100.0, 100.0]], True)
    """
    device = objective.device
    first = anchors.to(device, torch.float32)
    start_fitness = objective(first)
    scores = _thinned(objective, torch.cat([first, other.to(device, torch.float32)]), first.shape[0])
    if bounds is not None and not bool(within_stride_bounds(scores.anchors, *bounds)):
        return first, start_fitness
    _climb(scores, step=step, min_step=min_step, max_rounds=max_rounds, bounds=bounds)
    # Judged by the objective itself, as polish judges its result: the climb's running figure sums
    # float32 gains and can be off by an ulp or so.
    reached = objective(scores.anchors)
    if reached > start_fitness + 1e-12:
        return scores.anchors, reached
    return first, start_fitness
