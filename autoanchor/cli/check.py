"""``autoanchor check``: measure how well given anchors fit a dataset; the exit code can gate a pipeline."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.defaults import DEFAULT_BPR_THRESHOLD, DEFAULT_MATCHED_THRESHOLD
from ..io.configs import anchor_config_names, anchors_by_name, strides_by_name
from .grid import GENERATOR_CHOICES, add_grid_options, generator_help, grid_requested, run_grid
from .options import (
    EXIT_BELOW_THRESHOLD,
    EXIT_OK,
    CommandLineError,
    add_scale_option,
    keep_threshold,
    probability,
    search_defaults,
    seed,
)
from .registry import get_writer, register_command, writer_help, writer_names

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``check`` (besides the shared ones)."""
    defaults = search_defaults()
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model", type=Path, metavar="MODEL",
        help="the anchors of a yolov5 model yaml, or of a darknet .cfg level by level as its masks pick them "
        "(on boxes resized as darknet does, at its [net] size unless --img is given)",
    )
    source.add_argument(
        "--anchors", metavar="ANCHORS",
        help="anchors as 'w1,h1, w2,h2, ...' in pixels, or the name of a shipped set: "
        + ", ".join(anchor_config_names()),
    )
    source.add_argument("--generator", choices=GENERATOR_CHOICES, help=generator_help())
    parser.add_argument(
        "--bpr-threshold", type=probability, default=None, metavar="BPR",
        help="the anchors fit when their best possible recall (with --generator: the share of boxes matched) "
        "is above this (as check_anchors decides whether to search new ones); default "
        f"{defaults['bpr_threshold']:g}, with a torchvision --generator {DEFAULT_MATCHED_THRESHOLD:g}",
    )
    add_scale_option(parser, "measure")
    parser.add_argument(
        "--seed", type=seed, default=defaults["seed"],
        help="seeds the --scale draws (from 0 to 2**64 - 1); default %(default)s",
    )
    parser.add_argument(
        "--format", choices=writer_names("check"), default="text",
        help=f"{writer_help('check')}; default %(default)s",
    )
    add_grid_options(parser, generator=False, plot=True)


def _parse_anchor_text(text: str) -> tuple[Tensor, str | None]:
    """``--anchors``: a shipped set's name or ``w1,h1, w2,h2, ...`` -> ``(Tensor[nl, na, 2], name or None)``."""
    import torch

    stripped = text.strip()
    if re.fullmatch(r"[A-Za-z][\w.-]*", stripped):
        return anchors_by_name(stripped), stripped
    tokens = [token for token in re.split(r"[\s,;]+", stripped) if token]
    values = []
    for token in tokens:
        try:
            values.append(float(token))
        except ValueError:
            raise CommandLineError(
                f"--anchors {text!r}: {token!r} is not a number; give 'w1,h1, w2,h2, ...' in pixels "
                f"or a shipped set ({', '.join(anchor_config_names())})"
            ) from None
    if not values or len(values) % 2:
        raise CommandLineError(
            f"--anchors {text!r}: expected w,h pairs (an even count of numbers), got {len(values)} numbers"
        )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise CommandLineError(f"--anchors {text!r}: anchor sizes must be positive numbers of pixels")
    return torch.tensor(values, dtype=torch.float32).reshape(1, -1, 2), None


@register_command(
    "check", help="measure how well given anchors fit a dataset (exit 1 if BPR is not above --bpr-threshold)",
    description="Print BPR, anchors per target, fitness and Avg IoU of given anchors on a dataset. "
    "Exit code: 0 when BPR is above --bpr-threshold (the anchors fit), 1 when it is not "
    "(as check_anchors, which would then search new anchors), 2 on any error.",
    add_arguments=add_arguments,
)
def run(args: argparse.Namespace) -> int:
    """Run ``autoanchor check`` with parsed options; returns 0 (fits), 1 (BPR not above the threshold)."""
    from ..core.metrics import anchor_stats
    from ..io.modelyaml import read_model_anchors
    from ..core.boxes import searchable_boxes
    from .common import MIN_BOX_PX, BoxCounts, device_of, emit, load
    from .darknetcfg import is_cfg, network_size, read_model_cfg
    from .formats import CheckOutput
    from .levels import per_level, scale_fields, training_wh

    if grid_requested(args):
        return run_grid(args, "check")
    if args.model is None and args.anchors is None:
        raise CommandLineError(
            "give the anchors to check: --model, --anchors, --generator, or grid anchors as --sizes/--strides/--iou"
        )
    if args.plot is not None:
        raise CommandLineError("check --plot draws grid anchors (--generator); for YOLO anchors use 'fit --plot'")
    writer = get_writer("check", args.format)
    network = strides = None
    if is_cfg(args.model):
        cfg = read_model_cfg(args.model)
        network = network_size(cfg, args.img if args.img_given else None)
        # Each level's anchors as darknet picks them: its section's own line, through its mask.
        anchors, label, strides = cfg.level_anchors(), str(args.model), list(cfg.strides)
    elif args.model is not None:
        model = read_model_anchors(args.model)
        if model.anchors is None:
            raise CommandLineError(
                f"{args.model} says `anchors: {model.n_per_level}` and holds no anchors to check; "
                f"fit some with 'autoanchor fit DATA --model {args.model} --write'"
            )
        anchors, label = model.anchors, str(args.model)
        strides = model.level_strides  # from the layers feeding Detect (P3/8 ... when they cannot be followed)
    else:
        anchors, label = _parse_anchor_text(args.anchors)
        strides = strides_by_name(label) if label is not None else None  # numbers carry no strides
    device = device_of(args.device)
    img = network.long_side if network is not None else args.img
    sizes, wh, name = load(args.data, img, device, progress=not args.quiet, cache=args.cache, network=network)
    wh = training_wh(sizes, wh, device, scale=args.scale, seed=args.seed)
    kept = searchable_boxes(wh)
    if kept.shape[0] == 0:
        raise CommandLineError(f"all {wh.shape[0]} boxes of {name} are under {MIN_BOX_PX:g} px; nothing to check")
    flat = anchors.reshape(-1, 2)
    stats = anchor_stats(kept, flat.to(device), thr=args.thr)
    counts = BoxCounts(wh, kept)
    levels, below_stride = per_level(kept, anchors, strides, thr=args.thr)
    output = CheckOutput(
        anchors=flat.tolist(), label=label, data=name, stats=stats, bpr_threshold=keep_threshold(args, DEFAULT_BPR_THRESHOLD),
        info={"img": img, **(network.json_fields() if network is not None else {}), "thr": args.thr,
              "seed": args.seed, **scale_fields(args.scale), **counts.json_fields()},
        boxes=counts.text(), strides=strides if network is not None else None,
        levels=levels, below_stride=below_stride,
    )
    emit(writer.write(output), None)
    return EXIT_OK if output.fits else EXIT_BELOW_THRESHOLD
