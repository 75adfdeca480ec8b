"""``fit`` and ``check`` for torchvision-style grid anchors (``--generator``): presets, options, writers.

The presets are numbers copied from torchvision's model builders (no torchvision is
imported or needed):

* ``retinanet``: ``retinanet_resnet50_fpn``: sizes ``(32, 40, 50)`` ... ``(512, 645, 812)``
  (three per octave), ratios 0.5, 1, 2 on every level, strides 8-128, resize 800 / 1333,
  foreground IoU 0.5;
* ``fasterrcnn``: ``fasterrcnn_resnet50_fpn``'s RPN: sizes 32 ... 512 (one per level),
  ratios 0.5, 1, 2, strides 4-64, resize 800 / 1333, IoU 0.7;
* ``fasterrcnn-mobilenet``: ``fasterrcnn_mobilenet_v3_large_fpn``'s RPN: sizes
  32, 64, 128, 256, 512 on each of 3 levels, ratios 0.5, 1, 2, strides 32, 32, 64,
  resize 800 / 1333, IoU 0.7.

``--sizes``, ``--ratios``, ``--strides``, ``--min-size``, ``--max-size`` and ``--iou``
override a preset's values, or give them all without one. The fitted generator is
written as Python (``AnchorGenerator(...)``), detectron2 config lines and an
mmdetection ``anchor_generator=dict(...)`` (``--format python|detectron2|mmdet``, or
all three in the text output).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

from .options import EXIT_BELOW_THRESHOLD, EXIT_OK, MAX_ASPECT_RATIO, MAX_IMAGE_PX, CommandLineError
from .registry import register_format

__all__ = [
    "PRESETS", "GridCheckOutput", "GridFitOutput", "add_grid_options", "generator_help", "grid_requested", "run_grid",
]

_RETINANET_SIZES = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512))

PRESETS: dict[str, dict[str, Any]] = {
    "retinanet": {
        "model": "retinanet_resnet50_fpn",
        "sizes": _RETINANET_SIZES,
        "ratios": ((0.5, 1.0, 2.0),) * 5,
        "strides": (8, 16, 32, 64, 128),
        "min_size": 800.0,
        "max_size": 1333.0,
        "iou": 0.5,
    },
    "fasterrcnn": {
        "model": "fasterrcnn_resnet50_fpn (RPN)",
        "sizes": ((32,), (64,), (128,), (256,), (512,)),
        "ratios": ((0.5, 1.0, 2.0),) * 5,
        "strides": (4, 8, 16, 32, 64),
        "min_size": 800.0,
        "max_size": 1333.0,
        "iou": 0.7,
    },
    "fasterrcnn-mobilenet": {
        "model": "fasterrcnn_mobilenet_v3_large_fpn (RPN)",
        "sizes": ((32, 64, 128, 256, 512),) * 3,
        "ratios": ((0.5, 1.0, 2.0),) * 3,
        "strides": (32, 32, 64),
        "min_size": 800.0,
        "max_size": 1333.0,
        "iou": 0.7,
    },
}
"""The presets' numbers, as torchvision's builders set them."""

_OPTIONS = ("sizes", "ratios", "strides", "min_size", "max_size", "iou")
GRID_FORMATS = ("text", "python", "detectron2", "mmdet")


def add_grid_options(parser: argparse.ArgumentParser, *, generator: bool = True) -> None:
    """``--generator`` (unless the command adds it itself) and the explicit grid options."""
    group = parser.add_argument_group(
        "torchvision grid anchors (RetinaNet, Faster R-CNN; presets are numbers, torchvision is not needed)"
    )
    if generator:
        group.add_argument("--generator", choices=tuple(PRESETS), help=generator_help())
    group.add_argument(
        "--sizes", metavar="S", help="anchor sizes in input pixels per level: '32,40,50; 64,80,101; ...'"
    )
    group.add_argument(
        "--ratios", metavar="R",
        help="aspect ratios (height/width): one list for every level '0.5,1,2', or per level separated by ';'",
    )
    group.add_argument("--strides", metavar="S", help="stride of each level in pixels: '8,16,32,64,128'")
    group.add_argument("--min-size", type=float, metavar="PX", help="the transform's min_size (short side)")
    group.add_argument("--max-size", type=float, metavar="PX", help="the transform's max_size (long side cap)")
    group.add_argument("--iou", type=float, metavar="IOU", help="the matcher's foreground IoU threshold")


def generator_help() -> str:
    return "fit or check a torchvision anchor generator with a preset's defaults: " + "; ".join(
        f"{name} = {preset['model']}" for name, preset in PRESETS.items()
    ) + " (sizes, ratios, strides, resize, IoU; numbers only, torchvision is not needed)"


def grid_requested(args: argparse.Namespace) -> bool:
    """Whether the command works on grid anchors (``--generator`` or any explicit grid option)."""
    return getattr(args, "generator", None) is not None or any(getattr(args, o, None) is not None for o in _OPTIONS)


def _levels(text: str, option: str, cast, low: float, high: float, unit: str) -> tuple[tuple[float, ...], ...]:
    """``'a,b; c,d'`` as levels of numbers, each in ``[low, high]`` (refused naming ``option`` otherwise)."""
    levels = []
    for part in text.split(";"):
        values = [v for v in part.replace(",", " ").split() if v]
        if not values:
            raise CommandLineError(f"{option} {text!r}: an empty level")
        try:
            parsed = tuple(cast(v) for v in values)
        except ValueError:
            raise CommandLineError(f"{option} {text!r}: {part.strip()!r} is not a list of numbers") from None
        for value in parsed:
            if not (math.isfinite(value) and value > 0 and low <= value <= high):
                raise CommandLineError(f"{option} {text!r}: {value:g} is outside {low:g} to {high:g}{unit}")
        levels.append(parsed)
    return tuple(levels)


def _resize_px(option: str, value: float) -> float:
    if not (math.isfinite(value) and 1 <= value <= MAX_IMAGE_PX):
        raise CommandLineError(f"{option} {value:g}: a resize in pixels from 1 to {MAX_IMAGE_PX}")
    return float(value)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The preset's numbers with the explicit options applied; checked."""
    preset = dict(PRESETS[args.generator]) if args.generator is not None else {"model": "given"}
    if args.sizes is not None:
        preset["sizes"] = _levels(args.sizes, "--sizes", float, 1e-3, MAX_IMAGE_PX, " pixels")
    if args.strides is not None:
        strides = _levels(args.strides, "--strides", int, 1, MAX_IMAGE_PX, " pixels")
        if len(strides) != 1:
            raise CommandLineError(f"--strides {args.strides!r}: one list, one stride per level")
        preset["strides"] = strides[0]
    if args.ratios is not None:
        preset["ratios"] = _levels(args.ratios, "--ratios", float, 1 / MAX_ASPECT_RATIO, MAX_ASPECT_RATIO, " (height/width)")
    for name in ("min_size", "max_size", "iou"):
        if getattr(args, name) is not None:
            preset[name] = float(getattr(args, name))
    for name in ("min_size", "max_size"):
        if getattr(args, name) is not None:
            _resize_px(f"--{name.replace('_', '-')}", preset[name])
    missing = [f"--{name.replace('_', '-')}" for name in ("sizes", "strides", "iou") if name not in preset]
    if missing:
        raise CommandLineError(f"without --generator give {', '.join(missing)}")
    n_levels = len(preset["sizes"])
    ratios = preset.get("ratios", ((0.5, 1.0, 2.0),))
    if len(ratios) == 1:
        ratios = ratios * n_levels
    if len(ratios) != n_levels or len(preset["strides"]) != n_levels:
        raise CommandLineError(
            f"{n_levels} levels of sizes, {len(ratios)} of ratios and {len(preset['strides'])} strides: "
            "give one per level (or one list of ratios for every level)"
        )
    preset["ratios"] = ratios
    if not 0 < preset["iou"] <= 1:
        raise CommandLineError(f"--iou {preset['iou']:g}: an IoU threshold in (0, 1]")
    if ("min_size" in preset) != ("max_size" in preset):
        raise CommandLineError("give both --min-size and --max-size (or neither: boxes at the images' stored size)")
    return preset


