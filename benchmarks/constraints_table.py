"""Stride-bounded anchors on a tiny-object set: yolov5's defaults, unbounded, clamped afterwards, bounded.

For WIDER FACE val (research use only: read from shared/data, never copied here)
letterboxed to 640 and yolov5's P5 strides (8, 16, 32), prints for each anchor set
its per-level table (anchors, size in strides, boxes matched per level), fitness
and BPR on every box of at least 2 px:

* yolov5's default P5 anchors;
* the unbounded search (yolov5-compatible, the default);
* the unbounded anchors clamped onto ``min_stride_units`` afterwards (what
  clipping the result would give);
* the search bounded inside by ``min_stride_units`` (1.0 and 0.5).

    python benchmarks/constraints_table.py [--data PATH.npz] [--seed 0] [--out FILE]

One search each, a few seconds apiece on two cores.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

from autoanchor.io.configs import anchors_by_name, strides_by_name
from autoanchor.io.datasets import load_boxes
from autoanchor.core.levels import anchors_below_stride, clamp_to_strides, format_level_table, level_stats, stride_bounds
from autoanchor.core.levels import split_levels
from autoanchor.core.metrics import anchor_stats
from autoanchor.core.search import search_anchors

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "widerface_val.npz"


def describe(title: str, anchors: torch.Tensor, wh: torch.Tensor, strides: list[float], seconds: float | None) -> str:
    levels = split_levels(anchors, len(strides))
    stats = anchor_stats(wh, anchors)
    below = anchors_below_stride(levels, strides)
    timing = f", search {seconds:.1f} s" if seconds is not None else ""
    lines = [
        f"## {title}",
        f"fitness {stats.fitness:.4f}  BPR {stats.bpr:.4f}  anchors/target {stats.aat:.2f}  "
        f"Avg IoU {stats.avg_iou:.4f}  anchors under one stride: {len(below)}{timing}",
        *format_level_table(level_stats(wh, levels, strides)),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--img", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # the small-box warning: WIDER FACE is small boxes

    wh = load_boxes(str(args.data), verbose=False).pixel_wh(args.img)
    kept = wh[(wh >= 2).any(1)]  # the boxes the search and yolov5's figures use
    strides = [float(s) for s in strides_by_name("yolov5-p5")]
    parts = [
        f"# Stride-bounded anchors: {args.data.name} at {args.img} ({kept.shape[0]} of {wh.shape[0]} boxes of "
        f"at least 2 px), strides {strides}, thr 4.0, seed {args.seed}, torch {torch.__version__}",
        "",
        describe("yolov5-p5 default anchors", anchors_by_name("yolov5-p5").reshape(-1, 2), kept, strides, None),
    ]
    start = time.perf_counter()
    free = search_anchors(wh, 9, seed=args.seed)
    parts.append(describe("unbounded search (default)", free.anchors, kept, strides, time.perf_counter() - start))
    for units in (1.0, 0.5):
        low, high = stride_bounds(strides, 9, min_units=units)
        clamped = clamp_to_strides(free.anchors, low, high)
        parts.append(describe(f"unbounded, then clamped to min_stride_units={units:g}", clamped, kept, strides, None))
        start = time.perf_counter()
        bound = search_anchors(wh, 9, seed=args.seed, strides=tuple(strides), min_stride_units=units)
        seconds = time.perf_counter() - start
        parts.append(describe(f"bounded search, min_stride_units={units:g}", bound.anchors, kept, strides, seconds))
    text = "\n".join(parts)
    sys.stdout.write(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
