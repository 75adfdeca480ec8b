"""Polishing anchors: a deterministic pattern search in log space, with relocation hops and kicks.

:func:`polish` climbs to the nearest local optimum of an
:class:`~autoanchor.core.objectives.Objective` and, optionally, hops between optima by
relocating single anchors onto badly served box sizes, then kicks the set by
splits and merges; :mod:`autoanchor.core.crossover` combines two optima. Neither
lowers the fitness.
Moving one anchor only changes the boxes it wins or loses, so moves are
scored from each box's best and second-best score (:class:`_Scores`); an
objective that can tell which boxes a small move may affect
(:meth:`~autoanchor.core.objectives.Objective.reachable`) makes the climb's moves
cheaper still.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor

from .boxes import MIN_ANCHOR_PX
from .levels import within_stride_bounds
from .objectives import Objective
from .rng import resolve_generator

__all__ = ["polish"]

logger = logging.getLogger(__name__)

# Moves of the pattern search, in log units: width, height, both (scale), and aspect.
_DIRECTIONS = torch.tensor(
    [[1, 0], [-1, 0], [0, 1], [0, -1], [1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=torch.float32
)
# Rows per chunk when scoring single-anchor moves.
_MOVE_ROWS = 16384
# Up to this many (move, box) pairs, all moves are scored on all boxes at once: fewer, larger ops.
_DENSE_MOVES = 1 << 19
# Boxes per chunk when building the table of scores.
_TABLE_ROWS = 65536
# A kick merges one of this many nearest pairs of anchors (drawn at random).
_MERGE_PAIRS = 3


class _Scores:
    """Each box's score against each current anchor, with its best and second best.

    Tables are laid out ``[K, M]`` (anchor, box) so that reductions over the
    anchors run along contiguous rows of boxes. Besides the scores it keeps the
    objective's :meth:`~autoanchor.core.objectives.Objective.pair_raw` table (``raw``;
    the score table itself when the objective keeps scores), from which an
    objective may bound which boxes a small move can change
    (:meth:`~autoanchor.core.objectives.Objective.reachable`).
    """

    def __init__(self, objective: Objective, anchors: Tensor) -> None:
        self.objective = objective
        self.reset(anchors)

    def reset(self, anchors: Tensor) -> None:
        """Start again from ``anchors``."""
        self.anchors = anchors.clone()
        self.raw = self._against(anchors)  # [K,M]
        self.table = self.objective.raw_score(self.raw)
        self._refresh()

    def _against(self, anchors: Tensor) -> Tensor:
        """The objective's raw table of every box against each of ``anchors [A, 2]``: ``[A, M]``."""
        objective = self.objective
        parts = []
        for start in range(0, objective.wh.shape[0], _TABLE_ROWS):
            parts.append(objective.pair_raw(anchors, slice(start, start + _TABLE_ROWS)))
        return torch.cat(parts, 1)

    def dense(self, positions: Tensor) -> bool:
        """Whether moves to ``positions`` are best scored on every box at once (few boxes)."""
        return positions.numel() * self.objective.wh.shape[0] <= _DENSE_MOVES

    def score_moves(self, positions: Tensor) -> Tensor:
        """Every box's score against each of ``positions [A, D, 2]``: ``[A, D, M]``."""
        return self.objective.score_moves(positions)

    def _refresh(self) -> None:
        self.first, self.owner = self.table.max(0)  # [M]
        if self.table.shape[0] > 1:
            self.second = self.table.scatter(0, self.owner[None], -1.0).amax(0)
        else:
            self.second = torch.zeros_like(self.first)
        self._without: Tensor | None = None

    def without(self) -> Tensor:
        """Each box's best score if anchor ``k`` were gone: ``[K, M]``.

        That is its second best where ``k`` is its best, else its best: the best
        scores repeated, with the second best scattered in.
        """
        if self._without is None:
            self._without = self.first.expand_as(self.table).scatter(0, self.owner[None], self.second[None])
        return self._without

    def at(self, anchors: Tensor) -> _Scores:
        """The scores of other anchors on the same boxes."""
        other = object.__new__(_Scores)
        other.objective = self.objective
        other.reset(anchors)
        return other

    def take(self, other: _Scores) -> None:
        """Become ``other`` (which must not be used afterwards)."""
        self.__dict__.update(other.__dict__)

    def copy(self) -> _Scores:
        twin = object.__new__(_Scores)
        twin.__dict__.update(self.__dict__)
        twin.anchors, twin.table = self.anchors.clone(), self.table.clone()
        twin.raw = twin.table if self.raw is self.table else self.raw.clone()
        return twin

    def local_sum(self) -> Tensor:
        """``Σ weight · best score`` over this process's boxes (float64)."""
        return self.objective.weighted_sum(self.first[None])[0]

    def fitness(self) -> Tensor:
        return self.objective.reducer.sum(self.local_sum().reshape(1))[0] / self.objective.total_weight

    def try_moves(self, which: Tensor, positions: Tensor) -> Tensor:
        """Fitness if anchor ``which[c]`` alone moved to ``positions[c]``: ``[C]``.

        A box's score is then the better of the moved anchor's and the best of
        the others, which is its best or, if the moved anchor was its best, its
        second best: ``O(C M)`` work instead of ``O(C M K)``.
        """
        objective = self.objective
        totals = torch.zeros(len(positions), dtype=torch.float64, device=positions.device)
        without = self.without()
        for start in range(0, objective.wh.shape[0], _MOVE_ROWS):
            rows = slice(start, start + _MOVE_ROWS)
            moved = objective.match(positions[:, None, :], rows)[..., 0]  # [C,m]
            others = without[which, rows]  # [C,m]
            totals += objective.weighted_sum(torch.maximum(others, moved), rows)
        return objective.reducer.sum(totals) / objective.total_weight

    def try_near_moves(self, positions: Tensor, reach: float, moved: Tensor | None = None) -> Tensor:
        """Fitness if anchor ``k`` alone moved to ``positions[k, d]``: ``[K, D]``.

        The moves must stay within ``reach`` (log units) of the anchor. With few
        boxes (:meth:`dense`) every move is scored on every box, from ``moved``
        (:meth:`score_moves` of ``positions``) when the caller keeps it. Else
        each anchor's moves are scored only on the boxes they can affect (the
        objective's
        :meth:`~autoanchor.core.objectives.Objective.reachable` boxes), gathered into
        one padded ``[K, R]`` index so that all moves are scored at once; an
        objective without such a bound scores them with :meth:`try_moves`.
        """
        objective = self.objective
        k = self.anchors.shape[0]
        if self.dense(positions):
            return self._try_moves_dense(self.score_moves(positions) if moved is None else moved)
        reachable = objective.reachable(self.raw, self.owner, reach)  # [K,M]
        if reachable is None:
            which = torch.arange(k, device=positions.device).repeat_interleave(positions.shape[1])
            return self.try_moves(which, positions.reshape(-1, 2)).view(positions.shape[:2])
        anchor_of, row = reachable.nonzero(as_tuple=True)  # grouped by anchor
        counts = torch.bincount(anchor_of, minlength=k)
        width = int(counts.max())
        slot = torch.arange(len(row), device=row.device) - (counts.cumsum(0) - counts)[anchor_of]
        rows = torch.zeros(k, width, dtype=torch.long, device=row.device).index_put_((anchor_of, slot), row)  # [K,R]
        valid = torch.arange(width, device=row.device)[None] < counts[:, None]  # [K,R]

        first = self.first[rows]  # [K,R]
        others = self.without().gather(1, rows)  # [K,R]
        moved_scores = objective.gathered_scores(rows, positions)  # [K,D,R]
        gain = (torch.maximum(others[:, None], moved_scores) - first[:, None]).double()  # [K,D,R]
        weights = (objective.weights[rows] * valid).double()  # [K,R]
        totals = self.local_sum() + (gain * weights[:, None]).sum(-1)  # [K,D]
        return objective.reducer.sum(totals) / objective.total_weight

    def _try_moves_dense(self, moved: Tensor) -> Tensor:
        """:meth:`try_near_moves` for few boxes from the moves' scores ``[K, D, M]``."""
        objective = self.objective
        gain = (torch.maximum(self.without()[:, None], moved) - self.first).double()  # [K,D,M]
        totals = self.local_sum() + gain @ objective.weights_double
        return objective.reducer.sum(totals) / objective.total_weight

    def try_relocations(self, targets: Tensor) -> Tensor:
        """Fitness if anchor ``k`` alone jumped to ``targets[t]``: ``[T, K]``.

        A box's new score is ``max(first, s)`` for the target's score ``s``, or
        ``max(second, s)`` if the jumping anchor was its best; summed, that is
        the current total, less what each anchor's boxes lose to their second
        best, plus two ``[T, M]`` gain terms: ``O(T M)`` work for ``T K`` moves.
        """
        objective = self.objective
        owned = self._owned()  # [K,M]
        loss = self.removal_losses(owned)  # [K]
        gain_kept = torch.zeros(len(targets), dtype=torch.float64, device=targets.device)
        gain_swap = torch.zeros(len(targets), len(loss), dtype=torch.float64, device=targets.device)
        for start in range(0, objective.wh.shape[0], _MOVE_ROWS):
            rows = slice(start, start + _MOVE_ROWS)
            score = objective.match(targets[:, None, :], rows)[..., 0]  # [T,m]
            over_first = (score - self.first[rows]).clamp_(min=0).double()
            over_second = (score - self.second[rows]).clamp_(min=0).double()
            gain_kept += objective.weighted_sum(over_first, rows)
            gain_swap += (over_second - over_first) @ owned[:, rows].T
        totals = self.local_sum() - loss[None] + gain_kept[:, None] + gain_swap  # [T,K]
        return objective.reducer.sum(totals) / objective.total_weight

    def _owned(self) -> Tensor:
        """Each box's weight under its best anchor, zero under the others: ``[K, M]`` float64."""
        owned = torch.zeros_like(self.table, dtype=torch.float64).scatter_(0, self.owner[None], 1.0)
        return owned.mul_(self.objective.weights_double)

    def removal_losses(self, owned: Tensor | None = None) -> Tensor:
        """What the total score would lose without anchor ``k``, the others kept: ``[K]`` (this process's boxes).

        Only the boxes whose best it is lose anything: their best falls to their second best.
        ``owned`` is :meth:`_owned`, when the caller has it already.
        """
        owned = self._owned() if owned is None else owned
        return owned @ (self.first - self.second).double()

    def drop(self, anchor: int) -> None:
        """Remove anchor ``anchor`` (the others keep their order)."""
        keep = torch.ones(self.anchors.shape[0], dtype=torch.bool, device=self.anchors.device)
        keep[anchor] = False
        same = self.raw is self.table
        self.anchors, self.raw = self.anchors[keep], self.raw[keep]
        self.table = self.raw if same else self.table[keep]
        self._refresh()

    def move(self, anchor: int, position: Tensor) -> None:
        self.anchors[anchor] = position
        column = self._against(position[None])[0]  # [M]
        self.raw[anchor] = column
        if self.raw is not self.table:
            self.table[anchor] = self.objective.raw_score(column)
        self._refresh()