@dataclass(frozen=True)
class GridFitOutput:
    """What ``fit --generator`` found.

    Attributes:
        start: the GridAnchors fitted from (the preset's or given ones).
        fitted: the GridAnchors found (the start when nothing matched more boxes).
        before: MatchStats of ``start``; after: of ``fitted`` (pooled boxes, positions as ``positions``).
        info: ``data``, ``model``, ``iou``, ``resize``, ``boxes``, ``positions``, ``seed``.
    """

    start: Any
    fitted: Any
    before: Any
    after: Any
    info: dict[str, Any]


@dataclass(frozen=True)
class GridCheckOutput:
    """What ``check --generator`` measured: ``anchors`` (GridAnchors), ``stats`` (MatchStats), ``info``."""

    anchors: Any
    stats: Any
    bpr_threshold: float
    info: dict[str, Any]

    @property
    def fits(self) -> bool:
        return self.stats.matched > self.bpr_threshold


def _stats_text(stats: Any) -> str:
    return (
        f"matched {stats.matched:.4f} at IoU >= {stats.threshold:g}, mean best IoU {stats.mean_iou:.4f}, "
        f"positives/box {stats.positives:.2f}"
    )


def _header(info: dict[str, Any]) -> str:
    resize = info["resize"] or "boxes at the images' stored size"
    return (
        f"{info['data']}: {info['boxes']} boxes at {info['positions']}, {resize}, generator {info['model']}"
    )


