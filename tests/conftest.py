"""Shared fixtures: tiny datasets with real image files, written by the tests themselves.

Only fixtures live here; plain helper functions are in ``helpers.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest
import torch

# Test modules share their toy models across the mirrored folders (test_constraints uses
# test_hook's Detect heads, test_heads_torchvision the toy generators of test_grid): every
# folder is importable by module name, whichever file pytest collects first.
_TESTS = Path(__file__).resolve().parent
for _folder in ("core", "grid", "io", "training", "cli"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.append(str(_TESTS / _folder))

from autoanchor.core.boxes import BoxSizes  # noqa: E402
from autoanchor.io.datasets import load_boxes  # noqa: E402
from helpers import DEVICES, reference_npz, write_image, write_yolo


@pytest.fixture
def image_writer() -> Callable[..., Path]:
    """``image_writer(path, width, height, *, orientation=None, fmt=None)`` writes a real image file."""
    return write_image


@pytest.fixture
def tiny_yolo_dataset(tmp_path: Path) -> Path:
    """A yolov5 dataset of 3 images (one EXIF-rotated) and its ``data.yaml``; returns the yaml path.

    Layout: ``tmp/ds/images/train/{a,b,c}.jpg``, ``tmp/ds/labels/train/{a,b,c}.txt``,
    ``tmp/ds/data.yaml`` with ``path: .`` and ``train: images/train``. Sizes (width, height)
    as read: a 64x48, b 48x64 (stored 64x48, EXIF orientation 6), c 80x60; 4 boxes in all.
    """
    root = tmp_path / "ds"
    labels = {
        "a": "0 0.5 0.5 0.25 0.5\n1 0.2 0.3 0.1 0.2\n",
        "b": "2 0.5 0.5 0.5 0.5\n",
        "c": "0 0.4 0.6 0.3 0.1\n",
    }
    sizes = {"a": (64, 48, None), "b": (64, 48, 6), "c": (80, 60, None)}
    for name, (width, height, orientation) in sizes.items():
        write_image(root / "images" / "train" / f"{name}.jpg", width, height, orientation=orientation)
        label = root / "labels" / "train" / f"{name}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(labels[name])
    data = root / "data.yaml"
    data.write_text("path: .\ntrain: images/train\nval: images/train\nnames: [a, b, c]\n")
    return data


@pytest.fixture
def yolo_root(tmp_path: Path) -> Path:
    """``helpers.YOLO_IMAGES`` written as a yolov5 dataset under ``tmp/ds`` (images/train, labels/train)."""
    root = tmp_path / "ds"
    write_yolo(root)
    return root


@pytest.fixture
def reference(tmp_path: Path) -> BoxSizes:
    """The numbers of ``yolo_root`` through the ``.npz`` route."""
    return load_boxes(reference_npz(tmp_path))


# Devices the tensor tests run on: the CPU always, a GPU where there is one.
@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(scope="module")
def one_cpu_thread():
    """Run small, loop-heavy searches on one CPU thread, as search_anchors does internally.

    Tensors of a few hundred boxes gain nothing from intra-op threads, and their barriers stall
    for seconds when another process holds a core of a 2-core machine. Restored afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

