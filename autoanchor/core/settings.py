"""The settings of the anchor search: one frozen, validated object, and the constants behind it.

The stages these settings drive, and their numbers, are described once, in ``docs/search.md``.

:class:`SearchSettings` holds every option of :func:`autoanchor.core.search.search_anchors`
but the data and the per-call plumbing (``reducer``, ``progress``); it is checked
once, when it is made, and every error names the field and the value.
:func:`cpu_threads` is the one place that changes torch's CPU thread count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Tuple, Union

import torch

from torch import Tensor

from .defaults import DEFAULT_GEN, DEFAULT_METHOD, DEFAULT_METRIC, DEFAULT_SEED, DEFAULT_THR
from .objectives import Objective, objective_class
from .validate import OptionTypeError, check_choice, check_float, check_int, check_scale, check_seed
from .validate import check_stride_units, check_thr, is_number

__all__ = [
    "SearchSettings",
    "METHODS",
    "KICK_PATIENCE",
    "MANY_BOX_KICK_PATIENCE",
    "FEW_BOX_CHAINS",
    "HOPS",
    "MANY_BOX_HOPS",
    "MANY_BOX_GROWS_PER_ANCHOR",
    "MIDDLE_GROWS",
    "SEARCH_THREADS",
    "cpu_threads",
]

METHODS = ("ga", "de")
"""Evolution methods: yolov5's mutation (``"ga"``) or differential evolution (``"de"``)."""

# Internal tuning of the stages (docs/search.md gives their meaning; not options).
_FINE_CELL = 0.005  # finest pooling cell, log units (about 0.5 % of a size)
_HOP_MIN_STEP = 0.008  # where the climbs on the coarse pooling (and after each hop) stop, log units
_MIDDLE_CLIMB = (0.02, 0.004)  # (step, min_step) of the climb on the middle pooling, log units
_FINE_CLIMB = (0.01, 0.002)  # (step, min_step) of the last climb, on the fine pooling
_KICK_SIZE = 0.3  # half the distance between the two halves of a split anchor, log units (about 35 %)
_MERGE_PAIRS = 3  # a kick merges one of this many nearest pairs of anchors (drawn at random)
_GROW_ADDED = 3  # a grow-and-thin kick adds 1, 2, ... up to this many anchors, in turn

KICK_PATIENCE = 6
"""Kicks in a row without gain before the kicks end, with at most ``fine_points`` boxes (see
:attr:`SearchSettings.kick_patience`)."""
MANY_BOX_KICK_PATIENCE = 3
"""Kicks in a row without gain before the kicks end, with more than ``fine_points`` boxes, whose
fitness is smoother: with 3, seeds 0-9 on VOC 2012 (31,561 boxes) at 640 and 1280, both metrics,
ended within 0.1 % of the best known as with 6, and on 160k tiled VOC boxes (seeds 0-4) no kick
gained at all with 6."""
FEW_BOX_CHAINS = 2
"""Chains the search runs by default when it has at most ``fine_points`` boxes (see :attr:`SearchSettings.chains`)."""
HOPS = 48
"""The most relocation hops, with at most ``fine_points`` boxes (see :attr:`SearchSettings.hops`)."""
MANY_BOX_HOPS = 24
"""The most relocation hops with more than ``fine_points`` boxes, where the grow-and-thin kicks take over
half of their time (see :attr:`SearchSettings.hops`)."""
MANY_BOX_GROWS_PER_ANCHOR = 2
"""Grow-and-thin kicks after the chains per anchor searched, with more than ``fine_points`` boxes (see
:attr:`SearchSettings.grows`): 18 for 9 anchors, 24 for 12. Seeds 0-39 on WIDER FACE val at 1280 (12
anchors, ``metric="iou"``, the hardest row of ``benchmarks/seed_tail.py``), with 3 middle kicks: 33 end
within 0.1 % of the best known, against 27 with 16 kicks and 13 without; with IoU's 24 middle kicks, 39."""
MIDDLE_GROWS = 3
"""The fewest grow-and-thin kicks judged on the middle pooling once those on the coarse one gained (see
:attr:`SearchSettings.middle_grows`); an objective may ask for more per anchor
(:attr:`~autoanchor.core.objectives.Objective.middle_grows_per_anchor`)."""
SEARCH_THREADS = 1
"""Torch CPU threads during a search's small-tensor stages, unless ``threads`` says otherwise."""

