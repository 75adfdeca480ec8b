"""The SSD family: torchvision's ``DefaultBoxGenerator`` (``ssd300_vgg16``, ``ssdlite320_mobilenet_v3_large``).

An SSD keeps its default boxes in ``model.anchor_generator`` (also under ``model.module``):
``scales`` (``L + 1`` fractions of the image), ``aspect_ratios`` (per level),
``steps``, ``clip`` and the cache ``_wh_pairs`` (per level ``[A, 2]`` float32 box sizes)
that its forward reads. The head predicts ``2 + 2 * len(ratios)`` boxes per location,
so a fit keeps the ratio counts and moves the values: the scales (kept increasing, so
the levels stay in scale order) and the ratios.

Nothing here imports torchvision: modules are recognised by their attributes.

Mapping onto :class:`~autoanchor.training.heads.base.HeadFamily`:

* ``params``: one flat ``float64`` vector, the scales then every level's ratios;
* ``data``: the boxes in the model's input pixels (the transform stretches every image
  to its ``fixed_size``), at their real centres when known, else at lattice positions;
* ``measure``: :func:`~autoanchor.grid.centred.match_stats_centred` on the default boxes
  at their real centres ``(i + 0.5) * step``, clipped, at the matcher's IoU (0.5), the
  forced best match counted in the positives; the score is the share matched;
* ``fit``: :func:`~autoanchor.grid.default_boxes.fit_default_boxes`;
* ``prepare`` / ``write``: ``scales``, ``aspect_ratios`` and the ``_wh_pairs`` tensors
  rewritten in place (dtype and device kept); on any error the generator is restored.

The feature map sizes come from one forward pass of ``model.backbone`` on a zero image
of the input size in evaluation mode (training flags restored).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ...core.boxes import BoxSizes
from ...core.parallel import Reducer
from ...grid.default_boxes import DefaultBoxes, fit_default_boxes
from ._centred import CentredData, centred_data, centred_measure, format_centred, positions_note
from ..report import GridReport, Outcome
from .base import HeadFamily, HeadNotFound, HeadState, Measure, SearchFn, Write, register_family

__all__ = ["SSDDefaultBoxes", "find_default_box_generator", "pack", "unpack"]

logger = logging.getLogger(__name__)

_ATTRIBUTES = ("scales", "aspect_ratios", "steps", "clip", "_wh_pairs")


def _is_default_box_generator(module: object) -> bool:
    return isinstance(module, nn.Module) and all(hasattr(module, name) for name in _ATTRIBUTES)


def find_default_box_generator(model: Any) -> tuple[str, nn.Module]:
    """``(path, generator)`` of an SSD's ``DefaultBoxGenerator`` (``anchor_generator``, also under ``module.``).

    Raises:
        TypeError: if there is none.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for path in ("anchor_generator", "module.anchor_generator"):
        found: Any = model
        for name in path.split("."):
            found = getattr(found, name, None)
        if _is_default_box_generator(found):
            return path, found
    raise TypeError(
        f"{type(model).__name__} has no DefaultBoxGenerator (with {', '.join(_ATTRIBUTES)}) at anchor_generator"
    )


def pack(boxes: DefaultBoxes) -> Tensor:
    """The scales, then every level's ratios, as one flat ``float64`` vector."""
    return torch.tensor(list(boxes.scales) + [a for level in boxes.aspect_ratios for a in level], dtype=torch.float64)


def unpack(params: Tensor, like: DefaultBoxes) -> DefaultBoxes:
    """The inverse of :func:`pack` with the counts, steps and clipping of ``like``."""
    values = [float(v) for v in params.reshape(-1).tolist()]
    n = len(like.scales)
    counts = [len(level) for level in like.aspect_ratios]
    if len(values) != n + sum(counts):
        raise ValueError(f"{len(values)} values cannot be {n} scales and the ratios {counts} per level")
    ratios, position = [], n
    for count in counts:
        ratios.append(tuple(values[position : position + count]))
        position += count
    return DefaultBoxes(tuple(values[:n]), tuple(ratios), like.steps, like.clip)


