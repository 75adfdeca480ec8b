"""``autoanchor fit``: find anchors for a dataset; print, write, or plot them."""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.registry import OBJECTIVES
from .grid import add_grid_options, grid_requested, run_grid
from .options import (
    EXIT_OK,
    CommandLineError,
    add_scale_option,
    add_stride_bounds_options,
    check_stride_bounds,
    count,
    search_defaults,
    seed,
)
from .registry import get_writer, register_command, writer_help, writer_names

if TYPE_CHECKING:
    from torch import Tensor

    from ..io.darknet import DarknetConfig
    from ..core.metrics import AnchorStats
    from ..io.modelyaml import ModelAnchors

__all__ = ["add_arguments", "run"]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fit`` (besides the shared ones)."""
    defaults = search_defaults()
    parser.add_argument(
        "--n", type=count("--n"), default=None,
        help=f"number of anchors (default {defaults['n']}; with --model, the model's count)",
    )
    parser.add_argument(
        "--levels", type=count("--levels"), default=None,
        help=f"output levels the anchors are split into, small to large (default {defaults['levels']}; "
        "with --model, the model's levels); --n must be a multiple",
    )
    parser.add_argument(
        "--gen", type=count("--gen", low=0), default=defaults["gen"],
        help="generations of evolution after k-means; default %(default)s",
    )
    parser.add_argument(
        "--seed", type=seed, default=defaults["seed"],
        help="random seed from 0 to 2**64 - 1: the same data and seed give the same anchors; default %(default)s",
    )
    parser.add_argument(
        "--metric", choices=OBJECTIVES, default=defaults["metric"],  # the live registry: objectives registered in Python too
        help="what to maximise, a registered objective: ratio (yolov5 fitness), iou (Avg IoU), ...; default %(default)s",
    )
    add_scale_option(parser, "fit")
    add_stride_bounds_options(parser, "8, 16, 32, ... for the --levels or the --model yaml's levels")
    parser.add_argument(
        "--format", choices=writer_names("fit"), default="text",
        help=f"{writer_help('fit')}; default %(default)s",
    )
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="write the result to FILE (replaced atomically; a link: its target) instead of stdout; "
        "'-', a FIFO or /dev/stdout are written straight through; never the --model or DATA file"
    )
    parser.add_argument(
        "--plot", type=Path, metavar="PNG",
        help="draw box sizes and anchors into this image file (.png, .svg, .pdf, ...; needs matplotlib)",
    )
    parser.add_argument(
        "--model", type=Path, metavar="MODEL",
        help="a yolov5 model yaml or a darknet .cfg: fit as many levels and anchors per level as it has "
        "(a .cfg: to boxes resized as darknet does, at its [net] size unless --img is given)",
    )
    parser.add_argument(
        "--write", action="store_true",
        help="with --model: rewrite the model yaml's anchor rows, or every anchors= line of the .cfg, in place "
        "(nothing else in the file changes; its permissions and owner are kept; a read-only file is refused)",
    )
    add_grid_options(parser)


def _levels_of(args: argparse.Namespace, model: ModelAnchors | DarknetConfig | None) -> tuple[int, int]:
    """``(n, levels)`` from the options, the model, and the shipped defaults; checked."""
    if model is not None:
        from ..io.modelyaml import ModelAnchors

        # A cfg's n is its `num`, the anchors on its anchors = line.
        n_model = model.n_anchors if isinstance(model, ModelAnchors) else model.num
        for option, given, expected in (("--n", args.n, n_model), ("--levels", args.levels, model.n_levels)):
            if given is not None and given != expected:
                raise CommandLineError(
                    f"{option} {given} disagrees with {model.source} ({model.n_levels} levels x "
                    f"{model.n_per_level} anchors); leave {option} out with --model"
                )
        return n_model, model.n_levels
    defaults = search_defaults()
    n = args.n if args.n is not None else defaults["n"]
    levels = args.levels if args.levels is not None else defaults["levels"]
    if n % levels:
        raise CommandLineError(f"--n {n} anchors cannot be split evenly into --levels {levels}")
    return n, levels


def _check_before_work(args: argparse.Namespace) -> None:
    """Everything that can be refused without the data: refuse it before loading and searching."""
    from .common import check_output_path
    from .darknetcfg import is_cfg

    check_stride_bounds(args)
    if (args.min_stride_units is not None or args.max_stride_units is not None) and is_cfg(args.model):
        raise CommandLineError(
            "--min-stride-units/--max-stride-units work with a yolov5 model yaml or --levels, not a darknet "
            f".cfg ({args.model}), whose masks need not follow the anchors' areas"
        )
    if args.write and args.model is None:
        raise CommandLineError("--write needs --model MODEL.yaml or --model MODEL.cfg (the file to rewrite)")
    check_outputs(args)
    if args.write:
        check_output_path("--write", args.model)
    if args.plot is not None:
        from ..io.plot import check_plot_path

        try:
            check_plot_path(args.plot)
        except ValueError as error:
            raise CommandLineError(f"--plot: {error}") from None


def check_outputs(args: argparse.Namespace) -> None:
    """``--out`` and ``--plot``: writable, distinct, and neither the model nor the data they are computed from."""
    from .common import check_distinct_outputs, check_output_path

    inputs = (("--model", args.model), ("DATA", args.data))
    check_output_path("--out", args.out, inputs=inputs, stream=True)
    check_output_path("--plot", args.plot, inputs=inputs)
    check_distinct_outputs(("--out", args.out), ("--plot", args.plot))


@register_command(
    "fit", help="find anchors for a dataset",
    description="Find anchors for a dataset (k-means, then evolution) and print them, "
    "write them into a yolov5 model yaml or a darknet .cfg, or plot them. Exit code 0 on success, 2 on any error.",
    add_arguments=add_arguments,
)
def run(args: argparse.Namespace) -> int:
    """Run ``autoanchor fit`` with parsed options; returns the exit code."""
    import torch

    from ..core.metrics import anchor_stats
    from ..io.modelyaml import default_strides, read_model_anchors, round_anchors
    from ..core.search import search_anchors
    from ..core.boxes import searchable_boxes
    from .common import FIGURES_FOR_PRINTED, BoxCounts, device_of, emit, load
    from .darknetcfg import describe_unused, fitted_line, is_cfg, level_tensor, network_size, read_model_cfg
    from .formats import FitOutput, stats_line
    from .levels import per_level, scale_fields, training_wh

    if grid_requested(args):
        check_outputs(args)
        return run_grid(args, "fit")
    writer = get_writer("fit", args.format)
    _check_before_work(args)
    cfg = network = None
    if is_cfg(args.model):
        cfg = read_model_cfg(args.model)
        if args.write:
            cfg.check_rewritable()  # before the search, not after it
        network = network_size(cfg, args.img if args.img_given else None)
        model = None
    else:
        model = read_model_anchors(args.model) if args.model is not None else None
        if args.write:  # a trial rewrite: a yaml that cannot take new rows is refused before the search
            from ..io.modelyaml import read_text_file, rewrite_anchors

            rewrite_anchors(
                read_text_file(args.model, "model yaml"), torch.ones(model.n_levels, model.n_per_level, 2),
                source=str(args.model),
            )
    n, n_levels = _levels_of(args, cfg if cfg is not None else model)
    img = network.long_side if network is not None else args.img
    device = device_of(args.device)

    sizes, wh, name = load(args.data, img, device, progress=not args.quiet, cache=args.cache, network=network)
    wh = training_wh(sizes, wh, device, scale=args.scale, seed=args.seed)
    start = time.perf_counter()
    n_search = len(cfg.used) if cfg is not None else n  # yolov4-tiny's masks use 5 of its 6 anchors
    bounds = {}
    if args.min_stride_units is not None or args.max_stride_units is not None:  # never with a .cfg
        bounds = {
            "strides": tuple(model.level_strides if model is not None else default_strides(n_levels)),
            "min_stride_units": args.min_stride_units,
            "max_stride_units": args.max_stride_units,
        }
    result = search_anchors(
        wh, n_search, thr=args.thr, gen=args.gen, metric=args.metric, seed=args.seed, progress=not args.quiet,
        **bounds,
    )
    logger.info("k-means start: %s", stats_line(result.start_stats))
    logger.info("searched %d boxes in %.2f s", result.n_boxes, time.perf_counter() - start)

    line = None
    if cfg is not None:
        line = fitted_line(cfg, result.anchors)
        unused = describe_unused(cfg, line)
        if unused is not None:
            logger.info("%s", unused)
        rounded = level_tensor(cfg, line, wh.device)
        rows = rounded.long().tolist()
        strides = list(cfg.strides)
    else:
        strides = model.level_strides if model is not None else default_strides(n_levels)
        rows = round_anchors(result.anchors.reshape(n_levels, n // n_levels, 2))
        if bounds:
            rows = _round_within(result.anchors.reshape(n_levels, n // n_levels, 2), rows, strides, args)
        rounded = torch.tensor(rows, dtype=torch.float32, device=wh.device)
    kept = searchable_boxes(wh)
    counts = BoxCounts(wh, kept)
    # The figures printed are those of the integer anchors that are printed and written.
    stats = anchor_stats(kept, rounded.reshape(-1, 2), thr=args.thr)
    levels, below_stride = per_level(kept, rounded, strides, thr=args.thr)
    info = {
        "data": name,
        "n_images": sizes.n_images,
        **counts.json_fields(),
        "img": img,
        **(network.json_fields() if network is not None else {}),
        "thr": args.thr,
        "metric": args.metric,
        "gen": args.gen,
        "seed": args.seed,
        "n": n,
        **scale_fields(args.scale),
        "min_stride_units": args.min_stride_units,
        "max_stride_units": args.max_stride_units,
    }
    output = FitOutput(
        rows, result.anchors.cpu().tolist(), strides, stats, info, counts.text(), FIGURES_FOR_PRINTED,
        line=line, masks=None if cfg is None else [list(mask) for mask in cfg.masks],
        levels=levels, below_stride=below_stride,
    )
    emit(writer.write(output), args.out)

    if args.plot is not None:
        from ..io.plot import plot_anchors

        size = f"img {img}" if network is None else f"{network.width}x{network.height}"
        plot_anchors(
            kept, rounded, args.thr, args.plot, strides=strides,
            title=f"Box sizes and anchors: {Path(name).name if args.data else name}, "
            f"{result.n_boxes} boxes at {size}",
            subtitle=f"{n} anchors, thr {args.thr}: {stats_line(stats)}",
        )
        logger.info("plotted %s", args.plot)

    if args.write and cfg is not None:
        _write_cfg(args.model, cfg, line, kept, stats, thr=args.thr, metric=args.metric)  # type: ignore[arg-type]
    elif args.write:
        _write(args.model, model, rows, kept, stats, thr=args.thr, metric=args.metric)  # type: ignore[arg-type]
    return EXIT_OK


def _round_within(anchors: Tensor, rows: list, strides: list[int], args: argparse.Namespace) -> list:
    """``rows`` (the nearest integers of ``anchors [nl, na, 2]`` px) with every anchor that rounding took
    past its level's bound rounded the other way: both sides up under the minimum, down over the maximum."""
    low, high = args.min_stride_units, args.max_stride_units
    fixed = [[list(anchor) for anchor in level] for level in rows]
    for level, stride in enumerate(strides):
        for index, (width, height) in enumerate(fixed[level]):
            exact_w, exact_h = anchors[level, index].tolist()
            size = math.sqrt(width * height)
            if low is not None and size < low * stride:
                fixed[level][index] = [math.ceil(exact_w), math.ceil(exact_h)]
            elif high is not None and size > high * stride:
                fixed[level][index] = [max(1, math.floor(exact_w)), max(1, math.floor(exact_h))]
    return fixed


