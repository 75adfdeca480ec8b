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
* ``data``: the boxes in the model's input pixels (the transform's resize), with
  their real centres when the dataset has them (``BoxSizes.xy``), else a fixed
  lattice of positions; pooled once, seeded, for measuring;
* ``measure``: the position-aware matching of :mod:`autoanchor.grid.matching`;
  the **score is the share of boxes matched** at the detector's foreground IoU
  (RetinaNet 0.5, the RPN 0.7). The hook keeps the anchors when that share is above
  ``bpr_threshold`` (0.98 by default: fewer than 2 boxes in 100 without a positive
  anchor) and replaces them only when a fit raises it;
* ``fit``: :func:`~autoanchor.grid.fit.fit_grid_anchors`;
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
from ...grid.fit import fit_grid_anchors, pool_samples
from ...grid.anchors import GridAnchors, ResizeRule
from ...grid.matching import Samples, match_stats
from .torchvision_model import (
    DetectorAnchors,
    boxes_to_input,
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

EVAL_BINS_PER_OCTAVE = 12
"""Size bins per octave of the pooled boxes the figures are measured on."""
EVAL_POSITIONS_PER_POOL = 16
"""Positions per size bin of the pooled boxes the figures are measured on."""


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
        wh: ``[N, 2]`` float64 box (width, height), positive.
        xy: ``[N, 2]`` float64 box centres, or None when the dataset has no positions.
        samples: the pooled rows the figures are measured on (seeded).
        seed: the check's seed (the fit draws from it too).
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
        resize: the input resize; read from ``model.transform`` when None. A bare
            generator without it measures boxes at the images' stored size.
        threshold: foreground IoU; read from the matcher when None. Required for a
            bare generator.

    Figures: ``matched`` (share of boxes with an anchor at IoU >= the threshold at
    their position: the score), ``mean IoU`` (mean best IoU), ``positives`` (mean
    number of anchors at IoU >= the threshold per box).
    """

    name = "torchvision"
    options = frozenset()  # yolov5's thr and imgsz: the matcher's IoU and the transform's resize instead

    def __init__(
        self,
        *,
        strides: tuple[int, ...] | None = None,
        resize: ResizeRule | None = None,
        threshold: float | None = None,
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
        self.strides = strides
        self.resize = resize
        self.threshold = None if threshold is None else float(threshold)

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
        """Every box in input pixels: each rank works on all of them (the fit is
        deterministic for a seed, and rank 0's decision is broadcast anyway)."""
        detector: DetectorAnchors = state.extra.detector
        wh, xy, _extent = boxes_to_input(sizes.shapes, sizes.wh, sizes.image_index, sizes.xy, detector.resize)
        usable = (wh > 0).all(dim=1)
        if not bool(usable.any()):
            raise ValueError(f"no box of positive size in {sizes.source or 'the dataset'}")
        if not bool(usable.all()):
            logger.info("%d of %d boxes have zero width or height and are left out", int((~usable).sum()), len(usable))
            wh = wh[usable]
            xy = None if xy is None else xy[usable]
        if device is not None:
            wh = wh.to(device)
            xy = None if xy is None else xy.to(device)
        samples = pool_samples(
            wh, xy, detector.generator.cell, bins_per_octave=EVAL_BINS_PER_OCTAVE,
            positions_per_pool=EVAL_POSITIONS_PER_POOL, generator=torch.Generator().manual_seed(seed),
        )
        logger.debug(
            "%d boxes at the input size %s, %s", wh.shape[0], detector.resize or "as stored",
            "at their real positions" if xy is not None else "on a lattice of positions (the data has none)",
        )
        return TorchvisionData(wh, xy, samples, seed)

    def report(
        self, state: HeadState, data: TorchvisionData, outcome: Outcome, *, thr: float, reducer: Reducer | None
    ) -> GridReport:
        """A :class:`~autoanchor.training.report.GridReport` noting which positions the figures used."""
        note = "real box positions" if data.xy is not None else "lattice positions (no box centres in the data)"
        return GridReport.of(self.name, outcome, note=note, grid_after=self.grid(state, outcome.anchors_after))

    # -- measuring and fitting -----------------------------------------------------

    def measure(
        self, state: HeadState, params: Tensor, data: TorchvisionData, *, thr: float, reducer: Reducer | None
    ) -> Measure:
        detector: DetectorAnchors = state.extra.detector
        stats = match_stats(data.samples, unpack(params, detector.generator), threshold=detector.threshold)
        figures = {"matched": stats.matched, "mean IoU": stats.mean_iou, "positives": stats.positives}
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
    ) -> Tensor:
        detector: DetectorAnchors = state.extra.detector
        result = fit_grid_anchors(
            data.wh, data.xy, detector.generator, threshold=detector.threshold,
            generator=torch.Generator().manual_seed(seed),
        )
        return pack(result.generator)

    def poor_fit_advice(self) -> str:
        return "check the labels and the model's resize (transform min_size/max_size), or allow more sizes or ratios"

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
