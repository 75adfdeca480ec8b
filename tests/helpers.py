"""Shared test helpers (plain functions and data; the fixtures are in conftest.py).

Test modules import them with ``from helpers import ...`` (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from PIL import Image

from autoanchor.core.boxes import BoxSizes

# The real box statistics (coco128, VOC 2012) live beside the repository in shared/data.
SHARED_DATA = Path(os.environ.get("AUTOANCHOR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

EXIF_ORIENTATION = 0x0112

# Devices the tensor tests run on: the CPU always, a GPU where there is one.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def shared_npz(name: str) -> Path:
    """Path of a shared ``.npz``; missing data fails under CI and skips elsewhere."""
    path = SHARED_DATA / f"{name}.npz"
    if not path.is_file():
        message = f"{path} not found (set AUTOANCHOR_SHARED_DATA to the shared/data folder)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def generator(seed: int, device="cpu") -> torch.Generator:
    """A seeded generator on ``device``."""
    return torch.Generator(device=device).manual_seed(seed)


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


# ----------------------------------------------------------------------------------------
# Small datasets in every format, and their numbers through the .npz route

# name, stored (width, height), suffix, EXIF orientation, label rows (None: no label file)
YOLO_IMAGES = [
    ("img0", (64, 48), ".jpg", None, [(0, 0.5, 0.5, 0.25, 0.5), (1, 0.2, 0.3, 0.125, 0.2)]),
    ("img1", (64, 48), ".jpg", 6, [(2, 0.5, 0.5, 0.5, 0.75)]),  # read as 48x64
    ("img2", (80, 60), ".png", None,
     [(0, 0.4, 0.6, 0.3, 0.1), (3, 0.7, 0.7, 0.2, 0.4), (1, 0.1, 0.1, 0.05, 0.05)]),
    ("img3", (50, 40), ".jpeg", None, None),  # no label file: an image without boxes
    ("img4", (40, 32), ".png", 8, []),  # empty label file; read as 32x40
]


def displayed(size, orientation):
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def write_npz(path: Path, shapes, wh, image_index, **extra) -> Path:
    np.savez(
        path,
        shapes=np.asarray(shapes, dtype=np.float64).reshape(-1, 2),
        wh=np.asarray(wh, dtype=np.float64).reshape(-1, 2),
        image_index=np.asarray(image_index, dtype=np.int64),
        **extra,
    )
    return path


def write_labels(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(repr(v) for v in row) + "\n" for row in rows))


def write_yolo(root: Path, images=YOLO_IMAGES, folder_of=lambda i: "train") -> list[Path]:
    """Write images under root/images/<folder>/ and labels by yolov5's rule; return the image paths."""
    paths = []
    for i, (name, size, suffix, orientation, rows) in enumerate(images):
        image = write_image(root / "images" / folder_of(i) / f"{name}{suffix}", *size, orientation=orientation)
        if rows is not None:
            write_labels(root / "labels" / folder_of(i) / f"{name}.txt", rows)
        paths.append(image)
    return paths


def reference_npz(tmp_path: Path, images=YOLO_IMAGES) -> Path:
    """The same numbers as write_yolo, through the .npz route."""
    shapes, wh, index = [], [], []
    for i, (_, size, _, orientation, rows) in enumerate(images):
        shapes.append(displayed(size, orientation))
        for row in rows or []:
            wh.append(row[3:5])
            index.append(i)
    return write_npz(tmp_path / "reference.npz", shapes, wh, index)


def assert_same_boxes(actual: BoxSizes, expected: BoxSizes) -> None:
    np.testing.assert_array_equal(actual.shapes, expected.shapes)
    np.testing.assert_array_equal(actual.wh, expected.wh)
    np.testing.assert_array_equal(actual.image_index, expected.image_index)


def write_coco(path: Path, images, annotations) -> Path:
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": annotations, "categories": []}))
    return path


COCO_IMAGES = [
    {"id": 7, "file_name": "a.jpg", "width": 640, "height": 480},
    {"id": 3, "file_name": "b.jpg", "width": 500, "height": 375},
    {"id": 11, "file_name": "c.jpg", "width": 300, "height": 200},  # no annotations
]
COCO_ANNOTATIONS = [  # not grouped by image, as in real COCO files
    {"id": 1, "image_id": 3, "bbox": [10.0, 20.0, 100.0, 50.5], "iscrowd": 0},
    {"id": 2, "image_id": 7, "bbox": [0, 0, 64, 48], "iscrowd": 0},
    {"id": 3, "image_id": 3, "bbox": [5.5, 6.5, 20.25, 300.0], "iscrowd": 0},
    {"id": 4, "image_id": 7, "bbox": [1, 2, 320, 240], "iscrowd": 1},
    {"id": 5, "image_id": 7, "bbox": [100, 100, 33.3, 17.7]},  # no iscrowd key: not crowd
]


def voc_xml(width, height, objects, *, size=True) -> str:
    body = "".join(
        f"<object><name>{name}</name><difficult>{int(difficult)}</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, difficult, (x0, y0, x1, y1) in objects
    )
    size_xml = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>" if size else ""
    return f"<annotation><folder>VOC2012</folder><filename>x.jpg</filename>{size_xml}{body}</annotation>"


VOC_FILES = {
    "000001.xml": (353, 500, [("dog", False, (48, 240, 195, 371)), ("person", True, (8, 12, 352, 498))]),
    "000002.xml": (500, 375, [("train", False, (139.5, 200, 207.25, 301))]),
    "000003.xml": (334, 500, []),  # no objects: still an image
}


def write_voc(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (width, height, objects) in VOC_FILES.items():
        (folder / name).write_text(voc_xml(width, height, objects))
    return folder


def fail_after_prepare(monkeypatch, family_name: str = "torchvision") -> None:
    """Make a head family raise ``RuntimeError("injected after prepare")`` right after it has
    prepared new anchors, i.e. in the middle of writing them (undone by ``monkeypatch``)."""
    from autoanchor.training.heads import get_family

    family = type(get_family(family_name))
    original = family.prepare

    def failing(self, state, params):
        original(self, state, params)
        raise RuntimeError("injected after prepare")

    monkeypatch.setattr(family, "prepare", failing)
