"""Read and write the anchor generator of a torchvision detector, in place and atomically.

This is the only module of :mod:`autoanchor.grid` that touches an ``nn.Module``, and
it never imports torchvision: models are recognised by their attributes.

* The generator: ``model.anchor_generator`` (RetinaNet) or ``model.rpn.anchor_generator``
  (Faster / Mask / Keypoint R-CNN), also under ``model.module`` (DataParallel /
  DistributedDataParallel), or a bare ``AnchorGenerator``. It must have ``sizes``,
  ``aspect_ratios`` (per level) and ``cell_anchors`` (a list of ``[A_l, 4]`` tensors).
* The strides: one forward pass of ``model.backbone`` on a zero image
  ``[1, 3, probe, probe]`` in evaluation mode under ``torch.no_grad()`` (the training
  flags of every module are restored afterwards, and no buffer changes in evaluation
  mode); stride = ``probe // feature height``, as torchvision computes it. A bare
  generator needs ``strides=``.
* The resize: ``model.transform`` (``GeneralizedRCNNTransform``): ``min_size[-1]``,
  ``max_size``, ``size_divisible``, ``fixed_size`` (the evaluation-mode resize), and
  every ``min_size`` of the tuple (the sizes it trains at: in training mode the
  transform picks one per image at random).
* The foreground threshold: ``model.proposal_matcher.high_threshold`` (RetinaNet, 0.5)
  or ``model.rpn.proposal_matcher.high_threshold`` (the RPN, 0.7).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...core._warn import warn
from ...grid.fit import fit_grid_anchors
from ...grid.anchors import GridAnchors, ResizeRule
from ...grid.inputs import boxes_to_input, describe_resizes, input_samples
from ...grid.matching import MatchStats, match_stats
from ..rebuild import persist_anchors

__all__ = [
    "DetectorAnchors",
    "GridAnchorReport",
    "boxes_to_input",
    "check_grid_anchors",
    "find_anchor_generator",
    "input_samples",
    "measure_strides",
    "read_detector",
    "write_grid_anchors",
]

logger = logging.getLogger(__name__)

_GENERATOR_PATHS = ("anchor_generator", "rpn.anchor_generator")


def _is_grid_generator(module: object) -> bool:
    return (
        isinstance(module, nn.Module)
        and hasattr(module, "sizes")
        and hasattr(module, "aspect_ratios")
        and isinstance(getattr(module, "cell_anchors", None), (list, tuple))
    )


def _get(root: object, path: str) -> object:
    for name in path.split("."):
        root = getattr(root, name, None)
        if root is None:
            return None
    return root


def find_anchor_generator(model: nn.Module) -> tuple[str, nn.Module]:
    """Find a torchvision-style anchor generator in a detector.

    Args:
        model: a RetinaNet, a Faster / Mask / Keypoint R-CNN, either wrapped in
            ``.module``, or an ``AnchorGenerator`` itself.

    Returns:
        ``(path, generator)``; ``path`` is the attribute path from ``model``
        (``""`` for a bare generator).

    Raises:
        TypeError: if ``model`` is not an ``nn.Module`` or holds no such generator.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if _is_grid_generator(model):
        return "", model
    for prefix in ("", "module."):
        for path in _GENERATOR_PATHS:
            found = _get(model, prefix + path)
            if _is_grid_generator(found):
                return prefix + path, found
    raise TypeError(
        f"{type(model).__name__} has no anchor generator with sizes, aspect_ratios and cell_anchors at "
        f"{', '.join(_GENERATOR_PATHS)} (or under .module)"
    )


def _levels(value: object, name: str, path: str) -> tuple[tuple[float, ...], ...]:
    try:
        return tuple(tuple(float(v) for v in level) for level in value)  # type: ignore[union-attr]
    except TypeError as error:
        raise TypeError(
            f"{path or 'the generator'}.{name} must be a sequence of per-level sequences, got {value!r}"
        ) from error


