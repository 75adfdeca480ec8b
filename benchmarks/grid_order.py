"""What keeping the levels in scale order costs, and whether seeds agree: grid anchors on real box statistics.

For RetinaNet (``retinanet_resnet50_fpn``: 3 sizes x 3 ratios on strides 8-128, IoU 0.5)
and Faster R-CNN's RPN (``fasterrcnn_resnet50_fpn``: 1 size x 3 ratios on strides 4-64,
IoU 0.7), resize 800 / 1333, on coco128 and WIDER FACE val: the stock anchors, then
the fit with the levels in scale order (the default) and without (``level_order=False``),
seeds 0 and 1. Figures are every box's on its image's padded grid (the figures
torchvision's own count gives; the data has no box centres, so each box is placed at
centres spread over its image). Columns: share matched, mean best IoU, positives per
box, seconds of the fit, whether the levels are in scale order, and the sizes.

    python benchmarks/grid_order.py [--data coco128 widerface_val] [--out FILE]

WIDER FACE is research-only: this reads it, the package never ships it.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's autoanchor, not an installed one

import numpy as np
import torch

from autoanchor.grid import GridAnchors, ResizeRule, fit_grid_anchors, match_stats
from autoanchor.grid.inputs import input_samples

DATA = Path("/work/shared/data")
MODELS = {
    "RetinaNet": (
        GridAnchors(
            tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512)),
            ((0.5, 1.0, 2.0),) * 5, (8, 16, 32, 64, 128),
        ),
        0.5,
    ),
    "Faster R-CNN RPN": (
        GridAnchors(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5, (4, 8, 16, 32, 64)),
        0.7,
    ),
}


def ordered(generator: GridAnchors) -> bool:
    levels = sorted(range(generator.num_levels), key=lambda level: generator.strides[level])
    return all(
        min(generator.sizes[b]) > max(generator.sizes[a]) for a, b in zip(levels, levels[1:])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["coco128", "widerface_val"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        f"machine: {platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, 1 thread",
        "| data | model | anchors | seed | matched | mean best IoU | positives/box | seconds | in order | sizes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.data:
        with np.load(DATA / f"{name}.npz") as data:
            shapes, wh, index = data["shapes"], data["wh"], data["image_index"]
        samples = input_samples(shapes, wh, index, None, (ResizeRule(800, 1333),))
        for model, (start, iou) in MODELS.items():
            stats = match_stats(samples, start, threshold=iou)
            lines.append(
                f"| {name} | {model} | defaults | - | {stats.matched:.4f} | {stats.mean_iou:.4f} | "
                f"{stats.positives:.2f} | - | {ordered(start)} | {start.sizes} |"
            )
            print(lines[-1], flush=True)
            for level_order in (True, False):
                for seed in args.seeds:
                    began = time.perf_counter()
                    result = fit_grid_anchors(
                        samples.wh, samples.xy, start, threshold=iou, seed=seed, extent=samples.extent,
                        level_order=level_order,
                    )
                    seconds = time.perf_counter() - began
                    stats = match_stats(samples, result.generator, threshold=iou)
                    label = "fitted, ordered" if level_order else "fitted, not ordered"
                    lines.append(
                        f"| {name} | {model} | {label} | {seed} | {stats.matched:.4f} | {stats.mean_iou:.4f} | "
                        f"{stats.positives:.2f} | {seconds:.1f} | {ordered(result.generator)} | "
                        f"{result.generator.sizes} |"
                    )
                    print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
