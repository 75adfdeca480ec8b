"""What a search maximises: one object per metric, found by name in one registry.

An :class:`Objective` is bound to a fixed, weighted set of box sizes and scores
whole populations of anchor sets ``[P, K, 2]`` in one pass. Each metric is one
subclass that owns everything the search needs to know about it:

* its kernels: each box's score against each anchor (:meth:`Objective.match`),
  the tables the polish keeps (:meth:`Objective.pair_raw`,
  :meth:`Objective.raw_score`) and, optionally, which boxes a small move can
  affect (:meth:`Objective.reachable`);
* how it reports itself: :attr:`Objective.label` (``"fitness"``, ``"Avg IoU"``)
  and :attr:`Objective.stat`, the :class:`~autoanchor.core.metrics.AnchorStats` field
  it maximises (:meth:`Objective.figure`);
* how the search treats it: its pooling cells (:attr:`Objective.cells`) and its
  k-means distance and centre update.

Adding a metric is adding one subclass decorated with :func:`register_objective`;
nothing else names a metric. :func:`objective_class` maps a name (or a subclass)
to the class, and its error lists the known names.

Example:
    >>> wh = torch.tensor([[10.0, 10.0], [30.0, 10.0]])
    >>> objective = make_objective("ratio", wh, thr=4.0)
    >>> objective(torch.tensor([[10.0, 10.0]]))  # ratios 1 and 1/3 both pass 1/4: (1 + 1/3) / 2
    tensor(0.6667, dtype=torch.float64)
    >>> objective_class("iou").label
    'Avg IoU'
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple, Union

import torch
from torch import Tensor

from .defaults import DEFAULT_THR
from .metrics import AnchorStats, check_anchors, check_thr, check_wh, ratio_metric, size_iou, wh_iou
from .parallel import LocalReducer, Reducer
from .registry import OBJECTIVES

__all__ = [
    "Cells",
    "Objective",
    "RatioObjective",
    "IoUObjective",
    "register_objective",
    "objective_class",
    "objective_names",
    "make_objective",
    "match_matrix",
    "best_match",
    "linf_distance",
]

Rows = Union[slice, Tensor]
"""Which boxes: a slice or an index tensor."""


class Cells(NamedTuple):
    """Default pooling cells of an objective, in log units (see :func:`autoanchor.core.search.pool_sizes`)."""

    middle: float
    """The pooling of the second-to-last climb."""
    coarse: float
    """The pooling of k-means and the relocation hops (the evolution's is twice it)."""


def linf_distance(a: Tensor, b: Tensor, dim: int) -> Tensor:
    """L∞ distance between (log) sizes along ``dim`` (of length 2), broadcast: the one such kernel.

    On log sizes, the ratio metric is ``exp(-linf_distance)``. Keep the boxes in the
    last dimension: the work then runs along contiguous rows. (Three kernels; an
    element-wise maximum of the two sides beats ``amax`` over a dimension of length
    2 on large inputs and matches it on the evolution's small ones.)

    Example:
        >>> linf_distance(torch.tensor([0.0, 1.0]), torch.tensor([0.5, 3.0]), dim=0)  # max(0.5, 2.0)
        tensor(2.)
    """
    gaps = (a - b).abs_()
    return torch.maximum(gaps.select(dim, 0), gaps.select(dim, 1))


class Objective:
    """The fitness of anchor sets on a fixed, weighted set of box sizes (base class).

    Subclasses set the class attributes and implement :meth:`match`; the rest
    has generic implementations that a subclass may replace with faster ones.

    Args:
        wh (Tensor[M, 2]): box (width, height) in pixels; with a ``reducer``, this
            process's share.
        weights (Tensor[M], optional): how many boxes each row stands for.
        thr: largest allowed side ratio (yolov5's ``anchor_t``); objectives that
            do not threshold ignore it.
        reducer: adds partial sums over processes (see :mod:`autoanchor.core.parallel`).
        chunk: the most elements of one ``[P, m, K]`` temporary; boxes are taken in
            chunks to stay within it.
    """

    name: ClassVar[str] = ""
    """The registry name, as passed to ``metric=``."""
    label: ClassVar[str] = ""
    """How reports name the maximised figure."""
    stat: ClassVar[str] = ""
    """The :class:`~autoanchor.core.metrics.AnchorStats` field this objective maximises."""
    cells: ClassVar[Cells] = Cells(0.04, 0.12)
    """Default pooling cells of the search."""
    kmeans_distance: ClassVar[str] = "euclidean"
    """The ``distance`` of :func:`autoanchor.core.kmeans.kmeans` for the starts."""
    kmeans_update: ClassVar[str] = "mean"
    """The ``update`` of :func:`autoanchor.core.kmeans.kmeans` for the starts."""
    middle_grows_per_anchor: ClassVar[int] = 0
    """Grow-and-thin kicks per anchor that a search of many boxes judges on its middle pooling once
    those on the coarse pooling gained (at least
    :data:`~autoanchor.core.settings.MIDDLE_GROWS`; see ``docs/search.md``, stage 7)."""

    def __init__(
        self,
        wh: Tensor,
        weights: Tensor | None = None,
        *,
        thr: float = DEFAULT_THR,
        reducer: Reducer | None = None,
        chunk: int = 1 << 21,
    ) -> None:
        check_wh(wh)
        thr = check_thr(thr)
        self.thr = thr
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.wh.shape[0]} sizes, thr={self.thr:g})"

    @property
    def device(self) -> torch.device:
        return self.wh.device

    @classmethod
    def figure(cls, stats: AnchorStats) -> float:
        """The figure this objective maximises, read from ``stats``."""
        return float(getattr(stats, cls.stat))

    @staticmethod
    def pairwise(wh: Tensor, anchors: Tensor) -> Tensor:
        """The metric of every box against every anchor: ``[N, 2], [..., K, 2] -> [..., N, K]``."""
        raise NotImplementedError

    # -- scores of anchor sets ------------------------------------------------------------

    def match(self, anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        """Each box's score against each anchor: ``[P, m, K]`` for anchors ``[P, K, 2]``.

        The score is what the box contributes to the fitness if that anchor is its
        best. ``rows`` picks boxes (a slice or an index tensor).
        """
        raise NotImplementedError

    def best(self, anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        """Each box's score against its best anchor: ``[P, m]``."""
        return self.match(anchors, rows).amax(-1)

    def weighted_sum(self, values: Tensor, rows: Rows = slice(None)) -> Tensor:
        """``Σ weight · value`` over this process's boxes, in float64: ``[P, m] -> [P]``."""
        return values.double() @ self.weights_double[rows]

    def log_sums(self, log_anchors: Tensor) -> Tensor:
        """:meth:`sums` of anchor sets given as log sizes ``[P, K, 2]``, unvalidated: the evolution's inner loop."""
        return self.sums(log_anchors.exp())

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

    # -- kernels of the polish (see autoanchor.core.polish) ------------------------------------

    def pair_raw(self, anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        """What the polish keeps per (anchor, box): ``[A, 2] -> [A, m]``; :meth:`raw_score` turns it into scores."""
        return self.match(anchors[None], rows)[0].T

    def raw_score(self, raw: Tensor) -> Tensor:
        """Scores from :meth:`pair_raw` values (the same tensor when they are scores already)."""
        return raw

    def score_moves(self, positions: Tensor) -> Tensor:
        """Every box's score against each of ``positions [A, D, 2]``: ``[A, D, M]``."""
        a, d = positions.shape[:2]
        return self.match(positions.reshape(1, -1, 2))[0].T.reshape(a, d, -1)

    def reachable(self, raw: Tensor, owner: Tensor, reach: float) -> Tensor | None:
        """Which boxes a move of each anchor by at most ``reach`` (log units) can change: bool ``[K, M]``.

        ``raw [K, M]`` is the :meth:`pair_raw` table of the current anchors and
        ``owner [M]`` each box's best anchor. ``None`` (the default) means every
        box; an objective returning a mask must implement :meth:`gathered_scores`.
        """
        return None

    def gathered_scores(self, rows: Tensor, positions: Tensor) -> Tensor:
        """Scores of boxes ``rows [K, R]`` against anchor ``k``'s moves ``positions [K, D, 2]``: ``[K, D, R]``."""
        raise NotImplementedError(f"{type(self).__name__} has no reachable() mask to gather by")


def register_objective(cls: type[Objective] | None = None, *, replace: bool = False):
    """Class decorator: make ``cls`` available as ``metric=cls.name`` to every search, the
    hook and the command line (``autoanchor fit --metric``).

    It registers ``cls`` in :data:`autoanchor.core.registry.OBJECTIVES`, under the rules of
    :class:`~autoanchor.core.registry.Registry` (``replace=True`` to take a taken name;
    ``@register_objective(replace=True)`` then).

    Raises:
        TypeError: if ``cls`` is not an :class:`Objective` subclass.
        ValueError: if it does not set ``name`` and ``stat``, or its name is taken by another class.
    """
    if cls is None:
        return lambda target: register_objective(target, replace=replace)
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise TypeError(f"register_objective takes an Objective subclass, got {cls!r}")
    if not cls.name or not cls.stat:
        raise ValueError(f"{cls.__name__} must set the class attributes name and stat")
    return OBJECTIVES.register(cls, replace=replace)


def objective_names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return OBJECTIVES.names()


def objective_class(metric: str | type[Objective]) -> type[Objective]:
    """The objective class of a name (or the class itself).

    Raises:
        ValueError: for an unknown name; the message lists the known ones.

    Example:
        >>> objective_class("ratio").stat
        'fitness'
    """
    if isinstance(metric, type) and issubclass(metric, Objective):
        return metric
    if isinstance(metric, str) and metric in OBJECTIVES:
        return OBJECTIVES.get(metric)
    raise ValueError(f"metric must be one of {objective_names()} (or an Objective subclass), got {metric!r}")


def make_objective(
    metric: str | type[Objective],
    wh: Tensor,
    weights: Tensor | None = None,
    *,
    thr: float = DEFAULT_THR,
    reducer: Reducer | None = None,
    chunk: int = 1 << 21,
) -> Objective:
    """The objective named ``metric``, bound to box sizes ``wh [M, 2]`` (see :class:`Objective`)."""
    return objective_class(metric)(wh, weights, thr=thr, reducer=reducer, chunk=chunk)


def match_matrix(wh: Tensor, anchors: Tensor, *, metric: str | type[Objective] = "ratio") -> Tensor:
    """The metric named ``metric`` of every box against every anchor: ``[N, K]`` or ``[P, N, K]``."""
    return objective_class(metric).pairwise(wh, anchors)


def best_match(wh: Tensor, anchors: Tensor, *, metric: str | type[Objective] = "ratio") -> Tensor:
    """Each box's metric against its best anchor: ``Tensor[N]`` or ``Tensor[P, N]``."""
    return match_matrix(wh, anchors, metric=metric).amax(-1)


@register_objective
class RatioObjective(Objective):
    """yolov5's fitness ``mean(best * (best > 1/thr))`` of the width/height ratio metric.

    It is computed in log space, where the ratio metric is ``exp(-d)`` for the L∞
    distance ``d`` of the log sizes: no divisions, and one ``exp`` per box instead
    of one per pair. The polish keeps the distances: moving an anchor by at most
    ``step`` in log space changes its distance to any box by at most ``step``, so
    only the boxes it wins now, or could win after such a move, need a look.
    """

    name = "ratio"
    label = "fitness"
    stat = "fitness"
    cells = Cells(middle=0.04, coarse=0.12)
    kmeans_distance = "euclidean"  # on whitened sizes, as yolov5
    kmeans_update = "mean"

    pairwise = staticmethod(ratio_metric)

    def log_distances(self, log_anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        """L∞ distance of log sizes from every box to each anchor: ``[..., 2] -> [..., m]``.

        Boxes run along the last dimension, so that the reductions over sides (here)
        and anchors (by callers) run across rows of contiguous boxes.
        """
        return linf_distance(self.log_wh_t[:, rows], log_anchors[..., None], dim=-2)

    def score(self, distance: Tensor) -> Tensor:
        """What a box at ``distance`` from its best anchor adds to the fitness.

        That is the ratio metric ``exp(-distance)`` where it passes ``1/thr``, else 0.
        (``torch.threshold`` is one float kernel; a boolean mask and ``torch.where``
        cost about four times as much on the CPU.)
        """
        return torch.threshold_(torch.exp(-distance), self.inv_thr, 0.0)

    def match(self, anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        return self.score(self.log_distances(anchors.log(), rows).transpose(-1, -2))

    def best(self, anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        # exp(-min d) = max exp(-d): take the minimum before the single exp.
        return self.score(self.log_distances(anchors.log(), rows).amin(1))

    def log_sums(self, log_anchors: Tensor) -> Tensor:
        if log_anchors.shape[0] * log_anchors.shape[1] * self.wh.shape[0] > self.chunk:
            return self.sums(log_anchors.exp())
        dist = self.log_distances(log_anchors).amin(1)  # [P,M]
        return self.reducer.sum(self.score(dist).double() @ self.weights_double)

    def pair_raw(self, anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        return self.log_distances(anchors.log(), rows)

    def raw_score(self, raw: Tensor) -> Tensor:
        return self.score(raw)

    def score_moves(self, positions: Tensor) -> Tensor:
        return self.score(self.log_distances(positions.log()))

    def reachable(self, raw: Tensor, owner: Tensor, reach: float) -> Tensor:
        # A box not won by the anchor can only be won if the anchor comes closer than its
        # best distance (and within the threshold); the margin absorbs rounding.
        limit = raw.amin(0).clamp(max=self.log_thr)  # [M]
        mask = raw - (reach + 1e-4) < limit  # [K,M]
        return mask.scatter_(0, owner[None], True)

    def gathered_scores(self, rows: Tensor, positions: Tensor) -> Tensor:
        log_wh = self.log_wh_t[:, rows]  # [2,K,R]
        log_moves = positions.log().permute(2, 0, 1)  # [2,K,D]
        return self.score(linf_distance(log_wh[:, :, None, :], log_moves[..., None], dim=0))  # [K,D,R]


@register_objective
class IoUObjective(Objective):
    """YOLOv2's Avg IoU: the mean over boxes of the IoU with the best anchor.

    Its optima lie closer together than the ratio fitness's, so it pools on
    cells half as large; its k-means starts use ``1 - IoU`` with median updates.
    """

    name = "iou"
    label = "Avg IoU"
    stat = "avg_iou"
    cells = Cells(middle=0.02, coarse=0.06)
    kmeans_distance = "iou"
    kmeans_update = "median"
    middle_grows_per_anchor = 2

    pairwise = staticmethod(wh_iou)

    def match(self, anchors: Tensor, rows: Rows = slice(None)) -> Tensor:
        return size_iou(self.wh[rows][None, :, None, :], anchors[:, None, :, :])  # [P,m,K]

    def reachable(self, raw: Tensor, owner: Tensor, reach: float) -> Tensor:
        # Scaling an anchor's width (or height) by e^t changes its log IoU with any box by at
        # most |t|: below the box's side only the intersection grows, and never faster than the
        # union; above it only the union does. A move of at most `reach` per side therefore
        # multiplies the IoU by at most e^(2 reach), and a box not won by the anchor can change
        # only if that lifts the anchor past its best. The margin absorbs float32 rounding.
        limit = raw.amax(0)  # [M]
        mask = raw * math.exp(2 * reach + 1e-4) >= limit  # [K,M]
        return mask.scatter_(0, owner[None], True)

    def gathered_scores(self, rows: Tensor, positions: Tensor) -> Tensor:
        return size_iou(self.wh[rows][:, None, :, :], positions[:, :, None, :])  # [K,D,R]
