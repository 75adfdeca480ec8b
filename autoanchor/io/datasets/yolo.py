"""YOLO: a yolov5 data yaml (or its parsed mapping), a folder of images, a ``.txt`` list of images.

For every image the label file is found by yolov5's rule (:func:`label_path`) on the
path as written, then on the path with symbolic links resolved; the image size is read
from its header with EXIF orientation applied (:func:`~.files.image_size`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from .cache import cache_file_for
from .files import PathLike, absolute, extension, image_size, walk
from .registry import Request, register_format
from .summary import Collector, Loaded, clip_to_image, progress

__all__ = ["label_path"]

logger = logging.getLogger(__name__)

_MIN_IMAGE_SIDE_PX = 10  # yolov5 refuses images under 10 px on a side


def label_path(image_path: PathLike) -> str:
    """The YOLO label file of an image, by yolov5's rule.

    The last ``/images/`` folder in the path becomes ``/labels/`` and the extension
    becomes ``.txt``: ``data/images/train/0001.jpg`` -> ``data/labels/train/0001.txt``.
    Without an ``images`` folder in the path, the label file sits beside the image.
    """
    path = os.fspath(image_path)
    images_dir, labels_dir = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    head, sep, tail = path.rpartition(images_dir)
    if sep:
        path = head + labels_dir + tail
    stem, dot, _ = path.rpartition(".")
    return (stem if dot else path) + ".txt"


def _find_label(image: str) -> str:
    """The label file by yolov5's rule on the path as written; else on its real path, if that has one."""
    written = label_path(image)
    if os.path.exists(written):
        return written
    real = label_path(os.path.realpath(image))
    return real if real != written and os.path.exists(real) else written


class _BadLabels(ValueError):
    """A label file that yolov5 would refuse; its image is skipped."""


def _read_yolo_labels(path: str) -> tuple[np.ndarray, int, int] | None:
    """Boxes of one YOLO label file.

    Rows are ``class x y w h`` (normalised) or polygons ``class x1 y1 x2 y2 ...`` (more
    than 6 columns; the box is the polygon's extent), as yolov5 reads them.

    Returns:
        ``None`` if the file does not exist, else ``(xywh [m, 4], n_duplicates,
        n_zero_size)``: the kept boxes' normalised centre and size, and the duplicated
        rows and zero-size boxes that were dropped.

    Raises:
        _BadLabels: on a row yolov5 would refuse (wrong column count, text, values
            outside [0, 1]); the message gives the line.
    """
    try:
        with open(path, encoding="utf-8-sig") as file:  # -sig: tolerate a byte-order mark
            text = file.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise _BadLabels(f"cannot read the label file: {error}") from error
    rows: list[tuple[float, ...]] = []  # class x y w h
    for line_number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        n_columns = len(tokens)
        if n_columns != 5 and not (n_columns > 6 and n_columns % 2 == 1):
            raise _BadLabels(
                f"line {line_number} has {n_columns} columns; expected 5 (class x y w h) "
                "or a polygon (class x1 y1 x2 y2 ...)"
            )
        try:
            values = [float(token) for token in tokens]
        except ValueError:
            raise _BadLabels(f"line {line_number} is not numbers: {line.strip()[:80]!r}") from None
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise _BadLabels(f"line {line_number} has a negative or non-finite value: {line.strip()[:80]!r}")
        if any(v > 1 for v in values[1:]):
            raise _BadLabels(f"line {line_number} has coordinates outside [0, 1]: {line.strip()[:80]!r}")
        if n_columns == 5:
            rows.append(tuple(values))
        else:
            xs, ys = values[1::2], values[2::2]
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
            rows.append((values[0], (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0))
    unique = dict.fromkeys(rows)  # yolov5 drops repeated rows; dicts keep the file order
    n_duplicates = len(rows) - len(unique)
    xywh = [row[1:] for row in unique if row[3] > 0 and row[4] > 0]
    n_zero = len(unique) - len(xywh)
    return np.asarray(xywh, dtype=np.float64).reshape(-1, 4), n_duplicates, n_zero


def _read_yolo_image(collector: Collector, image: str, labels: str) -> None:
    try:
        width, height = image_size(image)
    except FileNotFoundError:
        collector.skip_image(image, "image file not found")
        return
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        # Pillow raises OSError for unidentified files, ValueError for some invalid headers.
        collector.skip_image(image, f"cannot read the image header ({error})")
        return
    if width < _MIN_IMAGE_SIDE_PX or height < _MIN_IMAGE_SIDE_PX:
        collector.skip_image(image, f"image size {width}x{height} px is under {_MIN_IMAGE_SIDE_PX} px")
        return
    try:
        read = _read_yolo_labels(labels)
    except _BadLabels as error:
        collector.skip_image(labels, f"corrupt label file, {error}")
        return
    if read is None:
        collector.missing_label()
        collector.add_image(image, width, height)
        return
    xywh, n_duplicates, n_zero = read
    if n_duplicates:
        collector.skip_boxes(labels, n_duplicates, "duplicate label rows")
    if n_zero:
        collector.skip_boxes(labels, n_zero, "zero-size box")
    # Centres lie in [0, 1], so no box is entirely outside; one that overhangs is clipped.
    corners = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)  # [m,4]
    one_px = np.array([1 / width, 1 / height, 1 / width, 1 / height])
    kept, clipped, wh, xy = clip_to_image(corners, 1.0, 1.0, sizes=xywh[:, 2:], tolerance=one_px)
    if clipped.any():
        collector.clip_boxes(labels, int(clipped.sum()))
    collector.add_image(image, width, height, wh, xy)


