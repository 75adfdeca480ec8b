"""DeepForest trains with anchors fitted to its data: one callback, and the checkpoint brings them back.

DeepForest (``deepforest.main.deepforest``) is a Lightning module around a torchvision
RetinaNet (``self.model``). ``create_trainer(callbacks=[AutoAnchor()])`` adds autoanchor's
check before the first epoch: it reads the training CSV through the module's
``train_dataloader()`` (its ``annotations`` frame and the image headers; no image is
decoded), measures the RetinaNet's anchors at its own resize and matcher, and replaces
them if a fit matches more boxes. The fitted anchors are in the checkpoint; a model
built the usual way gets them back with ``restore_anchors``.

By default the example trains on DeepForest's bundled sample (``OSBS_029.csv``, one
400 x 400 image with 61 trees) for ``--steps`` steps on the CPU. DeepForest downloads
torchvision's COCO RetinaNet weights the first time it builds a model.

Needs ``pip install deepforest autoanchor[lightning]``. Run:
    python examples/deepforest_hook.py [--csv train.csv] [--steps 1] [--threshold 0.7] [--out folder]
"""

from __future__ import annotations

import argparse
import logging
import os

from deepforest import get_data, main

from autoanchor.lightning import AutoAnchor
from autoanchor import restore_anchors
from autoanchor.training.heads.torchvision import TorchvisionAnchors


def build(csv_file: str, out: str) -> main.deepforest:
    """A DeepForest tree detector set up to train on ``csv_file`` (image paths relative to its folder)."""
    return main.deepforest(config_args={
        "model": {"name": None},  # a RetinaNet built from torchvision's COCO weights, not a hub download
        "num_classes": 1, "label_dict": {"Tree": 0},
        "train": {"csv_file": csv_file, "root_dir": os.path.dirname(csv_file)},
        "validation": {"csv_file": None},
        "workers": 0, "batch_size": 1, "accelerator": "cpu", "devices": 1, "log_root": out,
    })


def run(
    csv_file: str, *, steps: int, out: str, threshold: float | None = None, bpr_threshold: float | None = None
) -> tuple[str, AutoAnchor]:
    """Train ``steps`` steps with the callback and save a checkpoint; return its path and the callback.

    ``threshold``: the matcher's foreground IoU to fit for; ``bpr_threshold``: refit when fewer boxes than
    this share match (default: the torchvision family's 0.5)."""
    model = build(csv_file, out)
    options = {} if threshold is None else {"family": TorchvisionAnchors(threshold=threshold)}
    callback = AutoAnchor(bpr_threshold=bpr_threshold, **options)
    model.create_trainer(callbacks=[callback], max_steps=steps, logger=False, enable_progress_bar=False)
    model.trainer.fit(model)
    checkpoint = os.path.join(out, "deepforest-autoanchor.ckpt")
    model.trainer.save_checkpoint(checkpoint)
    return checkpoint, callback


def reload(csv_file: str, checkpoint: str, out: str) -> main.deepforest:
    """A model built the usual way, with the checkpoint's weights and fitted anchors."""
    model = build(csv_file, out)
    state = restore_anchors(model, checkpoint, weights_only=False)  # a Lightning checkpoint holds its config too
    model.load_state_dict(state)
    return model


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", default=None, help="a DeepForest training CSV (default: the bundled OSBS_029.csv)")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=None,
                        help="fit for this foreground IoU instead of the model's matcher (0.5)")
    parser.add_argument("--out", default="deepforest-autoanchor")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    csv_file = args.csv or get_data("OSBS_029.csv")
    os.makedirs(args.out, exist_ok=True)
    checkpoint, callback = run(csv_file, steps=args.steps, out=args.out, threshold=args.threshold)
    print(callback.report)
    model = reload(csv_file, checkpoint, args.out)
    print("reloaded with anchor sizes", model.model.anchor_generator.sizes)


if __name__ == "__main__":
    main_()
