"""A torchvision detector that fits its anchors to the data before its first training step.

Builds ``fasterrcnn_mobilenet_v3_large_fpn`` (or ``retinanet_resnet50_fpn``) with
``weights=None, weights_backbone=None`` (nothing is downloaded) and a small input size,
checks its anchor generator against the built-in coco128 box statistics with
``autoanchor.check_anchors(dataset, model)``, the same call as for a YOLO model
(sizes, ratios, strides, resize rule and foreground threshold are read from the
model), which rewrites the generator in place when more boxes get an anchor above the
threshold, then runs a few training steps on the CPU. The images
are random noise with boxes of coco128's sizes placed at seeded random positions: the
point is that the rewritten model trains, not what it learns.

Needs torchvision (``pip install autoanchor[torchvision]``). Run:
    python examples/torchvision_hook.py [--model fasterrcnn|retinanet] [--steps 3]
"""

from __future__ import annotations

import argparse
import logging

import torch

import autoanchor
from autoanchor.io.datasets import load_boxes
from autoanchor.training.heads.torchvision_model import find_anchor_generator


def build(name: str, min_size: int, max_size: int) -> torch.nn.Module:
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn, retinanet_resnet50_fpn

    builder = {"fasterrcnn": fasterrcnn_mobilenet_v3_large_fpn, "retinanet": retinanet_resnet50_fpn}[name]
    return builder(weights=None, weights_backbone=None, num_classes=91, min_size=min_size, max_size=max_size)


def batch(boxes, count: int, side: int, generator: torch.Generator) -> tuple[list, list]:
    """``count`` noise images of ``side`` px, each with up to 4 boxes of the dataset's sizes."""
    images, targets = [], []
    wh = torch.as_tensor(boxes.wh, dtype=torch.float32)
    for _ in range(count):
        pick = torch.randint(0, wh.shape[0], (4,), generator=generator)
        size = (wh[pick] * side).clamp(min=4, max=side - 2)  # [4,2] px
        corner = torch.rand(4, 2, generator=generator) * (side - size)
        images.append(torch.rand(3, side, side, generator=generator))
        targets.append(
            {"boxes": torch.cat([corner, corner + size], 1), "labels": torch.randint(1, 91, (4,), generator=generator)}
        )
    return images, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["fasterrcnn", "retinanet"], default="fasterrcnn")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--min-size", type=int, default=320)
    parser.add_argument("--max-size", type=int, default=512)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    boxes = load_boxes("coco128")
    model = build(args.model, args.min_size, args.max_size)
    report = autoanchor.check_anchors(boxes, model, seed=0)  # before the first step, as in yolov5's train.py
    before, after = report.matched_before, report.matched_after  # a GridReport: the share of boxes matched
    print(f"replaced: {report.replaced}; share of coco128 boxes matched {before:.3f} -> {after:.3f}")
    _path, anchors = find_anchor_generator(model)
    print(f"the model now has AnchorGenerator(sizes={anchors.sizes}, aspect_ratios={anchors.aspect_ratios})")

    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    model.train()
    for step in range(args.steps):
        images, targets = batch(boxes, 2, args.min_size, generator)
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.3f} ({', '.join(f'{k} {v.item():.3f}' for k, v in losses.items())})")


if __name__ == "__main__":
    main()
