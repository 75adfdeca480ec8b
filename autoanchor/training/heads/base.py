"""The adapter protocol for a family of detection heads, and the registry of families.

A *family* is one way detectors keep their anchors: yolov5 v6+ ``Detect``, yolov7
``IDetect`` / yolov5 v5.0 ``Detect``, ... Each family is a :class:`HeadFamily`
subclass in its own module, registered with :func:`register_family`. The training
hook (:mod:`autoanchor.training.hook`) never names a family: it asks the registry for the
head (:func:`find_head`) and then calls the family's methods in this order::

    family, head, where = find_head(model, detect)
    state = family.read(head, where)                  # validate, change nothing
    data = family.data(state, sizes, imgsz=..., seed=..., device=..., rank=..., world_size=...[, scale=...])
    before = family.measure(state, state.params, data, thr=..., reducer=...)
    if before.score <= bpr_threshold:                 # not good enough: search
        params = family.fit(state, data, thr=..., gen=..., seed=..., search=..., reducer=..., progress=...)
        candidate = family.measure(state, params, data, thr=..., reducer=...)
        # replaced only if candidate.score > before.score
    write = family.prepare(state, params)             # cast and check everything, change nothing
    family.levels(state, final, data, thr=..., reducer=...)   # per-level figures, () if none
    family.below_stride(state, final)                 # anchors under one stride, () if none
    family.write(state, write)                        # in place; must not fail
    family.describe_state(state, write.params)        # for the log

``final`` is ``write.params`` after a replacement, else ``state.params``. ``scale=`` is
passed to :meth:`HeadFamily.data` only when the user gave a training scale, and only
to families whose :attr:`HeadFamily.supports_scale` is true.

Everything up to :meth:`HeadFamily.prepare` leaves the model untouched, so an error
anywhere before the final :meth:`HeadFamily.write` keeps it bit-identical.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

from torch import Tensor

from ...core.boxes import BoxSizes
from ...core.parallel import Reducer

if TYPE_CHECKING:
    from ...core.levels import BelowStride, LevelStats

__all__ = [
    "HeadFamily",
    "HeadNotFound",
    "HeadState",
    "Measure",
    "Write",
    "family_names",
    "find_head",
    "get_family",
    "register_family",
]


class HeadNotFound(Exception):
    """Raised by :meth:`HeadFamily.locate` / :meth:`HeadFamily.recognise` when a model
    is not of that family; the message says what was found instead. The registry
    turns these into one ``TypeError`` listing every family's reason."""


class HeadState(NamedTuple):
    """A head as a family read it: validated, nothing changed.

    Attributes:
        module: the head module.
        where: how it was reached, e.g. ``"model.module.model[-1]"`` or ``"detect"``.
        params: the family's anchors, ``float64`` on the CPU, exactly as stored in
            the model. For YOLO heads ``Tensor[nl, na, 2]``: anchor (width,
            height) in pixels per level. Every rank of a distributed check must
            have the same shape (it is broadcast flat from rank 0).
        extra: anything else the family needs later (strides, cache buffers, ...).
    """

    module: Any
    where: str
    params: Tensor
    extra: Any = None


class Measure(NamedTuple):
    """How well some anchors fit the data, in a family's own figures.

    Attributes:
        score: the figure the hook compares with ``bpr_threshold`` ("good enough")
            and between the current and the searched anchors ("better"): higher is
            better, in [0, 1]. Best possible recall for YOLO heads.
        figures: named figures for the report and the log, the same keys in the
            same order for every measure of one family (e.g. ``{"bpr": ...,
            "aat": ..., "fitness": ...}``).
    """

    score: float
    figures: dict[str, float]


class Write(NamedTuple):
    """New anchors ready to be stored (cast to their final dtype and device).

    Attributes:
        params: the anchors as they will read back after the write, in the same
            form as :attr:`HeadState.params` (float64, CPU).
        payload: the family's tensors to copy into the head.
    """

    params: Tensor
    payload: Any


SearchFn = Callable[..., Any]
"""The search: ``search(wh, n, *, thr, gen, seed, reducer, progress) -> SearchResult``
(:func:`autoanchor.core.search.search_anchors`'s signature)."""