def _write(
    path: Path, model: ModelAnchors, rows: list[list[list[int]]], kept: Tensor, stats: AnchorStats, *, thr: float,
    metric: str,
) -> None:
    """``fit --write``: put the fitted anchors into the model yaml, saying how they compare."""
    from ..core.metrics import anchor_stats
    from ..io.modelyaml import write_model_anchors

    if model.anchors is not None:
        before = anchor_stats(kept, model.anchors.to(kept.device).reshape(-1, 2), thr=thr)
        _compare(path, before, stats, metric)
    if write_model_anchors(path, rows):
        logger.info(
            "%s said `anchors: %d`: replaced that line by an anchors: block of %d levels", path, model.n_per_level,
            len(rows),
        )
    else:
        logger.info("rewrote the %d anchor rows of %s", len(rows), path)


def _compare(path: Path, before: AnchorStats, stats: AnchorStats, metric: str) -> None:
    """Log the model's own anchors' figures, and warn when the fitted ones are worse on the metric searched."""
    from ..core.objectives import objective_class
    from .formats import stats_line

    logger.info("anchors in %s before: %s", path, stats_line(before))
    figure = objective_class(metric).figure
    worse = figure(stats) < figure(before)
    if worse:
        logger.warning("the fitted anchors fit worse than those in %s; writing them anyway", path)


def _write_cfg(
    path: Path, cfg: DarknetConfig, line: list[list[int]], kept: Tensor, stats: AnchorStats, *, thr: float,
    metric: str,
) -> None:
    """``fit --write`` on a cfg: the same new anchors = line in every [yolo] section, nothing else changed."""
    from ..io.darknet import write_cfg_anchors
    from ..core.metrics import anchor_stats

    # The cfg's anchors as darknet uses them (each section's own line, through its mask), on the same boxes.
    before = anchor_stats(kept, cfg.level_anchors().to(kept.device).reshape(-1, 2), thr=thr)
    _compare(path, before, stats, metric)
    write_cfg_anchors(path, line)
    logger.info(
        "rewrote the anchors = line of the %d [yolo] sections of %s (masks, num and every other line unchanged)",
        cfg.n_levels, path,
    )
