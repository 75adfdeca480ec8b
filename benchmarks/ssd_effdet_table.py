"""Table for SSD300, SSDlite320 and EfficientDet-D0: defaults and fitted, in place, by their own matching rule.

For each dataset and model, ``check_anchors(dataset, model)`` is run on the real model
(torchvision ``ssd300_vgg16`` / ``ssdlite320_mobilenet_v3_large`` with
``weights=None, weights_backbone=None``; effdet ``efficientdet_d0`` train bench with
``pretrained=False``): nothing is downloaded. Columns: share of boxes matched (best
anchor at IoU >= 0.5 at the box's position), mean best IoU, positive anchors per box
(the forced best match included), and the seconds of the whole check. Since these
statistics carry no box positions, each box is counted at 8 lattice positions spread
over the places its image allows.

For every model and dataset the script also checks:

* the fitted levels are in scale order (SSD scales increasing; effdet octave scales
  increasing, levels a factor 2 apart);
* the figures of the defaults equal the library's own count (torchvision ``box_iou`` +
  ``SSDMatcher``, effdet ``IouSimilarity`` + ``ArgMaxMatcher``) within 0.5 %, on a seeded
  subset of 400 rows, each box alone in its image;
* a training step runs on the model after the replacement.

``efficientdet_d0_fixed_octaves`` is D0 fitted with ``EffdetFamily(fit_octaves=False)``:
effdet's octave scales ``2 ** (i / 3)`` kept, so that its config describes the anchors.

    python benchmarks/ssd_effdet_table.py [--datasets coco128,widerface_val] [--out FILE]

WIDER FACE is research-only: read from the shared data, never copied here.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import torch  # noqa: E402

from datasets import shared_data_dir  # noqa: E402

from autoanchor import check_anchors  # noqa: E402
from autoanchor.grid.centred import image_samples, match_stats_centred  # noqa: E402
from autoanchor.io.datasets import load_boxes  # noqa: E402
from autoanchor.training.heads import find_head  # noqa: E402
from autoanchor.training.heads.effdet import EffdetFamily  # noqa: E402

LIBRARY_ROWS = 400


def build(name: str):
    if name.startswith("efficientdet_d0"):
        from effdet import create_model

        return create_model("efficientdet_d0", bench_task="train", pretrained=False, pretrained_backbone=False,
                            bench_labeler=True)
    from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

    builder = {"ssd300_vgg16": ssd300_vgg16, "ssdlite320_mobilenet_v3_large": ssdlite320_mobilenet_v3_large}[name]
    return builder(weights=None, weights_backbone=None)


def library_check(name: str, model, boxes) -> float:
    """Largest relative gap between our figures and the library's own count, on a subset."""
    family, head, where = find_head(model)
    state = family.read(head, where)
    data = family.data(state, boxes, imgsz=640, seed=0, device=None, rank=0, world_size=1)
    pick = torch.randperm(data.wh.shape[0], generator=torch.Generator().manual_seed(0))[: LIBRARY_ROWS // 2]
    samples = image_samples(data.wh[pick], None, data.extent[pick], positions=2)
    if name.startswith("efficientdet_d0"):
        from effdet.object_detection import ArgMaxMatcher, BoxList, IouSimilarity

        levels = state.extra.anchors.levels()
        anchors = BoxList(state.extra.anchors.boxes())
        matcher = ArgMaxMatcher(0.5, unmatched_threshold=0.5, negatives_lower_than_unmatched=True,
                                force_match_for_each_row=True)
        similarity = IouSimilarity()

        def quality(corners):
            return similarity.compare(BoxList(corners[:, [1, 0, 3, 2]]), anchors)

        def positives(q):
            return int((matcher.match(q).match_results == 0).sum())
    else:
        from torchvision.models.detection._utils import SSDMatcher
        from torchvision.ops import box_iou

        extra = state.extra
        levels = extra.boxes.levels(extra.grid_sizes, extra.image_size)
        every = extra.boxes.boxes(extra.grid_sizes, extra.image_size)
        matcher = SSDMatcher(0.5)

        def quality(corners):
            return box_iou(corners, every)

        def positives(q):
            return int((matcher(q) == 0).sum())

    mine = match_stats_centred(samples, levels, threshold=0.5)
    corners = torch.cat([samples.xy - samples.wh / 2, samples.xy + samples.wh / 2], dim=1).float()
    matched = mean = count = 0.0
    for row in range(corners.shape[0]):
        q = quality(corners[row : row + 1])
        matched += float(q.max()) >= 0.5
        mean += float(q.max())
        count += positives(q)
    n = corners.shape[0]
    theirs = (matched / n, mean / n, count / n)
    ours = (mine.matched, mine.mean_iou, mine.positives)
    return max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(ours, theirs))


