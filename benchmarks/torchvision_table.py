"""Table for torchvision detectors: defaults, the DE peer and autoanchor, one evaluator.

For each dataset and model the three generators are measured by the same
position-aware evaluator (:func:`autoanchor.grid.match_stats`): the boxes are
resized by the model's transform (evaluation mode), and, since these statistics carry
no box positions, each box is counted at 32 lattice offsets spread over a cell of the
coarsest stride. Columns: share of boxes matched (an anchor at IoU >= the model's
foreground threshold at its grid position), mean best IoU, mean positive anchors per
box, and the search's wall-clock seconds. A last section times both searches on
160,000 boxes (VOC 2012 tiled with a U(0.9, 1.1) size jitter).

    python benchmarks/torchvision_table.py [--threads 1] [--no-peer-160k] [--out FILE]

The models are built with ``weights=None, weights_backbone=None`` when torchvision
imports (their generator, strides, resize and threshold are then read from them);
otherwise their documented defaults are used. Run by hand on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import torch  # noqa: E402

from datasets import load_shared, tile  # noqa: E402
from torchvision_peer import peer_generator  # noqa: E402

from autoanchor.grid import GridAnchors, ResizeRule, fit_grid_anchors, make_samples, match_stats  # noqa: E402
from autoanchor.training.heads.torchvision_model import DetectorAnchors, boxes_to_input, read_detector  # noqa: E402

LATTICE = 32


def _models() -> list[tuple[str, DetectorAnchors, bool]]:
    """(name, what the model is, peer uses keras-retinanet bases)."""
    try:
        from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn, retinanet_resnet50_fpn
    except ImportError:
        retina = GridAnchors(
            tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512)),
            ((0.5, 1.0, 2.0),) * 5,
            (8, 16, 32, 64, 128),
        )
        rpn = GridAnchors(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3, (32, 32, 64))
        resize = ResizeRule(800, 1333)
        return [
            ("retinanet_resnet50_fpn", DetectorAnchors("anchor_generator", "retinanet", retina, resize, 0.5), True),
            (
                "fasterrcnn_mobilenet_v3_large_fpn",
                DetectorAnchors("rpn.anchor_generator", "rpn", rpn, resize, 0.7),
                False,
            ),
        ]
    return [
        ("retinanet_resnet50_fpn", read_detector(retinanet_resnet50_fpn(weights=None, weights_backbone=None)), True),
        (
            "fasterrcnn_mobilenet_v3_large_fpn",
            read_detector(fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)),
            False,
        ),
    ]


def _row(label: str, stats, seconds: str) -> str:
    return f"| {label} | {stats.matched:.1%} | {stats.mean_iou:.3f} | {stats.positives:.2f} | {seconds} |"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--datasets", default="coco128,widerface_val")
    parser.add_argument("--no-peer-160k", action="store_true", help="skip the peer's 160k-box timing (minutes)")
    parser.add_argument("--out", type=Path, help="also write the output here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    say(f"# torchvision anchors: defaults, DE peer, autoanchor ({time.strftime('%Y-%m-%d %H:%M')})")
    say(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} thread(s), load average {os.getloadavg()[0]:.1f}"
    )
    models = _models()
    for name in args.datasets.split(","):
        boxes = load_shared(name)
        for model_name, detector, keras_bases in models:
            wh, _xy, _extent = boxes_to_input(boxes.shapes, boxes.wh, boxes.image_index, None, detector.resize)
            wh = wh[(wh > 0).all(1)]
            start = detector.generator
            evaluator = make_samples(wh, None, start.cell, lattice=LATTICE)
            say()
            say(
                f"## {name} ({wh.shape[0]} boxes), {model_name} "
                f"(strides {start.strides}, IoU >= {detector.threshold:g})"
            )
            say()
            say("| anchors | matched | mean best IoU | positives/box | search s |")
            say("|---|---|---|---|---|")
            say(_row("torchvision defaults", match_stats(evaluator, start, threshold=detector.threshold), "-"))
            peer = peer_generator(wh.numpy(), start, seed=0, retinanet_bases=keras_bases)
            say(
                _row(
                    "DE peer (origin-centred)",
                    match_stats(evaluator, peer.generator, threshold=detector.threshold),
                    f"{peer.seconds:.2f}",
                )
            )
            began = time.perf_counter()
            fit = fit_grid_anchors(wh, None, start, threshold=detector.threshold, seed=0)
            seconds = time.perf_counter() - began
            say(
                _row(
                    "autoanchor", match_stats(evaluator, fit.generator, threshold=detector.threshold), f"{seconds:.2f}"
                )
            )
            say()
            say(f"peer: `{peer.generator}`")
            say(f"autoanchor: `{fit.generator}`")
    big = tile(load_shared("voc2012_trainval"), 160_000, variant="jitter", seed=0)
    say()
    say(f"## search time on {big.name} ({big.n_boxes} boxes)")
    say()
    say("| model | autoanchor s | DE peer s |")
    say("|---|---|---|")
    for model_name, detector, keras_bases in models:
        wh, _xy, _extent = boxes_to_input(big.shapes, big.wh, big.image_index, None, detector.resize)
        wh = wh[(wh > 0).all(1)]
        began = time.perf_counter()
        fit_grid_anchors(wh, None, detector.generator, threshold=detector.threshold, seed=0)
        ours = time.perf_counter() - began
        peer_seconds = "skipped"
        if not args.no_peer_160k and keras_bases:
            peer_seconds = f"{peer_generator(wh.numpy(), detector.generator, seed=0, retinanet_bases=True).seconds:.1f}"
        say(f"| {model_name} | {ours:.2f} | {peer_seconds} |")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
