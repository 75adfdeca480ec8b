"""Pair moves: two anchors neighbouring in area moved together onto nearby box sizes.

The search's last stage (``docs/search.md``, stage 9). Where box sizes sit on a lattice
(whole pixels of small objects, letterboxed), two neighbouring anchors often have to step
to the next lattice points together, while each step alone loses: no climb of one anchor
at a time (:func:`autoanchor.core.polish.polish`) makes that move. :func:`pair_moves`
scores every such joint move onto nearby pooled sizes exactly, on the boxes it can change.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .levels import within_stride_bounds
from .objectives import Objective
from .polish import Bounds, _Scores

__all__ = ["pair_moves"]


def pair_moves(
    objective: Objective,
    anchors: Tensor,
    *,
    near: int = 8,
    max_rounds: int = 100,
    bounds: Bounds | None = None,
) -> tuple[Tensor, Tensor]:
    """Move two anchors neighbouring in area at once onto nearby box sizes, while that gains.

    For each pair of anchors next to each other in area, every combination of the
    ``near`` pooled sizes nearest to the first (L∞ distance of log sizes) with the
    ``near`` nearest to the second is scored exactly, from each box's best score among
    the other anchors; the best gain over all pairs is taken, and the rounds go on
    until none gains. Only the boxes the two anchors win, or that a candidate could win
    (the objective's :meth:`~autoanchor.core.objectives.Objective.reachable` bound), are
    scored; the others keep their best. On sizes that sit on a lattice (whole pixels of small objects,
    letterboxed) two neighbouring anchors often have to step to the next lattice
    points together: each alone loses, so no climb of one anchor at a time, nor a
    relocation, makes the move.

    Args:
        objective: scores the anchor sets; its sizes are the candidate positions.
        anchors (Tensor[K, 2]): the start, in pixels (usually a local optimum).
        near: candidate sizes per anchor (0: none).
        max_rounds: the most moves taken.
        bounds: ``(low [K], high [K])`` stride bounds by area rank; a move that breaks
            them is not taken (the next best move is).

    Returns:
        ``(anchors [K, 2], fitness [])``, never less fit than ``anchors``: sorted by area
        when a move was taken, else ``anchors`` as given.

    Example:
        >>> from autoanchor.core.objectives import make_objective
        >>> # square boxes of 4-9 px; from anchors at 6 and 9 px no single anchor gains by
        >>> # moving to another of these sizes, but moving both does
        >>> sides = torch.arange(4.0, 10.0)
        >>> objective = make_objective("iou", torch.stack([sides, sides], 1), torch.tensor([7.0, 5, 8, 7, 2, 7]))
        >>> moved, fitness = pair_moves(objective, torch.tensor([[6.0, 6.0], [9.0, 9.0]]))
        >>> moved.tolist(), round(float(objective(torch.tensor([[6.0, 6.0], [9.0, 9.0]]))), 4), round(float(fitness), 4)
        ([[4.0, 4.0], [7.0, 7.0]], 0.7863, 0.8012)
    """
    near = min(int(near), objective.wh.shape[0])
    start = anchors.to(objective.device, torch.float32)
    current = start[start.double().prod(-1).argsort()]
    start_fitness = objective(start)
    fitness = start_fitness
    k = current.shape[0]
    if near < 1 or k < 2:
        return start, start_fitness
    sizes = objective.wh.float()
    log_sizes = sizes.log()
    weights = objective.weights_double
    for _ in range(max_rounds):
        scores = _Scores(objective, current)
        local = scores.local_sum()
        best_total, best_set = float(fitness) + 1e-12, None
        # Each anchor's nearest sizes (L∞ in log space) and how far the farthest of them lies.
        distance, nearest = (log_sizes - current.log()[:, None]).abs().amax(-1).topk(near, largest=False)  # [K,C]
        farthest = distance.amax(1).tolist()  # [K]
        for i in range(k - 1):
            candidates, reach = (sizes[nearest[i]], sizes[nearest[i + 1]]), max(farthest[i], farthest[i + 1])
            # Only boxes the two anchors win, or that a candidate could win, can change.
            reachable = objective.reachable(scores.raw, scores.owner, reach)
            rows = (
                torch.arange(sizes.shape[0], device=sizes.device)
                if reachable is None
                else (reachable[i] | reachable[i + 1]).nonzero()[:, 0]
            )
            # Each box's best score among the anchors other than i and i+1.
            others = torch.cat([scores.table[:i, rows], scores.table[i + 2 :, rows]]).amax(0) if k > 2 else None
            first, second = (objective.raw_score(objective.pair_raw(c, rows)) for c in candidates)  # [C,R] each
            pair = torch.maximum(first[:, None, :], second[None, :, :])  # [C,C,R]
            if others is not None:
                pair = torch.maximum(pair, others)
            kept = local - scores.first[rows].double() @ weights[rows]  # the boxes no candidate can change
            totals = objective.reducer.sum((kept + pair.double() @ weights[rows]).flatten()) / objective.total_weight
            for index in totals.argsort(descending=True).tolist():
                total = float(totals[index])
                if total <= best_total:
                    break
                trial = current.clone()
                trial[i], trial[i + 1] = candidates[0][index // near], candidates[1][index % near]
                if bounds is None or bool(within_stride_bounds(trial, *bounds)):
                    best_total, best_set = total, trial
                    break
        if best_set is None:
            break
        current = best_set[best_set.double().prod(-1).argsort()]
        fitness = objective(current)
    if fitness > start_fitness + 1e-12:
        return current, fitness
    return start, start_fitness
