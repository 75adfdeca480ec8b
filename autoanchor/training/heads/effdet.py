"""The EfficientDet family: ``effdet``'s ``Anchors`` in a ``DetBenchTrain`` / ``DetBenchPredict``.

A bench keeps its anchors in ``bench.anchors`` (``min_level``, ``max_level``,
``num_scales``, ``aspect_ratios``, ``anchor_scales`` per level, ``image_size``, the
per-level ``config`` entries ``(stride, octave exponent, aspect, anchor_scale)`` and the
``boxes`` buffer ``[D, 4]`` ``(y1, x1, y2, x2)`` that the loss and the decoder read);
``bench.anchor_labeler`` matches with the same ``Anchors`` object at IoU 0.5, each box's
best anchor forced. The head predicts ``num_scales * len(aspect_ratios)`` anchors per
location, so a fit keeps both counts and moves ``anchor_scale``, the octave scales and
the aspect ratios.

Nothing here imports effdet: modules are recognised by their attributes.

Mapping onto :class:`~autoanchor.training.heads.base.HeadFamily`:

* ``params``: one flat ``float64`` vector: ``anchor_scale``, the octave exponents, then
  the aspects' ``(a_x, a_y)`` pairs;
* ``data``: boxes letterboxed as effdet's ``ResizePad`` does (long side to the input,
  top-left), at their centres when known, else at lattice positions in the image content;
* ``measure``: :func:`~autoanchor.grid.centred.match_stats_centred` on the anchors at
  their centres ``stride / 2 + i * stride``; the score is the share matched at 0.5;
* ``fit``: :func:`~autoanchor.grid.effdet_anchors.fit_effdet_anchors`;
* ``prepare`` / ``write``: ``boxes`` overwritten in place (dtype and device kept), the
  ``Anchors`` settings and ``config`` entries replaced, the labeler's cache cleared and
  ``model.config``'s ``anchor_scale`` / ``aspect_ratios`` set (read-only flag restored).
  effdet's config holds octave scales only as ``num_scales`` (``2 ** (i / n)``): when the
  fitted ones differ, a warning says so (pass ``family=EffdetFamily(fit_octaves=False)``
  to keep them).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ...core._warn import warn
from ...core.boxes import BoxSizes
from ...core.parallel import Reducer
from ...grid.effdet_anchors import EffdetAnchors, fit_effdet_anchors, letterbox
from ._centred import CentredData, centred_data, centred_measure, format_centred, positions_note
from ..report import GridReport, Outcome
from .base import HeadFamily, HeadNotFound, HeadState, Measure, SearchFn, Write, register_family

__all__ = ["EffdetFamily", "find_anchors", "pack", "unpack"]

logger = logging.getLogger(__name__)

MATCH_THRESHOLD = 0.5
"""effdet's ``AnchorLabeler`` default (``DetBenchTrain`` passes 0.5)."""
_ATTRIBUTES = ("min_level", "max_level", "num_scales", "aspect_ratios", "anchor_scales", "image_size", "config", "boxes")


def _is_anchors(module: object) -> bool:
    return isinstance(module, nn.Module) and all(hasattr(module, name) for name in _ATTRIBUTES)


def find_anchors(model: Any) -> tuple[str, nn.Module]:
    """``(path, anchors)`` of an effdet bench's ``Anchors`` (``anchors``, also under ``module.``).

    Raises:
        TypeError: if there is none.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for path in ("anchors", "module.anchors"):
        found: Any = model
        for name in path.split("."):
            found = getattr(found, name, None)
        if _is_anchors(found):
            return path, found
    raise TypeError(
        f"{type(model).__name__} has no effdet Anchors at .anchors (wrap an EfficientDet in DetBenchTrain first)"
    )


def pack(anchors: EffdetAnchors) -> Tensor:
    """``anchor_scale``, the octave exponents, then the aspects' pairs, flat ``float64``."""
    values = [anchors.anchor_scale, *anchors.octave_scales] + [v for pair in anchors.aspect_ratios for v in pair]
    return torch.tensor(values, dtype=torch.float64)


def unpack(params: Tensor, like: EffdetAnchors) -> EffdetAnchors:
    """The inverse of :func:`pack` with the levels, counts and image size of ``like``."""
    values = [float(v) for v in params.reshape(-1).tolist()]
    n, m = len(like.octave_scales), len(like.aspect_ratios)
    if len(values) != 1 + n + 2 * m:
        raise ValueError(f"{len(values)} values cannot be an anchor_scale, {n} octave scales and {m} aspect pairs")
    pairs = tuple((values[1 + n + 2 * i], values[2 + n + 2 * i]) for i in range(m))
    return EffdetAnchors(like.min_level, like.max_level, tuple(values[1 : 1 + n]), pairs, values[0], like.image_size)


