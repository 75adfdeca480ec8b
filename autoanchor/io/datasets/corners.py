"""Boxes given as pixel corners ``x0, y0, x1, y1``, image by image: shared by the CSV formats,
annotation frames and dataset objects. Knows no format.

:func:`add_image_corners` applies the one policy of every format to one image's boxes
(zero-size or non-finite boxes skipped and named, boxes partly outside clipped, boxes
entirely outside skipped); :func:`add_images_from_files` takes each image's size from its
file header (never decoding pixels); :func:`merge` joins the results of several parts
(a ``ConcatDataset``'s members) in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

import numpy as np

from .files import image_size
from .summary import Collector, Loaded, clip_to_image, progress

__all__ = ["add_image_corners", "add_images_from_files", "merge"]

Box = tuple[str, Sequence[float]]  # (where, (x0, y0, x1, y1) px), where names the row for messages


def add_image_corners(collector: Collector, name: str, width: float, height: float, boxes: Sequence[Box]) -> int:
    """Keep an image of ``width x height`` px with its boxes; return its row.

    Args:
        collector: where the image and its boxes go.
        name: the image, for messages.
        width, height: the image's size in pixels.
        boxes: ``(where, corners)`` per box, ``corners`` ``x0, y0, x1, y1`` in pixels;
            ``where`` names the box's row or annotation in messages.
    """
    corners = np.asarray([c for _, c in boxes], dtype=np.float64).reshape(-1, 4)
    where = [w for w, _ in boxes]
    bad = ~np.isfinite(corners).all(1) | (corners[:, 2] <= corners[:, 0]) | (corners[:, 3] <= corners[:, 1])
    for j in np.flatnonzero(bad):
        collector.skip_boxes(where[j], 1, f"zero-size or invalid box x0, y0, x1, y1 = {corners[j].tolist()}")
    good = corners[~bad]
    good_where = [w for w, b in zip(where, bad) if not b]
    kept, clipped, wh, xy = clip_to_image(good, width, height)
    for j in np.flatnonzero(~kept):
        collector.skip_boxes(
            good_where[j], 1, f"box x0, y0, x1, y1 = {good[j].tolist()} lies outside the image {width:g}x{height:g}"
        )
    for j in np.flatnonzero(clipped):
        collector.clip_boxes(good_where[j], 1)
    return collector.add_image(name, float(width), float(height), wh, xy)


def add_images_from_files(
    collector: Collector, images: Iterable[tuple[str, str, Sequence[Box]]], *, total: int, show_progress: bool
) -> None:
    """Add images ``(name, image file, boxes)`` with their sizes read from the files' headers.

    An image whose file is missing or unreadable is skipped and named.
    """
    bar = progress(images, total=total, desc="Reading image sizes", unit="images", enabled=show_progress)
    for name, file, boxes in bar:
        try:
            width, height = image_size(file)
        except (OSError, ValueError) as error:
            collector.skip_image(name, f"cannot read the image size of {file} ({error})")
            continue
        add_image_corners(collector, name, width, height, boxes)


def merge(parts: Sequence[Loaded]) -> Loaded:
    """The parts one after the other (image rows offset); centres kept only if every part has them."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [len(part.shapes) for part in parts])
    xy: Optional[np.ndarray] = None
    if all(part.xy is not None for part in parts):
        xy = np.concatenate([part.xy for part in parts]).astype(np.float32)

    def total(name: str) -> Any:
        return sum(getattr(part, name) for part in parts)

    return Loaded(
        shapes=np.concatenate([part.shapes for part in parts]).reshape(-1, 2),
        wh=np.concatenate([part.wh for part in parts]).reshape(-1, 2),
        image_index=np.concatenate([part.image_index + offset for part, offset in zip(parts, offsets)]),
        names=[name for part in parts for name in part.names],
        skipped_images=total("skipped_images"), skipped_boxes=total("skipped_boxes"),
        excluded_boxes=total("excluded_boxes"), missing_labels=total("missing_labels"),
        messages=[message for part in parts for message in part.messages], xy=xy,
        clipped_boxes=total("clipped_boxes"),
    )


def read_csv_table(request: Any, rows: Iterable[tuple[int, list[str]]], parse: Any, flavour: str) -> Loaded:
    """A CSV of one box (or one empty image) per row, images in first-seen order, sizes from the headers.

    Args:
        request: the load's :class:`~.registry.Request` (a ``.csv`` file).
        rows: ``(line number, fields)`` of the data rows.
        parse: ``parse(fields) -> (image, corners | None)``, ``corners`` ``x0, y0, x1, y1``
            px or None for an image without objects; raises ``ValueError`` for a bad row.
        flavour: the format's name, for the cache key.
    """
    from .cache import cache_file_for

    path = request.path
    base = path.parent
    collector = Collector()
    grouped: dict[str, list[Box]] = {}
    for line, fields in rows:
        where = f"{request.name}:{line}"
        try:
            image, corners = parse(fields)
        except ValueError as error:
            collector.skip_boxes(where, 1, f"bad row {','.join(fields)!r} ({error})")
            continue
        boxes = grouped.setdefault(image, [])
        if corners is not None:
            boxes.append((where, corners))
    files = {image: str(base / image) for image in grouped}

    def build() -> Loaded:
        images = ((image, files[image], boxes) for image, boxes in grouped.items())
        add_images_from_files(collector, images, total=len(grouped), show_progress=request.progress)
        return collector.result()

    if not grouped:
        raise ValueError(f"{request.name} lists no images")
    spec = f"{flavour}\n{path}"
    return request.cached([str(path), *files.values()], spec, cache_file_for(path, spec), build)
