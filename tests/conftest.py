"""Shared fixtures: tiny datasets with real image files, written by the tests themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import os

import pytest
import torch
from PIL import Image

# The real box statistics (coco128, VOC 2012) live beside the repository in shared/data.
SHARED_DATA = Path(os.environ.get("AUTOANCHOR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_npz(name: str) -> Path:
    """Path of a shared ``.npz``; missing data fails under CI and skips elsewhere."""
    path = SHARED_DATA / f"{name}.npz"
    if not path.is_file():
        message = f"{path} not found (set AUTOANCHOR_SHARED_DATA to the shared/data folder)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path

EXIF_ORIENTATION = 0x0112


def write_image(
    path: Path, width: int, height: int, *, orientation: Optional[int] = None, fmt: Optional[str] = None
) -> Path:
    """Write a real ``width x height`` image (JPEG, PNG, ... from the suffix) with an optional EXIF orientation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (width, height), (120, 80, 40))
    options = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        options["exif"] = exif.tobytes()
    image.save(path, fmt, **options)
    return path


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


# Devices the tensor tests run on: the CPU always, a GPU where there is one.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


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


def generator(seed: int, device="cpu") -> torch.Generator:
    """A seeded generator on ``device``."""
    return torch.Generator(device=device).manual_seed(seed)
