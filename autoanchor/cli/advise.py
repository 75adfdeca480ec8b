"""``autoanchor advise``: how many levels and anchors a dataset needs, with a recommendation.

Sweeps anchor counts over level sets (P3-P5, P2-P5, P3-P6) with
:func:`autoanchor.core.advise.advise` and prints :func:`~autoanchor.core.advise.format_advice`'s
table, the recommended configuration and its anchors, and notes (e.g. a level to add
for many small boxes).
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

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
from .registry import get_writer, register_command, register_writer, writer_help, writer_names

if TYPE_CHECKING:
    from ..core.advise import Advice, AdviceRow

__all__ = ["AdviseOutput", "add_arguments", "counts", "margin", "run"]

DEFAULT_COUNTS = "3-15"
# The most anchors --counts takes; the data's distinct box sizes bound them further (checked once loaded).
MAX_COUNT = 10000


def counts(text: str) -> list[int]:
    """An argparse ``type`` for ``--counts``: ``3-15``, ``3,6,9`` or a mix (``3-6,9,12``)."""
    values: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise argparse.ArgumentTypeError(f"expected counts like '3-15' or '3,6,9', got {text!r}")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if low < 1 or high < low:
            raise argparse.ArgumentTypeError(f"expected positive counts, ranges low-high with low <= high, got {text!r}")
        if high > MAX_COUNT:
            raise argparse.ArgumentTypeError(
                f"expected counts up to {MAX_COUNT} anchors (each count is one search; a data set supports no more "
                f"anchors than it has distinct box sizes), got {text!r}"
            )
        values.extend(range(low, high + 1))
    return sorted(set(values))


def margin(text: str) -> float:
    """An argparse ``type`` for ``--margin``: a relative fitness margin in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a relative margin from 0 up to, not including, 1, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``advise`` (besides the shared ones)."""
    defaults = search_defaults()
    parser.add_argument(
        "--counts", type=counts, default=counts(DEFAULT_COUNTS), metavar="N-M|N,M,...",
        help=f"anchor counts to try; a level set of L levels takes the multiples of L; default {DEFAULT_COUNTS}",
    )
    parser.add_argument(
        "--margin", type=margin, default=0.1,
        help="recommend the smallest configuration whose fitness is at least (1 - margin) times the best; "
        "default %(default)s",
    )
    parser.add_argument(
        "--seed", type=seed, default=defaults["seed"],
        help="seeds every search (and the --scale draws); default %(default)s",
    )
    add_scale_option(parser, "compare configurations on")
    add_stride_bounds_options(parser, "each level set's")
    parser.add_argument(
        "--sweep-gen", type=count("--sweep-gen", low=0), default=None, metavar="GEN",
        help="generations of evolution per count in the sweep; default 100",
    )
    parser.add_argument(
        "--gen", type=count("--gen", low=0), default=defaults["gen"],
        help="generations of the final search of the recommended configuration; default %(default)s",
    )
    parser.add_argument(
        "--format", choices=writer_names("advise"), default="text",
        help=f"{writer_help('advise')}; default %(default)s",
    )
    from .grid import add_grid_options

    add_grid_options(parser)


class AdviseOutput:
    """What ``advise`` found, for its writers.

    Attributes:
        advice: the :class:`~autoanchor.core.advise.Advice`.
        info: ``data``, ``img``, ``thr``, ``seed``, ``scale``, ``draws``, ``margin``,
            ``counts``, ``sweep_gen``, ``gen``, ``n_images``, ``min_stride_units``,
            ``max_stride_units``.
    """

    def __init__(self, advice: Advice, info: dict[str, Any]) -> None:
        self.advice = advice
        self.info = info


@register_command(
    "advise", help="compare anchor counts and level sets (P3-P5, P2-P5, P3-P6) and recommend one",
    description="Search anchors for several counts, put them on the levels of P3-P5, P2-P5 (stride 4 added) "
    "and P3-P6 (stride 64 added), and print fitness, BPR, anchors under one stride and each level's "
    "anchor sizes in strides. Recommends the smallest configuration within --margin of the best fitness, "
    "and says when many boxes are smaller than the finest stride. Exit code 0 on success, 2 on any error.",
    add_arguments=add_arguments,
)
def run(args: argparse.Namespace) -> int:
    """Run ``autoanchor advise`` with parsed options; returns the exit code."""
    from ..core.advise import SWEEP_GEN, advise
    from ..core.boxes import searchable_boxes
    from .common import BoxCounts, device_of, emit, load
    from .levels import scale_fields, training_wh

    from .grid import grid_requested, run_grid_advise

    check_stride_bounds(args)
    if grid_requested(args):
        reasons = [
            f"--{name.replace('_', '-')} {why}" for name, unset, why in (
                ("counts", counts(DEFAULT_COUNTS), "sets YOLO anchor counts; with grid anchors advise tries 1, 2 and 3 "
                 "sizes per level"),
                ("margin", 0.1, "picks among YOLO configurations; with grid anchors the fewest sizes per level within "
                 "one point of share matched of the best is recommended"),
                ("sweep_gen", None, "sets YOLO evolution generations; the grid fit is a seeded climb"),
            ) if getattr(args, name, unset) != unset
        ]
        if reasons:
            raise CommandLineError("with grid anchors: " + "; ".join(reasons))
        return run_grid_advise(args)
    writer = get_writer("advise", args.format)
    device = device_of(args.device)
    sizes, wh, name = load(args.data, args.img, device, progress=not args.quiet, cache=args.cache)
    wh = training_wh(sizes, wh, device, scale=args.scale, seed=args.seed)
    sweep_gen = SWEEP_GEN if args.sweep_gen is None else args.sweep_gen
    result = advise(
        wh, img_size=args.img, counts=args.counts, thr=args.thr, seed=args.seed, margin=args.margin,
        sweep_gen=sweep_gen, gen=args.gen, min_stride_units=args.min_stride_units,
        max_stride_units=args.max_stride_units,
    )
    box_counts = BoxCounts(wh, searchable_boxes(wh))
    info = {
        "data": name,
        "n_images": sizes.n_images,
        "boxes": box_counts.text(),
        **box_counts.json_fields(),
        "img": args.img,
        "thr": args.thr,
        "seed": args.seed,
        **scale_fields(args.scale),
        "margin": args.margin,
        "counts": args.counts,
        "sweep_gen": sweep_gen,
        "gen": args.gen,
        "min_stride_units": args.min_stride_units,
        "max_stride_units": args.max_stride_units,
    }
    emit(writer.write(AdviseOutput(result, info)), None)
    return EXIT_OK


@register_writer("text", command="advise", help="readable")
def advise_text(result: AdviseOutput) -> str:
    from ..core.advise import format_advice

    info = result.info
    scale = (
        f", scale {info['scale']:g} ({info['draws']} draws per image)" if info["scale"] is not None else ""
    )
    bounds = "".join(
        f", {word} {info[key]:g} strides" for word, key in (("min", "min_stride_units"), ("max", "max_stride_units"))
        if info.get(key) is not None
    )
    header = (
        f"levels and anchors for {info['data']} ({info['boxes']}; img {info['img']}, "
        f"thr {info['thr']}{scale}{bounds}, seed {info['seed']}, margin {info['margin']:.0%}):"
    )
    return "\n".join([header, *format_advice(result.advice)]) + "\n"


def _row_json(row: AdviceRow) -> dict[str, Any]:
    return {
        "levels": row.levels,
        "strides": list(row.strides),
        "n_anchors": row.n_anchors,
        "per_level": row.per_level,
        "fitness": row.fitness,
        "bpr": row.bpr,
        "below_stride": row.below_stride,
        "level_stats": [level.to_dict() for level in row.level_stats],
    }


@register_writer("json", command="advise", help="one JSON document")
def advise_json(result: AdviseOutput) -> str:
    from .common import json_text

    advice = result.advice
    document = {
        **{key: value for key, value in result.info.items() if key != "boxes"},
        "best_fitness": advice.best_fitness,
        "recommended": _row_json(advice.recommended),
        "notes": list(advice.warnings),
        "rows": [_row_json(row) for row in advice.rows],
    }
    return json_text(document)
