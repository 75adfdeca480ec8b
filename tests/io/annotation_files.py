"""One small detection dataset written in every annotation format the loaders read.

The image sizes and box sizes are the first images of the real coco128 statistics
(``shared/data/coco128.npz``); box corners are placed on a quarter-pixel lattice so
that every format (COCO ``x, y, w, h``; VOC, CSV and tensors ``x0, y0, x1, y1``)
holds exactly the same numbers. Images are real JPEG files of those sizes.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers import shared_npz, write_image


@dataclass
class Written:
    root: Path
    names: list[str]  # file names, in order
    sizes: list[tuple[int, int]]  # (width, height)
    boxes: list[np.ndarray]  # [m, 4] x0, y0, x1, y1 px per image
    coco_json: Path
    voc_root: Path  # holds VOCdevkit/VOC2012
    voc_folder: Path  # VOCdevkit/VOC2012
    deepforest_csv: Path
    retinanet_csv: Path
    image_dir: Path


def _quarter(value: float) -> float:
    return float(np.floor(value * 4) / 4)


def write_detection_files(root: Path, n_images: int = 8) -> Written:
    """Write the dataset under ``root``; image 2 has no boxes (its boxes are dropped)."""
    data = np.load(shared_npz("coco128"))
    shapes, wh, index = data["shapes"].astype(np.float64), data["wh"].astype(np.float64), data["image_index"]
    image_dir = root / "VOCdevkit" / "VOC2012" / "JPEGImages"
    names, sizes, boxes = [], [], []
    for i in range(n_images):
        width, height = (int(v) for v in shapes[i])
        rows = wh[index == i] * (width, height) if i != 2 else np.zeros((0, 2))
        corners = []
        for k, (w, h) in enumerate(rows):
            w, h = max(_quarter(w), 1.0), max(_quarter(h), 1.0)
            x0 = _quarter((width - w) * ((k * 37) % 11) / 10)  # spread over the image, inside it
            y0 = _quarter((height - h) * ((k * 53) % 7) / 6)
            corners.append((x0, y0, x0 + w, y0 + h))
        name = f"im{i:03d}"
        write_image(image_dir / f"{name}.jpg", width, height)
        names.append(f"{name}.jpg")
        sizes.append((width, height))
        boxes.append(np.asarray(corners, dtype=np.float64).reshape(-1, 4))

    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for i, (name, (width, height), corners) in enumerate(zip(names, sizes, boxes)):
        coco["images"].append({"id": 100 + i, "file_name": name, "width": width, "height": height})
        for x0, y0, x1, y1 in corners:
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": 100 + i, "category_id": 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
            })
    coco_json = root / "instances.json"
    coco_json.write_text(json.dumps(coco))

    voc_folder = root / "VOCdevkit" / "VOC2012"
    (voc_folder / "Annotations").mkdir(parents=True, exist_ok=True)
    (voc_folder / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for name, (width, height), corners in zip(names, sizes, boxes):
        objects = "".join(
            f"<object><name>thing</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for x0, y0, x1, y1 in corners
        )
        (voc_folder / "Annotations" / name.replace(".jpg", ".xml")).write_text(
            f"<annotation><filename>{name}</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{objects}</annotation>"
        )
    (voc_folder / "ImageSets" / "Main" / "train.txt").write_text("".join(n[:-4] + "\n" for n in names))

    deepforest_csv = image_dir / "annotations.csv"
    with open(deepforest_csv, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["image_path", "xmin", "ymin", "xmax", "ymax", "label"])
        for name, corners in zip(names, boxes):
            for x0, y0, x1, y1 in corners:
                writer.writerow([name, x0, y0, x1, y1, "Tree"])
            if not len(corners):
                writer.writerow([name, 0, 0, 0, 0, "Tree"])
    retinanet_csv = image_dir / "retinanet.csv"
    with open(retinanet_csv, "w", newline="") as file:
        writer = csv.writer(file)
        for name, corners in zip(names, boxes):
            for x0, y0, x1, y1 in corners:
                writer.writerow([name, x0, y0, x1, y1, "thing"])
            if not len(corners):
                writer.writerow([name, "", "", "", "", ""])
    return Written(
        root, names, sizes, boxes, coco_json, root, voc_folder, deepforest_csv, retinanet_csv, image_dir
    )
