"""The COCO instances json: ``images[]`` sizes and ``annotations[]`` ``bbox`` ``[x, y, w, h]`` px.

Images without annotations count as images. ``iscrowd`` annotations are excluded unless
``include_crowd``. Boxes partly outside their image are clipped to it, boxes entirely
outside are skipped (:func:`~.summary.clip_to_image`); both are named by annotation id.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...core.validate import is_number
from .registry import Request, register_format
from .torch_datasets import register_annotation_reader
from .summary import Collector, Loaded, clip_to_image, progress
from .cache import cache_file_for

__all__: list[str] = []


def _positive_number(value: Any) -> float | None:
    if not is_number(value):
        return None
    value = float(value)
    return value if math.isfinite(value) and value > 0 else None


def _read_images(collector: Collector, path: Path, images: list[Any]) -> tuple[dict[Any, int], set[Any]]:
    """Keep every image with a usable id and size; return id -> row and the ids skipped."""
    rows: dict[Any, int] = {}
    skipped_ids: set[Any] = set()
    for position, image in enumerate(images):
        image_id = image.get("id") if isinstance(image, dict) else None
        name = f"{path} image {position}"
        if isinstance(image, dict):
            name = f"{path} image id {image_id!r} ({image.get('file_name', '?')})"
        if image_id is None or isinstance(image_id, (dict, list)):
            collector.skip_image(name, "no usable 'id'")
            continue
        if image_id in rows or image_id in skipped_ids:
            collector.skip_image(name, "duplicate image id")
            continue
        width, height = _positive_number(image.get("width")), _positive_number(image.get("height"))
        if width is None or height is None:
            skipped_ids.add(image_id)
            collector.skip_image(name, f"invalid size {image.get('width')!r}x{image.get('height')!r}")
            continue
        rows[image_id] = collector.add_image(str(image.get("file_name", image_id)), width, height)
    return rows, skipped_ids


def _parse_coco(path: Path, *, include_crowd: bool, show_progress: bool) -> Loaded:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read the COCO json {path}: {error}") from error
    return parse_coco_data(data, path, include_crowd=include_crowd, show_progress=show_progress)


def parse_coco_data(data: Any, path: Any, *, include_crowd: bool, show_progress: bool) -> Loaded:
    """Read a parsed COCO instances dict (``images``, ``annotations``); ``path`` names it in messages."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path} has no 'images' list; expected a COCO instances json")
    if not data["images"]:
        raise ValueError(f"{path} lists no images")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"'annotations' in {path} must be a list, got {type(annotations).__name__}")

    collector = Collector()
    rows, skipped_ids = _read_images(collector, path, data["images"])
    corners, sizes, index, where = [], [], [], []
    orphans, crowd, orphans_of_skipped = 0, 0, 0
    first_orphan = None
    bar = progress(annotations, total=len(annotations), desc="Reading annotations", unit="boxes", enabled=show_progress)
    for annotation in bar:
        if not isinstance(annotation, dict):
            collector.skip_boxes(f"{path}", 1, f"annotation {annotation!r} is not an object")
            continue
        image_id = annotation.get("image_id")
        hashable = not isinstance(image_id, (dict, list))
        row = rows.get(image_id) if hashable else None
        if row is None:
            if hashable and image_id in skipped_ids:
                orphans_of_skipped += 1
            else:
                orphans += 1
                first_orphan = first_orphan if first_orphan is not None else image_id
            continue
        if annotation.get("iscrowd", 0) and not include_crowd:
            crowd += 1
            continue
        bbox = annotation.get("bbox")
        name = f"{path} annotation id {annotation.get('id')!r} (image {collector.names[row]})"
        if not isinstance(bbox, list) or len(bbox) != 4:
            collector.skip_boxes(name, 1, f"bbox {bbox!r} is not [x, y, w, h]")
            continue
        try:
            x, y, box_w, box_h = (float(value) for value in bbox)
        except (TypeError, ValueError):
            collector.skip_boxes(name, 1, f"bbox {bbox!r} is not numbers")
            continue
        if not all(math.isfinite(v) for v in (x, y, box_w, box_h)) or box_w <= 0 or box_h <= 0:
            collector.skip_boxes(name, 1, f"zero-size or invalid box {bbox!r}")
            continue
        corners.append((x, y, x + box_w, y + box_h))
        sizes.append((box_w, box_h))
        index.append(row)
        where.append(name)
    if orphans:
        reason = f"annotations refer to image ids not in 'images' (e.g. {first_orphan!r})"
        collector.skip_boxes(str(path), orphans, reason)
    collector.skip_boxes(str(path), orphans_of_skipped, None)  # their images are already named
    collector.exclude_boxes(crowd)
    corners_px = np.asarray(corners, dtype=np.float64).reshape(-1, 4)
    given = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    _keep_inside(collector, corners_px, given, np.asarray(index, dtype=np.int64), where)
    return collector.result()