def _read_settings(module: nn.Module, where: str) -> EffdetAnchors:
    scales = list(module.anchor_scales)
    if any(s != scales[0] for s in scales):
        raise ValueError(f"{where}.anchor_scales differ per level ({scales}); one anchor_scale is supported")
    first = module.config[module.min_level]
    n_aspects = len(module.aspect_ratios)
    try:
        octaves = tuple(float(first[i * n_aspects][1]) for i in range(int(module.num_scales)))
        return EffdetAnchors(
            module.min_level, module.max_level, octaves, tuple(module.aspect_ratios), float(scales[0]),
            tuple(module.image_size),
        )
    except (TypeError, ValueError, IndexError) as error:
        raise ValueError(f"{where}: {error}") from None


class _Extra(NamedTuple):
    bench: nn.Module
    module: nn.Module
    anchors: EffdetAnchors


@register_family
class EffdetFamily(HeadFamily):
    """effdet ``Anchors`` of a ``DetBenchTrain`` / ``DetBenchPredict`` (``model.anchors``).

    Args:
        fit_octaves: fit the octave scales freely (True), or keep effdet's
            ``2 ** (i / num_scales)`` so that ``model.config`` describes the anchors fully.

    Figures: ``matched`` (share of boxes whose best anchor reaches IoU 0.5: the score),
    ``mean IoU``, ``positives`` (anchors assigned per box, the forced best match included).
    """

    name = "effdet"
    options = frozenset()  # measured at the model's own input size and matcher: no thr, imgsz, scale

    def __init__(self, *, fit_octaves: bool = True):
        self.fit_octaves = bool(fit_octaves)

    def locate(self, model: Any) -> tuple[Any, str]:
        try:
            path, _anchors = find_anchors(model)
        except TypeError as error:
            raise HeadNotFound(str(error)) from None
        return model, "model." + path

    def recognise(self, head: Any, where: str) -> None:
        try:
            find_anchors(head)
        except TypeError as error:
            raise HeadNotFound(f"{where}: {error}") from None

    def read(self, head: Any, where: str) -> HeadState:
        path, module = find_anchors(head)
        bench = head.module if path.startswith("module.") else head
        anchors = _read_settings(module, where)
        boxes = module.boxes
        if not isinstance(boxes, Tensor) or boxes.is_meta or not boxes.is_floating_point():
            raise ValueError(f"{where}.boxes must be a floating-point tensor with values, got {boxes!r}")
        mine = anchors.boxes()
        if boxes.shape != mine.shape or not torch.equal(boxes.detach().cpu().float(), mine):
            raise ValueError(
                f"{where}.boxes {tuple(boxes.shape)} do not follow its settings ({anchors}); rebuild the Anchors first"
            )
        return HeadState(module, where, pack(anchors), _Extra(bench, module, anchors))

    def identity(self, state: HeadState) -> bytes:
        size = torch.tensor(state.extra.anchors.image_size, dtype=torch.float64)
        return torch.cat([state.params, size]).numpy().tobytes()

    def data(
        self, state: HeadState, sizes: BoxSizes, *, imgsz: float, seed: int, device: Any, rank: int, world_size: int,
        scale: float | None = None,
    ) -> CentredData:
        """Every box letterboxed as effdet's ``ResizePad`` does."""
        anchors: EffdetAnchors = state.extra.anchors
        shapes = torch.as_tensor(sizes.shapes, dtype=torch.float64)
        index = torch.as_tensor(sizes.image_index, dtype=torch.long)
        factor, content = letterbox(shapes, anchors.image_size)
        stretch = (shapes * factor[:, None])[index]  # normalised -> input pixels
        wh = torch.as_tensor(sizes.wh, dtype=torch.float64) * stretch
        xy = None if sizes.xy is None else torch.as_tensor(sizes.xy, dtype=torch.float64) * stretch
        return centred_data(wh, xy, content[index], seed=seed, source=sizes.source)

    def report(
        self, state: HeadState, data: CentredData, outcome: Outcome, *, thr: float, reducer: Reducer | None
    ) -> GridReport:
        """A :class:`~autoanchor.training.report.GridReport` noting which positions the figures used."""
        return GridReport.of(self.name, outcome, note=positions_note(data))

    def measure(self, state: HeadState, params: Tensor, data: CentredData, *, thr: float, reducer: Reducer | None) -> Measure:
        return centred_measure(unpack(params, state.extra.anchors).levels(), data, MATCH_THRESHOLD)

    def format_measure(self, measure: Measure) -> str:
        return format_centred(measure)

    def fit(
        self, state: HeadState, data: CentredData, *, thr: float, gen: int, seed: int, search: SearchFn,
        reducer: Reducer | None, progress: bool,
    ) -> Tensor:
        result = fit_effdet_anchors(
            data.wh, data.xy, data.extent, state.extra.anchors, threshold=MATCH_THRESHOLD,
            fit_octaves=self.fit_octaves, generator=torch.Generator().manual_seed(seed),
        )
        return pack(result.anchors)

    def poor_fit_advice(self) -> str:
        return "check the labels; boxes under about half the finest stride need a larger input (image_size)"

    def prepare(self, state: HeadState, params: Tensor) -> Write:
        extra: _Extra = state.extra
        anchors = unpack(params, extra.anchors)
        if anchors.anchors_per_location != extra.anchors.anchors_per_location:
            raise ValueError(f"{state.where}: the new anchors change the anchors per location; the head would not fit")
        boxes = anchors.boxes().to(dtype=extra.module.boxes.dtype, device=extra.module.boxes.device)
        if boxes.shape != extra.module.boxes.shape:
            raise ValueError(f"{state.where}.boxes has shape {tuple(extra.module.boxes.shape)}, the new {tuple(boxes.shape)}")
        return Write(pack(anchors), (anchors, boxes, _configs(anchors)))

    def write(self, state: HeadState, write: Write) -> None:
        anchors, boxes, configs = write.payload
        write_effdet_anchors(state.extra.bench, state.extra.module, anchors, boxes, configs)
        if anchors.standard_octaves() is None:
            octaves = ", ".join(f"{o:g}" for o in anchors.octave_scales)
            warn(
                f"the fitted octave scales 2 ** ({octaves}) are in {state.where} (its boxes buffer, saved in the "
                f"bench's state_dict), but effdet's config can only say num_scales ({len(anchors.octave_scales)}); "
                "a bench built later from model.config gets 2 ** (i / num_scales). Copy anchors.boxes into it, or "
                "fit with family=EffdetFamily(fit_octaves=False)"
            )

    def describe(self, state: HeadState, params: Tensor) -> str:
        return config_line(unpack(params, state.extra.anchors))