def _read_image_list(path: Path) -> list[str]:
    """Image paths in a ``.txt`` list, one a line; relative ones are relative to the list's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the image list {path}: {error}") from error
    parent = str(path.parent)
    images = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        line = line.replace("/", os.sep)  # lists written on one system, read on another
        if line.startswith(f".{os.sep}"):
            line = line[2:]
        images.append(line if os.path.isabs(line) else os.path.join(parent, line))
    return images


def _list_images(entries: Sequence[Path], img_exts: tuple[str, ...], *, origin: str) -> list[str]:
    """Image files of yolov5 ``train`` entries (folders, searched recursively, or lists), sorted."""
    images: list[str] = []
    for entry in entries:
        if entry.is_dir():
            images.extend(walk(entry))
        elif entry.is_file():
            images.extend(_read_image_list(entry))
        else:
            raise ValueError(f"{entry} does not exist (from {origin})")
    images = sorted(image for image in images if extension(image) in img_exts)
    if not images:
        names = ", ".join(str(entry) for entry in entries)
        raise ValueError(f"no images ({', '.join(img_exts)}) found in {names} (from {origin})")
    return images


def _load_images(images: list[str], *, spec: str, request: Request) -> Loaded:
    labels = [_find_label(image) for image in images]

    def build() -> Loaded:
        collector = Collector()
        bar = progress(
            zip(images, labels), total=len(images), desc="Reading images", unit="images", enabled=request.progress
        )
        for image, label in bar:
            _read_yolo_image(collector, image, label)
        return collector.result()

    files = [path for pair in zip(images, labels) for path in pair]
    loaded = request.cached(files, "yolo", cache_file_for(Path(labels[0]).parent, spec), build)
    if not len(loaded.wh) and loaded.missing_labels == len(images):
        raise ValueError(
            f"no boxes in {request.name}: none of its {len(images)} images has a label file "
            f"(e.g. {labels[0]}, by yolov5's rule images/ -> labels/)"
        )
    return loaded


def _resolve_dataset_root(root: Any, *, yaml_dir: Path | None, origin: str) -> Path:
    """yolov5's ``path:``; a relative one from the yaml's folder, the working folder, or the yaml's parent."""
    if root is None or root == "":
        return yaml_dir if yaml_dir is not None else absolute(".")
    if not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"'path' in {origin} must be a folder, got {root!r}")
    root = Path(root).expanduser()
    if root.is_absolute():
        return absolute(root)
    # yolov5 resolves a relative `path` against its checkout, where it runs (the stock yamls say
    # `path: ../datasets/coco128` from yolov5/data/); other yamls name it from their own folder.
    bases = [
        ("the yaml's folder", yaml_dir), ("the working folder", Path.cwd()),
        ("the yaml's parent folder", yaml_dir.parent if yaml_dir is not None else None),
    ]
    candidates = [(what, absolute(base / root)) for what, base in bases if base is not None]
    for what, candidate in candidates:
        if candidate.is_dir():
            logger.info("%s: 'path: %s' is %s, relative to %s", origin, root, candidate, what)
            return candidate
    tried = ", ".join(dict.fromkeys(str(candidate) for _, candidate in candidates))
    raise ValueError(f"the dataset folder 'path: {root}' of {origin} does not exist (tried {tried})")