_DEFAULT_POPULATION = {"ga": 4, "de": 16}
_MIN_POPULATION = {"ga": 1, "de": 4}


def _check_strides(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, Tensor):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise OptionTypeError(
            f"strides must be a sequence of positive numbers (pixels per grid cell), got {value!r}"
        )
    strides = tuple(value)
    if not strides or not all(is_number(s) and 0 < s < math.inf for s in strides):
        raise ValueError(f"strides must be positive finite numbers (pixels per grid cell), got {value!r}")
    strides = tuple(float(s) for s in strides)
    if any(b <= a for a, b in zip(strides, strides[1:])):
        raise ValueError(f"strides must be strictly increasing, got {strides}")
    return strides


@dataclass(frozen=True)
class SearchSettings:
    """Every option of :func:`~autoanchor.core.search.search_anchors`, validated once.

    The defaults are those of :mod:`autoanchor.core.defaults`; the rules (numpy scalars
    accepted, bools refused, seeds up to ``2**64 - 1``) those of :mod:`autoanchor.core.validate`.
    What each stage does with these numbers: ``docs/search.md``.

    ``None`` for a cell or the population means "the default for this metric or
    method"; the resolved values are :meth:`cells_for` and :attr:`population_size`.
    Make a variant with :func:`dataclasses.replace` (it validates again).

    Raises:
        ValueError: for a bad value; the message names the field and the value.
        TypeError: for a value of the wrong type (also a ``ValueError``), or a ``metric``
            that is neither a name nor an objective class.

    Example:
        >>> settings = SearchSettings(gen=500, metric="iou")
        >>> settings.population_size, settings.cells_for()
        (4, (0.12, 0.06, 0.02))
        >>> SearchSettings(tries=0)
        Traceback (most recent call last):
        ...
        ValueError: tries must be an integer of at least 1, got 0
    """

    thr: float = DEFAULT_THR
    """Largest allowed side ratio between a box and an anchor (yolov5's ``anchor_t``)."""
    gen: int = DEFAULT_GEN
    """Generations of evolution (0 skips it)."""
    metric: Union[str, type[Objective]] = DEFAULT_METRIC
    """What is maximised: a registered objective's name or an objective class."""
    method: str = DEFAULT_METHOD
    """``"ga"`` (yolov5's mutation, batched) or ``"de"`` (differential evolution)."""
    seed: int = DEFAULT_SEED
    """Seeds the search's own generator: an integer from 0 to ``2**64 - 1``."""
    population: Union[int, None] = None
    """Candidates per generation; 4 for ``"ga"`` and 16 for ``"de"`` when ``None``."""
    starts: int = 4
    """k-means++ starts."""
    kmeans_iters: int = 10
    """The most Lloyd iterations of each k-means start."""
    evolve_cell: Union[float, None] = None
    """Pooling cell of the evolution, log units; twice the coarse cell when ``None``."""
    coarse_cell: Union[float, None] = None
    """Pooling cell of k-means and the hops; the objective's ``cells.coarse`` when ``None``."""
    middle_cell: Union[float, None] = None
    """Pooling cell of the middle climb; the objective's ``cells.middle`` when ``None``."""
    fine_points: int = 16384
    """The most pooled sizes of the last climb."""
    relocations: int = 16
    """Box sizes drawn per relocation hop (0: no hops)."""
    tries: int = 5
    """Relocations climbed from per draw."""
    patience: int = 3
    """Draws in a row without gain before the hops end."""
    hops: Union[int, None] = None
    """The most relocations climbed from in all; ``None``: :data:`HOPS` with at most :attr:`fine_points`
    boxes, else :data:`MANY_BOX_HOPS` (:meth:`hops_for`)."""
    kicks: int = 24
    """The most split-and-merge kicks after the hops (0: none); they end sooner after
    :attr:`kick_patience` in a row without gain."""
    kick_patience: Union[int, None] = None
    """Kicks in a row without gain before the kicks end; ``None``: :data:`KICK_PATIENCE` with at
    most :attr:`fine_points` boxes, else :data:`MANY_BOX_KICK_PATIENCE` (:meth:`kick_patience_for`)."""
    grows: Union[int, None] = None
    """Grow-and-thin kicks after the chains (0: none; :func:`~autoanchor.core.crossover.regrow`): anchors
    added where boxes lose most, the grown set climbed and thinned back; ``None``: none with at most
    :attr:`fine_points` boxes, else :data:`MANY_BOX_GROWS_PER_ANCHOR` per anchor (:meth:`grows_for`). Why
    they help with many boxes: ``docs/search.md``, stage 7."""
    middle_grows: Union[int, None] = None
    """Grow-and-thin kicks judged on the middle pooling, run once those of :attr:`grows` gained;
    ``None``: the objective's :attr:`~autoanchor.core.objectives.Objective.middle_grows_per_anchor`
    per anchor, and at least :data:`MIDDLE_GROWS` (:meth:`middle_grows_for`)."""
    pairs: int = 8
    """The last stage's candidate sizes per anchor (0: no such stage): two anchors neighbouring in area
    are moved together onto the pooled sizes nearest to them, every combination scored on the finest
    pooling (:func:`~autoanchor.core.pairs.pair_moves`), while that gains; ``docs/search.md``, stage 9."""
    chains: Union[int, None] = None
    """Independent runs of the k-means starts, evolution, hops and kicks, whose results are then
    crossed (:func:`~autoanchor.core.crossover.crossover`) before the last climbs; ``None``:
    :data:`FEW_BOX_CHAINS` with at most :attr:`fine_points` boxes, else 1 (:meth:`chains_for`).
    Why two help with few boxes: ``docs/search.md``, stage 6."""
    threads: Union[int, None] = SEARCH_THREADS
    """Torch CPU threads while the search works on its pooled sizes (the previous count is
    restored afterwards); ``None`` leaves torch's setting alone. Ignored off the CPU."""
    strides: Union[Tuple[float, ...], None] = None
    """Pixels per grid cell of each output level, strictly increasing (yolov5's P5 heads: ``(8, 16, 32)``);
    needed by the stride bounds, otherwise unused. The anchors sorted by area go onto the levels in
    equal groups, the smallest onto the first level, so ``n`` must be a multiple of the levels."""
    min_stride_units: Union[float, None] = None
    """Every anchor of level ``l`` keeps ``sqrt(w * h) >= min_stride_units * strides[l]``; ``None``: no
    lower bound (yolov5's search)."""
    max_stride_units: Union[float, None] = None
    """Every anchor of level ``l`` keeps ``sqrt(w * h) <= max_stride_units * strides[l]``; ``None``: no
    upper bound."""
    scale: Union[float, None] = None
    """yolov5's ``hyp['scale']`` in [0, 1): the search fits the box sizes under that random scale
    augmentation (:func:`~autoanchor.core.jitter.jitter_wh`, its draws seeded by :attr:`seed`); ``None``:
    the sizes as given."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "thr", check_thr(self.thr))
        set_(self, "gen", check_int("gen", self.gen, low=0))
        if isinstance(self.metric, str) or isinstance(self.metric, type):
            objective_class(self.metric)  # raises for an unknown name, listing the known ones
        else:
            raise TypeError(f"metric must be a name or an Objective subclass, got {type(self.metric).__name__}")
        check_choice("method", self.method, METHODS)
        set_(self, "seed", check_seed("seed", self.seed))
        minimum = {"population": _MIN_POPULATION[self.method], "chains": 1, "kick_patience": 1, "threads": 1}
        for name, low in minimum.items():
            set_(self, name, check_int(name, getattr(self, name), low=low, optional=True))
        for name in ("starts", "kmeans_iters", "fine_points", "tries", "patience"):
            set_(self, name, check_int(name, getattr(self, name), low=1))
        for name in ("relocations", "kicks", "pairs"):
            set_(self, name, check_int(name, getattr(self, name), low=0))
        for name in ("hops", "grows", "middle_grows"):
            set_(self, name, check_int(name, getattr(self, name), low=0, optional=True))
        for name in ("evolve_cell", "coarse_cell", "middle_cell"):
            set_(self, name, check_float(name, getattr(self, name), low=0, what="(log units)", optional=True))
        set_(self, "strides", _check_strides(self.strides))
        low, high = check_stride_units(self.min_stride_units, self.max_stride_units)
        set_(self, "min_stride_units", low)
        set_(self, "max_stride_units", high)
        for name, value in (("min_stride_units", low), ("max_stride_units", high)):
            if value is not None and self.strides is None:
                raise ValueError(f"{name}={value!r} needs the levels' strides; strides is None")
        set_(self, "scale", check_scale(self.scale, optional=True))

    @classmethod
    def from_options(cls, settings: SearchSettings | None = None, **options: Any) -> SearchSettings:
        """``settings`` (or the defaults) with ``options`` replaced; an unknown option is a TypeError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown search option(s) {unknown}; the options are {sorted(known)}")
        if settings is None:
            return cls(**options)
        if not isinstance(settings, SearchSettings):
            raise TypeError(f"settings must be a SearchSettings, got {type(settings).__name__}")
        return dataclasses.replace(settings, **options) if options else settings

    @property
    def bounded(self) -> bool:
        """Whether the anchors' sizes are bounded by the strides."""
        return self.min_stride_units is not None or self.max_stride_units is not None

    def check_levels(self, n: int) -> None:
        """Raise a ValueError unless ``n`` anchors split evenly over :attr:`strides` (when given)."""
        if self.strides is not None and n % len(self.strides):
            raise ValueError(
                f"n={n} anchors do not split evenly over the {len(self.strides)} levels of strides={self.strides}"
            )

    @property
    def objective(self) -> type[Objective]:
        """The objective class of :attr:`metric`."""
        return objective_class(self.metric)

    @property
    def population_size(self) -> int:
        """:attr:`population`, or the method's default."""
        return self.population if self.population is not None else _DEFAULT_POPULATION[self.method]

    def few_boxes(self, n_boxes: int) -> bool:
        """Whether a search of ``n_boxes`` boxes counts as one of few boxes: at most :attr:`fine_points`.

        Its fine pooling then keeps every distinct size, each box weighs much in the fitness, and
        the defaults of :attr:`chains`, :attr:`hops`, :attr:`kick_patience` and :attr:`grows` differ.
        """
        return n_boxes <= self.fine_points

    def _by_box_count(self, value: Union[int, None], n_boxes: int, few: int, many: int) -> int:
        """``value`` when it is set, else ``few`` or ``many`` by :meth:`few_boxes`."""
        if value is not None:
            return value
        return few if self.few_boxes(n_boxes) else many

    def chains_for(self, n_boxes: int) -> int:
        """:attr:`chains`, or its default for a search of ``n_boxes`` boxes."""
        return self._by_box_count(self.chains, n_boxes, FEW_BOX_CHAINS, 1)

    def hops_for(self, n_boxes: int) -> int:
        """:attr:`hops`, or its default for a search of ``n_boxes`` boxes."""
        return self._by_box_count(self.hops, n_boxes, HOPS, MANY_BOX_HOPS)

    def grows_for(self, n_boxes: int, n: int) -> int:
        """:attr:`grows`, or its default for a search of ``n`` anchors on ``n_boxes`` boxes."""
        return self._by_box_count(self.grows, n_boxes, 0, MANY_BOX_GROWS_PER_ANCHOR * n)

    def middle_grows_for(self, n: int) -> int:
        """:attr:`middle_grows`, or its default for a search of ``n`` anchors."""
        if self.middle_grows is not None:
            return self.middle_grows
        return max(MIDDLE_GROWS, self.objective.middle_grows_per_anchor * n)

    def kick_patience_for(self, n_boxes: int) -> int:
        """:attr:`kick_patience`, or its default for a search of ``n_boxes`` boxes."""
        return self._by_box_count(self.kick_patience, n_boxes, KICK_PATIENCE, MANY_BOX_KICK_PATIENCE)

    def cells_for(self) -> tuple[float, float, float]:
        """``(evolve, coarse, middle)`` pooling cells in log units, defaults filled in from the objective."""
        cells = self.objective.cells
        coarse = self.coarse_cell if self.coarse_cell is not None else cells.coarse
        middle = self.middle_cell if self.middle_cell is not None else cells.middle
        evolve = self.evolve_cell if self.evolve_cell is not None else 2 * coarse
        return evolve, coarse, middle


@contextlib.contextmanager
def cpu_threads(threads: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run torch's CPU kernels on ``threads`` threads inside the block, then restore the count.

    torch's thread count is process-wide: other threads of the process see the
    change while the block runs. ``None``, or a device other than the CPU,
    changes nothing.

    Example:
        >>> before = torch.get_num_threads()
        >>> with cpu_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    if threads is None or torch.device(device).type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