Bounds = tuple[Tensor, Tensor]
"""``(low [K], high [K])``: bounds on ``sqrt(w * h)`` per area rank, from :func:`~autoanchor.core.levels.stride_bounds`."""


def _feasible_moves(anchors: Tensor, positions: Tensor, bounds: Bounds) -> Tensor:
    """Whether moving anchor ``k`` alone to ``positions[k, d]`` keeps the set within ``bounds``: ``[K, D]``."""
    k = anchors.shape[0]
    every = torch.arange(k, device=anchors.device)
    sets = anchors.expand(k, positions.shape[1], k, 2).clone()  # [K,D,K,2]
    sets[every, :, every] = positions
    return within_stride_bounds(sets, *bounds)


def _feasible_relocations(anchors: Tensor, targets: Tensor, bounds: Bounds) -> Tensor:
    """Whether anchor ``k`` alone jumping to ``targets[t]`` keeps the set within ``bounds``: ``[T, K]``."""
    k = anchors.shape[0]
    every = torch.arange(k, device=anchors.device)
    sets = anchors.expand(targets.shape[0], k, k, 2).clone()  # [T,K,K,2]
    sets[:, every, every] = targets[:, None, :]
    return within_stride_bounds(sets, *bounds)


def _climb(
    scores: _Scores, *, step: float, min_step: float, max_rounds: int, bounds: Bounds | None = None
) -> Tensor:
    """Pattern search in place on ``scores``; returns the fitness reached.

    Each round scores every single-anchor move, then tries the best improving
    move of every anchor together; the joint step is kept only when it beats
    the best single move, which is taken otherwise. With few boxes the moves'
    scores on every box are kept from round to round, and only the moved
    anchors' are scored again. With ``bounds``, a move (single or joint) that
    would take the set out of them is never taken.
    """
    directions = _DIRECTIONS.to(scores.anchors.device)
    fitness = scores.fitness()
    rounds = 0
    offsets = None
    while step >= min_step and rounds < max_rounds:
        if offsets is None:  # a new step size
            offsets = (directions * step).exp()  # [D,2]
            positions = (scores.anchors[:, None, :] * offsets).clamp_(min=MIN_ANCHOR_PX)  # [K,D,2]
            moved = scores.score_moves(positions) if scores.dense(positions) else None
        rounds += 1
        totals = scores.try_near_moves(positions, step, moved)  # [K,D]
        if bounds is not None:
            totals = totals.masked_fill(~_feasible_moves(scores.anchors, positions, bounds), -math.inf)
        gain, choice = totals.max(1)  # best move of each anchor
        improving = gain > fitness + 1e-12
        count = int(improving.sum())
        if count == 0:
            step /= 2
            offsets = None
            continue
        best = int(gain.argmax())  # the best improving move (the first, on ties)
        if count > 1:
            joint = scores.anchors.clone()
            joint[improving] = positions[improving, choice[improving]]
        if count > 1 and (bounds is None or bool(within_stride_bounds(joint, *bounds))):
            candidate = scores.at(joint)
            joint_fitness = candidate.fitness()
            if joint_fitness > gain[best] + 1e-12:
                scores.take(candidate)
                fitness = joint_fitness
                positions[improving] = (joint[improving][:, None, :] * offsets).clamp_(min=MIN_ANCHOR_PX)
                if moved is not None:
                    moved[improving] = scores.score_moves(positions[improving])
                continue
        # Plain integer indexing from here: much cheaper than indexing with tensors.
        scores.move(best, positions[best, int(choice[best])])
        fitness = gain[best]
        positions[best] = (scores.anchors[best] * offsets).clamp_(min=MIN_ANCHOR_PX)
        if moved is not None:
            moved[best] = scores.score_moves(positions[best][None])[0]
    return fitness


