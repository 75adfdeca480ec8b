"""The three steps of a check, each touching nothing in the model: measure, decide, report.

:func:`~autoanchor.training.hook.run_check` runs them in order under the distributed
guard, then writes: :func:`measure` loads the boxes, finds and reads the head, agrees
across ranks and measures the current anchors; :func:`decide` keeps them or searches and
takes the new ones only if better (rank 0 decides); :func:`plan_report` prepares the write
and builds the family's report.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from torch import Tensor

from ..core._warn import warn
from ..core.jitter import DEFAULT_DRAWS, scale_range
from ..io.datasets import load_boxes
from ._agreement import decision_from_rank0, handshake, measure_from_rank0
from .distributed import DistributedReducer
from .heads import HeadFamily, HeadState, Measure, Write, find_head
from .heads.base import SearchFn
from .options import DEFAULT_IMGSZ, DEFAULT_THR, CheckOptions
from .report import AnchorReport, Outcome

__all__ = ["Decision", "Measured", "Plan", "decide", "measure", "plan_report"]

logger = logging.getLogger("autoanchor.training.hook")  # the hook's log, where users look for it


class Measured(NamedTuple):
    """The first step's result: the head, its data and how well its anchors fit."""

    family: HeadFamily
    state: HeadState
    data: Any
    before: Measure
    seed: int  # rank 0's, in a distributed check
    bounds: dict[str, float | None]  # stride bounds for the family's fit, when given


class Decision(NamedTuple):
    """The second step's result: the final measure, the new anchors (None: kept)."""

    after: Measure
    params: Tensor | None
    searched: bool


class Plan(NamedTuple):
    """The third step's result: the report, and the write to make once every rank agrees."""

    report: AnchorReport
    family: HeadFamily
    state: HeadState
    write: Write | None


def _family_options(family: HeadFamily, where: str, options: CheckOptions, *, rank: int) -> tuple[dict, dict]:
    """The ``scale=`` and stride-bound keyword arguments for ``family``; refuses those it
    does not take, and warns about yolov5's ``thr`` / ``imgsz`` when they mean nothing to it."""
    scale = {}
    if options.scale is not None:
        if "scale" not in family.options:
            raise ValueError(
                f"scale={options.scale} models yolov5's training-time scale augmentation, which the "
                f"{family.name} family ({where}) does not support; leave scale out for this head"
            )
        scale = {"scale": options.scale}  # only when given: families written before scale= keep working
    bounds = {}
    if options.min_stride_units is not None or options.max_stride_units is not None:
        if not {"min_stride_units", "max_stride_units"} <= family.options:
            raise ValueError(
                f"min_stride_units={options.min_stride_units}, max_stride_units={options.max_stride_units}: the "
                f"{family.name} family ({where}) does not support stride bounds; leave them out for this head"
            )
        bounds = {"min_stride_units": options.min_stride_units, "max_stride_units": options.max_stride_units}
    ignored = [
        f"{name}={value!r}"
        for name, value, default in (("thr", options.thr, DEFAULT_THR), ("imgsz", options.imgsz, DEFAULT_IMGSZ))
        if value != default and name not in family.options
    ]
    if ignored and rank == 0:
        warn(
            f"yolov5 arguments ({', '.join(ignored)}) do not apply to the {family.name} head at {where}: "
            "it is measured at its own foreground IoU and input resize; they are ignored"
        )
    return scale, bounds