def _train_entries(data: Mapping[str, Any], *, split: str, yaml_dir: Path | None, origin: str) -> list[Path]:
    entries = data.get(split)
    if entries is None or entries == "" or entries == []:
        raise ValueError(f"{origin} has no {split!r} entry (expected a folder, a list of folders or a .txt list)")
    if isinstance(entries, (str, os.PathLike)):
        entries = [entries]
    if not isinstance(entries, list) or not all(isinstance(entry, (str, os.PathLike)) for entry in entries):
        raise ValueError(f"{split!r} in {origin} must be a path or a list of paths, got {entries!r}")
    root = _resolve_dataset_root(data.get("path"), yaml_dir=yaml_dir, origin=origin)
    resolved = []
    for entry in entries:
        path = absolute(root / Path(entry).expanduser())
        if not path.exists() and str(entry).startswith("../"):
            path = absolute(root / str(entry)[3:])  # yolov5's fallback for '../' entries
        resolved.append(path)
    return resolved


def _read_data_yaml(path: Path) -> Mapping[str, Any]:
    try:
        with open(path, encoding="utf-8") as file:
            data = yaml.safe_load(file)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read the data yaml {path}: {error}") from error
    if not isinstance(data, Mapping):
        raise ValueError(f"the data yaml {path} is not a mapping (got {type(data).__name__})")
    return data


def _load_data(data: Mapping[str, Any], *, yaml_dir: Path | None, origin: str, request: Request) -> Loaded:
    entries = _train_entries(data, split=request.split, yaml_dir=yaml_dir, origin=origin)
    images = _list_images(entries, request.img_exts, origin=origin)
    spec = "\n".join(["yaml", *map(str, entries), *request.img_exts])
    return _load_images(images, spec=spec, request=request)


def _read(request: Request) -> Loaded:
    if request.is_mapping():
        return _load_data(request.source, yaml_dir=None, origin="the data mapping", request=request)
    path, exts = request.path, request.img_exts
    if request.suffix in (".yaml", ".yml"):
        return _load_data(_read_data_yaml(path), yaml_dir=path.parent, origin=request.name, request=request)
    if path.is_dir():  # the files were listed once already, to recognise the folder
        images = sorted(file for file in request.files() if extension(file) in exts)
        if not images:
            raise ValueError(f"no images ({', '.join(exts)}) found in {request.name}")
        return _load_images(images, spec="\n".join(["dir", str(path), *exts]), request=request)
    images = _list_images([path], exts, origin=request.name)
    return _load_images(images, spec="\n".join(["list", str(path), *exts]), request=request)


def _accept(request: Request) -> bool:
    if request.is_mapping():
        return True
    if request.is_file():
        return request.suffix in (".yaml", ".yml", ".txt")
    return request.is_dir() and not request.extensions().isdisjoint(request.img_exts)


register_format(
    "yolo",
    description="a yolov5 data .yaml or mapping, a folder of images or a .txt list of images, with YOLO labels",
    accept=_accept, read=_read, priority=40,
)
