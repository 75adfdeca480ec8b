"""Dataset adapters: every supported source becomes a :class:`~autoanchor.boxes.BoxSizes`.

One entry point, :func:`load_boxes` (and :func:`load_boxes_with_report`, which also
returns the counts), reads the image sizes and the normalised box sizes of:

* the built-in coco128 statistics (``source=None`` or ``"coco128"``);
* a :class:`BoxSizes`, or a yolov5-style dataset object (``.shapes`` and ``.labels``);
* an ``.npz`` with ``shapes``, ``wh`` and ``image_index`` (the format of the shared data);
* a yolov5 **data yaml**, a **folder of images** or a **``.txt`` list of images**, with
  YOLO label files found by yolov5's rule and image sizes read from the image headers;
* a **COCO instances json**;
* a **PASCAL VOC** folder of ``.xml`` annotations (or a single ``.xml``).

Bad data is skipped the way yolov5 skips it (a corrupt label file drops its image, a
zero-size box drops that box), named in one aggregated warning and counted in a
:class:`LoadSummary`. A source that cannot be read at all raises one ``ValueError``
naming the file. Reads of file-based sources are cached beside the labels, keyed by
the size and modification time of every file read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Optional, Union
from xml.etree import ElementTree
from xml.parsers import expat

import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from ._warn import warn
from .boxes import BoxSizes

__all__ = [
    "IMG_EXTS",
    "LoadSummary",
    "builtin_path",
    "image_size",
    "label_path",
    "load_boxes",
    "load_boxes_with_report",
]

logger = logging.getLogger(__name__)

BUILTIN = "coco128"

#: Image file extensions read from folders and lists (yolov5's ``IMG_FORMATS``), lower case, no dot.
IMG_EXTS: tuple[str, ...] = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")

#: Recognised values of ``format=``.
FORMATS = ("yolo", "coco", "voc", "npz")

_EXIF_ORIENTATION = 0x0112
# Orientations 5-8 rotate the picture by 90 or 270 degrees (5 and 7 also mirror it), so the
# displayed width is the stored height.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257  # ImageWidth, ImageLength: the stored size of a TIFF
_MIN_IMAGE_SIDE_PX = 10  # yolov5 refuses images under 10 px on a side
_MAX_NAMED_PROBLEMS = 5  # problems spelled out in the warning; all are in LoadSummary.messages
_CACHE_VERSION = 1
_CACHE_PREFIX = ".autoanchor-cache"

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class LoadSummary:
    """What a load read, kept and skipped.

    Attributes:
        source: the source as given (a path, or the kind of object).
        format: ``"builtin"``, ``"boxsizes"``, ``"object"``, ``"npz"``, ``"yolo"``,
            ``"coco"`` or ``"voc"``.
        n_images: images kept (images without boxes included).
        n_boxes: boxes kept.
        skipped_images: images left out: unreadable or missing image, corrupt label
            file, corrupt size. Their boxes are not counted in ``skipped_boxes``.
        skipped_boxes: boxes dropped one by one: zero size, malformed, duplicated row,
            unknown image.
        excluded_boxes: boxes left out on purpose by an option (COCO ``iscrowd``
            unless ``include_crowd``; VOC ``difficult`` with ``drop_difficult``).
        missing_labels: images without a label file (YOLO), kept with no boxes.
        messages: one line per problem, naming the file, in reading order.
        cache_file: the cache file read or written, if any.
        from_cache: whether the result came from the cache without reading the files.
    """

    source: str
    format: str
    n_images: int
    n_boxes: int
    skipped_images: int = 0
    skipped_boxes: int = 0
    excluded_boxes: int = 0
    missing_labels: int = 0
    messages: tuple[str, ...] = field(default=(), repr=False)
    cache_file: Optional[str] = None
    from_cache: bool = False

    def __str__(self) -> str:
        parts = [f"{self.n_images} images", f"{self.n_boxes} boxes"]
        if self.skipped_images:
            parts.append(f"{self.skipped_images} images skipped")
        if self.skipped_boxes:
            parts.append(f"{self.skipped_boxes} boxes skipped")
        if self.excluded_boxes:
            parts.append(f"{self.excluded_boxes} boxes excluded by option")
        if self.missing_labels:
            parts.append(f"{self.missing_labels} images without a label file")
        cached = " (from cache)" if self.from_cache else ""
        return f"{self.source} [{self.format}]{cached}: " + ", ".join(parts)


# ----------------------------------------------------------------------------------------
# Collecting what a loader reads


@dataclass
class _Loaded:
    """Raw result of a file-based loader, before validation; what the cache stores."""

    shapes: np.ndarray  # [I,2] float64 px
    wh: np.ndarray  # [N,2] float64 normalised
    image_index: np.ndarray  # [N] int64
    names: list[str]
    skipped_images: int = 0
    skipped_boxes: int = 0
    excluded_boxes: int = 0
    missing_labels: int = 0
    messages: list[str] = field(default_factory=list)


class _Collector:
    """Accumulates kept images and boxes, and problems, while a loader walks a dataset."""

    def __init__(self) -> None:
        self.shapes: list[tuple[float, float]] = []
        self.names: list[str] = []
        self.wh_parts: list[np.ndarray] = []
        self.index_parts: list[np.ndarray] = []
        self.skipped_images = 0
        self.skipped_boxes = 0
        self.excluded_boxes = 0
        self.missing_labels = 0
        self.messages: list[str] = []

    def add_image(self, name: str, width: float, height: float, wh: np.ndarray | None = None) -> int:
        """Keep an image of ``width x height`` px and its boxes ``wh`` ``[m, 2]`` (normalised)."""
        row = len(self.shapes)
        self.shapes.append((width, height))
        self.names.append(name)
        if wh is not None and len(wh):
            self.wh_parts.append(np.asarray(wh, dtype=np.float64).reshape(-1, 2))
            self.index_parts.append(np.full(len(wh), row, dtype=np.int64))
        return row

    def skip_image(self, name: str, reason: str) -> None:
        self.skipped_images += 1
        self.messages.append(f"{name}: {reason}; image skipped")

    def skip_boxes(self, name: str, count: int, reason: str) -> None:
        self.skipped_boxes += count
        self.messages.append(f"{name}: {reason}; {count} box{'es' if count != 1 else ''} skipped")

    def result(self) -> _Loaded:
        shapes = np.asarray(self.shapes, dtype=np.float64).reshape(-1, 2)
        wh = np.concatenate(self.wh_parts) if self.wh_parts else np.zeros((0, 2))
        index = np.concatenate(self.index_parts) if self.index_parts else np.zeros(0, dtype=np.int64)
        # One canonical order for every format: images in reading order, each image's boxes together.
        order = np.argsort(index, kind="stable")
        return _Loaded(
            shapes, wh[order], index[order], self.names, self.skipped_images, self.skipped_boxes,
            self.excluded_boxes, self.missing_labels, self.messages,
        )


def _progress(iterable: Iterable[Any], *, total: int, desc: str, unit: str, enabled: bool) -> Iterable[Any]:
    return tqdm(iterable, total=total, desc=desc, unit=f" {unit}", disable=not enabled, leave=False)


# ----------------------------------------------------------------------------------------
# Image headers and YOLO label files


def _orientation(im: Image.Image) -> int:
    # Pillow's PNG getexif() decodes the whole image when the eXIf chunk is not in the header
    # (it may follow the pixels); only the header is read here, so such PNGs count as upright.
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value)
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, OSError, struct.error):
        # A corrupt EXIF block says nothing about orientation; yolov5 also keeps the stored size.
        return 1


def image_size(path: PathLike) -> tuple[int, int]:
    """Displayed (width, height) of an image in pixels, from its header only.

    The pixels are never decoded. EXIF orientations 5 to 8 (turned by 90 or 270
    degrees) swap width and height, as the image is shown and trained on. (yolov5's
    ``exif_size`` swaps for 6 and 8 only; 5 and 7 are their mirrored twins and turn
    the picture just the same.)

    Args:
        path: the image file.

    Returns:
        ``(width, height)`` in pixels.

    Raises:
        OSError: if the file is missing or not an image Pillow can identify.
        ValueError: for some invalid headers (as raised by Pillow).
    """
    with Image.open(path) as im:
        width, height = im.size
        tags = getattr(im, "tag_v2", None)
        if tags is not None and isinstance(tags.get(_TIFF_WIDTH), int) and isinstance(tags.get(_TIFF_HEIGHT), int):
            # Recent Pillow already reports a rotated TIFF's displayed size; start from the stored one.
            width, height = tags[_TIFF_WIDTH], tags[_TIFF_HEIGHT]
        if _orientation(im) in _TRANSPOSING_ORIENTATIONS:
            width, height = height, width
    return int(width), int(height)


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


class _BadLabels(ValueError):
    """A label file that yolov5 would refuse; its image is skipped."""


def _read_yolo_labels(path: str) -> tuple[np.ndarray, int, int] | None:
    """Box sizes of one YOLO label file.

    Rows are ``class x y w h`` (normalised) or polygons ``class x1 y1 x2 y2 ...`` (more
    than 6 columns; the box is the polygon's extent), as yolov5 reads them.

    Returns:
        ``None`` if the file does not exist, else ``(wh [m, 2], n_duplicates,
        n_zero_size)``: the kept box sizes, and the duplicated rows and zero-size boxes
        that were dropped.

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
    wh = [(row[3], row[4]) for row in unique if row[3] > 0 and row[4] > 0]
    n_zero = len(unique) - len(wh)
    return np.asarray(wh, dtype=np.float64).reshape(-1, 2), n_duplicates, n_zero


def _read_yolo_image(collector: _Collector, image: str) -> None:
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
    labels = label_path(image)
    try:
        read = _read_yolo_labels(labels)
    except _BadLabels as error:
        collector.skip_image(labels, f"corrupt label file, {error}")
        return
    if read is None:
        collector.missing_labels += 1
        collector.add_image(image, width, height)
        return
    wh, n_duplicates, n_zero = read
    if n_duplicates:
        collector.skip_boxes(labels, n_duplicates, "duplicate label rows")
    if n_zero:
        collector.skip_boxes(labels, n_zero, "zero-size box")
    collector.add_image(image, width, height, wh)


# ----------------------------------------------------------------------------------------
# Listing files


def _walk(root: Path) -> list[str]:
    """Every file under ``root``, recursively, skipping hidden files and folders (as glob does).

    Symbolic links to folders are followed, each real folder once (a link cycle ends there).
    """
    found = []
    seen: set[tuple[int, int]] = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen:
            subfolders[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found.extend(os.path.join(folder, name) for name in files if not name.startswith("."))
    return found


def _extension(path: str) -> str:
    return path.rpartition(".")[2].lower() if "." in os.path.basename(path) else ""


def _normalise_exts(img_exts: Iterable[str]) -> tuple[str, ...]:
    if isinstance(img_exts, str):
        img_exts = (img_exts,)
    exts = tuple(sorted({str(ext).lower().lstrip(".") for ext in img_exts}))
    if not exts or "" in exts:
        raise ValueError(f"img_exts must name at least one extension, got {img_exts!r}")
    return exts


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
            images.extend(_walk(entry))
        elif entry.is_file():
            images.extend(_read_image_list(entry))
        else:
            raise ValueError(f"{entry} does not exist (from {origin})")
    images = sorted(image for image in images if _extension(image) in img_exts)
    if not images:
        names = ", ".join(str(entry) for entry in entries)
        raise ValueError(f"no images ({', '.join(img_exts)}) found in {names} (from {origin})")
    return images


# ----------------------------------------------------------------------------------------
# The cache


def _fingerprint(files: Iterable[str], options: str) -> str:
    """Hash of the path, size and modification time of every file, and of the options."""
    digest = hashlib.sha256(f"autoanchor-cache {_CACHE_VERSION}\n{options}\n".encode())
    for path in files:
        try:
            stat = os.stat(path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        digest.update(f"{path}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _cache_file_for(anchor: Path, spec: str) -> Path:
    """Hidden cache file beside ``anchor`` (the labels folder or annotation file)."""
    spec_hash = hashlib.sha256(spec.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return anchor.parent / f"{_CACHE_PREFIX}-{anchor.name}-{spec_hash}.npz"


def _join_names(names: Sequence[str]) -> np.ndarray:
    joined = "\0".join(names).encode("utf-8", "surrogateescape")  # paths cannot hold NUL
    return np.frombuffer(joined, dtype=np.uint8)


def _split_names(data: np.ndarray, count: int) -> list[str]:
    if count == 0:
        return []
    return data.tobytes().decode("utf-8", "surrogateescape").split("\0")


def _read_cache(path: Path, key: str) -> _Loaded | None:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if int(archive["version"]) != _CACHE_VERSION or str(archive["key"]) != key:
                return None
            shapes = archive["shapes"]
            counts = archive["counts"].tolist()
            names = _split_names(archive["names"], len(shapes))
            messages = _split_names(archive["messages"], int(counts[4]))
            loaded = _Loaded(
                shapes, archive["wh"], archive["image_index"], names,
                skipped_images=counts[0], skipped_boxes=counts[1], excluded_boxes=counts[2],
                missing_labels=counts[3], messages=messages,
            )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        logger.info("ignoring the unreadable cache %s (%s); reading the dataset", path, error)
        return None
    if len(names) != len(shapes):
        return None
    return loaded


def _write_cache(path: Path, key: str, loaded: _Loaded) -> str | None:
    """Write the cache atomically; on failure return a warning to give, else None."""
    counts = np.array(
        [loaded.skipped_images, loaded.skipped_boxes, loaded.excluded_boxes, loaded.missing_labels,
         len(loaded.messages)],
        dtype=np.int64,
    )
    temporary = None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as file:
            temporary = file.name
            np.savez_compressed(
                file, version=np.array(_CACHE_VERSION), key=np.array(key), shapes=loaded.shapes, wh=loaded.wh,
                image_index=loaded.image_index, names=_join_names(loaded.names), counts=counts,
                messages=_join_names(loaded.messages),
            )
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        return f"cannot write the dataset cache {path} ({error}); the next load reads every file again"
    return None


@dataclass
class _Context:
    """Options and side results of one load."""

    cache: bool | PathLike
    progress: bool
    notices: list[str] = field(default_factory=list)  # warnings about the load itself (not the data)
    cache_file: str | None = None
    from_cache: bool = False


def _cached(
    context: _Context, files: Sequence[str], options: str, default_cache: Path | None, build: Callable[[], _Loaded]
) -> _Loaded:
    """``build()``, or its result cached under a fingerprint of ``files`` and ``options``."""
    if context.cache is False or context.cache is None:
        return build()
    path = default_cache if context.cache is True else Path(context.cache)
    if path is None or (context.cache is True and not path.parent.is_dir()):
        return build()  # e.g. no labels folder at all: nothing to keep a cache beside
    key = _fingerprint(files, options)
    loaded = _read_cache(path, key)
    if loaded is not None:
        context.cache_file, context.from_cache = str(path), True
        return loaded
    loaded = build()
    problem = _write_cache(path, key, loaded)
    if problem is None:
        context.cache_file = str(path)
    else:
        context.notices.append(problem)
    return loaded


# ----------------------------------------------------------------------------------------
# YOLO: data yaml, folder of images, list of images


def _load_yolo_images(images: list[str], *, spec: str, context: _Context) -> _Loaded:
    labels = [label_path(image) for image in images]

    def build() -> _Loaded:
        collector = _Collector()
        bar = _progress(images, total=len(images), desc="Reading images", unit="images", enabled=context.progress)
        for image in bar:
            _read_yolo_image(collector, image)
        return collector.result()

    files = [path for pair in zip(images, labels) for path in pair]
    return _cached(context, files, "yolo", _cache_file_for(Path(labels[0]).parent, spec), build)


def _resolve_dataset_root(root: Any, *, yaml_dir: Path | None, origin: str) -> Path:
    """yolov5's ``path:``; relative to the yaml's folder, the working folder, or the yaml's parent."""
    if root is None or root == "":
        return yaml_dir if yaml_dir is not None else Path.cwd()
    if not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"'path' in {origin} must be a folder, got {root!r}")
    root = Path(root).expanduser()
    if root.is_absolute():
        return root
    # yolov5 resolves a relative `path` against its own checkout, whose stock yamls sit in
    # yolov5/data/; the yaml's parent folder stands in for that checkout.
    bases = [yaml_dir, Path.cwd(), yaml_dir.parent if yaml_dir is not None else None]
    candidates = [(base / root).resolve() for base in bases if base is not None]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(candidate) for candidate in dict.fromkeys(candidates))
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
        path = (root / Path(entry).expanduser()).resolve()
        if not path.exists() and str(entry).startswith("../"):
            path = (root / str(entry)[3:]).resolve()  # yolov5's fallback for '../' entries
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


def _load_yolo_data(
    data: Mapping[str, Any], *, yaml_dir: Path | None, origin: str, split: str, img_exts: tuple[str, ...],
    context: _Context,
) -> _Loaded:
    entries = _train_entries(data, split=split, yaml_dir=yaml_dir, origin=origin)
    images = _list_images(entries, img_exts, origin=origin)
    spec = "\n".join(["yaml", *map(str, entries), *img_exts])
    return _load_yolo_images(images, spec=spec, context=context)


# ----------------------------------------------------------------------------------------
# COCO instances json


def _positive_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value > 0 else None


def _parse_coco(path: Path, *, include_crowd: bool, progress: bool) -> _Loaded:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read the COCO json {path}: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{path} has no 'images' list; expected a COCO instances json")
    if not data["images"]:
        raise ValueError(f"{path} lists no images")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise ValueError(f"'annotations' in {path} must be a list, got {type(annotations).__name__}")

    collector = _Collector()
    rows: dict[Any, int] = {}  # image id -> row of shapes
    sizes: list[tuple[float, float]] = []
    skipped_ids: set[Any] = set()
    for position, image in enumerate(data["images"]):
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
        sizes.append((width, height))

    wh, index = [], []
    orphans, crowd, orphans_of_skipped = 0, 0, 0
    first_orphan = None
    bar = _progress(annotations, total=len(annotations), desc="Reading annotations", unit="boxes", enabled=progress)
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
        where = f"{path} annotation id {annotation.get('id')!r} (image {collector.names[row]})"
        if not isinstance(bbox, list) or len(bbox) != 4:
            collector.skip_boxes(where, 1, f"bbox {bbox!r} is not [x, y, w, h]")
            continue
        try:
            box_w, box_h = float(bbox[2]), float(bbox[3])
        except (TypeError, ValueError):
            collector.skip_boxes(where, 1, f"bbox {bbox!r} is not numbers")
            continue
        if not (math.isfinite(box_w) and math.isfinite(box_h)) or box_w <= 0 or box_h <= 0:
            collector.skip_boxes(where, 1, f"zero-size or invalid box {bbox!r}")
            continue
        width, height = sizes[row]
        wh.append((box_w / width, box_h / height))
        index.append(row)
    if orphans:
        reason = f"annotations refer to image ids not in 'images' (e.g. {first_orphan!r})"
        collector.skip_boxes(str(path), orphans, reason)
    collector.skipped_boxes += orphans_of_skipped  # their images are already named
    collector.excluded_boxes += crowd
    if wh:
        collector.wh_parts.append(np.asarray(wh, dtype=np.float64))
        collector.index_parts.append(np.asarray(index, dtype=np.int64))
    return collector.result()


# ----------------------------------------------------------------------------------------
# PASCAL VOC xml


def _parse_xml(path: Path) -> ElementTree.Element:
    """Parse an XML file with expat, refusing any DOCTYPE or entity declaration.

    Annotation files are untrusted: a DOCTYPE can declare entities that expand
    exponentially ("billion laughs") or pull in external files. VOC files never need
    one, so any DOCTYPE is refused before its declarations are read.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error}") from error

    def refuse(what: str) -> Callable[..., None]:
        def handler(*args: Any) -> None:
            raise ValueError(
                f"{path} contains {what}; refused (DOCTYPE and entities are not allowed in annotations)"
            )

        return handler

    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = refuse("a DOCTYPE declaration")
    parser.EntityDeclHandler = refuse("an entity declaration")
    parser.UnparsedEntityDeclHandler = refuse("an entity declaration")
    parser.ExternalEntityRefHandler = refuse("an external entity reference")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise ValueError(f"{path} is not well-formed XML: {error}") from error
    return builder.close()


def _xml_number(element: ElementTree.Element, tag: str) -> float | None:
    child = element.find(tag)
    if child is None or child.text is None:
        return None
    try:
        value = float(child.text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _read_voc_file(collector: _Collector, path: Path, *, drop_difficult: bool) -> None:
    root = _parse_xml(path)
    size = root.find("size")
    if size is None:
        raise ValueError(f"{path} has no <size>; a VOC annotation needs <size><width>, <height>")
    width, height = _xml_number(size, "width"), _xml_number(size, "height")
    if width is None or height is None or width <= 0 or height <= 0:
        raise ValueError(
            f"{path} has an invalid <size>: width {size.findtext('width')!r}, height {size.findtext('height')!r}"
        )
    wh = []
    malformed, zero_size = 0, 0
    for obj in root.iter("object"):
        if drop_difficult and (obj.findtext("difficult") or "0").strip() not in ("", "0"):
            collector.excluded_boxes += 1
            continue
        bndbox = obj.find("bndbox")
        coordinates = None
        if bndbox is not None:
            coordinates = [_xml_number(bndbox, tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if coordinates is None or None in coordinates:
            malformed += 1
            continue
        xmin, ymin, xmax, ymax = coordinates
        if xmax <= xmin or ymax <= ymin:
            zero_size += 1
            continue
        wh.append(((xmax - xmin) / width, (ymax - ymin) / height))
    if malformed:
        collector.skip_boxes(str(path), malformed, "<object> without a numeric <bndbox> xmin, ymin, xmax, ymax")
    if zero_size:
        collector.skip_boxes(str(path), zero_size, "zero-size box")
    collector.add_image(str(path), width, height, np.asarray(wh, dtype=np.float64).reshape(-1, 2))


def _load_voc(files: list[str], *, anchor: Path, drop_difficult: bool, context: _Context) -> _Loaded:
    def build() -> _Loaded:
        collector = _Collector()
        bar = _progress(files, total=len(files), desc="Reading annotations", unit="files", enabled=context.progress)
        for file in bar:
            _read_voc_file(collector, Path(file), drop_difficult=drop_difficult)
        return collector.result()

    options = f"voc drop_difficult={drop_difficult}"
    default_cache = _cache_file_for(anchor, f"voc\n{anchor}") if len(files) > 1 else None
    return _cached(context, files, options, default_cache, build)


def _voc_files(path: Path) -> tuple[list[str], Path]:
    """The ``.xml`` files of a VOC source and the folder (or file) they belong to."""
    if path.is_file():
        return [str(path)], path
    if (path / "Annotations").is_dir():
        path = path / "Annotations"
    files = sorted(file for file in _walk(path) if _extension(file) == "xml")
    if not files:
        raise ValueError(f"no .xml annotation files in {path}")
    return files, path


# ----------------------------------------------------------------------------------------
# Dispatch


def builtin_path(name: str = BUILTIN) -> Path:
    """Path of a box-statistics ``.npz`` shipped with the package (``coco128``)."""
    path = resources.files("autoanchor") / "data" / f"{name}.npz"
    if not path.is_file():
        raise ValueError(f"no built-in dataset named {name!r}; the package ships {BUILTIN!r}")
    return Path(str(path))


def _load_npz(path: Path) -> BoxSizes:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"shapes", "wh", "image_index"} - set(archive.files)
            if missing:
                raise ValueError(f"{path} lacks the arrays {sorted(missing)} (expected shapes, wh, image_index)")
            return BoxSizes(archive["shapes"], archive["wh"], archive["image_index"], source=str(path))
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"cannot read {path} as an .npz archive: {error}") from error


def _detect_folder(path: Path, img_exts: tuple[str, ...]) -> tuple[str, list[str]]:
    """``("voc", xml files)`` or ``("yolo", image files)`` for a folder given as the source."""
    if (path / "Annotations").is_dir():
        return "voc", []
    files = _walk(path)
    extensions = [_extension(file) for file in files]
    has_xml, has_txt = "xml" in extensions, "txt" in extensions
    images = sorted(file for file, ext in zip(files, extensions) if ext in img_exts)
    if has_xml and not has_txt:
        return "voc", []
    if images:
        return "yolo", images
    raise ValueError(f"no images ({', '.join(img_exts)}) or VOC .xml files found in {path}")


def _format_of(path: Path, img_exts: tuple[str, ...]) -> str:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix in (".yaml", ".yml", ".txt"):
        return "yolo"
    if suffix == ".json":
        return "coco"
    if suffix == ".xml":
        return "voc"
    raise ValueError(
        f"unsupported dataset file {str(path)!r}: expected a folder, .yaml, .txt, .json, .xml or .npz"
    )


def _finish(loaded: _Loaded, *, source: str, format: str, context: _Context) -> tuple[BoxSizes, LoadSummary]:
    summary = LoadSummary(
        source=source, format=format, n_images=len(loaded.shapes), n_boxes=len(loaded.wh),
        skipped_images=int(loaded.skipped_images), skipped_boxes=int(loaded.skipped_boxes),
        excluded_boxes=int(loaded.excluded_boxes), missing_labels=int(loaded.missing_labels),
        messages=tuple(loaded.messages), cache_file=context.cache_file, from_cache=context.from_cache,
    )
    shown = summary.messages[:_MAX_NAMED_PROBLEMS]
    if shown:
        more = len(summary.messages) - len(shown)
        tail = f"\n  ... and {more} more (LoadSummary.messages lists them all)" if more else ""
        context.notices.insert(
            0,
            f"{source}: skipped {summary.skipped_images} images and {summary.skipped_boxes} boxes "
            "with bad data:\n  "
            + "\n  ".join(shown) + tail,
        )
    if summary.n_images == 0:
        first = f"; first: {shown[0]}" if shown else ""
        raise ValueError(f"no readable images in {source} ({summary.skipped_images} skipped{first})")
    if summary.n_boxes == 0:
        hint = ""
        if summary.missing_labels:
            example = label_path(loaded.names[0]) if format == "yolo" else ""
            hint = f"; {summary.missing_labels} images have no label file (e.g. {example})" if example else ""
        if shown:
            hint += f"; {summary.skipped_boxes} boxes skipped, first: {shown[0]}"
        raise ValueError(f"no boxes in {source} ({summary.n_images} images{hint})")
    boxes = BoxSizes(loaded.shapes, loaded.wh, loaded.image_index, image_names=loaded.names, source=source)
    return boxes, summary


def _load(
    source: Any, *, format: str | None, split: str, img_exts: Iterable[str], drop_difficult: bool,
    include_crowd: bool, cache: bool | PathLike, progress: bool,
) -> tuple[BoxSizes, LoadSummary, list[str]]:
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS} or None, got {format!r}")
    exts = _normalise_exts(img_exts)
    context = _Context(cache=cache, progress=progress)

    def whole(boxes: BoxSizes, kind: str) -> tuple[BoxSizes, LoadSummary, list[str]]:
        return boxes, LoadSummary(boxes.source or kind, kind, boxes.n_images, boxes.n_boxes), context.notices

    if source is None:
        return whole(_load_npz(builtin_path()), "builtin")
    if isinstance(source, BoxSizes):
        return whole(source, "boxsizes")
    if hasattr(source, "shapes") and hasattr(source, "labels"):
        files = getattr(source, "im_files", None) or getattr(source, "img_files", None)
        boxes = BoxSizes.from_labels(
            np.asarray(source.shapes), list(source.labels), image_names=files, source=type(source).__name__
        )
        return whole(boxes, "object")
    if isinstance(source, Mapping):
        loaded = _load_yolo_data(
            source, yaml_dir=None, origin="the data mapping", split=split, img_exts=exts, context=context
        )
        return (*_finish(loaded, source="data mapping", format="yolo", context=context), context.notices)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "dataset must be a path, a data mapping, a BoxSizes or an object with .shapes and .labels, "
            f"got {type(source).__name__}"
        )

    path = Path(source).expanduser()
    if not path.exists():
        if str(source) == BUILTIN:
            return whole(_load_npz(builtin_path()), "builtin")
        raise ValueError(f"dataset {str(path)!r} does not exist")
    name = str(path)
    folder_images: list[str] = []
    if format is not None:
        kind = format
    elif path.is_dir():
        kind, folder_images = _detect_folder(path.resolve(), exts)
    else:
        kind = _format_of(path, exts)
    if kind == "npz":
        return whole(_load_npz(path), "npz")
    if kind == "coco":
        if not path.is_file():
            raise ValueError(f"a COCO source must be a .json file, got the folder {path}")
        options = f"coco include_crowd={include_crowd}"
        loaded = _cached(
            context, [str(path.resolve())], options, _cache_file_for(path.resolve(), f"coco\n{path.resolve()}"),
            lambda: _parse_coco(path, include_crowd=include_crowd, progress=progress),
        )
    elif kind == "voc":
        files, anchor = _voc_files(path.resolve())
        loaded = _load_voc(files, anchor=anchor, drop_difficult=drop_difficult, context=context)
    elif path.is_dir():
        entries = [path.resolve()]
        images = folder_images or _list_images(entries, exts, origin=name)
        loaded = _load_yolo_images(images, spec="\n".join(["dir", str(entries[0]), *exts]), context=context)
    elif path.suffix.lower() in (".yaml", ".yml"):
        resolved = path.resolve()
        loaded = _load_yolo_data(
            _read_data_yaml(resolved), yaml_dir=resolved.parent, origin=str(path), split=split, img_exts=exts,
            context=context,
        )
    else:
        entries = [path.resolve()]
        images = _list_images(entries, exts, origin=name)
        loaded = _load_yolo_images(images, spec="\n".join(["list", str(entries[0]), *exts]), context=context)
    return (*_finish(loaded, source=name, format=kind, context=context), context.notices)


def load_boxes_with_report(
    source: Any = None,
    *,
    format: str | None = None,
    split: str = "train",
    img_exts: Iterable[str] = IMG_EXTS,
    drop_difficult: bool = False,
    include_crowd: bool = False,
    cache: bool | PathLike = True,
    progress: bool = False,
    verbose: bool = True,
) -> tuple[BoxSizes, LoadSummary]:
    """Read the image and box sizes of a dataset, with the counts of what was read.

    Same as :func:`load_boxes`, which documents the arguments, but also returns the
    :class:`LoadSummary` (images, boxes, skipped and excluded counts, the problem
    messages, whether the cache was used).

    Returns:
        ``(boxes, summary)``.
    """
    return _load_and_report(
        source, format=format, split=split, img_exts=img_exts, drop_difficult=drop_difficult,
        include_crowd=include_crowd, cache=cache, progress=progress, verbose=verbose,
    )


def _load_and_report(source: Any, *, verbose: bool, **options: Any) -> tuple[BoxSizes, LoadSummary]:
    """:func:`_load`, then its warnings (pointing at the public caller's caller) and its summary."""
    boxes, summary, notices = _load(source, **options)
    for notice in notices:
        warn(notice)
    logger.log(logging.INFO if verbose else logging.DEBUG, "%s", summary)
    return boxes, summary


def load_boxes(
    source: Any = None,
    *,
    format: str | None = None,
    split: str = "train",
    img_exts: Iterable[str] = IMG_EXTS,
    drop_difficult: bool = False,
    include_crowd: bool = False,
    cache: bool | PathLike = True,
    progress: bool = False,
    verbose: bool = True,
) -> BoxSizes:
    """Read the image sizes and normalised box sizes of a dataset.

    Sources:

    * ``None`` or ``"coco128"``: the built-in coco128 statistics.
    * a :class:`BoxSizes` (returned as is), or a yolov5-style dataset object with
      ``.shapes`` ``[I, 2]`` (width, height) px and ``.labels``, a list of ``[m, 5]``
      arrays ``class, x, y, w, h`` normalised.
    * an ``.npz`` with ``shapes`` ``[I, 2]``, ``wh`` ``[N, 2]`` and ``image_index`` ``[N]``.
    * a yolov5 **data yaml** (or the parsed mapping): ``path`` (the dataset root; a
      relative one is looked up from the yaml's folder, the working folder, then the
      yaml's parent folder) and ``split`` (``train``): a folder of images (searched
      recursively), a ``.txt`` list of image paths (relative ones are relative to the
      list's folder), or a list of those.
    * a **folder of images** or a **``.txt`` list of images**, as one ``train`` entry.
      For every image the label file is found by yolov5's rule (:func:`label_path`),
      and the size is read from the image header with EXIF orientation applied
      (:func:`image_size`); pixels are never decoded.
    * a **COCO instances json**: ``images[]`` ``id``, ``width``, ``height`` and
      ``annotations[]`` ``image_id``, ``bbox`` ``[x, y, w, h]`` px. Images without
      annotations count as images.
    * a **PASCAL VOC** folder of ``.xml`` files (or its parent holding ``Annotations/``,
      or one ``.xml``): ``<size>`` and each ``<object><bndbox>``, box size
      ``xmax - xmin`` by ``ymax - ymin``. Parsed without DOCTYPE or entities.

    A folder holding ``.xml`` files and no ``.txt`` files is read as VOC, else as
    images; ``format=`` overrides the guess.

    Bad data is skipped as yolov5 skips it and reported in one warning naming the
    files (the first few, and how many more): a missing or unreadable image, an image
    under 10 px, or a corrupt label file (a row with the wrong number of columns, text,
    a negative value, a coordinate above 1) drops that image; a zero-size box, a
    malformed box and a repeated label row drop that box.

    Args:
        source: the dataset, as above.
        format: ``"yolo"``, ``"coco"``, ``"voc"`` or ``"npz"`` to override the guess
            from the path; ``None`` to guess.
        split: the data yaml key to read (``"train"``; ``"val"`` works too).
        img_exts: image file extensions (no dot, any case) taken from folders and
            lists; yolov5's by default.
        drop_difficult: leave out VOC objects marked ``<difficult>1``. They are kept by
            default (the shared VOC statistics keep them; darknet's converter drops them).
        include_crowd: keep COCO ``iscrowd`` annotations, excluded by default.
        cache: ``True`` to cache file-based reads in a hidden file beside the labels
            (``.autoanchor-cache-<folder>-<hash>.npz``), ``False`` for none, or the path
            of the cache file to use. The cache is keyed by the path, size and
            modification time of every image, label and annotation file read, so it is
            rebuilt when any of them changes. A cache that cannot be written is a warning.
        progress: show a tqdm progress bar while reading files.
        verbose: log the summary of what was read at INFO (else at DEBUG).

    Returns:
        The dataset's :class:`BoxSizes`: ``shapes`` ``[I, 2]`` px, ``wh`` ``[N, 2]``
        normalised, ``image_index`` ``[N]``, each image's boxes together in reading
        order. Use :func:`load_boxes_with_report` for the counts.

    Raises:
        ValueError: if the source cannot be read at all, naming the file: it does not
            exist; an empty folder; a yaml without ``split``; a json without ``images``;
            an ``.xml`` that is malformed, lacks ``<size>`` or declares a DOCTYPE or
            entities; no boxes left; invalid sizes.
        TypeError: if the source is of no supported kind.

    Example:
        >>> boxes = load_boxes("data/coco128.yaml", progress=True)  # doctest: +SKIP
        >>> boxes.pixel_wh(640).shape  # doctest: +SKIP
        torch.Size([929, 2])
    """
    boxes, _ = _load_and_report(
        source, format=format, split=split, img_exts=img_exts, drop_difficult=drop_difficult,
        include_crowd=include_crowd, cache=cache, progress=progress, verbose=verbose,
    )
    return boxes
