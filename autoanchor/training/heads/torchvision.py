"""The torchvision family: grid anchor generators (RetinaNet, Faster / Mask / Keypoint R-CNN).

A torchvision detector keeps its anchors in an ``AnchorGenerator`` at
``model.anchor_generator`` (RetinaNet) or ``model.rpn.anchor_generator`` (the R-CNNs),
also under ``model.module`` (DataParallel / DDP): per level a tuple of ``sizes``
(pixels of the model's input) and of ``aspect_ratios`` (height / width), and the
``cell_anchors`` derived from them. The head predicts ``len(sizes) * len(ratios)``
anchors per location, so a fit keeps those counts and only moves the values.

Nothing here imports torchvision: modules are recognised by their attributes
(:mod:`autoanchor.training.heads.torchvision_model`).

Mapping onto :class:`~autoanchor.training.heads.base.HeadFamily`:

* ``params``: one flat ``float64`` vector, every level's sizes then every level's
  ratios, in the generator's order (:func:`pack` / :func:`unpack`);
* ``data``: the boxes in the model's input pixels at every size the transform trains
  at (each ``min_size`` of its tuple), with their real centres when the dataset has
  them (``BoxSizes.xy``), else centres spread evenly over their images
  (:func:`~autoanchor.grid.inputs.input_samples`): every box, on its image's padded
  grid, so the figures are torchvision's own count;
* ``measure``: the position-aware matching of :mod:`autoanchor.grid.matching`;
  the **score is the share of boxes matched** at the detector's foreground IoU
  (RetinaNet 0.5, the RPN 0.7). The hook keeps the anchors when that share is above
  ``bpr_threshold`` (by default this family's ``keep_threshold``, 0.5: trained detectors did
  worse when stock anchors that matched most boxes were refitted, ``docs/training-effect.md``)
  and replaces them only when a fit raises it. torchvision's matchers allow
  low-quality matches, so a box below the threshold still trains on its best anchor:
  the figures say how many boxes only that serves (``low-quality only``);
* ``fit``: :func:`~autoanchor.grid.fit.fit_grid_anchors` with the levels in scale
  order and the stride bounds (``min_stride_units`` / ``max_stride_units``);
* ``levels``: per level, the sizes in strides, the share matched, the positives per
  box and the share of boxes whose best anchor is there;
* ``prepare`` / ``write``: the atomic in-place rewrite of ``sizes``,
  ``aspect_ratios`` and ``cell_anchors`` (dtype and device kept) of
  :func:`~autoanchor.training.heads.torchvision_model.write_grid_anchors`.

yolov5's ``thr`` and ``imgsz`` do not apply: the threshold is the matcher's IoU and
the image size is the transform's resize.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ...core.boxes import BoxSizes
from ...core.defaults import DEFAULT_MATCHED_THRESHOLD
from ...core.levels import LevelStats
from ...grid.fit import fit_grid_anchors
from ...grid.anchors import GridAnchors, ResizeRule
from ...grid.inputs import input_samples
from ...grid.matching import Samples, level_match_stats, match_stats
from ...grid.rules import LevelRules
from .torchvision_model import (
    DetectorAnchors,
    find_anchor_generator,
    read_detector,
    write_grid_anchors,
)
from ...core.parallel import Reducer
from ..report import GridReport, Outcome
from ..rebuild import persist_anchors
from .unsupported import refuse_anchor_free
from ...core.validate import is_number
from .base import HeadFamily, HeadNotFound, HeadState, Measure, SearchFn, Write, register_family

__all__ = ["TorchvisionAnchors", "pack", "unpack"]

logger = logging.getLogger(__name__)

def pack(generator: GridAnchors) -> Tensor:
    """Every level's sizes, then every level's ratios, as one flat ``float64`` vector."""
    values = [v for level in generator.sizes for v in level] + [v for level in generator.aspect_ratios for v in level]
    return torch.tensor(values, dtype=torch.float64)


def unpack(params: Tensor, like: GridAnchors) -> GridAnchors:
    """The inverse of :func:`pack`, with the levels, counts and strides of ``like``.

    Raises:
        ValueError: if ``params`` does not hold as many values as ``like`` has.
    """
    values = [float(v) for v in params.reshape(-1).tolist()]
    size_counts = [len(level) for level in like.sizes]
    ratio_counts = [len(level) for level in like.aspect_ratios]
    if len(values) != sum(size_counts) + sum(ratio_counts):
        raise ValueError(
            f"{len(values)} values cannot be the sizes {size_counts} and ratios {ratio_counts} per level of "
            f"{like.num_levels} levels"
        )
    sizes, position = [], 0
    for count in size_counts:
        sizes.append(tuple(values[position : position + count]))
        position += count
    ratios = []
    for count in ratio_counts:
        ratios.append(tuple(values[position : position + count]))
        position += count
    return GridAnchors(tuple(sizes), tuple(ratios), like.strides)


class _Head(NamedTuple):
    """What :meth:`TorchvisionAnchors.locate` found: the model (to read strides, resize
    and matcher from) and its generator."""

    model: Any
    generator: nn.Module


class _Extra(NamedTuple):
    detector: DetectorAnchors
    generator: nn.Module


class TorchvisionData(NamedTuple):
    """The boxes in the model's input pixels.

    Attributes:
        wh: ``[S, 2]`` float64 box (width, height) of the rows, positive (``samples.wh``).
        xy: ``[S, 2]`` float64 real box centres, or None when the dataset has none
            (the rows then have centres spread over each image).
        samples: the rows the figures are measured and the fit searches on (every box
            at each training size, with its image's padded extent).
        seed: the check's seed (the fit draws from it).
    """

    wh: Tensor
    xy: Tensor | None
    samples: Samples
    seed: int


@register_family
class TorchvisionAnchors(HeadFamily):
    """torchvision ``AnchorGenerator`` s, found in RetinaNet / R-CNN models or given bare.

    Construct one with settings to override what is read from the model and pass it
    to the hook: ``check_anchors(dataset, model, family=TorchvisionAnchors(strides=...,
    resize=..., threshold=...))``; the registered family reads everything from the model.

    Args:
        strides: per level in pixels; measured with one forward pass of the
            backbone on a zero image when None. Required for a bare generator.
        resize: the input resize; read from ``model.transform`` when None (every
            ``min_size`` of its tuple: the sizes it trains at). A bare generator
            without it measures boxes at the images' stored size.
        threshold: foreground IoU; read from the matcher when None. Required for a
            bare generator.
        level_order: the fit keeps the levels in scale order: every size of a level
            above every size of the levels of smaller stride
            (:class:`~autoanchor.grid.rules.LevelRules`). False lets any level take
            any size.
        min_stride_units, max_stride_units: bounds on every fitted size of a level,
            in strides of that level (``check_anchors``' arguments of the same
            names, when given, take precedence).

    Figures: ``matched`` (share of boxes with an anchor at IoU >= the threshold at
    their position: the score), ``mean IoU`` (mean best IoU), ``positives`` (mean
    number of anchors at IoU >= the threshold per box), ``low-quality only`` (share
    of boxes below the threshold, which torchvision's matcher serves through their
    best anchor only).
    """

    name = "torchvision"
    # yolov5's thr and imgsz do not apply (the matcher's IoU and the transform's resize instead); stride bounds do
    keep_threshold = DEFAULT_MATCHED_THRESHOLD  # a share matched: kept above 0.5 (docs/training-effect.md)
    options = frozenset({"min_stride_units", "max_stride_units"})

    def __init__(
        self,
        *,
        strides: tuple[int, ...] | None = None,
        resize: ResizeRule | None = None,
        threshold: float | None = None,
        level_order: bool = True,
        min_stride_units: float | None = None,
        max_stride_units: float | None = None,
    ):
        if strides is not None:
            strides = tuple(strides)
            if not strides or any(not is_number(s) or int(s) != s or s < 1 for s in strides):
                raise ValueError(f"strides must be positive whole numbers of pixels, got {strides!r}")
            strides = tuple(int(s) for s in strides)
        if resize is not None and not isinstance(resize, ResizeRule):
            raise TypeError(f"resize must be a ResizeRule, got {type(resize).__name__}")
        if threshold is not None and not 0 < float(threshold) <= 1:
            raise ValueError(f"threshold must be an IoU in (0, 1], got {threshold!r}")
        if not isinstance(level_order, bool):
            raise TypeError(f"level_order must be True or False, got {level_order!r}")
        LevelRules((1,), level_order, min_stride_units, max_stride_units)  # validates the bounds
        self.strides = strides
        self.resize = resize
        self.threshold = None if threshold is None else float(threshold)
        self.level_order = level_order
        self.min_stride_units = min_stride_units
        self.max_stride_units = max_stride_units

    # -- finding -------------------------------------------------------------------

    def locate(self, model: Any) -> tuple[Any, str]:
        refuse_anchor_free(model)  # FCOS has a generator too: refused, not fitted
        try:
            path, generator = find_anchor_generator(model)
        except TypeError as error:
            raise HeadNotFound(str(error)) from None
        return _Head(model, generator), "model" + (f".{path}" if path else "")

    def recognise(self, head: Any, where: str) -> None:
        if isinstance(head, _Head):
            return
        try:  # a generator given as detect=
            find_anchor_generator(head)
        except TypeError as error:
            raise HeadNotFound(f"{where}: {error}") from None

    # -- reading -------------------------------------------------------------------

    def read(self, head: Any, where: str) -> HeadState:
        model = head.model if isinstance(head, _Head) else head
        if isinstance(head, _Head) and head.generator is model:
            where = "generator"
        detector = read_detector(model, strides=self.strides, threshold=self.threshold, resize=self.resize)
        _path, generator = find_anchor_generator(model)
        for level, cell in enumerate(generator.cell_anchors):
            if not isinstance(cell, Tensor) or not cell.is_floating_point():
                raise TypeError(f"{where}.cell_anchors[{level}] must be a floating-point tensor, got {cell!r}")
            if cell.is_meta:
                raise ValueError(f"{where}.cell_anchors[{level}] is on the meta device and holds no values")
        return HeadState(generator, where, pack(detector.generator), _Extra(detector, generator))

    def identity(self, state: HeadState) -> bytes:
        strides = torch.tensor(state.extra.detector.generator.strides, dtype=torch.float64)
        return torch.cat([state.params, strides]).numpy().tobytes()

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
    ) -> TorchvisionData:
        """Every box in input pixels at each training size: each rank works on all of
        them (the fit is deterministic for a seed, and rank 0's decision is broadcast anyway)."""
        detector: DetectorAnchors = state.extra.detector
        samples = input_samples(sizes.shapes, sizes.wh, sizes.image_index, sizes.xy, detector.resizes)
        if samples.wh.shape[0] == 0:
            raise ValueError(f"no box of positive size in {sizes.source or 'the dataset'}")
        n_zero = sizes.n_boxes - int(round(samples.total_weight))
        if n_zero:
            logger.info("%d of %d boxes have zero width or height and are left out", n_zero, sizes.n_boxes)
        if device is not None:
            samples = Samples(
                samples.wh.to(device), samples.xy.to(device), samples.weight.to(device), samples.extent.to(device)
            )
        logger.debug(
            "%d boxes, %s, %s", int(round(samples.total_weight)), detector.resize_text(),
            "at their real positions" if sizes.xy is not None
            else "spread evenly over their images (the data has no centres)",
        )
        return TorchvisionData(samples.wh, samples.xy if sizes.xy is not None else None, samples, seed)

    def report(
        self, state: HeadState, data: TorchvisionData, outcome: Outcome, *, thr: float, reducer: Reducer | None
    ) -> GridReport:
        """A :class:`~autoanchor.training.report.GridReport` noting how the figures were measured:
        resize, IoU and positions."""
        detector: DetectorAnchors = state.extra.detector
        positions = (
            "real box positions" if data.xy is not None
            else "positions spread over each image (no box centres in the data)"
        )
        note = f"{detector.resize_text()}, IoU >= {detector.threshold:g}, {positions}"
        final = outcome.anchors_after
        return GridReport.of(
            self.name, outcome, note=note, grid_after=self.grid(state, final), levels=self._levels(state, final, data)
        )

    # -- measuring and fitting -----------------------------------------------------

    def measure(
        self, state: HeadState, params: Tensor, data: TorchvisionData, *, thr: float, reducer: Reducer | None
    ) -> Measure:
        detector: DetectorAnchors = state.extra.detector
        stats = match_stats(data.samples, unpack(params, detector.generator), threshold=detector.threshold)
        figures = {
            "matched": stats.matched, "mean IoU": stats.mean_iou, "positives": stats.positives,
            "low-quality only": stats.low_quality_only,
        }
        return Measure(stats.matched, figures)  # the score: the share matched

    def format_measure(self, measure: Measure) -> str:
        figures = measure.figures
        return (
            f"matched {figures['matched']:.4f}, mean best IoU {figures['mean IoU']:.4f}, "
            f"positives/box {figures['positives']:.2f}"
        )

    def fit(
        self,
        state: HeadState,
        data: TorchvisionData,
        *,
        thr: float,
        gen: int,
        seed: int,
        search: SearchFn,
        reducer: Reducer | None,
        progress: bool,
        min_stride_units: float | None = None,
        max_stride_units: float | None = None,
    ) -> Tensor:
        detector: DetectorAnchors = state.extra.detector
        # The fit searches on the rows the figures are measured on (equal weights), at their real grids.
        rows = data.samples
        result = fit_grid_anchors(
            rows.wh, rows.xy, detector.generator, threshold=detector.threshold, extent=rows.extent,
            generator=torch.Generator().manual_seed(seed), level_order=self.level_order,
            min_stride_units=self.min_stride_units if min_stride_units is None else min_stride_units,
            max_stride_units=self.max_stride_units if max_stride_units is None else max_stride_units,
        )
        return pack(result.generator)

    def _levels(self, state: HeadState, params: Tensor, data: TorchvisionData) -> tuple[LevelStats, ...]:
        """Per level: anchors, sizes in strides, share matched, positives per box, share of best anchors."""
        detector: DetectorAnchors = state.extra.detector
        generator = unpack(params, detector.generator)
        per_level = level_match_stats(data.samples, generator, threshold=detector.threshold)
        boxes = int(round(data.samples.total_weight))
        result = []
        for level, (anchor_wh, stride, figures) in enumerate(
            zip(generator.anchor_wh(), generator.strides, per_level)
        ):
            sizes = anchor_wh.prod(dim=1).sqrt() / stride
            result.append(
                LevelStats(float(stride), anchor_wh, sizes, figures["matched"], figures["positives"], figures["best"],
                           boxes)
            )
        return tuple(result)

    def poor_fit_advice(self) -> str:
        return low_quality_advice(None)

    def poor_fit_advice_for(self, measure: Measure) -> str:
        """The advice with the share of boxes only a low-quality match serves."""
        return low_quality_advice(measure.figures.get("low-quality only"))

    # -- writing -------------------------------------------------------------------

    def prepare(self, state: HeadState, params: Tensor) -> Write:
        detector: DetectorAnchors = state.extra.detector
        generator = unpack(params, detector.generator)
        module = state.extra.generator
        for level, cell in enumerate(module.cell_anchors):
            new = generator.cell_anchors(dtype=cell.dtype, device=cell.device)[level]
            if new.shape != cell.shape:
                raise ValueError(
                    f"{state.where}.cell_anchors[{level}] has shape {tuple(cell.shape)}, the new anchors "
                    f"{tuple(new.shape)}: the head would not fit"
                )
        return Write(pack(generator), generator)

    def write(self, state: HeadState, write: Write) -> None:
        write_grid_anchors(state.extra.generator, write.payload)
        persist_anchors(state.extra.generator)  # the fit rides in state_dict() (training/rebuild.py)

    def grid(self, state: HeadState, params: Tensor) -> GridAnchors:
        return unpack(params, state.extra.detector.generator)

    def describe(self, state: HeadState, params: Tensor) -> str:
        """``AnchorGenerator(sizes=..., aspect_ratios=...)`` for ``params``."""
        generator = unpack(params, state.extra.detector.generator)
        return generator_line(generator)


def low_quality_advice(low_quality_only: float | None) -> str:
    """What a share matched under ``bpr_threshold`` means for a torchvision detector, and what to try."""
    share = "" if low_quality_only is None else f"{low_quality_only:.1%} of boxes have "
    return (
        f"{share or 'boxes with '}no anchor at the matcher's foreground IoU; torchvision's matchers allow "
        "low-quality matches (allow_low_quality_matches=True), so each such box still trains on its best "
        "anchor(s), at a lower IoU. A large share is usual at an RPN's IoU 0.7 (torchvision's stock R-CNN "
        "anchors leave half the boxes or more below it); to lower it, allow more sizes or ratios per level (the head changes), "
        "check the model's resize (transform min_size/max_size) and the labels, or pass a bpr_threshold "
        "below the share matched to accept it"
    )


def generator_line(generator: GridAnchors) -> str:
    """``AnchorGenerator(sizes=((32, 40, 50), ...), aspect_ratios=((0.5, 1.0, 2.0), ...))``."""

    def number(value: float) -> str:
        return str(int(value)) if float(value).is_integer() and value >= 1 else repr(float(value))

    def levels(values: tuple[tuple[float, ...], ...], as_float: bool) -> str:
        inner = []
        for level in values:
            items = [repr(float(v)) if as_float else number(v) for v in level]
            inner.append("(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")")
        return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"

    sizes, ratios = levels(generator.sizes, False), levels(generator.aspect_ratios, True)
    return f"AnchorGenerator(sizes={sizes}, aspect_ratios={ratios})"