def in_scale_order(name: str, model) -> bool:
    if name.startswith("efficientdet_d0"):
        anchors = model.anchors
        octaves = [entry[1] for entry in anchors.config[anchors.min_level][:: len(anchors.aspect_ratios)]]
        return all(b > a for a, b in zip(octaves, octaves[1:]))
    generator = model.anchor_generator
    smallest = [float(p.clamp(0, 1).prod(dim=1).sqrt().min()) for p in generator._wh_pairs]
    return all(b > a for a, b in zip(generator.scales, generator.scales[1:])) and all(
        b > a for a, b in zip(smallest, smallest[1:])
    )


def training_step(name: str, model) -> float:
    model.train()
    if name.startswith("efficientdet_d0"):
        images = torch.rand(2, 3, 512, 512, generator=torch.Generator().manual_seed(0))
        target = {"bbox": torch.tensor([[[30.0, 20.0, 150.0, 120.0]], [[60.0, 50.0, 200.0, 240.0]]]),
                  "cls": torch.tensor([[1.0], [2.0]])}
        loss = model(images, target)["loss"]
    else:
        images = [torch.rand(3, 180, 240, generator=torch.Generator().manual_seed(i)) for i in range(2)]
        targets = [{"boxes": torch.tensor([[20.0, 30.0, 120.0, 150.0]]), "labels": torch.tensor([1])}] * 2
        loss = sum(model(images, targets).values())
    loss.backward()
    return float(loss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="coco128,widerface_val")
    parser.add_argument(
        "--models",
        default="ssd300_vgg16,ssdlite320_mobilenet_v3_large,efficientdet_d0,efficientdet_d0_fixed_octaves",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores (shared), torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}",
        "",
        "| data | model | anchors | matched | mean best IoU | positives/box | seconds | scale order | "
        "vs library | training step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset in args.datasets.split(","):
        boxes = load_boxes(str(shared_data_dir() / f"{dataset}.npz"), verbose=False)
        for name in args.models.split(","):
            model = build(name)
            gap = library_check(name, model, boxes)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                family = EffdetFamily(fit_octaves=False) if name == "efficientdet_d0_fixed_octaves" else None
                report = check_anchors(boxes, model, verbose=False, family=family)
            seconds = time.perf_counter() - start
            family, head, where = find_head(model)
            fitted = family.describe_state(family.read(head, where), family.read(head, where).params)
            before, after = report.figures_before, report.figures_after
            order = "yes" if in_scale_order(name, model) else "NO"
            loss = training_step(name, model)
            lines.append(
                f"| {dataset} | {name} | defaults | {before['matched']:.2%} | {before['mean IoU']:.3f} | "
                f"{before['positives']:.2f} | | | {gap:.3%} | |"
            )
            lines.append(
                f"| {dataset} | {name} | fitted{' (replaced)' if report.replaced else ' (kept)'} | "
                f"{after['matched']:.2%} | {after['mean IoU']:.3f} | {after['positives']:.2f} | {seconds:.1f} | "
                f"{order} | | loss {loss:.2f} |"
            )
            lines.append(f"<!-- {dataset} {name}: {fitted} -->")
            print(lines[-3], lines[-2], lines[-1], sep="\n", flush=True)
    text = "\n".join(lines)
    print()
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
