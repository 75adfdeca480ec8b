"""``fit`` and ``check`` with ``--generator ssd300|ssdlite320|efficientdet-d0``: centred-grid presets.

The presets are numbers copied from the libraries' model builders (neither torchvision
nor effdet is imported or needed):

* ``ssd300``: ``ssd300_vgg16``: ``DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]],
  scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], steps=[8, 16, 32, 64, 100, 300])``,
  input 300 x 300 (stretched), feature maps 38, 19, 10, 5, 3, 1;
* ``ssdlite320``: ``ssdlite320_mobilenet_v3_large``: ``DefaultBoxGenerator([[2, 3]] * 6,
  min_ratio=0.2, max_ratio=0.95)``, input 320 x 320, feature maps 20, 10, 5, 3, 2, 1;
* ``efficientdet-d0``: effdet's ``efficientdet_d0``: levels 3-7, ``num_scales`` 3,
  ``aspect_ratios`` ``[(1, 1), (1.4, 0.7), (0.7, 1.4)]``, ``anchor_scale`` 4, input 512
  (letterboxed).

All match at IoU 0.5 with each box's best anchor forced. ``fit`` prints the fitted
generator's constructor arguments (SSD), or effdet's config keys and zylo117's
``project.yml`` lines (EfficientDet).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..core.defaults import DEFAULT_BPR_THRESHOLD
from .options import EXIT_BELOW_THRESHOLD, EXIT_OK, CommandLineError, keep_threshold

__all__ = ["CENTRED_PRESETS", "run_centred"]

CENTRED_PRESETS: dict[str, dict[str, Any]] = {
    "ssd300": {
        "model": "ssd300_vgg16",
        "aspect_ratios": ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
        "scales": (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05),
        "steps": (8, 16, 32, 64, 100, 300),
        "grid_sizes": ((38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)),
        "image_size": (300, 300),
    },
    "ssdlite320": {
        "model": "ssdlite320_mobilenet_v3_large",
        "aspect_ratios": ((2, 3),) * 6,
        "min_ratio": 0.2,
        "max_ratio": 0.95,
        "grid_sizes": ((20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)),
        "image_size": (320, 320),
    },
    "efficientdet-d0": {
        "model": "efficientdet_d0 (effdet)",
        "levels": (3, 7),
        "num_scales": 3,
        "aspect_ratios": ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4)),
        "anchor_scale": 4.0,
        "image_size": (512, 512),
    },
}
"""The presets' numbers, as the libraries' builders set them."""

THRESHOLD = 0.5
_GRID_OPTIONS = ("sizes", "ratios", "strides", "min_size", "max_size", "iou")


def _stats_text(stats: Any) -> str:
    return (
        f"matched {stats.matched:.4f} at IoU >= {stats.threshold:g}, mean best IoU {stats.mean_iou:.4f}, "
        f"positives/box {stats.positives:.2f} (forced best match included)"
    )


def _output(preset: dict[str, Any], anchors: Any) -> str:
    from ..grid.default_boxes import DefaultBoxes

    if isinstance(anchors, DefaultBoxes):
        return "# torchvision\n" + anchors.constructor()
    config = anchors.effdet_config()
    octaves = ", ".join(f"{o:g}" for o in anchors.octave_scales)
    lines = [
        "# effdet config",
        f"anchor_scale = {config['anchor_scale']:g}",
        f"aspect_ratios = {config['aspect_ratios']}",
    ]
    if config["num_scales"] is not None:
        lines.append(f"num_scales = {config['num_scales']}")
    else:
        lines.append(
            f"# octave scales 2 ** ({octaves}): effdet's config holds only num_scales (2 ** (i / n)); "
            "set them on the bench's Anchors (autoanchor's check_anchors does)"
        )
    lines += ["", "# zylo117 Yet-Another-EfficientDet-Pytorch project.yml (anchor_scale 4 folded in)", anchors.zylo117_yaml()]
    return "\n".join(lines)


def run_centred(args: argparse.Namespace, command: str) -> int:
    """``fit`` or ``check`` with a centred-grid ``--generator`` (the YOLO options already
    refused by the caller, :func:`autoanchor.cli.grid.run_grid`); returns the exit code."""
    import torch

    from ..grid.centred import image_samples, match_stats_centred
    from ..grid.default_boxes import DefaultBoxes, fit_default_boxes
    from ..grid.effdet_anchors import EffdetAnchors, fit_effdet_anchors, letterbox
    from ..io.datasets import load_boxes
    from .common import emit

    given = [f"--{name.replace('_', '-')}" for name in _GRID_OPTIONS if getattr(args, name, None) is not None]
    if given:
        raise CommandLineError(f"{', '.join(given)} apply to torchvision AnchorGenerator presets, not to --generator {args.generator}")
    if args.format != "text":
        raise CommandLineError(f"--generator {args.generator} writes text only")
    preset = CENTRED_PRESETS[args.generator]
    sizes = load_boxes(args.data, progress=not args.quiet, cache=args.cache)
    shapes = torch.as_tensor(sizes.shapes, dtype=torch.float64)
    index = torch.as_tensor(sizes.image_index, dtype=torch.long)
    height, width = preset["image_size"]
    if "levels" in preset:
        start: Any = EffdetAnchors.from_config(*preset["levels"], preset["num_scales"], preset["aspect_ratios"],
                                               preset["anchor_scale"], preset["image_size"])
        _factor, content = letterbox(shapes, preset["image_size"])
        scale, extent = content[index], content[index]
    else:
        if "scales" in preset:
            start = DefaultBoxes(preset["scales"], preset["aspect_ratios"], preset["steps"])
        else:
            start = DefaultBoxes.from_ratios(preset["aspect_ratios"], min_ratio=preset["min_ratio"], max_ratio=preset["max_ratio"])
        scale = torch.tensor([float(width), float(height)], dtype=torch.float64).expand(index.shape[0], 2)
        extent = scale
    wh = torch.as_tensor(sizes.wh, dtype=torch.float64) * scale
    xy = None if sizes.xy is None else torch.as_tensor(sizes.xy, dtype=torch.float64) * scale
    usable = (wh > 0).all(dim=1)
    if not bool(usable.any()):
        raise CommandLineError(f"no box of positive size in {args.data or 'the built-in coco128'}")
    wh, extent, xy = wh[usable], extent[usable], None if xy is None else xy[usable]

    def levels(anchors: Any) -> list:
        if isinstance(anchors, DefaultBoxes):
            return anchors.levels(list(preset["grid_sizes"]), preset["image_size"])
        return anchors.levels()

    generator = torch.Generator().manual_seed(args.seed)
    samples = image_samples(wh, xy, extent, positions=8, max_boxes=50000, generator=generator)
    before = match_stats_centred(samples, levels(start), threshold=THRESHOLD)
    name = "built-in coco128" if args.data is None else str(args.data)
    where = "their real positions" if xy is not None else "lattice positions in each image (no box centres)"
    header = f"{name}: {wh.shape[0]} boxes at {where}, {preset['model']} input {width}x{height}"
    if command == "check":
        threshold = keep_threshold(args, DEFAULT_BPR_THRESHOLD)
        fits = before.matched > threshold
        verdict = (
            f"matched above {threshold:g}: these anchors fit the data" if fits
            else f"matched not above {threshold:g}: consider 'autoanchor fit --generator {args.generator}'"
        )
        emit(f"{header}\n  {_stats_text(before)}\n{verdict}\n", None)
        return EXIT_OK if fits else EXIT_BELOW_THRESHOLD
    if isinstance(start, DefaultBoxes):
        result = fit_default_boxes(wh, xy, start, list(preset["grid_sizes"]), preset["image_size"], threshold=THRESHOLD,
                                   generator=torch.Generator().manual_seed(args.seed))
    else:
        result = fit_effdet_anchors(wh, xy, extent, start, threshold=THRESHOLD,
                                    generator=torch.Generator().manual_seed(args.seed))
    fitted = result.anchors
    after = match_stats_centred(samples, levels(fitted), threshold=THRESHOLD) if fitted != start else before
    if after.matched <= before.matched:  # replace only when the share matched rises, as the hook does
        fitted, after = start, before
    verdict = "fitted" if fitted != start else "nothing matched more boxes: the start is kept"
    text = (
        f"{header}, seed {args.seed}\n  start:  {_stats_text(before)}\n  fitted: {_stats_text(after)} ({verdict})\n\n"
        f"{_output(preset, fitted)}\n"
    )
    emit(text, args.out)
    return EXIT_OK