def measure(
    dataset: Any,
    model: Any,
    options: CheckOptions,
    *,
    detect: Any,
    family: str | HeadFamily | None,
    reducer: DistributedReducer | None,
) -> Measured:
    """Load the boxes, find and read the head, agree across ranks, and measure its anchors."""
    rank, world_size = (reducer.rank, reducer.world_size) if reducer is not None else (0, 1)
    info = logging.INFO if options.verbose and rank == 0 else logging.DEBUG
    shown = options.verbose and rank == 0
    sizes = load_boxes(dataset, verbose=shown, progress=shown)  # ValueError naming the image
    family, head, where = find_head(model, detect, family=family)
    state = family.read(head, where)
    seed = options.seed
    if reducer is not None:
        logger.log(
            info,
            "working across %d ranks, each on its share of the boxes: every rank must call check_anchors "
            "(pass distributed=False for a call made on one rank only)",
            world_size,
        )
        seed = handshake(reducer, options, sizes, family, state)
    scale, bounds = _family_options(family, where, options, rank=rank)
    if scale:
        low, high = scale_range(options.scale)
        logger.log(
            info, "measuring and fitting under the training scale U(%g, %g): %d seeded draws per image, pooled",
            low, high, DEFAULT_DRAWS,
        )
    data = family.data(
        state, sizes, imgsz=options.imgsz, seed=seed, device=options.device, rank=rank, world_size=world_size,
        **scale,
    )
    before = family.measure(state, state.params, data, thr=options.thr, reducer=reducer)
    if reducer is not None:
        # Every rank must take the same branch in decide (the search runs collectives).
        before = measure_from_rank0(reducer, before)
    yolo = {"thr", "imgsz"} <= family.options
    logger.log(
        info, "current anchors (%s head at %s), on %d boxes (%s): %s",
        family.name, where, sizes.n_boxes,
        f"imgsz {options.imgsz}, thr {options.thr}" if yolo else "the model's resize and matcher",
        family.format_measure(before),
    )
    return Measured(family, state, data, before, seed, bounds)


def decide(
    measured: Measured, options: CheckOptions, *, search: SearchFn, reducer: DistributedReducer | None
) -> Decision:
    """Keep the anchors if good enough, else search and take the new ones only if better;
    rank 0 decides for every rank."""
    family, state, data, before = measured.family, measured.state, measured.data, measured.before
    verbose = options.verbose and (reducer is None or reducer.rank == 0)
    info = logging.INFO if verbose else logging.DEBUG
    threshold = options.keep_threshold(family)
    searched = before.score <= threshold
    after, params = before, None
    if not searched:
        logger.log(info, "current anchors are a good fit to the data (%.4f > %s), kept", before.score, threshold)
    else:
        logger.log(
            info, "anchors are a poor fit to the data (%.4f <= %s): searching %d new anchors",
            before.score, threshold, state.params.numel() // 2,
        )
        found = family.fit(
            state, data, thr=options.thr, gen=options.gen, seed=measured.seed, search=search, reducer=reducer,
            progress=verbose, **measured.bounds,
        )
        candidate = family.measure(state, found, data, thr=options.thr, reducer=reducer)
        if candidate.score > before.score:
            after, params = candidate, found
            logger.log(
                info,
                "new anchors: %s; replacing (pixels, per level): %s%s",
                family.format_measure(candidate), family.describe(state, found),
                " (optional: write them into the model yaml to reuse them)" if "thr" in family.options else "",
            )
        else:
            logger.log(
                info, "new anchors are not better (%.4f <= %.4f): kept the current anchors",
                candidate.score, before.score,
            )
    if reducer is not None:
        # Rank 0 decides for everyone: the same report and anchors on every rank.
        after, params = decision_from_rank0(reducer, after, params, state.params.shape)
    return Decision(after, params, searched)


def plan_report(
    measured: Measured, decision: Decision, options: CheckOptions, *, reducer: DistributedReducer | None
) -> Plan:
    """Prepare the write (changing nothing) and the family's report; warn if the fit is still poor."""
    family, state = measured.family, measured.state
    write = family.prepare(state, decision.params) if decision.params is not None else None
    outcome = Outcome(
        before=measured.before,
        after=decision.after,
        anchors_before=state.params,
        anchors_after=write.params if write is not None else state.params,
        replaced=write is not None,
        searched=decision.searched,
    )
    report = family.report(state, measured.data, outcome, thr=options.thr, reducer=reducer)  # every rank
    threshold, score = options.keep_threshold(family), decision.after.score
    if decision.searched and score <= threshold < 1 and (reducer is None or reducer.rank == 0):
        warn(
            f"the anchors still fit the data poorly ({score:.4f} <= bpr_threshold {threshold}); "
            f"{family.poor_fit_advice_for(decision.after)}"
        )
    return Plan(report, family, state, write)
