"""Files of a dataset: image sizes from headers, folder walks, extensions.

Shared by every format that reads files; knows no format.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Union

from PIL import Image

__all__ = ["IMG_EXTS", "PathLike", "extension", "image_size", "normalise_exts", "walk"]

PathLike = Union[str, "os.PathLike[str]"]

#: Image file extensions read from folders and lists (yolov5's ``IMG_FORMATS``), lower case, no dot.
IMG_EXTS: tuple[str, ...] = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")

_EXIF_ORIENTATION = 0x0112
# Orientations 5-8 rotate the picture by 90 or 270 degrees (5 and 7 also mirror it), so the
# displayed width is the stored height.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257  # ImageWidth, ImageLength: the stored size of a TIFF


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


def walk(root: Path) -> list[str]:
    """Every file under ``root``, recursively, skipping hidden files and folders (as glob does).

    Paths keep ``root`` as written (symbolic links are not resolved). Links to folders are
    followed, each real folder once (a link cycle ends there).
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


def extension(path: str) -> str:
    """Lower-case extension without the dot; ``""`` for none."""
    return path.rpartition(".")[2].lower() if "." in os.path.basename(path) else ""


def normalise_exts(img_exts: Iterable[str]) -> tuple[str, ...]:
    """Extensions as lower case without dots, sorted; refuses an empty set."""
    if isinstance(img_exts, str):
        img_exts = (img_exts,)
    exts = tuple(sorted({str(ext).lower().lstrip(".") for ext in img_exts}))
    if not exts or "" in exts:
        raise ValueError(f"img_exts must name at least one extension, got {img_exts!r}")
    return exts


def absolute(path: PathLike) -> Path:
    """``path`` made absolute without resolving symbolic links (``..`` is removed textually)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
