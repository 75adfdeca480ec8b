"""Improving anchors on a fixed set of box sizes: the objective and the searches over it.

* :class:`Objective` scores whole populations of anchor sets ``[P, K, 2]`` in one
  pass: yolov5's ratio fitness or Avg IoU, on weighted box sizes, optionally
  summed across processes.
* :func:`evolve` is yolov5's mutate-and-keep-if-fitter search generalised to
  ``population`` mutants per generation (``population=1`` is yolov5's scheme).
  The loop never reads a value back to the host, so on a GPU it runs without
  synchronisation.
* :func:`differential_evolution` is a batched, seeded DE over the log sizes.
* :func:`polish` is a deterministic pattern search in log space that climbs to
  the nearest local optimum; it never lowers the fitness.

Everything takes an explicit ``torch.Generator``; nothing touches global RNGs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import Tensor

from .kmeans import sort_by_area
from .metrics import Metric, check_anchors, check_metric, check_thr, check_wh
from .parallel import LocalReducer, Reducer

__all__ = ["Objective", "mutation_factors", "mutate", "evolve", "differential_evolution", "polish"]

logger = logging.getLogger(__name__)

# Anchors never shrink below this many pixels per side (yolov5's rule).
MIN_ANCHOR_PX = 2.0

Rows = "slice | Tensor"
"""Which boxes: a slice or an index tensor."""

Progress = Callable[[int, Tensor], None]
"""Called as ``progress(generation, best_fitness)``; the fitness stays a device tensor."""


class Objective:
    """The fitness of anchor sets on a fixed, weighted set of box sizes.

    For ``metric="ratio"`` the fitness is yolov5's ``mean(best * (best > 1/thr))``
    with ``best`` the ratio metric against the best anchor. It is computed in log
    space, where the ratio metric is ``exp(-d)`` for the L∞ distance ``d`` of the
    log sizes: no divisions, and one ``exp`` per box instead of one per pair. For
    ``metric="iou"`` it is the Avg IoU.

    Args:
        wh (Tensor[M, 2]): box (width, height) in pixels; with a ``reducer``, this
            process's share.
        weights (Tensor[M], optional): how many boxes each row stands for.
        metric: ``"ratio"`` or ``"iou"``.
        thr: largest allowed side ratio (yolov5's ``anchor_t``), for ``"ratio"``.
        reducer: adds partial sums over processes (see :mod:`autoanchor.parallel`).
        chunk: the most elements of one ``[P, m, K]`` temporary; boxes are taken in
            chunks to stay within it.
    """

    def __init__(
        self,
        wh: Tensor,
        weights: Tensor | None = None,
        *,
        metric: Metric = "ratio",
        thr: float = 4.0,
        reducer: Reducer | None = None,
        chunk: int = 1 << 21,
    ) -> None:
        check_wh(wh)
        self.metric = check_metric(metric)
        thr = check_thr(thr)
        self.log_thr = math.log(thr)
        self.inv_thr = 1 / thr
        self.reducer = reducer if reducer is not None else LocalReducer()
        self.chunk = chunk
        self.wh = wh.float()
        self.log_wh = self.wh.log()
        self.log_wh_t = self.log_wh.T.contiguous()  # [2,M]
        self.weights = (
            torch.ones(wh.shape[0], device=wh.device) if weights is None else weights.to(wh.device).float()
        )
        self.weights_double = self.weights.double()
        self.total_weight = self.reducer.sum(self.weights_double.sum().reshape(1))[0]

    @property
    def device(self) -> torch.device:
        return self.wh.device

    def log_distances(self, log_anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        """L∞ distance of log sizes from every box to each anchor: ``[..., 2] -> [..., m]``.

        The ratio metric is ``exp(-distance)``. Boxes run along the last dimension,
        so that the reductions over sides (here) and anchors (by callers) run across
        rows of contiguous boxes, several times faster than over a short last one.
        """
        return (self.log_wh_t[:, rows] - log_anchors[..., None]).abs_().amax(-2)

    def distance(self, anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        """Ratio metric only: L∞ distance of log sizes, ``[P, m, K]``; the metric is ``exp(-distance)``."""
        return self.log_distances(anchors.log(), rows).transpose(-1, -2)

    def score(self, distance: Tensor) -> Tensor:
        """Ratio metric only: what a box at ``distance`` from its best anchor adds to the fitness.

        That is the ratio metric ``exp(-distance)`` where it passes ``1/thr``, else 0.
        (``torch.threshold`` is one float kernel; a boolean mask and ``torch.where``
        cost about four times as much on the CPU.)
        """
        return torch.threshold_(torch.exp(-distance), self.inv_thr, 0.0)

    def match(self, anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        """Each box's score against each anchor: ``[P, m, K]`` for anchors ``[P, K, 2]``.

        The score is what the box contributes to the fitness if that anchor is its
        best: the thresholded ratio metric, or the IoU. ``rows`` picks boxes (a
        slice or an index tensor).
        """
        if self.metric == "ratio":
            return self.score(self.distance(anchors, rows))
        wh = self.wh[rows]
        inter = torch.minimum(wh[None, :, None, 0], anchors[:, None, :, 0]) * torch.minimum(
            wh[None, :, None, 1], anchors[:, None, :, 1]
        )  # [P,m,K]
        union = (wh[:, 0] * wh[:, 1])[None, :, None] + (anchors[..., 0] * anchors[..., 1])[:, None, :] - inter
        return inter / union

    def best(self, anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        """Each box's score against its best anchor: ``[P, m]``."""
        if self.metric == "ratio":
            # exp(-min d) = max exp(-d): take the minimum before the single exp.
            return self.score(self._min_distance(anchors.log(), rows))
        return self.match(anchors, rows).amax(-1)

    def weighted_sum(self, values: Tensor, rows: Rows = slice(None)) -> Tensor:
        """``Σ weight · value`` over this process's boxes, in float64: ``[P, m] -> [P]``."""
        return values.double() @ self.weights_double[rows]

    def of_log(self, log_anchors: Tensor) -> Tensor:
        """Fitness of anchor sets given as log sizes ``[P, K, 2]``: float64 ``[P]``.

        The lean path of the evolution's inner loop: no validation, and for small
        sets of boxes a single pass.
        """
        return self.log_sums(log_anchors) / self.total_weight

    def log_sums(self, log_anchors: Tensor) -> Tensor:
        """:meth:`of_log` before the division by the total weight (summed over processes)."""
        if self.metric != "ratio" or log_anchors.shape[0] * log_anchors.shape[1] * self.wh.shape[0] > self.chunk:
            return self.sums(log_anchors.exp())
        dist = self._min_distance(log_anchors)  # [P,M]
        return self.reducer.sum(self.score(dist).double() @ self.weights_double)

    def _min_distance(self, log_anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        """Ratio metric only: each box's distance to its nearest anchor, ``[P, K, 2] -> [P, m]``."""
        return self.log_distances(log_anchors, rows).amin(1)

    def __call__(self, anchors: Tensor) -> Tensor:
        """Fitness of each anchor set: ``[P, K, 2] -> float64 [P]`` (``[K, 2] -> []``)."""
        check_anchors(anchors)
        single = anchors.ndim == 2
        fitness = self.sums(anchors[None] if single else anchors) / self.total_weight
        return fitness[0] if single else fitness

    def sums(self, population: Tensor) -> Tensor:
        """``Σ weight · score`` of each anchor set ``[P, K, 2]``, summed over processes: float64 ``[P]``."""
        population = population.to(self.device, torch.float32)
        step = max(1, self.chunk // max(1, population.shape[0] * population.shape[1]))
        total = torch.zeros(population.shape[0], dtype=torch.float64, device=self.device)
        for start in range(0, self.wh.shape[0], step):
            rows = slice(start, start + step)
            total += self.weighted_sum(self.best(population, rows), rows)
        return self.reducer.sum(total)


def mutation_factors(
    shape: tuple[int, ...],
    *,
    mutation_prob: float = 0.9,
    sigma: float = 0.1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Factors of yolov5's anchor mutation: ``Tensor[*shape]`` with ``shape = (..., count, K, 2)``.

    Each coordinate is mutated with probability ``mutation_prob`` by a factor
    ``1 + step · N(0, 1) · sigma``, with one ``step ~ U(0, 1)`` per mutant (per
    ``[K, 2]`` block), clipped to [0.3, 3.0]; the others keep a factor of 1.
    yolov5 draws again while a mutant would change nothing; here the mask of
    mutated coordinates is drawn directly from its law given that it is not
    empty (the first mutated coordinate from a truncated geometric law, the rest
    independently): the same law, without a loop or a host sync.

    The factors do not depend on the anchors, so a whole run's worth can be
    drawn at once.
    """
    if not 0 < mutation_prob <= 1:
        raise ValueError(f"mutation_prob must be in (0, 1], got {mutation_prob}")
    *batch, k, two = shape
    size = k * two
    mask = torch.rand(*batch, size, generator=generator, device=device) < mutation_prob  # [...,2K]
    if mutation_prob < 1:
        # P(first mutated index = j | not empty) ∝ (1 - p)^j p, for j < 2K.
        keep = 1 - mutation_prob
        u = torch.rand(*batch, 1, generator=generator, device=device)
        first = torch.floor(torch.log1p(-u * (1 - keep**size)) / math.log(keep)).clamp_(0, size - 1)
        index = torch.arange(size, device=device)
        fresh = (torch.rand(*batch, size, generator=generator, device=device) < mutation_prob) & (index > first)
        fresh |= index == first
        mask = torch.where(mask.any(-1, keepdim=True), mask, fresh)
    step = torch.rand(*batch, 1, generator=generator, device=device)
    noise = torch.randn(*batch, size, generator=generator, device=device)
    return (1 + mask * step * noise * sigma).clamp_(0.3, 3.0).view(shape)


def mutate(
    parent: Tensor,
    count: int,
    *,
    mutation_prob: float = 0.9,
    sigma: float = 0.1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """yolov5's anchor mutation, ``count`` times at once (see :func:`mutation_factors`).

    Args:
        parent (Tensor[K, 2]): anchors in pixels.
        count: how many mutants.
        mutation_prob: chance that a coordinate is mutated, in (0, 1].
        sigma: scale of the mutation.
        generator: source of randomness (on ``parent.device``).

    Returns:
        Tensor[count, K, 2] of mutated anchors in pixels, each side at least 2 px.
    """
    factors = mutation_factors(
        (count, *parent.shape), mutation_prob=mutation_prob, sigma=sigma, generator=generator, device=parent.device
    )
    return (parent[None] * factors.to(parent.dtype)).clamp_(min=MIN_ANCHOR_PX)


def evolve(
    objective: Objective,
    anchors: Tensor,
    *,
    gen: int = 1000,
    population: int = 1,
    mutation_prob: float = 0.9,
    sigma: float = 0.1,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
) -> tuple[Tensor, Tensor]:
    """Mutate and keep if fitter, ``population`` mutants per generation.

    Every generation makes ``population`` mutants of the current anchors
    (:func:`mutate`) and keeps the fittest of them if it beats the current ones.
    ``population=1`` is yolov5's (1+1) scheme; larger populations use each
    generation's pass over the boxes for several candidates at once. The
    mutation factors of all generations are drawn up front; the loop itself
    reads nothing back from the device. The fitness never decreases.

    Args:
        objective: scores anchor sets.
        anchors (Tensor[K, 2]): the start, in pixels.
        gen: generations.
        population: mutants per generation (λ).
        mutation_prob, sigma: see :func:`mutation_factors`.
        generator: source of randomness (on the objective's device).
        progress: called after every generation with the best fitness so far (a
            device tensor: reading it forces a sync, so a caller on a GPU should
            do so only now and then).

    Returns:
        ``(anchors [K, 2], fitness [])``, the best found, on the objective's device.
    """
    if gen < 0:
        raise ValueError(f"gen must be at least 0, got {gen}")
    if population < 1:
        raise ValueError(f"population must be at least 1, got {population}")
    start = anchors.to(objective.device, torch.float32)
    start_fitness = objective(start)
    # Mutate in log space: the factors become steps, and the ratio metric needs log sizes anyway.
    log_steps = mutation_factors(
        (gen, population, *start.shape),
        mutation_prob=mutation_prob,
        sigma=sigma,
        generator=generator,
        device=objective.device,
    ).log_()
    # The parent rides along as candidate 0, so one argmax picks the next parent; argmax takes
    # the first of equals, so a mutant must be strictly fitter. Sums are compared undivided.
    log_best, log_floor = start.log()[None], math.log(MIN_ANCHOR_PX)  # [1,K,2]
    best_sum = start_sum = objective.log_sums(log_best)  # [1]
    for generation in range(gen):
        log_mutants = (log_best + log_steps[generation]).clamp_(min=log_floor)  # [λ,K,2]
        sums = torch.cat([best_sum, objective.log_sums(log_mutants)])  # [1+λ]
        top = sums.argmax(0, keepdim=True)  # [1]
        best_sum, log_best = sums[top], torch.cat([log_best, log_mutants])[top]
        if progress is not None:
            progress(generation, best_sum[0] / objective.total_weight)
    # Unless a mutant was accepted, return the start itself, not exp(log(start)) a few ulps off.
    improved = best_sum[0] > start_sum[0]
    return (
        torch.where(improved, log_best[0].exp(), start),
        torch.where(improved, best_sum[0] / objective.total_weight, start_fitness),
    )


def differential_evolution(
    objective: Objective,
    anchors: Tensor,
    *,
    gen: int = 1000,
    population: int = 16,
    differential_weight: float = 0.6,
    crossover: float = 0.8,
    init_spread: float = 0.2,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
) -> tuple[Tensor, Tensor]:
    """Batched differential evolution (DE/current-to-best/1/bin) over log anchor sizes.

    The population starts at ``anchors`` and log-normal perturbations of it
    (``init_spread`` in log units); the start itself is a member, so the result
    is never worse than it. Each generation builds one trial per member from the
    best member and two random others, evaluates all trials in one pass and
    keeps each trial that beats its member. Anchors inside each set are kept
    sorted by area so that crossover mixes like with like.

    Args:
        objective: scores anchor sets.
        anchors (Tensor[K, 2]): the start, in pixels.
        gen: generations.
        population: members (at least 4).
        differential_weight: DE's ``F``.
        crossover: DE's ``CR``, the chance that a coordinate comes from the mutant.
        init_spread: standard deviation of the initial log-size perturbations.
        generator: source of randomness (on the objective's device).
        progress: as for :func:`evolve`.

    Returns:
        ``(anchors [K, 2], fitness [])``, the best found.
    """
    if gen < 0:
        raise ValueError(f"gen must be at least 0, got {gen}")
    if population < 4:
        raise ValueError(f"differential evolution needs a population of at least 4, got {population}")
    device = objective.device
    start = anchors.to(device, torch.float32)
    noise = torch.randn((population - 1, *start.shape), generator=generator, device=device) * init_spread
    members = torch.cat([start[None], start[None] * noise.exp()]).clamp_(min=MIN_ANCHOR_PX).log()  # [P,K,2]
    members = sort_by_area(members.exp()).log()
    fitness = objective(members.exp())
    floor = math.log(MIN_ANCHOR_PX)
    for generation in range(gen):
        best = members[fitness.argmax()]
        # Two distinct partners per member, neither the member itself.
        picks = torch.rand(population, population, generator=generator, device=device)
        picks.fill_diagonal_(-1.0)
        partners = picks.topk(2, dim=1).indices  # [P,2]
        donor = members + differential_weight * (best - members) + differential_weight * (
            members[partners[:, 0]] - members[partners[:, 1]]
        )
        cross = torch.rand(members.shape, generator=generator, device=device) < crossover
        forced = torch.randint(0, members[0].numel(), (population,), generator=generator, device=device)
        cross.view(population, -1).scatter_(1, forced[:, None], True)  # at least one coordinate crosses
        trial = sort_by_area(torch.where(cross, donor, members).clamp(min=floor).exp()).log()
        trial_fitness = objective(trial.exp())
        better = trial_fitness > fitness
        members = torch.where(better[:, None, None], trial, members)
        fitness = torch.where(better, trial_fitness, fitness)
        if progress is not None:
            progress(generation, fitness.max())
    top = fitness.argmax()
    return members[top].exp(), fitness[top]


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


class _Scores:
    """Each box's score against each current anchor, with its best and second best.

    Tables are laid out ``[K, M]`` (anchor, box) so that reductions over the
    anchors run along contiguous rows of boxes. For the ratio metric it also
    keeps the distances, which bound how much a small move can change a score:
    moving an anchor by at most ``step`` in log space changes its distance to any
    box by at most ``step``. Only the boxes the anchor wins now, or could win
    after such a move, need to be looked at.
    """

    def __init__(self, objective: Objective, anchors: Tensor) -> None:
        self.objective = objective
        self.ratio = objective.metric == "ratio"
        self.reset(anchors)

    def reset(self, anchors: Tensor) -> None:
        """Start again from ``anchors``."""
        self.anchors = anchors.clone()
        if self.ratio:
            self.dist = self._against(anchors)  # [K,M]
            self.table = self.objective.score(self.dist)
        else:
            self.table = self._against(anchors)
        self._refresh()

    def _against(self, anchors: Tensor) -> Tensor:
        """Every box against each of ``anchors [A, 2]``: log distances (ratio) or IoU, ``[A, M]``."""
        objective = self.objective
        parts = []
        for start in range(0, objective.wh.shape[0], _TABLE_ROWS):
            rows = slice(start, start + _TABLE_ROWS)
            if self.ratio:
                parts.append(objective.log_distances(anchors.log(), rows))
            else:
                parts.append(objective.match(anchors[None], rows)[0].T)
        return torch.cat(parts, 1)

    def dense(self, positions: Tensor) -> bool:
        """Whether moves to ``positions`` are best scored on every box at once (few boxes)."""
        return positions.numel() * self.objective.wh.shape[0] <= _DENSE_MOVES

    def score_moves(self, positions: Tensor) -> Tensor:
        """Every box's score against each of ``positions [A, D, 2]``: ``[A, D, M]``."""
        objective = self.objective
        if self.ratio:
            return objective.score(objective.log_distances(positions.log()))
        a, d = positions.shape[:2]
        return objective.match(positions.reshape(1, -1, 2))[0].T.reshape(a, d, -1)

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
        other.objective, other.ratio = self.objective, self.ratio
        other.reset(anchors)
        return other

    def take(self, other: _Scores) -> None:
        """Become ``other`` (which must not be used afterwards)."""
        self.__dict__.update(other.__dict__)

    def copy(self) -> _Scores:
        twin = object.__new__(_Scores)
        twin.__dict__.update(self.__dict__)
        twin.anchors, twin.table = self.anchors.clone(), self.table.clone()
        if self.ratio:
            twin.dist = self.dist.clone()
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
        (:meth:`score_moves` of ``positions``) when the caller keeps it. Else,
        under the ratio metric, each anchor's moves are scored only on the boxes
        they can affect, gathered into one padded ``[K, R]`` index so that all
        moves are scored at once; under IoU this is :meth:`try_moves`.
        """
        objective = self.objective
        k = self.anchors.shape[0]
        if self.dense(positions):
            return self._try_moves_dense(self.score_moves(positions) if moved is None else moved)
        if not self.ratio:
            which = torch.arange(k, device=positions.device).repeat_interleave(positions.shape[1])
            return self.try_moves(which, positions.reshape(-1, 2)).view(positions.shape[:2])
        # A box not won by the anchor can only be won if the anchor comes closer than its
        # best distance (and within the threshold); the margin absorbs rounding.
        limit = self.dist.amin(0).clamp(max=objective.log_thr)  # [M]
        reachable = self.dist - (reach + 1e-4) < limit  # [K,M]
        reachable.scatter_(0, self.owner[None], True)
        anchor_of, row = reachable.nonzero(as_tuple=True)  # grouped by anchor
        counts = torch.bincount(anchor_of, minlength=k)
        width = int(counts.max())
        slot = torch.arange(len(row), device=row.device) - (counts.cumsum(0) - counts)[anchor_of]
        rows = torch.zeros(k, width, dtype=torch.long, device=row.device).index_put_((anchor_of, slot), row)  # [K,R]
        valid = torch.arange(width, device=row.device)[None] < counts[:, None]  # [K,R]

        log_wh = objective.log_wh[rows]  # [K,R,2]
        log_moves = positions.log()  # [K,D,2]
        dist = torch.maximum(
            (log_wh[:, None, :, 0] - log_moves[:, :, None, 0]).abs_(),
            (log_wh[:, None, :, 1] - log_moves[:, :, None, 1]).abs_(),
        )  # [K,D,R]
        first = self.first[rows]  # [K,R]
        others = self.without().gather(1, rows)  # [K,R]
        gain = (torch.maximum(others[:, None], objective.score(dist)) - first[:, None]).double()  # [K,D,R]
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
        owned = torch.zeros_like(self.table, dtype=torch.float64).scatter_(0, self.owner[None], 1.0)
        owned *= objective.weights_double  # [K,M]: weight of each box under its best anchor
        loss = owned @ (self.first - self.second).double()  # [K]
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

    def move(self, anchor: int, position: Tensor) -> None:
        self.anchors[anchor] = position
        column = self._against(position[None])[0]  # [M]
        if self.ratio:
            self.dist[anchor] = column
            self.table[anchor] = self.objective.score(column)
        else:
            self.table[anchor] = column
        self._refresh()


def _climb(scores: _Scores, *, step: float, min_step: float, max_rounds: int) -> Tensor:
    """Pattern search in place on ``scores``; returns the fitness reached.

    Each round scores every single-anchor move, then tries the best improving
    move of every anchor together; the joint step is kept only when it beats
    the best single move, which is taken otherwise. With few boxes the moves'
    scores on every box are kept from round to round, and only the moved
    anchors' are scored again.
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
    generator: torch.Generator | None = None,
    max_rounds: int = 2000,
) -> tuple[Tensor, Tensor]:
    """Climb to a local optimum, then hop between optima by relocating anchors.

    The climb is a pattern search in log space: each round tries every anchor
    moved by ``step`` (log units) in eight directions (wider, taller, larger,
    more elongated, and their opposites) and takes the best move that raises
    the fitness; when none does, the step is halved, down to ``min_step``.

    With ``relocations > 0`` the converged anchors then take part in an
    iterated local search: ``relocations`` box sizes are drawn (with
    ``generator``) in proportion to how badly the current anchors serve them;
    the ``tries`` most promising moves of one anchor onto one of them are each
    followed by a new climb, and the first that ends fitter than before is
    kept. The search stops after ``patience`` draws in a row bring nothing.
    This escapes optima where two anchors share a cluster while another goes
    without, which no small step can fix.

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
        generator: source of randomness for the relocations.
        max_rounds: an upper bound on the rounds of each climb.

    Returns:
        ``(anchors [K, 2], fitness [])``.
    """
    device = objective.device
    start = anchors.to(device, torch.float32)
    scores = _Scores(objective, start)
    k = scores.anchors.shape[0]
    fitness = _climb(scores, step=step, min_step=min_step, max_rounds=max_rounds)
    failures, climbs = 0, 0
    while relocations > 0 and failures < patience and climbs < hops:
        # Each process draws from its own boxes; the gathered targets are the same everywhere.
        deficit = (1 - scores.first).clamp(min=0) * objective.weights
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
        failures += 1
        for candidate in totals.flatten().argsort(descending=True)[: min(tries, hops - climbs)].tolist():
            climbs += 1
            trial = scores.copy()
            trial.move(candidate % k, targets[candidate // k])
            reached = _climb(trial, step=step, min_step=hop_min_step, max_rounds=max_rounds)
            if reached > fitness + 1e-12:
                scores, fitness, failures = trial, reached, 0
                break
    if relocations > 0:  # hops climb coarsely; finish the last one
        fitness = _climb(scores, step=hop_min_step, min_step=min_step, max_rounds=max_rounds)
    reached, start_fitness = objective(scores.anchors), objective(start)
    logger.debug("polish: fitness %.6f (from %.6f)", float(reached), float(start_fitness))
    if reached < start_fitness:  # scores are float32, so a move's gain can be off by an ulp or so
        return start, start_fitness
    return scores.anchors, reached