def _split_merge(scores: _Scores, kick_size: float, generator: torch.Generator) -> Tensor | None:
    """A split-and-merge kick of ``scores.anchors [K, 2]`` (K >= 3); ``None`` if no anchor has a deficit."""
    anchors, device = scores.anchors, scores.anchors.device
    k = anchors.shape[0]
    log_anchors = anchors.log()
    distance = (log_anchors[:, None] - log_anchors[None]).abs().amax(-1)  # [K,K], L-inf in log units
    distance.fill_diagonal_(math.inf)  # an anchor is no pair with itself
    nearest = distance.flatten().argsort()[: 2 * min(_MERGE_PAIRS, k * (k - 1) // 2) : 2]  # each pair is there twice
    pair = int(nearest[int(torch.randint(len(nearest), (1,), generator=generator, device=device))])
    kept, freed = pair // k, pair % k
    deficit = (1 - scores.first).clamp(min=0) * scores.objective.weights
    owned = torch.zeros(k, dtype=torch.float64, device=device).index_add_(0, scores.owner, deficit.double())  # [K]
    owned[[kept, freed]] = 0
    if float(owned.sum()) <= 0:
        return None
    split = int(torch.multinomial(owned, 1, generator=generator))
    direction = torch.randn(2, generator=generator, device=device, dtype=anchors.dtype)
    offset = direction / direction.norm().clamp(min=1e-12) * kick_size  # [2]
    kicked = anchors.clone()
    kicked[kept] = (log_anchors[kept] + log_anchors[freed]).div(2).exp()
    kicked[freed] = anchors[split] * offset.exp()
    kicked[split] = anchors[split] * (-offset).exp()
    return kicked.clamp_(min=MIN_ANCHOR_PX)


def polish(
    objective: Objective,
    anchors: Tensor,
    *,
    step: float = 0.05,
    min_step: float = 1e-3,
    relocations: int = 0,
    tries: int = 4,
    patience: int = 2,
    hop_min_step: float = 4e-3,
    hops: int = 64,
    kicks: int = 0,
    kick_size: float = 0.3,
    kick_patience: int = 6,
    generator: torch.Generator | None = None,
    max_rounds: int = 2000,
    bounds: Bounds | None = None,
) -> tuple[Tensor, Tensor]:
    """Climb to a local optimum, then hop between optima by relocating anchors.

    The climb is a pattern search in log space: each round tries every anchor
    moved by ``step`` (log units) in eight directions (wider, taller, larger,
    more elongated, and their opposites) and takes the best move that raises
    the fitness; when none does, the step is halved, down to ``min_step``.

    With ``relocations > 0`` the converged anchors then take part in an
    iterated local search: ``relocations`` box sizes are drawn (with
    ``generator``) in proportion to how badly the current anchors serve them
    (each size once, whatever its weight, so that rare sizes get drawn too);
    the ``tries`` most promising moves of one anchor onto one of them are each
    followed by a new climb, and the first that ends fitter than before is
    kept. The search stops after ``patience`` draws in a row bring nothing.
    This escapes optima where two anchors share a cluster while another goes
    without, which no small step can fix.

    With ``kicks > 0`` the search then kicks the best anchors found by a
    split and a merge: one of the three
    nearest pairs of anchors (drawn with ``generator``) becomes one anchor at
    their geometric mean, and the freed anchor splits another in two, ``±
    kick_size`` log units apart in a random direction; the anchor split is
    drawn in proportion to how badly its boxes are served. The kicked set is
    climbed and kept if it ends fitter. The kicks end after ``kick_patience``
    in a row bring nothing, or after ``kicks`` in all. They move optima that only a
    joint move of several anchors leaves (one anchor too many at small sizes,
    one too few at large ones), which single relocations cannot.

    Moving a single anchor only changes the boxes it wins or loses, so moves are
    scored from each box's best and second-best score (see :class:`_Scores`).
    Without relocations the search is deterministic. The result is never less
    fit than the start.

    Args:
        objective: scores anchor sets.
        anchors (Tensor[K, 2]): the start, in pixels.
        step: first move size, in log units (0.05 is about 5 %).
        min_step: a climb ends when the step falls below this.
        relocations: box sizes drawn per hop (0: climb only).
        tries: relocations climbed from per draw.
        patience: draws in a row without improvement before the search ends.
        hop_min_step: where the climbs after a relocation stop.
        hops: the most relocations climbed from in all (a bound on the time).
        kicks: the most split-and-merge kicks climbed from (0: none; needs 3 or more anchors).
        kick_size: half the distance between the two halves of a split, in log units.
        kick_patience: kicks in a row without improvement before the kicks end.
        generator: source of randomness for the relocations; a fresh one seeded
            with :data:`~autoanchor.core.rng.DEFAULT_SEED` when omitted.
        max_rounds: an upper bound on the rounds of each climb.
        bounds: ``(low [K], high [K])`` bounds on each anchor's ``sqrt(w * h)``
            in pixels by area rank (:func:`~autoanchor.core.levels.stride_bounds`);
            no climb move or relocation that leaves them is taken, so a start
            within them gives a result within them. ``None``: unbounded.

    Returns:
        ``(anchors [K, 2], fitness [])``.
    """
    device = objective.device
    if relocations > 0 or kicks > 0:
        generator = resolve_generator(generator, device)
    start = anchors.to(device, torch.float32)
    scores = _Scores(objective, start)
    k = scores.anchors.shape[0]
    fitness = _climb(scores, step=step, min_step=min_step, max_rounds=max_rounds, bounds=bounds)
    failures, climbs = 0, 0
    while relocations > 0 and failures < patience and climbs < hops:
        # Each process draws from its own boxes; the gathered targets are the same everywhere.
        deficit = (1 - scores.first).clamp(min=0)  # [M], per pooled size, not per box
        positive = int((deficit > 0).sum())
        if int(objective.reducer.sum(torch.tensor([positive], device=device))[0]) == 0:
            break
        share = min(positive, math.ceil(relocations / objective.reducer.world_size))
        picks = (
            torch.multinomial(deficit, share, generator=generator)
            if share
            else torch.zeros(0, dtype=torch.long, device=device)
        )
        targets = objective.reducer.gather(objective.wh[picks])
        totals = scores.try_relocations(targets)  # [T,K]
        if bounds is not None:
            feasible = _feasible_relocations(scores.anchors, targets, bounds)
            totals = totals.masked_fill(~feasible, -math.inf)
        failures += 1
        ranked = totals.flatten().argsort(descending=True)[: min(tries, hops - climbs)]
        if bounds is not None:
            ranked = ranked[feasible.flatten()[ranked]]
        for candidate in ranked.tolist():
            climbs += 1
            trial = scores.copy()
            trial.move(candidate % k, targets[candidate // k])
            reached = _climb(trial, step=step, min_step=hop_min_step, max_rounds=max_rounds, bounds=bounds)
            if reached > fitness + 1e-12:
                scores, fitness, failures = trial, reached, 0
                break
    failures, kicked = 0, 0
    while k >= 3 and failures < kick_patience and kicked < kicks:
        kicked += 1
        failures += 1
        trial_anchors = _split_merge(scores, kick_size, generator)
        if trial_anchors is None:  # every box served perfectly: nothing to split
            break
        if bounds is not None and not bool(within_stride_bounds(trial_anchors, *bounds)):
            continue  # a kick that leaves the bounds is not taken (a failed kick)
        trial = scores.at(trial_anchors)
        reached = _climb(trial, step=step, min_step=hop_min_step, max_rounds=max_rounds, bounds=bounds)
        if reached > fitness + 1e-12:
            scores, fitness, failures = trial, reached, 0
    if relocations > 0 or kicks > 0:  # hops and kicks climb coarsely; finish the last one
        fitness = _climb(scores, step=hop_min_step, min_step=min_step, max_rounds=max_rounds, bounds=bounds)
    reached, start_fitness = objective(scores.anchors), objective(start)
    logger.debug("polish: fitness %.6f (from %.6f)", float(reached), float(start_fitness))
    if reached < start_fitness:  # scores are float32, so a move's gain can be off by an ulp or so
        return start, start_fitness
    return scores.anchors, reached