class HeadFamily(ABC):
    """How one family of detectors keeps its anchors.

    Subclasses set :attr:`name` and implement every abstract method; they are
    registered with :func:`register_family`. Methods other than :meth:`write`
    must not change the model. Errors: ``TypeError`` for a head of the wrong kind,
    ``ValueError`` for wrong values, each naming the attribute, the level and index
    where it applies.
    """

    name: ClassVar[str] = ""
    """Short unique name, e.g. ``"yolov5"``; shown in reports and errors."""

    supports_scale: ClassVar[bool] = False
    """Whether :meth:`data` takes ``scale=``, yolov5's training-time scale
    augmentation (``hyp['scale']``); the hook refuses ``scale`` for other families."""
    supports_stride_bounds: ClassVar[bool] = False
    """Whether :meth:`fit` takes ``min_stride_units=`` and ``max_stride_units=``, bounds
    on each anchor's size in strides of its level; the hook refuses them for other families."""

    yolo_options: ClassVar[bool] = True
    """Whether yolov5's ``thr`` and ``imgsz`` mean anything to this family; when not,
    the hook warns if they were given other values than their defaults."""

    @abstractmethod
    def locate(self, model: Any) -> tuple[Any, str]:
        """Where this family keeps its head in ``model``.

        Returns:
            ``(head, where)``: the candidate module and a readable path to it.

        Raises:
            HeadNotFound: if ``model`` has nothing at that place (say what is there).
        """

    @abstractmethod
    def recognise(self, head: Any, where: str) -> None:
        """Accept ``head`` as this family's, or raise :class:`HeadNotFound` saying why not.

        Only cheap structural checks belong here (attributes present, buffer kinds);
        values are validated by :meth:`read`.
        """

    @abstractmethod
    def read(self, head: Any, where: str) -> HeadState:
        """Validate the head and read its anchors; nothing is changed.

        Raises:
            TypeError, ValueError: for anchors, strides or caches the family cannot
                use (non-finite, non-positive, wrong shape, meta device, ...).
        """

    @abstractmethod
    def data(
        self,
        state: HeadState,
        sizes: BoxSizes,
        *,
        imgsz: float,
        seed: int,
        device: Any,
        rank: int,
        world_size: int,
        scale: float | None = None,
    ) -> Any:
        """This rank's share of the boxes, in whatever form :meth:`measure` and
        :meth:`fit` take (e.g. letterboxed sizes in pixels, plain and jittered).

        ``scale`` (yolov5's ``hyp['scale']``, in [0, 1)) is passed only when the user
        gave one, and only if :attr:`supports_scale`: the boxes are then measured and
        fitted under seeded draws of that training-time scale."""

    @abstractmethod
    def measure(self, state: HeadState, params: Tensor, data: Any, *, thr: float, reducer: Reducer | None) -> Measure:
        """Figures of ``params`` (shaped like ``state.params``) on ``data``, summed
        across ranks through ``reducer`` when given."""

    @abstractmethod
    def fit(
        self,
        state: HeadState,
        data: Any,
        *,
        thr: float,
        gen: int,
        seed: int,
        search: SearchFn,
        reducer: Reducer | None,
        progress: bool,
    ) -> Tensor:
        """New anchors shaped like ``state.params``, already rounded to what the
        model would store (so that :meth:`measure` sees what training will use).

        ``min_stride_units`` and ``max_stride_units`` (keyword arguments, in strides of
        each anchor's level) are passed only when the user gave them, and only if
        :attr:`supports_stride_bounds`: the search then keeps every anchor within them.

        Raises:
            ValueError: if the search returned anchors that cannot be stored.
        """

    @abstractmethod
    def prepare(self, state: HeadState, params: Tensor) -> Write:
        """Cast ``params`` for storage (dtype, device, derived caches); changes nothing."""

    @abstractmethod
    def write(self, state: HeadState, write: Write) -> None:
        """Store a prepared write in place (storage kept) and invalidate caches.

        Called only after every check has passed (on every rank); must not fail.
        """

    def levels(
        self, state: HeadState, params: Tensor, data: Any, *, thr: float, reducer: Reducer | None
    ) -> tuple[LevelStats, ...]:
        """Per-level figures of ``params`` on the measured boxes (summed across ranks
        through ``reducer``), for families whose anchors sit on strided levels; by
        default none. Called on every rank."""
        return ()

    def below_stride(self, state: HeadState, params: Tensor) -> tuple[BelowStride, ...]:
        """The anchors of ``params`` smaller than one stride of their level; by default none."""
        return ()

    def describe(self, params: Tensor) -> str:
        """``params`` as text for a log line."""
        return str(params.tolist())

    def describe_state(self, state: HeadState, params: Tensor) -> str:
        """``params`` of the head read as ``state``, as text for a log line; by default
        :meth:`describe` (families whose ``params`` need the head's structure to be
        read override this)."""
        return self.describe(params)

    def note(self, state: HeadState, data: Any) -> str:
        """A short remark on how the figures were measured, for the report line
        (e.g. which box positions were used); by default none."""
        return ""

    def poor_fit_advice(self) -> str:
        """What to try when the anchors still do not pass ``bpr_threshold`` after a search."""
        return "check the labels and imgsz, or allow more anchors or a larger thr"

    def poor_fit_advice_for(self, measure: Measure) -> str:
        """:meth:`poor_fit_advice` given the final anchors' measure (families whose
        advice quotes a figure override this); by default :meth:`poor_fit_advice`."""
        return self.poor_fit_advice()

    def format_measure(self, measure: Measure) -> str:
        """A measure as text for a log line, e.g. ``"bpr 0.9935, aat 4.2500"``."""
        return ", ".join(f"{name.replace('_', ' ')} {value:.4f}" for name, value in measure.figures.items())

    def identity(self, state: HeadState) -> bytes:
        """Bytes that must be equal on every rank of a distributed check (anchors,
        strides, ...); by default the anchors."""
        return state.params.numpy().tobytes()


