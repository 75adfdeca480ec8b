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
override a preset's values, or give them all without one (``fit``, ``check`` and
``advise`` take the same options). ``--min-size`` takes every size the transform
trains at (``480,512,...,800``): boxes are fitted and measured at each. The fit keeps
the levels in scale order (``--no-level-order`` lifts it) and within
``--min-stride-units`` / ``--max-stride-units``. The figures are every box's, on its
image's padded grid at each size: the figures torchvision's own count gives. The
fitted generator is written as Python that runs as printed, a detectron2 YAML block
and an mmdetection ``anchor_generator=dict(...)`` (:mod:`.grid_formats`).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from .grid_formats import (  # noqa: F401  (re-exported: the writers register their formats on import)
    GridCheckOutput,
    GridFitOutput,
    detectron2_text,
    grid_check_text,
    grid_fit_text,
    grid_json,
    mmdet_fields,
    mmdet_text,
    python_text,
)
from .centred import CENTRED_PRESETS
from ..core.defaults import DEFAULT_MATCHED_THRESHOLD
from .options import EXIT_BELOW_THRESHOLD, EXIT_OK, MAX_ASPECT_RATIO, MAX_IMAGE_PX, CommandLineError, keep_threshold

__all__ = [
    "GENERATOR_CHOICES",
    "PRESETS", "GridCheckOutput", "GridFitOutput", "add_grid_options", "generator_help", "grid_requested", "run_grid",
    "run_grid_advise",
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
GENERATOR_CHOICES = tuple(PRESETS) + tuple(CENTRED_PRESETS)
"""``--generator`` values: these grid presets and the centred ones of :mod:`.centred` (SSD, EfficientDet)."""

_OPTIONS = ("sizes", "ratios", "strides", "min_size", "max_size", "iou")
GRID_FORMATS = {
    "fit": ("text", "json", "python", "detectron2", "mmdet"),
    "check": ("text", "json"),
    "advise": ("text", "json"),
}


def add_grid_options(parser: argparse.ArgumentParser, *, generator: bool = True, plot: bool = False) -> None:
    """``--generator`` (unless the command adds it itself), the explicit grid options, and
    ``--plot`` for a command that has none of its own."""
    group = parser.add_argument_group(
        "torchvision grid anchors (RetinaNet, Faster R-CNN; presets are numbers, torchvision is not needed)"
    )
    if generator:
        group.add_argument("--generator", choices=GENERATOR_CHOICES, help=generator_help())
    group.add_argument(
        "--sizes", metavar="S", help="anchor sizes in input pixels per level: '32,40,50; 64,80,101; ...'"
    )
    group.add_argument(
        "--ratios", metavar="R",
        help="aspect ratios (height/width): one list for every level '0.5,1,2', or per level separated by ';'",
    )
    group.add_argument("--strides", metavar="S", help="stride of each level in pixels: '8,16,32,64,128'")
    group.add_argument(
        "--min-size", metavar="PX",
        help="the transform's min_size (short side): one size, or every size it trains at '480,512,...,800' "
        "(boxes are fitted and measured at each)",
    )
    group.add_argument("--max-size", type=float, metavar="PX", help="the transform's max_size (long side cap)")
    group.add_argument("--iou", type=float, metavar="IOU", help="the matcher's foreground IoU threshold")
    if plot:
        from pathlib import Path

        group.add_argument(
            "--plot", type=Path, metavar="PNG",
            help="draw box sizes against each level's anchors at the model's resize, unmatched boxes in red "
            "(.png, .svg, .pdf, ...; needs matplotlib)",
        )
    group.add_argument(
        "--no-level-order", dest="level_order", action="store_false",
        help="let the fit give any level any size (by default every size of a level is above every size of "
        "the levels of smaller stride, as an FPN assigns objects)",
    )


def generator_help() -> str:
    return "fit or check a torchvision anchor generator with a preset's defaults: " + "; ".join(
        f"{name} = {preset['model']}" for name, preset in {**PRESETS, **CENTRED_PRESETS}.items()
    ) + " (sizes, ratios, strides, resize, IoU; numbers only, torchvision and effdet are not needed)"


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
    if args.min_size is not None:
        min_sizes = _levels(args.min_size, "--min-size", float, 1, MAX_IMAGE_PX, " pixels")
        if len(min_sizes) != 1:
            raise CommandLineError(f"--min-size {args.min_size!r}: one list of sizes, separated by commas")
        preset["min_size"] = min_sizes[0]
    elif "min_size" in preset:
        preset["min_size"] = (preset["min_size"],)
    for name in ("max_size", "iou"):
        if getattr(args, name) is not None:
            preset[name] = float(getattr(args, name))
    if args.max_size is not None:
        _resize_px("--max-size", preset["max_size"])
    missing = [f"--{name.replace('_', '-')}" for name in ("sizes", "strides", "iou") if name not in preset]
    if missing:
        raise CommandLineError(
            f"grid anchors without --generator need {', '.join(missing)} (the sizes, strides and foreground IoU "
            "a preset would give)"
        )
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


def _samples(args: argparse.Namespace, settings: dict[str, Any]):
    """``(samples, name, start GridAnchors, resizes, positions known)``: every box at every training size."""
    from ..grid import GridAnchors, ResizeRule
    from ..grid.inputs import input_samples
    from ..io.datasets import load_boxes

    try:
        start = GridAnchors(settings["sizes"], settings["ratios"], settings["strides"])
    except (TypeError, ValueError) as error:
        raise CommandLineError(str(error)) from None
    sizes = load_boxes(args.data, progress=not args.quiet, cache=args.cache)
    resizes = (
        tuple(ResizeRule(m, settings["max_size"]) for m in settings["min_size"]) if "min_size" in settings else (None,)
    )
    samples = input_samples(sizes.shapes, sizes.wh, sizes.image_index, sizes.xy, resizes)
    if samples.wh.shape[0] == 0:
        raise CommandLineError(f"no box of positive size in {args.data or 'the built-in coco128'}")
    name = "built-in coco128" if args.data is None else str(args.data)
    return samples, name, start, resizes, sizes.xy is not None


# Options of the YOLO path that grid anchors do not read: (name, value when not given, why not).
_YOLO_ONLY = (
    ("model", None, "reads a YOLO model's anchors; grid anchors come from --generator or --sizes/--strides"),
    ("anchors", None, "gives YOLO anchors as w,h pairs; grid anchors are --sizes per level with --ratios"),
    ("write", False, "rewrites a YOLO model file; for grid anchors paste the python, detectron2 or mmdet output"),
    ("scale", None, "is YOLO's scale jitter; a torchvision transform trains at the sizes of --min-size "
     "(give them all: '480,512,...,800')"),
    ("n", None, "sets the number of YOLO anchors; a grid generator keeps its sizes and ratios per level "
     "(give --sizes and --ratios to change them)"),
    ("levels", None, "sets YOLO output levels; a grid generator's levels are its --strides"),
)


def refuse_yolo_options(args: argparse.Namespace) -> None:
    """Refuse the YOLO options given with grid anchors, each with its own reason, rather than ignore them."""
    from .options import search_defaults

    defaults = search_defaults()
    reasons = [f"--{name.replace('_', '-')} {why}" for name, unset, why in _YOLO_ONLY if getattr(args, name, unset) != unset]
    for name, default, why in (
        ("thr", defaults["anchor_t"], "is YOLO's width/height ratio limit; grid anchors match by IoU (set --iou)"),
        ("metric", defaults["metric"], "picks a YOLO search metric; grid anchors are fitted on IoU at their grid "
         "positions"),
        ("gen", defaults["gen"], "sets YOLO evolution generations; the grid fit is a seeded climb (set --seed)"),
    ):
        if getattr(args, name, default) != default:
            reasons.append(f"--{name} {why}")
    if getattr(args, "img_given", False):
        reasons.append("--img is YOLO's letterbox size; grid anchors are measured at the model's resize "
                       "(set --min-size/--max-size)")
    if getattr(args, "device", "cpu") not in (None, "cpu"):
        reasons.append("--device places the YOLO search; grid anchors are fitted and measured on the CPU")
    if reasons:
        raise CommandLineError("with grid anchors: " + "; ".join(reasons))


def _check_format(args: argparse.Namespace, command: str) -> None:
    allowed = GRID_FORMATS[command]
    if args.format in allowed:
        return
    if command == "check" and args.format in GRID_FORMATS["fit"]:
        raise CommandLineError(
            f"check --format {args.format}: check measures anchors and writes {' or '.join(allowed)}; "
            f"'fit --generator ... --format {args.format}' writes the fitted generator as {args.format}"
        )
    raise CommandLineError(
        f"--format {args.format} writes YOLO anchors; {command} with grid anchors writes {', '.join(allowed)}"
    )


def _info(args, settings, name, samples, resizes, known, seed) -> dict[str, Any]:
    from ..grid.inputs import describe_resizes

    return {
        "data": name,
        "model": settings["model"],
        "iou": settings["iou"],
        "resize": describe_resizes(resizes),
        "boxes": int(round(samples.total_weight)),
        "positions": "their real positions" if known else "positions spread over each image (no box centres)",
        "seed": seed,
        "min_size": settings.get("min_size"),
        "max_size": settings.get("max_size"),
        "level_order": getattr(args, "level_order", True),
        "min_stride_units": getattr(args, "min_stride_units", None),
        "max_stride_units": getattr(args, "max_stride_units", None),
    }


def run_grid(args: argparse.Namespace, command: str) -> int:
    """``fit`` or ``check`` with grid anchors; returns the exit code."""
    import torch

    from ..grid import fit_grid_anchors, match_stats
    from ..grid.matching import level_match_stats
    from .common import emit

    refuse_yolo_options(args)
    if getattr(args, "generator", None) in CENTRED_PRESETS:
        from .centred import run_centred

        return run_centred(args, command)
    _check_format(args, command)
    from .options import check_stride_bounds

    if getattr(args, "min_stride_units", None) is not None or getattr(args, "max_stride_units", None) is not None:
        check_stride_bounds(args)
    settings = _settings(args)
    if getattr(args, "plot", None) is not None:
        from ..io.plot import check_plot_path

        try:
            check_plot_path(args.plot)
        except ValueError as error:
            raise CommandLineError(f"--plot: {error}") from None
    samples, name, start, resizes, known = _samples(args, settings)
    seed = args.seed
    info = _info(args, settings, name, samples, resizes, known, seed)
    iou = settings["iou"]
    before = match_stats(samples, start, threshold=iou)
    levels_before = level_match_stats(samples, start, threshold=iou)
    if command == "check":
        output = GridCheckOutput(start, before, levels_before, keep_threshold(args, DEFAULT_MATCHED_THRESHOLD), info)
        emit(grid_check_text(output) if args.format == "text" else grid_json(output), getattr(args, "out", None))
        _plot(args, samples, start, iou, info, before)
        return EXIT_OK if output.fits else EXIT_BELOW_THRESHOLD
    began = time.perf_counter()
    try:
        # The fit searches on the rows the figures are measured on (equal weights), at their real grids.
        result = fit_grid_anchors(
            samples.wh, samples.xy, start, threshold=iou, generator=torch.Generator().manual_seed(seed),
            extent=samples.extent, level_order=args.level_order, min_stride_units=args.min_stride_units,
            max_stride_units=args.max_stride_units,
        )
    except ValueError as error:
        raise CommandLineError(str(error)) from None
    fitted = result.generator
    after = match_stats(samples, fitted, threshold=iou) if fitted != start else before
    if after.matched <= before.matched:  # replace only when the share matched rises, as the hook does
        fitted, after = start, before
    info["seconds"] = time.perf_counter() - began
    levels_after = level_match_stats(samples, fitted, threshold=iou) if fitted != start else levels_before
    output = GridFitOutput(start, fitted, before, after, levels_before, levels_after, info)
    from .registry import get_writer

    if args.format == "text":
        text = grid_fit_text(output)
    elif args.format == "json":
        text = grid_json(output)
    else:
        text = get_writer("fit", args.format).write(output)
    emit(text, args.out)
    _plot(args, samples, fitted, iou, info, after)
    return EXIT_OK


def _plot(args, samples, generator, iou, info, stats) -> None:
    if getattr(args, "plot", None) is None:
        return
    from .grid_plot import plot_grid_anchors

    plot_grid_anchors(
        samples, generator, iou, args.plot,
        title=f"Box sizes and grid anchors: {info['data']}, {info['boxes']} boxes, {info['resize']}",
        subtitle=str(stats),
    )


def run_grid_advise(args: argparse.Namespace) -> int:
    """``advise`` with grid anchors: fit 1, 2 and 3 sizes per level and say what each level serves."""
    import torch

    from ..grid import GridAnchors, fit_grid_anchors, match_stats
    from ..grid.matching import level_match_stats
    from .common import emit
    from .grid_formats import advise_json, advise_text

    refuse_yolo_options(args)
    _check_format(args, "advise")
    settings = _settings(args)
    samples, name, given, resizes, known = _samples(args, settings)
    info = _info(args, settings, name, samples, resizes, known, args.seed)
    iou = settings["iou"]
    rows = []
    for count in (1, 2, 3):
        # Sizes spread over the level's octave, as torchvision's presets spread theirs.
        sizes = tuple(
            tuple(float(round(min(level) * 2 ** (i / count))) for i in range(count)) for level in given.sizes
        )
        start = GridAnchors(sizes, given.aspect_ratios, given.strides)
        began = time.perf_counter()
        try:
            result = fit_grid_anchors(
                samples.wh, samples.xy, start, threshold=iou, generator=torch.Generator().manual_seed(args.seed),
                extent=samples.extent, level_order=args.level_order, min_stride_units=args.min_stride_units,
                max_stride_units=args.max_stride_units,
            )
        except ValueError as error:
            raise CommandLineError(str(error)) from None
        stats = match_stats(samples, result.generator, threshold=iou)
        rows.append({
            "sizes_per_level": count,
            "anchors_per_location": len(given.aspect_ratios[0]) * count,
            "generator": result.generator,
            "stats": stats,
            "levels": level_match_stats(samples, result.generator, threshold=iou),
            "seconds": time.perf_counter() - began,
        })
    text = advise_text(rows, info) if args.format == "text" else advise_json(rows, info)
    emit(text, None)
    return EXIT_OK
