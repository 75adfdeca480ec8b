"""``autoanchor fit``: find anchors for a dataset; print, write, or plot them."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..configs import load_config
from .options import EXIT_OK, CommandLineError, add_scale_option, non_negative_int, positive_int, seed
from .registry import format_help, format_names, get_format, register_command

if TYPE_CHECKING:
    from torch import Tensor

    from ..metrics import AnchorStats
    from ..modelyaml import ModelAnchors

__all__ = ["add_arguments", "run"]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fit`` (besides the shared ones)."""
    defaults = load_config("search")
    parser.add_argument(
        "--n", type=positive_int, default=None,
        help=f"number of anchors (default {defaults['n']}; with --model, the model's count)",
    )
    parser.add_argument(
        "--levels", type=positive_int, default=None,
        help=f"output levels the anchors are split into, small to large (default {defaults['levels']}; "
        "with --model, the model's levels); --n must be a multiple",
    )
    parser.add_argument(
        "--gen", type=non_negative_int, default=defaults["gen"],
        help="generations of evolution after k-means; default %(default)s",
    )
    parser.add_argument(
        "--seed", type=seed, default=defaults["seed"],
        help="random seed from 0 to 2**64 - 1: the same data and seed give the same anchors; default %(default)s",
    )
    parser.add_argument(
        "--metric", choices=("ratio", "iou"), default=defaults["metric"],
        help="what to maximise: ratio (yolov5 fitness) or iou (Avg IoU); default %(default)s",
    )
    add_scale_option(parser, "fit")
    parser.add_argument(
        "--format", choices=format_names("fit"), default="text",
        help=f"{format_help('fit')}; default %(default)s",
    )
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="write the result to FILE (replaced atomically) instead of stdout"
    )
    parser.add_argument(
        "--plot", type=Path, metavar="PNG",
        help="draw box sizes and anchors into this image file (.png, .svg, .pdf, ...; needs matplotlib)",
    )
    parser.add_argument(
        "--model", type=Path, metavar="MODEL.yaml",
        help="a yolov5 model yaml: fit as many levels and anchors per level as it has",
    )
    parser.add_argument(
        "--write", action="store_true",
        help="with --model: rewrite the model yaml's anchor rows in place (nothing else in the file changes; "
        "its permissions and owner are kept; a read-only file is refused)",
    )


def _levels_of(args: argparse.Namespace, model: ModelAnchors | None) -> tuple[int, int]:
    """``(n, levels)`` from the options, the model, and the shipped defaults; checked."""
    if model is not None:
        for option, given, expected in (("--n", args.n, model.n_anchors), ("--levels", args.levels, model.n_levels)):
            if given is not None and given != expected:
                raise CommandLineError(
                    f"{option} {given} disagrees with {model.source} ({model.n_levels} levels x "
                    f"{model.n_per_level} anchors); leave {option} out with --model"
                )
        return model.n_anchors, model.n_levels
    defaults = load_config("search")
    n = args.n if args.n is not None else defaults["n"]
    levels = args.levels if args.levels is not None else defaults["levels"]
    if n % levels:
        raise CommandLineError(f"--n {n} anchors cannot be split evenly into --levels {levels}")
    return n, levels


def _check_before_work(args: argparse.Namespace) -> None:
    """Everything that can be refused without the data: refuse it before loading and searching."""
    from .common import check_output_path

    if args.write and args.model is None:
        raise CommandLineError("--write needs --model MODEL.yaml (the file to rewrite)")
    check_output_path("--out", args.out)
    check_output_path("--plot", args.plot)
    if args.write:
        check_output_path("--write", args.model)
    if args.plot is not None:
        from ..plot import check_plot_path

        try:
            check_plot_path(args.plot)
        except ValueError as error:
            raise CommandLineError(f"--plot: {error}") from None


