"""Unions thinned back to ``K`` anchors, then climbed: crossing two sets, and regrowing one.

:func:`thin` removes anchors greedily by their exact loss. :func:`crossover` uses it to
combine two local optima of an :class:`~autoanchor.core.objectives.Objective`;
:func:`regrow` to move one optimum, by adding anchors where boxes lose most and
thinning the grown set back. Both climb the result with
:func:`autoanchor.core.polish.polish`'s pattern search, and neither lowers the fitness.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .levels import within_stride_bounds
from .objectives import Objective
from .polish import Bounds, _climb, _Scores
from .rng import resolve_generator
from .validate import check_int

__all__ = ["crossover", "regrow", "thin"]


def _thin_scores(scores: _Scores, k: int) -> _Scores:
    """:func:`thin` in place on ``scores``, which it returns."""
    while scores.anchors.shape[0] > k:
        losses = scores.objective.reducer.sum(scores.removal_losses())
        scores.drop(int(losses.argmin()))  # the first of equal losses
    return scores


def _thinned(objective: Objective, anchors: Tensor, k: int) -> _Scores:
    """:func:`thin`, returning the scores of the kept anchors."""
    return _thin_scores(_Scores(objective, anchors.to(objective.device, torch.float32)), k)


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


def regrow(
    objective: Objective,
    anchors: Tensor,
    *,
    grows: int,
    most_added: int = 3,
    step: float = 0.05,
    min_step: float = 1e-3,
    generator: torch.Generator | None = None,
    max_rounds: int = 2000,
    bounds: Bounds | None = None,
    rough: Objective | None = None,
) -> tuple[Tensor, Tensor]:
    """Grow-and-thin kicks: add anchors where boxes lose most, climb, thin back to ``K``, climb.

    Kick ``i`` adds ``1 + i % most_added`` anchors at box sizes drawn (with ``generator``)
    in proportion to what their boxes lose in all, ``weight · (1 - best score)``, so that
    a dense range of sizes is drawn as often as it loses; climbs the grown set, whose
    anchors then spread out over the sizes they share; thins it greedily back to ``K``
    anchors (:func:`thin`: where anchors crowd, the one whose loss costs least goes),
    climbs that and keeps it if it ends fitter. One such kick moves an anchor from a
    range of sizes with one too many to a range with one too few, and lets both ranges
    spread out again: a joint move of many anchors, which on sizes that sit on a
    lattice (pixel sizes of small objects, letterboxed) a relocation or a split and a
    merge followed by a climb rarely makes. All ``grows`` kicks are tried: their gains
    are rare and come late as often as early.

    Args:
        objective: scores anchor sets; the kicked sets are climbed and judged on it.
        anchors (Tensor[K, 2]): the start, in pixels (usually a local optimum).
        grows: how many kicks (0: none).
        most_added: the most anchors one kick adds.
        step, min_step, max_rounds: the climbs (see :func:`~autoanchor.core.polish.polish`).
        generator: source of randomness for the drawn sizes; a fresh one seeded with
            :data:`~autoanchor.core.rng.DEFAULT_SEED` when omitted.
        bounds: ``(low [K], high [K])`` stride bounds by area rank; a thinned set outside
            them is not climbed (a failed kick), and no climb of ``K`` anchors leaves them.
        rough: a coarser pooling of the same boxes on which the grown sets are climbed and
            thinned (a cheaper kick); ``None``: ``objective``.

    Returns:
        ``(anchors [K, 2], fitness [])``, never less fit than ``anchors``.

    Example:
        >>> from autoanchor.core.objectives import make_objective
        >>> wh = torch.tensor([[10.0, 10.0], [11.0, 11.0], [100.0, 100.0], [1000.0, 1000.0]])
        >>> objective = make_objective("iou", wh)
        >>> two_small = torch.tensor([[10.0, 10.0], [11.0, 11.0], [100.0, 100.0]])
        >>> kicked, fitness = regrow(objective, two_small, grows=4, generator=torch.Generator().manual_seed(0))
        >>> sorted(int(round(w, -1)) for w, h in kicked.tolist()), bool(fitness > objective(two_small))
        ([10, 100, 1000], True)
    """
    device = objective.device
    generator = resolve_generator(generator, device)
    start = anchors.to(device, torch.float32)
    k = start.shape[0]
    start_fitness = objective(start)
    scores, fitness = _Scores(objective, start), start_fitness
    grow_on = rough if rough is not None else objective
    for kick in range(grows):
        added = 1 + kick % most_added
        # Each process draws from its own boxes; the gathered sizes are the same everywhere.
        loss = (1 - scores.first).clamp(min=0) * objective.weights  # [M]
        positive = int((loss > 0).sum())
        if int(objective.reducer.sum(torch.tensor([positive], device=device))[0]) == 0:
            break  # every box is served perfectly
        picks = (
            torch.multinomial(loss, min(added, positive), generator=generator)
            if positive
            else torch.zeros(0, dtype=torch.long, device=device)
        )
        sizes = objective.reducer.gather(objective.wh[picks])[:added]
        grown = _Scores(grow_on, torch.cat([scores.anchors, sizes]))
        _climb(grown, step=step, min_step=min_step, max_rounds=max_rounds)
        trial = _thin_scores(grown, k)
        if bounds is not None and not bool(within_stride_bounds(trial.anchors, *bounds)):
            continue  # not taken: a failed kick
        if rough is not None:
            trial = scores.at(trial.anchors)
        reached = _climb(trial, step=step, min_step=min_step, max_rounds=max_rounds, bounds=bounds)
        if reached > fitness + 1e-12:
            scores, fitness = trial, reached
    # Judged by the objective itself: the climbs' running figure sums float32 gains.
    reached = objective(scores.anchors)
    if reached > start_fitness + 1e-12:
        return scores.anchors, reached
    return start, start_fitness
