"""A tiny YOLO-style detector that checks its anchors with autoanchor before training.

The model follows yolov5's layout (``model.model[-1]`` is the detection head, with
an ``anchors`` buffer in stride units and a ``stride`` buffer), so
``check_anchors(dataset, model)`` finds the head by itself. It starts from yolov5's
default P5 anchors, which fit coco128 poorly at the small training size used here
(256 px), so the check searches new anchors and writes them into the head. Then a
few training steps run on random images with a toy loss, on the CPU, in seconds.

Run:
    python examples/train_hook.py [--steps 20] [--gen 1000] [--imgsz 256]
"""

from __future__ import annotations

import argparse
import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoanchor import check_anchors
from autoanchor.io.configs import anchors_by_name, strides_by_name
from autoanchor.io.datasets import load_boxes
from autoanchor.core.metrics import ratio_metric

# yolov5's default P5 anchors in pixels, [3 levels, 3 anchors, 2], for strides 8, 16, 32.
P5_ANCHORS = anchors_by_name("yolov5-p5")
STRIDES = tuple(strides_by_name("yolov5-p5"))
ANCHOR_T = 4.0  # yolov5's hyp["anchor_t"]: largest box/anchor side ratio that counts as a match


def conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU())


class Detect(nn.Module):
    """A YOLO head: per level, ``na`` anchors × (x, y, w, h, objectness, classes)."""

    def __init__(self, anchors_px: Tensor, strides: tuple[int, ...], nc: int, channels: tuple[int, ...]):
        super().__init__()
        self.nl, self.na, self.no = anchors_px.shape[0], anchors_px.shape[1], nc + 5
        stride = torch.tensor(strides, dtype=torch.float32)
        self.register_buffer("stride", stride)
        # Stored in stride units, as yolov5 does; anchors × stride are pixels.
        self.register_buffer("anchors", anchors_px.float() / stride.view(-1, 1, 1))
        self.m = nn.ModuleList(nn.Conv2d(c, self.na * self.no, 1) for c in channels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """Raw outputs per level: ``[batch, na, ny, nx, no]``."""
        out = []
        for conv_i, x in zip(self.m, features):
            y = conv_i(x)
            b, _, ny, nx = y.shape
            out.append(y.view(b, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2))
        return out


class TinyYolo(nn.Module):
    """Backbone of strided convolutions feeding P3/8, P4/16 and P5/32 to the head."""

    def __init__(self, nc: int = 80) -> None:
        super().__init__()
        self.model = nn.Sequential(
            conv(3, 16, 2),  # /2
            conv(16, 32, 2),  # /4
            conv(32, 48, 2),  # /8  -> P3
            conv(48, 64, 2),  # /16 -> P4
            conv(64, 96, 2),  # /32 -> P5
            Detect(P5_ANCHORS, STRIDES, nc, (48, 64, 96)),
        )

    def forward(self, images: Tensor) -> list[Tensor]:
        x, features = images, []
        for i, layer in enumerate(self.model[:-1]):
            x = layer(x)
            if i >= 2:
                features.append(x)
        return self.model[-1](features)


def toy_targets(sizes_px: Tensor, batch: int, imgsz: int, generator: torch.Generator) -> Tensor:
    """Random boxes ``[n, 4]`` (image, cx, cy, w, h in pixels) with real coco128 sizes."""
    per_image = 4
    rows = torch.randint(len(sizes_px), (batch * per_image,), generator=generator)
    wh = sizes_px[rows]
    centre = torch.rand(batch * per_image, 2, generator=generator) * (imgsz - 1)
    image = torch.arange(batch).repeat_interleave(per_image).float()
    return torch.cat([image[:, None], centre, wh], 1)


def toy_loss(outputs: list[Tensor], targets: Tensor, head: Detect) -> Tensor:
    """Objectness everywhere plus box size and offset where a target matches an anchor.

    A target is assigned, on every level, to the anchors it matches under yolov5's
    ratio rule, which is why anchors that fit the data matter: a target no anchor
    matches is never learnt.
    """
    loss = outputs[0].new_zeros(())
    for level, out in enumerate(outputs):
        stride = float(head.stride[level])
        anchors_px = head.anchors[level] * head.stride[level]  # [na,2]
        objectness = torch.zeros_like(out[..., 4])
        match = ratio_metric(targets[:, 3:5], anchors_px) > 1 / ANCHOR_T  # [n,na]
        target_index, anchor_index = match.nonzero(as_tuple=True)
        if len(target_index):
            t = targets[target_index]
            image = t[:, 0].long()
            gx, gy = (t[:, 1] / stride).long(), (t[:, 2] / stride).long()
            pred = out[image, anchor_index, gy, gx]  # [m,no]
            pred_wh = (pred[:, 2:4].sigmoid() * 2) ** 2 * anchors_px[anchor_index]
            loss = loss + (pred_wh / t[:, 3:5]).log().pow(2).mean()
            offset = t[:, 1:3] / stride - torch.stack([gx, gy], 1)
            loss = loss + F.binary_cross_entropy_with_logits(pred[:, 0:2], offset)
            objectness[image, anchor_index, gy, gx] = 1.0
        loss = loss + F.binary_cross_entropy_with_logits(out[..., 4], objectness)
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps")
    parser.add_argument("--gen", type=int, default=1000, help="generations of the anchor search")
    parser.add_argument("--imgsz", type=int, default=256, help="training image size in pixels")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    torch.manual_seed(0)  # the example's own weights and images; autoanchor never uses the global RNG
    model = TinyYolo()

    # Before the first epoch, exactly where yolov5's train.py calls its own AutoAnchor.
    # dataset=None is the built-in coco128 statistics; pass your dataset here.
    # Its one-line report is logged (or, with no logging set up at all, written to stderr).
    report = check_anchors(None, model, thr=ANCHOR_T, imgsz=args.imgsz, gen=args.gen)
    if report.replaced:
        print(f"training with the new anchors (pixels): {report.anchors_after.round().int().tolist()}")

    sizes_px = load_boxes(None).pixel_wh(args.imgsz)  # coco128 box sizes at this image size
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for step in range(1, args.steps + 1):
        images = torch.rand(args.batch, 3, args.imgsz, args.imgsz, generator=generator)
        targets = toy_targets(sizes_px, args.batch, args.imgsz, generator)
        loss = toy_loss(model(images), targets, model.model[-1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step} loss {loss.item():.4f}")
    print(f"final loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