@register_command(
    "fit", help="find anchors for a dataset",
    description="Find anchors for a dataset (k-means, then evolution) and print them, "
    "write them into a model yaml, or plot them. Exit code 0 on success, 2 on any error.",
    add_arguments=add_arguments,
)
def run(args: argparse.Namespace) -> int:
    """Run ``autoanchor fit`` with parsed options; returns the exit code."""
    import torch

    from ..metrics import anchor_stats
    from ..modelyaml import default_strides, read_model_anchors, round_anchors
    from ..search import search_anchors
    from .common import FIGURES_FOR_PRINTED, BoxCounts, _searched_boxes, device_of, emit, load
    from .formats import FitOutput, stats_line
    from .levels import per_level, scale_fields, training_wh

    writer = get_format("fit", args.format)
    _check_before_work(args)
    model = read_model_anchors(args.model) if args.model is not None else None
    n, n_levels = _levels_of(args, model)
    device = device_of(args.device)

    sizes, wh, name = load(args.data, args.img, device, progress=not args.quiet, cache=args.cache)
    wh = training_wh(sizes, wh, args.img, device, scale=args.scale, seed=args.seed)
    start = time.perf_counter()
    result = search_anchors(
        wh, n, thr=args.thr, gen=args.gen, metric=args.metric, seed=args.seed, progress=not args.quiet
    )
    logger.info("k-means start: %s", stats_line(result.start_stats))
    logger.info("searched %d boxes in %.2f s", result.n_boxes, time.perf_counter() - start)

    exact = result.anchors.reshape(n_levels, n // n_levels, 2)
    rows = round_anchors(exact)
    rounded = torch.tensor(rows, dtype=torch.float32, device=wh.device)
    kept = _searched_boxes(wh)
    counts = BoxCounts(wh, kept)
    # The figures printed are those of the integer anchors that are printed and written.
    stats = anchor_stats(kept, rounded.reshape(-1, 2), thr=args.thr)
    strides = default_strides(n_levels)
    levels, below_stride = per_level(kept, rounded, strides, thr=args.thr)
    info = {
        "data": name,
        "n_images": sizes.n_images,
        **counts.json_fields(),
        "img": args.img,
        "thr": args.thr,
        "metric": args.metric,
        "gen": args.gen,
        "seed": args.seed,
        "n": n,
        **scale_fields(args.scale),
    }
    output = FitOutput(
        rows, result.anchors.cpu().tolist(), strides, stats, info, counts.text(), FIGURES_FOR_PRINTED,
        levels=levels, below_stride=below_stride,
    )
    emit(writer.write(output), args.out)

    if args.plot is not None:
        from ..plot import plot_anchors

        plot_anchors(
            kept, rounded, args.thr, args.plot, strides=strides,
            title=f"Box sizes and anchors: {Path(name).name if args.data else name}, "
            f"{result.n_boxes} boxes at img {args.img}",
            subtitle=f"{n} anchors, thr {args.thr}: {stats_line(stats)}",
        )
        logger.info("plotted %s", args.plot)

    if args.write:
        _write(args.model, model, rows, kept, stats, thr=args.thr, metric=args.metric)  # type: ignore[arg-type]
    return EXIT_OK


def _write(
    path: Path, model: ModelAnchors, rows: list[list[list[int]]], kept: Tensor, stats: AnchorStats, *, thr: float,
    metric: str,
) -> None:
    """``fit --write``: put the fitted anchors into the model yaml, saying how they compare."""
    from ..metrics import anchor_stats
    from ..modelyaml import write_model_anchors
    from .formats import stats_line

    if model.anchors is not None:
        before = anchor_stats(kept, model.anchors.to(kept.device).reshape(-1, 2), thr=thr)
        logger.info("anchors in %s before: %s", path, stats_line(before))
        worse = stats.avg_iou < before.avg_iou if metric == "iou" else stats.fitness < before.fitness
        if worse:
            logger.warning("the fitted anchors fit worse than those in %s; writing them anyway", path)
    if write_model_anchors(path, rows):
        logger.info(
            "%s said `anchors: %d`: replaced that line by an anchors: block of %d levels", path, model.n_per_level,
            len(rows),
        )
    else:
        logger.info("rewrote the %d anchor rows of %s", len(rows), path)