def python_text(generator: Any) -> str:
    """``AnchorGenerator(sizes=..., aspect_ratios=...)`` (torchvision)."""
    from ..training.heads.torchvision import generator_line

    return generator_line(generator)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def detectron2_text(generator: Any) -> str:
    """detectron2 config lines (``MODEL.ANCHOR_GENERATOR.SIZES`` / ``ASPECT_RATIOS``)."""
    sizes = "[" + ", ".join("[" + ", ".join(_number(v) for v in level) + "]" for level in generator.sizes) + "]"
    ratio_levels = generator.aspect_ratios[:1] if generator.shared_ratios else generator.aspect_ratios
    ratios = "[" + ", ".join("[" + ", ".join(repr(float(v)) for v in level) + "]" for level in ratio_levels) + "]"
    return f"MODEL.ANCHOR_GENERATOR.SIZES = {sizes}\nMODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = {ratios}"


def mmdet_fields(generator: Any) -> tuple[dict[str, Any], float]:
    """mmdetection ``AnchorGenerator`` arguments for ``generator`` and how far they are from it.

    mmdet's anchors on a level are ``base_size * scale`` for each of one shared list of
    ``scales`` and one shared list of ``ratios`` (height / width). So ``base_sizes`` are
    each level's first size and ``scales`` the sizes of level 0 divided by its first;
    this is exact when every level's sizes are in the same proportions (one size per
    level always is) and ratios are shared.

    Returns:
        ``(fields, worst)``: the arguments, and the largest relative difference between
        a size of ``generator`` and mmdet's ``base_size * scale`` (0 when exact).

    Raises:
        ValueError: if the levels have different numbers of sizes or different ratios
            (mmdet's generator shares both).
    """
    counts = {len(level) for level in generator.sizes}
    if len(counts) != 1 or not generator.shared_ratios:
        raise ValueError(
            "mmdetection's AnchorGenerator shares the scales and ratios across levels; these anchors have "
            f"sizes per level {[len(s) for s in generator.sizes]} and shared ratios: {generator.shared_ratios}"
        )
    base_sizes = [float(level[0]) for level in generator.sizes]
    scales = [float(v) / base_sizes[0] for v in generator.sizes[0]]
    worst = max(
        abs(base * scale - size) / size
        for base, level in zip(base_sizes, generator.sizes)
        for scale, size in zip(scales, level)
    )
    fields = {
        "type": "AnchorGenerator",
        "strides": list(generator.strides),
        "ratios": [float(v) for v in generator.aspect_ratios[0]],
        "scales": scales,
        "base_sizes": base_sizes,
    }
    return fields, worst


def mmdet_text(generator: Any) -> str:
    """An mmdetection ``anchor_generator=dict(...)``."""
    try:
        fields, worst = mmdet_fields(generator)
    except ValueError as error:
        return f"# {error}"
    body = ",\n".join(f"    {key}={value!r}" for key, value in fields.items())
    text = f"anchor_generator=dict(\n{body})"
    if worst > 1e-9:
        text = (
            f"# mmdet shares scales across levels: level 0's proportions are used, so sizes differ from the fitted "
            f"ones by up to {worst:.1%}\n{text}"
        )
    return text


def _fit_output(result: Any) -> GridFitOutput:
    if not isinstance(result, GridFitOutput):
        raise CommandLineError("--format python, detectron2 and mmdet write torchvision grid anchors: add --generator")
    return result


@register_format("python", command="fit", help="with --generator: torchvision AnchorGenerator(...)")
def fit_python(result: Any) -> str:
    return python_text(_fit_output(result).fitted) + "\n"


@register_format("detectron2", command="fit", help="with --generator: detectron2 MODEL.ANCHOR_GENERATOR lines")
def fit_detectron2(result: Any) -> str:
    return detectron2_text(_fit_output(result).fitted) + "\n"


@register_format("mmdet", command="fit", help="with --generator: an mmdetection anchor_generator=dict(...)")
def fit_mmdet(result: Any) -> str:
    return mmdet_text(_fit_output(result).fitted) + "\n"


def grid_fit_text(result: GridFitOutput) -> str:
    info = result.info
    verdict = "fitted" if result.fitted != result.start else "nothing matched more boxes: the start is kept"
    lines = [
        _header(info) + f", seed {info['seed']}",
        f"  start:  {_stats_text(result.before)}",
        f"  fitted: {_stats_text(result.after)} ({verdict})",
        "",
        "# torchvision",
        python_text(result.fitted),
        "",
        "# detectron2",
        detectron2_text(result.fitted),
        "",
        "# mmdetection",
        mmdet_text(result.fitted),
    ]
    return "\n".join(lines) + "\n"


