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
    report = family.report(state, data, outcome, thr=..., reducer=...)   # collective: every rank
    family.write(state, write)                        # in place; must not fail

``scale=`` (to :meth:`HeadFamily.data`) and ``min_stride_units=`` / ``max_stride_units=``
(to :meth:`HeadFamily.fit`) are passed only when the user gave them, and only to
families that list them in :attr:`HeadFamily.options`; the hook refuses them for the others.

Everything up to :meth:`HeadFamily.prepare` leaves the model untouched, so an error
anywhere before the final :meth:`HeadFamily.write` keeps it bit-identical.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, TypeVar

from torch import Tensor

from ...core.boxes import BoxSizes
from ...core.defaults import DEFAULT_BPR_THRESHOLD
from ...core.parallel import Reducer
from ...core.registry import Registry
from ..report import AnchorReport, Measure, Outcome
from .unsupported import UnsupportedDetector, explain_unrecognised

__all__ = [
    "FAMILIES",
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
    registered (as classes) with :func:`register_family`, and :func:`find_head`
    constructs each with no arguments. A family with settings of its own takes them
    as keyword-only constructor arguments whose defaults read them from the model;
    users pass such an instance as ``check_anchors(..., family=...)``. Methods other
    than :meth:`write` must not change the model. Errors: ``TypeError`` for a head of the wrong kind,
    ``ValueError`` for wrong values, each naming the attribute, the level and index
    where it applies.
    """

    name: ClassVar[str] = ""
    """Short unique name, e.g. ``"yolov5"``; shown in reports and errors."""

    options: ClassVar[frozenset[str]] = frozenset({"thr", "imgsz"})
    """Which of :func:`~autoanchor.training.hook.check_anchors`' yolov5 options mean
    something to this family: ``thr`` and ``imgsz`` (when absent, the hook warns if they
    differ from their defaults), ``scale`` (then :meth:`data` takes ``scale=``, yolov5's
    training-time scale augmentation) and ``min_stride_units`` / ``max_stride_units``
    (then :meth:`fit` takes them: bounds on each anchor's size in strides of its level).
    The hook refuses ``scale`` and the stride bounds for a family without them."""

    keep_threshold: ClassVar[float] = DEFAULT_BPR_THRESHOLD
    """The default ``bpr_threshold`` of a check: the anchors are kept when their score
    (:attr:`Measure.score`) is above it. yolov5's 0.98 for YOLO's best possible recall; the
    ``torchvision`` family keeps its anchors above
    :data:`~autoanchor.core.defaults.DEFAULT_MATCHED_THRESHOLD` (a share matched, measured by
    training)."""

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
        gave one, and only if ``"scale"`` is in :attr:`options`: the boxes are then measured and
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
        they are in :attr:`options`: the search then keeps every anchor within them.

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

    def report(self, state: HeadState, data: Any, outcome: Outcome, *, thr: float, reducer: Reducer | None) -> AnchorReport:
        """The report of a check (called on every rank; a family may run collectives through
        ``reducer``): by default an :class:`~autoanchor.training.report.AnchorReport` of the
        figures; families with figures of their own return a subclass."""
        return AnchorReport.of(self.name, outcome)

    def grid(self, state: HeadState, params: Tensor) -> Any:
        """The anchors of ``params`` as the family's rebuildable description, kept in the
        report (torchvision: a :class:`~autoanchor.grid.anchors.GridAnchors` for
        ``GridReport.anchor_generator()``); by default None."""
        return None

    def describe(self, state: HeadState, params: Tensor) -> str:
        """``params`` of the head read as ``state``, as text for a log line."""
        return str(params.tolist())

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


_REPLACED = {
    **dict.fromkeys(
        ("supports_scale", "supports_stride_bounds", "yolo_options"),
        "list the check options the family takes in options (e.g. frozenset({'thr', 'imgsz', 'scale'}))",
    ),
    **dict.fromkeys(("levels", "below_stride", "note"), "return a report (an AnchorReport subclass) from report()"),
    "describe_state": "implement describe(state, params)",
}
"""Members of the 0.1 protocol -> what replaced them."""

FAMILIES: Registry[type[HeadFamily]] = Registry("head family")
"""The registered :class:`HeadFamily` subclasses by name, in the order they are tried."""

F = TypeVar("F", bound=type)


def register_family(cls: F | None = None, *, replace: bool = False) -> F:
    """Class decorator: register a :class:`HeadFamily` subclass under its ``name``.

    Families are tried in registration order; the first that recognises a model wins.
    The rules are :class:`~autoanchor.core.registry.Registry`'s (``replace=True`` to
    take a taken name: ``@register_family(replace=True)``).

    Raises:
        TypeError: if ``cls`` is not a :class:`HeadFamily` subclass.
        ValueError: if its name is empty or already taken by another class.
    """
    if cls is None:
        return lambda target: register_family(target, replace=replace)  # type: ignore[return-value]
    if not (isinstance(cls, type) and issubclass(cls, HeadFamily)):
        raise TypeError(f"register_family takes a HeadFamily subclass, got {cls!r}")
    old = [name for name in _REPLACED if hasattr(cls, name)]
    if old:  # would be silently ignored: say what replaced them
        raise TypeError(
            f"{cls.__name__} defines {', '.join(old)} of the autoanchor 0.1 head-family protocol; "
            + "; ".join(dict.fromkeys(_REPLACED[name] for name in old))
        )
    return FAMILIES.register(cls, replace=replace)


def family_names() -> list[str]:
    """Names of the registered families, in registration order."""
    return list(FAMILIES)


def get_family(name: str) -> HeadFamily:
    """A new instance of the registered family called ``name`` (settings read from the model).

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    return FAMILIES.get(name)()


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
        candidates = [cls() for cls in FAMILIES.values()]
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
    explained = explain_unrecognised(model, detect)  # a known kind no registered family took (SSD)
    if explained is not None:
        raise UnsupportedDetector(explained)
    found = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in reasons.items())
    names = ", ".join(candidate.name for candidate in candidates)
    raise TypeError(f"could not find a detection head of a known family ({names}): {found}; pass the head as detect=")