def config_line(anchors: EffdetAnchors) -> str:
    """The effdet config keys and the octave scales, for a log line."""
    config = anchors.effdet_config()
    octaves = ", ".join(f"{o:g}" for o in anchors.octave_scales)
    return (
        f"anchor_scale={config['anchor_scale']:g}, num_scales={len(anchors.octave_scales)} (octave scales 2 ** "
        f"({octaves})), aspect_ratios={config['aspect_ratios']}"
    )


def _configs(anchors: EffdetAnchors) -> dict[int, list[tuple]]:
    """``Anchors.config`` as effdet builds it: per level ``((stride_y, stride_x), octave, aspect, anchor_scale)``."""
    configs = {}
    for level, stride in zip(range(anchors.min_level, anchors.max_level + 1), anchors.strides):
        configs[level] = [
            (stride, octave, aspect, anchors.anchor_scale)
            for octave in anchors.octave_scales
            for aspect in anchors.aspect_ratios
        ]
    return configs


def _set_config(config: Any, anchor_scale: float, aspect_ratios: list) -> None:
    """Set two keys of effdet's (read-only OmegaConf) config; the read-only flag is restored."""
    if config is None:
        return
    set_readonly = is_readonly = None
    if type(config).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf  # effdet's own dependency: present wherever its configs are

        set_readonly, is_readonly = OmegaConf.set_readonly, OmegaConf.is_readonly
    flag = is_readonly(config) if is_readonly is not None else None
    try:
        if set_readonly is not None:
            set_readonly(config, False)
        config.anchor_scale = anchor_scale
        config.aspect_ratios = aspect_ratios
    finally:
        if set_readonly is not None:
            set_readonly(config, flag)


def write_effdet_anchors(bench: nn.Module, module: nn.Module, anchors: EffdetAnchors, boxes: Tensor, configs) -> None:
    """Store ``anchors`` in an effdet ``Anchors`` (and its bench) in place; on any error
    everything is restored."""
    config = getattr(getattr(bench, "model", None), "config", None)
    saved = (
        module.boxes.clone(), module.config, module.anchor_scales, module.aspect_ratios,
        None if config is None else (config.anchor_scale, config.aspect_ratios),
    )
    labeler = getattr(bench, "anchor_labeler", None)
    cache = getattr(labeler, "indices_cache", None)
    ratios = [tuple(pair) for pair in anchors.aspect_ratios]
    try:
        with torch.no_grad():
            module.boxes.copy_(boxes)
        module.config = configs
        module.anchor_scales = [anchors.anchor_scale] * anchors.num_levels
        module.aspect_ratios = ratios
        _set_config(config, anchors.anchor_scale, [list(pair) for pair in ratios])
        if isinstance(cache, dict):
            cache.clear()
    except BaseException:
        with torch.no_grad():
            module.boxes.copy_(saved[0])
        module.config, module.anchor_scales, module.aspect_ratios = saved[1:4]
        if saved[4] is not None:
            _set_config(config, *saved[4])
        raise