def _keep_inside(
    collector: Collector, corners: np.ndarray, sizes: np.ndarray, index: np.ndarray, where: list[str]
) -> None:
    """Clip boxes ``corners [m, 4]`` px (``sizes [m, 2]`` px as given) of images ``index [m]`` and keep them."""
    if not len(corners):
        return
    shapes = np.asarray([collector.shape(row) for row in range(len(collector.names))], dtype=np.float64)
    width, height = shapes[index, 0], shapes[index, 1]
    # the json's own w, h for boxes inside their image: (x + w) - x may round differently
    kept, clipped, wh, xy = clip_to_image(corners, width, height, sizes=sizes)
    for j in np.flatnonzero(~kept):
        reason = f"box x0, y0, x1, y1 = {corners[j].tolist()} lies outside the image {width[j]:g}x{height[j]:g}"
        collector.skip_boxes(where[j], 1, reason)
    for j in np.flatnonzero(clipped):
        collector.clip_boxes(where[j], 1)
    collector.add_boxes(index[kept], wh, xy)


def _read(request: Request) -> Loaded:
    path = request.path
    if not path.is_file():
        raise ValueError(f"a COCO source must be a .json file, got the folder {request.name}")
    return request.cached(
        [str(path)], f"coco include_crowd={request.include_crowd}", cache_file_for(path, f"coco\n{path}"),
        lambda: _parse_coco(path, include_crowd=request.include_crowd, show_progress=request.progress),
    )


def is_coco_dict(source: Any) -> bool:
    """A parsed COCO instances dict (``pycocotools.COCO(...).dataset``): an ``images`` list, no ``train`` key."""
    return isinstance(source, Mapping) and isinstance(source.get("images"), list) and "train" not in source


def _read_dict(request: Request) -> Loaded:
    return parse_coco_data(
        dict(request.source), "the COCO dict", include_crowd=request.include_crowd, show_progress=request.progress
    )


def is_coco_dataset(dataset: Any) -> bool:
    """torchvision's ``CocoDetection`` (or alike): a pycocotools index at ``.coco`` and image ids at ``.ids``."""
    index = getattr(dataset, "coco", None)
    return is_coco_dict(getattr(index, "dataset", None)) and isinstance(getattr(dataset, "ids", None), list)


def read_coco_dataset(dataset: Any, positions: Any, request: Request) -> Loaded:
    """The images at ``positions`` (all when None) of a ``CocoDetection``, from its index: no image is decoded."""
    index, ids = dataset.coco, dataset.ids
    chosen = ids if positions is None else [ids[i] for i in positions]
    images = index.dataset["images"]
    images_by_id = {image["id"]: image for image in images if isinstance(image, dict) and "id" in image}
    by_image: dict[Any, list[Any]] = {}
    for annotation in index.dataset.get("annotations", []):
        if isinstance(annotation, dict):
            by_image.setdefault(annotation.get("image_id"), []).append(annotation)
    data = {
        "images": [images_by_id[i] for i in chosen if i in images_by_id],
        "annotations": [annotation for i in chosen for annotation in by_image.get(i, [])],
    }
    name = f"{type(dataset).__name__} ({getattr(dataset, 'root', '?')})"
    return parse_coco_data(data, name, include_crowd=request.include_crowd, show_progress=request.progress)


register_format(
    "coco-dict", description="a COCO instances dict (images, annotations), e.g. pycocotools' COCO(...).dataset",
    accept=lambda request: is_coco_dict(request.source), read=_read_dict, priority=29,
)
register_format(
    "coco", description="a COCO instances .json",
    accept=lambda request: request.suffix == ".json" and request.is_file(), read=_read, priority=30,
)
register_annotation_reader("CocoDetection", accept=is_coco_dataset, read=read_coco_dataset)