def _boxes(args: argparse.Namespace, settings: dict[str, Any]):
    """``(wh, xy or None, name, start GridAnchors, resize)`` in the model's input pixels."""
    from ..io.datasets import load_boxes
    from ..grid import GridAnchors, ResizeRule
    from ..training.heads.torchvision_model import boxes_to_input

    sizes = load_boxes(args.data, progress=not args.quiet, cache=args.cache)
    resize = ResizeRule(settings["min_size"], settings["max_size"]) if "min_size" in settings else None
    try:
        start = GridAnchors(settings["sizes"], settings["ratios"], settings["strides"])
    except (TypeError, ValueError) as error:
        raise CommandLineError(str(error)) from None
    wh, xy, _extent = boxes_to_input(sizes.shapes, sizes.wh, sizes.image_index, sizes.xy, resize)
    usable = (wh > 0).all(dim=1)
    if not bool(usable.any()):
        raise CommandLineError(f"no box of positive size in {args.data or 'the built-in coco128'}")
    wh, xy = wh[usable], None if xy is None else xy[usable]
    name = "built-in coco128" if args.data is None else str(args.data)
    return wh, xy, name, start, resize


# Options of the YOLO path that grid anchors do not read, each with its value when not given.
_YOLO_ONLY = (
    ("model", None), ("anchors", None), ("write", False), ("plot", None), ("scale", None),
    ("min_stride_units", None), ("max_stride_units", None), ("n", None), ("levels", None),
)


def refuse_yolo_options(args: argparse.Namespace) -> None:
    """Refuse the YOLO options given with ``--generator``, rather than ignore them."""
    from ..io.configs import load_config

    defaults = load_config("search")
    given = [f"--{name.replace('_', '-')}" for name, unset in _YOLO_ONLY if getattr(args, name, unset) != unset]
    given += [
        f"--{name}" for name, default in (("thr", defaults["anchor_t"]), ("metric", defaults["metric"]), ("gen", defaults["gen"]))
        if getattr(args, name, default) != default
    ]
    if getattr(args, "img_given", False):
        given.append("--img")
    if getattr(args, "device", "cpu") != "cpu":
        given.append("--device")
    if given:
        raise CommandLineError(
            f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to YOLO anchors, not to --generator (grid anchors are matched by IoU "
            "at the model's resize, on the CPU; set --min-size/--max-size/--iou instead)"
        )


def run_grid(args: argparse.Namespace, command: str) -> int:
    """``fit`` or ``check`` with ``--generator``; returns the exit code."""
    import torch

    refuse_yolo_options(args)

    from ..grid import fit_grid_anchors, match_stats, pool_samples
    from .common import emit

    if args.format not in GRID_FORMATS and not (command == "check" and args.format == "text"):
        raise CommandLineError(
            f"--format {args.format} is for YOLO anchors; with --generator use one of {', '.join(GRID_FORMATS)}"
        )
    if command == "check" and args.format != "text":
        raise CommandLineError("check --generator writes text only")
    settings = _settings(args)
    wh, xy, name, start, resize = _boxes(args, settings)
    seed = args.seed
    samples = pool_samples(
        wh, xy, start.cell, bins_per_octave=12, positions_per_pool=16, generator=torch.Generator().manual_seed(seed)
    )
    info = {
        "data": name,
        "model": settings["model"],
        "iou": settings["iou"],
        "resize": f"resize {resize.min_size:g} / {resize.max_size:g}" if resize is not None else None,
        "boxes": int(wh.shape[0]),
        "positions": "their real positions" if xy is not None else "a lattice of positions (no box centres)",
        "seed": seed,
    }
    before = match_stats(samples, start, threshold=settings["iou"])
    if command == "check":
        output = GridCheckOutput(start, before, args.bpr_threshold, info)
        verdict = (
            f"matched above {args.bpr_threshold:g}: these anchors fit the data" if output.fits
            else f"matched not above {args.bpr_threshold:g}: consider 'autoanchor fit --generator' for this data"
        )
        emit(f"{_header(info)}\n  {python_text(start)}\n  {_stats_text(before)}\n{verdict}\n", None)
        return EXIT_OK if output.fits else EXIT_BELOW_THRESHOLD
    result = fit_grid_anchors(wh, xy, start, threshold=settings["iou"], generator=torch.Generator().manual_seed(seed))
    fitted = result.generator
    after = match_stats(samples, fitted, threshold=settings["iou"]) if fitted != start else before
    if after.matched <= before.matched:  # replace only when the share matched rises, as the hook does
        fitted, after = start, before
    output = GridFitOutput(start, fitted, before, after, info)
    from .registry import get_format

    text = grid_fit_text(output) if args.format == "text" else get_format("fit", args.format).write(output)
    emit(text, args.out)
    return EXIT_OK