class _Extra(NamedTuple):
    model: nn.Module
    generator: nn.Module
    boxes: DefaultBoxes
    grid_sizes: list[tuple[int, int]]
    image_size: tuple[int, int]  # (height, width)
    threshold: float


def _read_settings(generator: nn.Module, where: str) -> DefaultBoxes:
    try:
        steps = None if generator.steps is None else tuple(float(s) for s in generator.steps)
        return DefaultBoxes(
            tuple(float(s) for s in generator.scales),
            tuple(tuple(float(a) for a in level) for level in generator.aspect_ratios),
            steps,
            bool(generator.clip),
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None


def _input_size(model: nn.Module, where: str) -> tuple[int, int]:
    transform = getattr(model, "transform", None)
    fixed = getattr(transform, "fixed_size", None)
    if fixed is None or len(fixed) != 2:
        raise ValueError(f"{where}: the SSD's transform has no fixed_size (width, height); SSDs resize to one size")
    return int(fixed[1]), int(fixed[0])  # (height, width)


def _grid_sizes(model: nn.Module, image_size: tuple[int, int]) -> list[tuple[int, int]]:
    """Feature map sizes from one forward pass of the backbone on a zero image (flags restored)."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"{type(model).__name__} has no backbone to measure the feature maps with")
    parameter = next(backbone.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    flags = {module: module.training for module in backbone.modules()}
    try:
        backbone.eval()
        with torch.no_grad():
            features = backbone(torch.zeros(1, 3, *image_size, device=device, dtype=dtype))
    finally:
        for module, training in flags.items():
            module.training = training
    maps = list(features.values()) if isinstance(features, dict) else [features] if isinstance(features, Tensor) else list(features)
    return [(int(f.shape[-2]), int(f.shape[-1])) for f in maps]


@register_family
class SSDDefaultBoxes(HeadFamily):
    """torchvision SSD / SSDlite default boxes, found at ``model.anchor_generator``.

    Figures: ``matched`` (share of boxes whose best default box reaches the matcher's
    IoU: the score), ``mean IoU``, ``positives`` (default boxes assigned per box by the
    matcher, the forced best match included).
    """

    name = "ssd"
    options = frozenset()  # measured at the model's own input size and matcher: no thr, imgsz, scale

    def locate(self, model: Any) -> tuple[Any, str]:
        try:
            path, _generator = find_default_box_generator(model)
        except TypeError as error:
            raise HeadNotFound(str(error)) from None
        return model, "model." + path

    def recognise(self, head: Any, where: str) -> None:
        try:
            find_default_box_generator(head)
        except TypeError as error:
            raise HeadNotFound(f"{where}: {error} (an SSD model is needed: its transform and backbone)") from None

    def read(self, head: Any, where: str) -> HeadState:
        path, generator = find_default_box_generator(head)
        model = head.module if path.startswith("module.") else head
        boxes = _read_settings(generator, where)
        pairs = generator._wh_pairs
        expected = boxes.wh_pairs(dtype=torch.float32)
        if len(pairs) != boxes.num_levels:
            raise ValueError(f"{where}._wh_pairs has {len(pairs)} levels, the settings {boxes.num_levels}")
        for level, (pair, mine) in enumerate(zip(pairs, expected)):
            if not isinstance(pair, Tensor) or pair.is_meta or pair.shape != mine.shape:
                raise ValueError(f"{where}._wh_pairs[{level}] must be a [{mine.shape[0]}, 2] tensor, got {pair!r}")
        image_size = _input_size(model, where)
        grid_sizes = _grid_sizes(model, image_size)
        if len(grid_sizes) != boxes.num_levels:
            raise ValueError(f"{where}: the backbone gives {len(grid_sizes)} feature maps, the generator has {boxes.num_levels} levels")
        matcher = getattr(model, "proposal_matcher", None)
        threshold = getattr(matcher, "high_threshold", None)
        if threshold is None:
            raise ValueError(f"{where}: no proposal_matcher.high_threshold next to the generator")
        extra = _Extra(model, generator, boxes, grid_sizes, image_size, float(threshold))
        return HeadState(generator, where, pack(boxes), extra)

    def identity(self, state: HeadState) -> bytes:
        extra: _Extra = state.extra
        shape = torch.tensor([v for g in extra.grid_sizes for v in g] + list(extra.image_size), dtype=torch.float64)
        return torch.cat([state.params, shape]).numpy().tobytes()

    def data(
        self, state: HeadState, sizes: BoxSizes, *, imgsz: float, seed: int, device: Any, rank: int, world_size: int,
        scale: float | None = None,
    ) -> CentredData:
        """Every box stretched to the fixed input size, as the SSD transform resizes images."""
        height, width = state.extra.image_size
        size = torch.tensor([float(width), float(height)], dtype=torch.float64)
        wh = torch.as_tensor(sizes.wh, dtype=torch.float64) * size
        xy = None if sizes.xy is None else torch.as_tensor(sizes.xy, dtype=torch.float64) * size
        return centred_data(wh, xy, size.expand_as(wh), seed=seed, source=sizes.source)

    def report(
        self, state: HeadState, data: CentredData, outcome: Outcome, *, thr: float, reducer: Reducer | None
    ) -> GridReport:
        """A :class:`~autoanchor.training.report.GridReport` noting which positions the figures used."""
        return GridReport.of(self.name, outcome, note=positions_note(data))

    def measure(self, state: HeadState, params: Tensor, data: CentredData, *, thr: float, reducer: Reducer | None) -> Measure:
        extra: _Extra = state.extra
        levels = unpack(params, extra.boxes).levels(extra.grid_sizes, extra.image_size)
        return centred_measure(levels, data, extra.threshold)

    def format_measure(self, measure: Measure) -> str:
        return format_centred(measure)

    def fit(
        self, state: HeadState, data: CentredData, *, thr: float, gen: int, seed: int, search: SearchFn,
        reducer: Reducer | None, progress: bool,
    ) -> Tensor:
        extra: _Extra = state.extra
        result = fit_default_boxes(
            data.wh, data.xy, extra.boxes, extra.grid_sizes, extra.image_size, threshold=extra.threshold,
            generator=torch.Generator().manual_seed(seed),
        )
        return pack(result.anchors)

    def poor_fit_advice(self) -> str:
        return "check the labels; small boxes need a finer first level or a larger input size than the SSD's"

    def prepare(self, state: HeadState, params: Tensor) -> Write:
        extra: _Extra = state.extra
        boxes = unpack(params, extra.boxes)
        if not boxes.same_structure(extra.boxes):
            raise ValueError(f"{state.where}: the new default boxes change the boxes per location; the head would not fit")
        pairs = [
            new.to(dtype=old.dtype, device=old.device)
            for new, old in zip(boxes.wh_pairs(dtype=torch.float32), extra.generator._wh_pairs)
        ]
        return Write(pack(boxes), (boxes, pairs))

    def write(self, state: HeadState, write: Write) -> None:
        boxes, pairs = write.payload
        write_default_boxes(state.extra.generator, boxes, pairs)

    def describe(self, state: HeadState, params: Tensor) -> str:
        return unpack(params, state.extra.boxes).constructor()


def write_default_boxes(generator: nn.Module, boxes: DefaultBoxes, pairs: list[Tensor]) -> None:
    """Store ``boxes`` in a ``DefaultBoxGenerator`` in place: the ``_wh_pairs`` tensors are
    overwritten (same objects), ``scales`` and ``aspect_ratios`` replaced; on any error
    everything is restored."""
    old_scales, old_ratios = generator.scales, generator.aspect_ratios
    saved = [pair.clone() for pair in generator._wh_pairs]
    try:
        with torch.no_grad():
            for pair, new in zip(generator._wh_pairs, pairs):
                pair.copy_(new)
        generator.scales = list(boxes.scales)
        generator.aspect_ratios = [[int(a) if float(a).is_integer() else a for a in level] for level in boxes.aspect_ratios]
    except BaseException:
        with torch.no_grad():
            for pair, old in zip(generator._wh_pairs, saved):
                pair.copy_(old)
        generator.scales, generator.aspect_ratios = old_scales, old_ratios
        raise