def measure_strides(model: nn.Module, *, probe: int = 256) -> tuple[int, ...]:
    """Strides of the backbone's feature maps, from one forward pass on a zero image.

    Args:
        model: a detector with ``backbone`` (also under ``.module``).
        probe: side of the square zero image, in pixels; a multiple of the largest
            stride keeps every level's grid exact.

    Returns:
        Per feature map in the order the detector uses them, ``probe // height``.

    Raises:
        TypeError: if the model has no backbone.
        ValueError: if a feature map is larger than the probe image.
    """
    backbone = _get(model, "backbone") or _get(model, "module.backbone")
    if not isinstance(backbone, nn.Module):
        raise TypeError(
            f"{type(model).__name__} has no backbone to measure strides with; pass strides="
            " (to check_anchors: family=TorchvisionAnchors(strides=...))"
        )
    parameter = next(backbone.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    flags = {module: module.training for module in backbone.modules()}
    try:
        backbone.eval()
        with torch.no_grad():
            features = backbone(torch.zeros(1, 3, probe, probe, device=device, dtype=dtype))
    finally:
        for module, training in flags.items():
            module.training = training
    maps = (
        list(features.values())
        if isinstance(features, dict)
        else [features] if isinstance(features, Tensor) else list(features)
    )
    strides = []
    for index, feature in enumerate(maps):
        height = int(feature.shape[-2])
        if height < 1 or height > probe:
            raise ValueError(f"feature map {index} has height {height} for a {probe}-pixel probe image")
        strides.append(probe // height)
    return tuple(strides)


def _read_resizes(model: nn.Module) -> tuple[ResizeRule, ...]:
    """One rule per ``min_size`` of the transform (the last one is the evaluation size); empty without one."""
    transform = _get(model, "transform") or _get(model, "module.transform")
    if transform is None or not hasattr(transform, "min_size") or not hasattr(transform, "max_size"):
        return ()
    min_sizes = transform.min_size
    min_sizes = tuple(min_sizes) if isinstance(min_sizes, (list, tuple)) else (min_sizes,)
    fixed = getattr(transform, "fixed_size", None)
    return tuple(
        ResizeRule(
            float(min_size),
            float(transform.max_size),
            int(getattr(transform, "size_divisible", 32)),
            tuple(int(v) for v in fixed) if fixed is not None else None,
        )
        for min_size in min_sizes
    )


def _read_threshold(model: nn.Module, path: str) -> float | None:
    owner = path[: -len("anchor_generator")]  # "", "rpn.", "module.", "module.rpn."
    matcher = _get(model, owner + "proposal_matcher") if owner or path else None
    threshold = getattr(matcher, "high_threshold", None)
    return float(threshold) if threshold is not None else None


@dataclass(frozen=True)
class DetectorAnchors:
    """What a detector's anchors are and how it matches them.

    Attributes:
        path: attribute path of the generator in the model (``""`` if bare).
        family: ``"retinanet"``, ``"rpn"`` (a Faster R-CNN-style RPN) or ``"generator"``.
        generator: sizes, ratios and strides (pixels of the model's input).
        resize: the transform's evaluation resize rule, or None (boxes are then
            taken at the images' stored size).
        threshold: the matcher's foreground IoU threshold.
        train_resizes: the rules of every size the transform trains at (each
            ``min_size`` of its tuple, in order); ``(resize,)`` when it has one size
            or the resize was given.
    """

    path: str
    family: str
    generator: GridAnchors
    resize: ResizeRule | None
    threshold: float
    train_resizes: tuple[ResizeRule | None, ...] = ()

    @property
    def resizes(self) -> tuple[ResizeRule | None, ...]:
        """The rules boxes are measured and fitted at: ``train_resizes``, or ``(resize,)``."""
        return self.train_resizes or (self.resize,)

    def resize_text(self) -> str:
        """The resize in words, e.g. ``min_size 800, max_size 1333`` or
        ``min_size 480..800 (11 training sizes, each box at each), max_size 1333``."""
        return describe_resizes(self.resizes)


def read_detector(
    model: nn.Module,
    *,
    strides: tuple[int, ...] | None = None,
    threshold: float | None = None,
    resize: ResizeRule | None = None,
    probe: int = 256,
) -> DetectorAnchors:
    """Read the anchors, strides, resize rule and foreground threshold of a detector.

    Args:
        model: a torchvision-style detector or a bare ``AnchorGenerator``.
        strides: per level in pixels; measured from the backbone when None.
        threshold: foreground IoU; read from the matcher when None (required for a
            bare generator).
        resize: overrides the model's transform.
        probe: side of the zero image for measuring strides.

    Returns:
        DetectorAnchors.

    Raises:
        TypeError: no generator, or no backbone and no ``strides``.
        ValueError: the number of strides differs from the number of levels, or no
            threshold could be found.
    """
    path, module = find_anchor_generator(model)
    sizes = _levels(module.sizes, "sizes", path)
    ratios = _levels(module.aspect_ratios, "aspect_ratios", path)
    if strides is None:
        if not path:
            raise TypeError(
                "a bare AnchorGenerator has no backbone to measure strides with; pass strides="
                " (to check_anchors: family=TorchvisionAnchors(strides=...))"
            )
        strides = measure_strides(model, probe=probe)
    strides = tuple(strides)
    if len(strides) != len(sizes):
        raise ValueError(
            f"{path or 'the generator'} has {len(sizes)} levels but there are {len(strides)} strides {strides}"
        )
    generator = GridAnchors(sizes, ratios, strides)
    if threshold is None:
        threshold = _read_threshold(model, path) if path else None
        if threshold is None:
            raise ValueError(
                f"no proposal_matcher.high_threshold next to {path or 'the generator'}; pass threshold="
                " (to check_anchors: family=TorchvisionAnchors(threshold=...))"
            )
    train_resizes: tuple[ResizeRule, ...] = (resize,) if resize is not None else ()
    if resize is None and path:
        train_resizes = _read_resizes(model)
        resize = train_resizes[-1] if train_resizes else None
    family = "generator" if not path else "rpn" if path.endswith("rpn.anchor_generator") else "retinanet"
    return DetectorAnchors(path, family, generator, resize, float(threshold), train_resizes)


def write_grid_anchors(module: nn.Module, generator: GridAnchors) -> None:
    """Write sizes, aspect ratios and cell anchors into an ``AnchorGenerator`` in place.

    Everything is computed before anything is written; the cell anchor tensors are
    overwritten in place (same objects, dtype and device). On any error the module
    is left exactly as it was.

    Args:
        module: the generator (from :func:`find_anchor_generator`).
        generator: new anchors with the module's structure.

    Raises:
        ValueError: if the structure differs (levels, sizes or ratios per level).
    """
    old_sizes, old_ratios, cells = module.sizes, module.aspect_ratios, module.cell_anchors
    if (
        len(old_sizes) != generator.num_levels
        or len(cells) != generator.num_levels
        or len(old_ratios) != generator.num_levels
    ):
        raise ValueError(f"the generator has {len(old_sizes)} levels, the new anchors {generator.num_levels}")
    for level, (s, r) in enumerate(zip(old_sizes, old_ratios)):
        if len(s) != len(generator.sizes[level]) or len(r) != len(generator.aspect_ratios[level]):
            raise ValueError(
                f"level {level} has {len(s)} sizes and {len(r)} ratios, the new anchors "
                f"{len(generator.sizes[level])} and {len(generator.aspect_ratios[level])}: the head would not fit"
            )
    new_cells = [
        generator.cell_anchors(dtype=cell.dtype, device=cell.device)[level] for level, cell in enumerate(cells)
    ]
    for level, (cell, new) in enumerate(zip(cells, new_cells)):
        if cell.shape != new.shape:
            raise ValueError(f"cell_anchors[{level}] has shape {tuple(cell.shape)}, the new ones {tuple(new.shape)}")
    new_sizes = tuple(tuple(int(v) if v == int(v) else v for v in level) for level in generator.sizes)
    new_ratios = tuple(tuple(level) for level in generator.aspect_ratios)
    saved = [cell.clone() for cell in cells]
    try:
        with torch.no_grad():
            for cell, new in zip(cells, new_cells):
                cell.copy_(new)
        module.sizes = new_sizes
        module.aspect_ratios = new_ratios
    except BaseException:
        with torch.no_grad():
            for cell, old in zip(cells, saved):
                cell.copy_(old)
        module.sizes, module.aspect_ratios = old_sizes, old_ratios
        raise


@dataclass(frozen=True)
class GridAnchorReport:
    """What :func:`check_grid_anchors` found and did.

    The figures are measured on every box at every training size, on its image's
    padded grid (:func:`input_samples`): the figures torchvision's own count gives.

    Attributes:
        replaced: whether the model's generator was rewritten.
        before: stats of the model's anchors.
        after: stats of the anchors the model has now.
        generator_before: the anchors the model had.
        generator_after: the anchors it has now.
        detector: what was read from the model.
        positions_known: whether real box centres were used.
    """

    replaced: bool
    before: MatchStats
    after: MatchStats
    generator_before: GridAnchors
    generator_after: GridAnchors
    detector: DetectorAnchors
    positions_known: bool

    def __str__(self) -> str:
        change = "replaced" if self.replaced else "kept"
        return (
            f"{self.detector.family} anchors {change} ({self.detector.resize_text()}): "
            f"matched {self.before.matched:.4f} -> {self.after.matched:.4f} at IoU >= {self.detector.threshold:g}, "
            f"mean best IoU {self.before.mean_iou:.4f} -> {self.after.mean_iou:.4f}, "
            f"positives/box {self.before.positives:.2f} -> {self.after.positives:.2f}"
        )


def check_grid_anchors(
    boxes,
    model: nn.Module,
    *,
    strides: tuple[int, ...] | None = None,
    threshold: float | None = None,
    resize: ResizeRule | None = None,
    replace: bool = True,
    seed: int = 0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    level_order: bool = True,
    min_stride_units: float | None = None,
    max_stride_units: float | None = None,
) -> GridAnchorReport:
    """Measure a torchvision detector's anchors on a dataset and replace them if that matches more boxes.

    Args:
        boxes: an :class:`autoanchor.BoxSizes` (``shapes``, ``wh``, ``image_index``,
            optionally ``xy`` normalised centres).
        model: a torchvision-style detector, or a bare ``AnchorGenerator`` (then pass
            ``strides`` and ``threshold``).
        strides, threshold, resize: override what is read from the model (a given
            ``resize`` replaces every training size).
        replace: write the fitted anchors when the share matched rises.
        seed: seeds the search when ``generator`` is None.
        generator: ``torch.Generator`` for the search's draws.
        device: where the search runs (default CPU).
        level_order, min_stride_units, max_stride_units: the fit's level rules (see
            :func:`~autoanchor.grid.fit.fit_grid_anchors`).

    Returns:
        GridAnchorReport.

    Raises:
        TypeError, ValueError: see :func:`read_detector`; a dataset with no box of
            positive size.
    """
    detector = read_detector(model, strides=strides, threshold=threshold, resize=resize)
    xy = getattr(boxes, "xy", None)
    evaluation = input_samples(boxes.shapes, boxes.wh, boxes.image_index, xy, detector.resizes)
    if evaluation.wh.shape[0] == 0:
        raise ValueError(f"no box of positive size in {getattr(boxes, 'source', '') or 'the dataset'}")
    n_zero = len(boxes.wh) - int(round(evaluation.total_weight))
    if n_zero:
        warn(f"{n_zero} of {len(boxes.wh)} boxes have zero width or height and are left out")
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    start = detector.generator
    # The fit searches on the rows the figures are measured on (equal weights), at their real grids.
    rows = [evaluation.wh, evaluation.xy, evaluation.extent]
    if device is not None:
        rows = [r.to(device) for r in rows]
    result = fit_grid_anchors(
        rows[0], rows[1], start, threshold=detector.threshold, generator=generator, level_order=level_order,
        min_stride_units=min_stride_units, max_stride_units=max_stride_units, extent=rows[2],
    )
    before = match_stats(evaluation, start, threshold=detector.threshold)
    after_generator = result.generator
    after = (
        before if after_generator == start else match_stats(evaluation, after_generator, threshold=detector.threshold)
    )
    replaced = False
    if replace and after.matched > before.matched:
        _path, module = find_anchor_generator(model)
        write_grid_anchors(module, after_generator)
        persist_anchors(module)  # the fit rides in state_dict() (training/rebuild.py)
        replaced = True
    else:
        after_generator, after = start, before
    report = GridAnchorReport(replaced, before, after, start, after_generator, detector, xy is not None)
    logger.info("%s", report)
    return report
