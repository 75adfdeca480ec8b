"""The training hook: check a detector's anchors against the data and replace them in place.

This is the only layer that touches an ``nn.Module``, and it does so only through
the head adapters of :mod:`autoanchor.training.heads` (one per family of detectors).
:func:`check_anchors` is a drop-in for yolov5's ``utils.autoanchor.check_anchors``,
called once before the first epoch; :func:`check_anchor_order` keeps YOLO anchor
levels in the order of the strides.

The flow, the same for every family (:mod:`autoanchor.training._steps`): measure the
current anchors → decide (keep them if good enough, else search and take the new ones
only if better) → prepare the write and the family's report → write them atomically. Everything is computed first and the model is written last, so an error
at any point (on any rank) leaves it bit for bit as it was.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

import torch

from ..core.search import search_anchors
from ._steps import decide, measure, plan_report
from ._agreement import group_reducer
from ..core.defaults import DEFAULT_GEN, DEFAULT_IMGSZ, DEFAULT_SEED, DEFAULT_THR
from .distributed import DistributedReducer
from .heads import HeadFamily, find_head
from .heads.base import SearchFn
from .heads.yolov5 import YoloHead
from .options import CheckOptions
from .report import AnchorReport

__all__ = ["AnchorReport", "CheckOptions", "check_anchors", "check_anchor_order", "find_detect", "run_check"]

logger = logging.getLogger(__name__)



# ---------------------------------------------------------------------------------
# Finding the head; check_anchor_order
# ---------------------------------------------------------------------------------


def find_detect(model: Any, detect: Any = None) -> Any:
    """Find the detection head of ``model`` (through the registered head families).

    Args:
        model: the detector; wrappers with a ``.module`` (``nn.DataParallel``,
            ``DistributedDataParallel``) are unwrapped, then ``model.model[-1]`` is
            taken for YOLO heads, as in yolov5 and yolov7.
        detect: the head itself; when given, ``model`` is not searched.

    Returns:
        The head module.

    Raises:
        TypeError: if no known family recognises it; the message lists the
            families and what was found instead.
    """
    return find_head(model, detect)[1]


def check_anchor_order(m: Any) -> bool:
    """Make the anchor levels follow the strides: small anchors on the fine levels.

    The mean anchor area per level is compared in pixels (anchors × stride). If it
    changes from the first level to the last in the opposite direction of the
    strides, the levels are flipped: the pixel anchors of the last level move to
    the first and so on, then are stored back in stride units, in place. Nothing
    changes when all levels have the same area or all strides are equal. A
    registered ``anchor_grid`` buffer is rewritten and lazy ``grid`` /
    ``anchor_grid`` lists are invalidated.

    Args:
        m: the YOLO detection head (``anchors`` ``[nl, na, 2]`` in stride units,
            ``stride`` ``[nl]``), or a model to find it in (see :func:`find_detect`).

    Returns:
        True if the levels were flipped.

    Raises:
        TypeError, ValueError: if no valid YOLO head is found.

    Example:
        >>> flipped = check_anchor_order(model.model[-1])  # doctest: +SKIP
    """
    is_head = getattr(m, "anchors", None) is not None
    family, head, where = find_head(None, m) if is_head else find_head(m)
    if not isinstance(family, YoloHead):
        raise TypeError(f"check_anchor_order orders YOLO levels by stride; {where} is a {family.name} head")
    state = family.read(head, where)
    flipped = family.reorder(state)
    if flipped is None:
        return False
    family.write(state, family.prepare(state, flipped))
    logger.info("reversed the anchor order to follow the strides %s", state.extra.stride.tolist())
    return True


# ---------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------


def _nobody_listens(log: logging.Logger) -> bool:
    """Whether logging is unconfigured for ``log``: no handler anywhere on its way to
    the root and no level chosen for it or its parents (the root's default aside).
    Then the stdlib would drop an INFO record (``logging.lastResort`` shows only
    warnings); yolov5 is such a case, configuring only its own ``yolov5`` logger."""
    node: logging.Logger | None = log
    while node is not None:
        if node.handlers or (node is not logging.root and node.level != logging.NOTSET):
            return False
        if not node.propagate:
            break
        node = node.parent
    return True


def _announce(report: AnchorReport, *, verbose: bool) -> None:
    """The report line, which a training log must show, then the per-level table of
    the final anchors (each line prefixed ``autoanchor:``): logged at INFO, or
    written to stderr (as ``warnings`` does) when nobody configured logging for
    autoanchor."""
    lines = report.lines()
    if verbose and _nobody_listens(logger):
        sys.stderr.write("".join(f"{line}\n" for line in lines))
        sys.stderr.flush()
    else:
        for line in lines:
            logger.log(logging.INFO if verbose else logging.DEBUG, "%s", line)


def run_check(
    dataset: Any,
    model: Any,
    options: CheckOptions,
    *,
    detect: Any = None,
    family: str | HeadFamily | None = None,
    search: SearchFn = search_anchors,
    reducer: DistributedReducer | None = None,
) -> AnchorReport:
    """:func:`check_anchors` with its collaborators passed in.

    Args:
        dataset, model, detect, family: as for :func:`check_anchors`.
        options: the validated settings.
        search: the search, called as ``search(wh, n, *, thr, gen, seed, reducer,
            progress)`` and returning an object with ``.anchors`` ``[n, 2]`` in
            pixels (:func:`autoanchor.core.search.search_anchors`, the default).
        reducer: a reducer with ``rank``, ``world_size``, ``sum``, ``gather``,
            ``broadcast`` and ``guard`` (a :class:`DistributedReducer`) to work
            across ranks; ``None`` for one process.

    Returns:
        The :class:`AnchorReport`.
    """
    guard = reducer.guard() if reducer is not None else contextlib.nullcontext()
    with guard:
        measured = measure(dataset, model, options, detect=detect, family=family, reducer=reducer)
        decision = decide(measured, options, search=search, reducer=reducer)
        plan = plan_report(measured, decision, options, reducer=reducer)
    # Every rank has agreed that everything succeeded: now, and only now, write.
    if plan.write is not None:
        plan.family.write(plan.state, plan.write)
    _announce(plan.report, verbose=options.verbose and (reducer is None or reducer.rank == 0))
    return plan.report


def check_anchors(
    dataset: Any,
    model: Any,
    thr: float = DEFAULT_THR,
    imgsz: float = DEFAULT_IMGSZ,
    *,
    gen: int = DEFAULT_GEN,
    bpr_threshold: float | None = None,
    seed: int = DEFAULT_SEED,
    device: torch.device | str | None = None,
    verbose: bool = True,
    detect: Any = None,
    family: str | HeadFamily | None = None,
    distributed: bool | None = None,
    scale: float | None = None,
    min_stride_units: float | None = None,
    max_stride_units: float | None = None,
    **removed: Any,
) -> AnchorReport:
    """Check the model's anchors against the data; replace them in place if a search finds better.

    A drop-in for yolov5's ``check_anchors(dataset, model=model, thr=hyp["anchor_t"],
    imgsz=imgsz)``, called once before the first epoch. The head is found by the
    registered families (:mod:`autoanchor.training.heads`: yolov5 v6+ ``Detect``, yolov7
    ``IDetect`` / yolov5 v5.0 ``Detect``, torchvision ``AnchorGenerator``). For YOLO heads:

    1. The box sizes are letterboxed to ``imgsz`` with a seeded per-image scale
       jitter U(0.9, 1.1), as yolov5 does, and the current anchors (anchors ×
       stride, in pixels) are measured on them: best possible recall (BPR),
       anchors per target, fitness.
    2. If BPR > ``bpr_threshold`` the anchors are kept, bit for bit.
    3. Otherwise ``nl · na`` anchors are searched
       (:func:`autoanchor.core.search.search_anchors` on the unjittered sizes). They
       replace the old ones only if their BPR on the jittered sizes is higher:
       sorted by area, split evenly over the levels with the smallest on the
       finest stride, stored in stride units with ``copy_`` so the ``anchors``
       buffer keeps its storage (``data_ptr()``), dtype (float16 included) and
       device. A registered ``anchor_grid`` buffer (pixels, yolov5 v5.0 and yolov7)
       is rewritten and lazily built ``grid``/``anchor_grid`` lists (yolov5 v6+)
       are emptied so the next forward rebuilds them.

    With ``scale`` (yolov5's ``hyp['scale']``), steps 1 and 3 use the sizes the
    detector trains on instead: every image's boxes under 8 seeded draws of a scale
    factor from U(1 - scale, 1 + scale), pooled (:mod:`autoanchor.core.jitter`); both the
    measure and the search use them.

    Nothing in the model changes until everything has been computed: an error
    anywhere leaves it bit-identical.

    The report line: with ``verbose`` it is logged at INFO on the ``autoanchor.training.hook``
    logger; when logging is not configured for autoanchor at all (no handler on the
    way to the root, as in yolov5's ``train.py`` or a bare script) it is written to
    stderr instead, once. The per-level table of the final anchors follows it the
    same way (:meth:`AnchorReport.level_lines`, each line prefixed ``autoanchor:``),
    ending with the anchors smaller than one stride of their level, if any; the
    report line then says how many there are and on which levels. Unless
    ``min_stride_units`` is given, the search leaves them so (as yolov5's): nothing
    is changed because of them. The root
    logger is never configured.

    Distributed: when a ``torch.distributed`` process group is initialised (and
    ``distributed`` is not False), every rank must call this with the same data and
    settings. Each rank measures and searches its share of the boxes and the sums
    are all-reduced; rank 0's seed is used by all, and rank 0's result is broadcast,
    so every rank ends with bit-identical anchors and the same report. An error on
    any rank is raised on every rank (the others raise
    :class:`~autoanchor.training.distributed.PeerFailure`), so no rank is left waiting.

    Args:
        dataset: anything :func:`autoanchor.io.datasets.load_boxes` reads: ``None``
            (the built-in coco128 statistics), a yolov5 dataset (``.shapes``,
            ``.labels``), a :class:`~autoanchor.core.boxes.BoxSizes`, an ``.npz`` path.
        model: the detector; the head is ``model.model[-1]`` after unwrapping
            ``.module`` (DataParallel/DDP). Ignored when ``detect`` is given.
        thr: largest allowed width or height ratio between box and anchor
            (yolov5's ``hyp["anchor_t"]``).
        imgsz: training image size in pixels (long side).
        gen: generations of the search.
        bpr_threshold: the anchors are kept when their score is above this; ``None``
            (default): the family's own, yolov5's 0.98 for YOLO's BPR, and 0.5 for the share
            of boxes a torchvision detector matches (below it, refitted anchors trained better
            than torchvision's; above it, worse: ``docs/training-effect.md``).
        seed: seeds the scale jitter and the search (rank 0's is used by all).
        device: where to measure and search; defaults to the anchors' device.
        verbose: log progress and results at INFO (rank 0 only), show a progress
            bar and make sure the report line is seen; False logs nothing at INFO.
        detect: the detection head, if it is not ``model.model[-1]``.
        family: the head family to use: a registered name
            (:data:`autoanchor.training.heads.FAMILIES`) or a
            :class:`~autoanchor.training.heads.HeadFamily` instance, which carries that
            family's own settings, e.g. ``TorchvisionAnchors(strides=(8, 16, 32, 64, 128),
            resize=..., threshold=0.5)`` (:mod:`autoanchor.training.heads.torchvision`: the
            strides per level in pixels, required for a bare ``AnchorGenerator``, the input
            resize and the foreground IoU, instead of what is read from the model; for that
            family the score compared with ``bpr_threshold`` is the share of boxes matched,
            and ``thr`` / ``imgsz`` do not apply: a warning names them when they differ
            from their defaults). ``None`` tries every registered family in turn.
        distributed: ``None`` (default) to work across the process group when one
            is initialised; ``False`` to work in this process alone (for a call
            made on one rank only, like yolov5's ``train.py`` does: DDP then
            copies rank 0's buffers to the others when it wraps the model);
            ``True`` to require a process group.
        scale: yolov5's training-time scale ``hyp['scale']`` in [0, 1) (0.5 in its
            default hyper-parameters): measure and fit on the boxes under that
            augmentation; ``None`` (default) keeps yolov5's U(0.9, 1.1) check jitter.
        min_stride_units, max_stride_units: if a search runs, it keeps every anchor's
            size ``sqrt(w * h)`` within these many strides of its level (the head's
            strides; levels by area, smallest on the finest stride), enforced inside
            the search (:func:`autoanchor.core.search.search_anchors`). ``None``
            (default): unbounded, as yolov5. The stored values may differ from the
            bound by the buffer's rounding (float16 included).

    Returns:
        The family's report (:mod:`autoanchor.training.report`): a
        :class:`~autoanchor.training.report.YoloReport` for YOLO heads, a
        :class:`~autoanchor.training.report.GridReport` for torchvision generators, an
        :class:`AnchorReport` for other families; ``str(report)`` is one line for a training log.

    Raises:
        ValueError: invalid data (no boxes, non-finite or negative sizes, label
            arrays not ``[m, 5]``; the message names the image), options
            (checked by :mod:`autoanchor.core.validate`: ``device="meta"``, ``"cuda"`` without
            a GPU; a seed outside 0..2**64 - 1; a ``scale`` outside [0, 1), or given for a
            head family that does not model it; stride bounds that are not positive,
            with min above max, or given for a head family that does not take them), anchors or strides (wrong shape,
            non-finite or non-positive: the message names the level and index; on
            the meta device), or (distributed) ranks that disagree on them.
        TypeError: if the detection head cannot be found or lacks ``anchors`` /
            ``stride``; the message lists the known families and what was found. For
            ``strides=``, ``resize=`` or ``threshold=`` (removed: they are the torchvision
            family's settings, passed as ``family=TorchvisionAnchors(...)``).
        PeerFailure: (distributed) on every rank but the one(s) that failed.

    Warns:
        UserWarning: if, after a search, the anchors still do not pass
            ``bpr_threshold`` (and it is below 1).

    Example:
        >>> report = check_anchors(dataset, model, thr=hyp["anchor_t"], imgsz=640)  # doctest: +SKIP
        >>> print(report)  # doctest: +SKIP
        autoanchor: BPR 0.9935, anchors/target 4.25, fitness 0.6836: current anchors fit, kept
    """
    if removed:
        raise _removed_arguments(removed)
    reducer = group_reducer(distributed)
    # Options are checked under the guard too: a bad value on one rank stops every rank.
    with reducer.guard() if reducer is not None else contextlib.nullcontext():
        options = CheckOptions(
            thr=thr, imgsz=imgsz, gen=gen, bpr_threshold=bpr_threshold, seed=seed, device=device, verbose=verbose,
            scale=scale, min_stride_units=min_stride_units, max_stride_units=max_stride_units,
        )
    return run_check(dataset, model, options, detect=detect, family=family, reducer=reducer)


_FAMILY_SETTINGS = ("strides", "resize", "threshold")
"""check_anchors arguments of autoanchor 0.1 that are now the torchvision family's settings."""


def _removed_arguments(removed: dict[str, Any]) -> TypeError:
    """The error for keyword arguments check_anchors does not take (any more)."""
    moved = [name for name in removed if name in _FAMILY_SETTINGS]
    if moved:
        given = ", ".join(f"{name}={removed[name]!r}" for name in moved)
        return TypeError(
            f"check_anchors() no longer takes {', '.join(f'{name}=' for name in moved)}: they are settings of the "
            f"torchvision head family; pass family=TorchvisionAnchors({given}) "
            "(from autoanchor.training.heads.torchvision import TorchvisionAnchors)"
        )
    return TypeError(f"check_anchors() got an unexpected keyword argument {next(iter(removed))!r}")