_FAMILIES: dict[str, HeadFamily] = {}

F = TypeVar("F", bound=type)


def register_family(cls: F) -> F:
    """Class decorator: register a :class:`HeadFamily` subclass under its ``name``.

    Families are tried in registration order; the first that recognises a model wins.

    Raises:
        TypeError: if ``cls`` is not a :class:`HeadFamily` subclass.
        ValueError: if its name is empty or already taken.
    """
    if not (isinstance(cls, type) and issubclass(cls, HeadFamily)):
        raise TypeError(f"register_family takes a HeadFamily subclass, got {cls!r}")
    if not cls.name or cls.name in _FAMILIES:
        raise ValueError(
            f"a head family needs a unique non-empty name; {cls.__name__}.name is {cls.name!r}"
            f" (registered: {', '.join(_FAMILIES)})"
        )
    _FAMILIES[cls.name] = cls()
    return cls


def family_names() -> list[str]:
    """Names of the registered families, in registration order."""
    return list(_FAMILIES)


def get_family(name: str) -> HeadFamily:
    """The registered family called ``name``.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    if name not in _FAMILIES:
        raise ValueError(f"unknown head family {name!r}; known families: {', '.join(_FAMILIES)}")
    return _FAMILIES[name]


def find_head(
    model: Any, detect: Any = None, *, family: str | HeadFamily | None = None
) -> tuple[HeadFamily, Any, str]:
    """Find the detection head of ``model`` (or accept ``detect``) and its family.

    Args:
        model: the detector; each family looks where it keeps its head.
        detect: the head itself; when given, ``model`` is not searched.
        family: try only this family: a registered name, or a :class:`HeadFamily`
            instance (registered or not, e.g. one constructed with per-model
            settings); ``None`` tries every registered family in order.

    Returns:
        ``(family, head, where)``.

    Raises:
        TypeError: if no family recognises it (the message lists the families
            tried and what each found), or ``family`` is neither a name nor a
            :class:`HeadFamily`.
        ValueError: for an unknown family name.
    """
    if detect is None and model is None:
        raise TypeError("model is None; pass the detector (or its detection head as detect=)")
    if family is None:
        candidates = list(_FAMILIES.values())
    elif isinstance(family, str):
        candidates = [get_family(family)]
    elif isinstance(family, HeadFamily):
        candidates = [family]
    else:
        raise TypeError(f"family must be a family name or a HeadFamily, got {type(family).__name__}")
    reasons: dict[str, list[str]] = {}
    for family in candidates:
        try:
            head, where = (detect, "detect") if detect is not None else family.locate(model)
            family.recognise(head, where)
        except HeadNotFound as error:
            reasons.setdefault(str(error), []).append(family.name)
            continue
        return family, head, where
    found = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in reasons.items())
    names = ", ".join(candidate.name for candidate in candidates)
    raise TypeError(f"could not find a detection head of a known family ({names}): {found}; pass the head as detect=")
