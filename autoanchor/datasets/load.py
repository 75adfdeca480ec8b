"""The loader: one entry point that dispatches through the format registry.

:func:`load_boxes` builds a :class:`~.registry.Request`, lets
:func:`~.registry.find_format` pick the format that recognises the source (or the one
named by ``format=``), runs its reader, validates the result into a
:class:`~autoanchor.boxes.BoxSizes` and gives the one aggregated warning. It never
names a format.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from .._warn import warn
from ..boxes import BoxSizes
from .files import IMG_EXTS, PathLike, absolute, normalise_exts
from .registry import Request, find_format
from .summary import LoadSummary, Loaded

__all__ = ["load_boxes", "load_boxes_with_report"]

logger = logging.getLogger("autoanchor.datasets")

_MAX_NAMED_PROBLEMS = 5  # problems spelled out in the warning; all are in LoadSummary.messages


def _finish(loaded: Loaded, *, format: str, request: Request) -> tuple[BoxSizes, LoadSummary]:
    source = request.name
    summary = LoadSummary(
        source=source, format=format, n_images=len(loaded.shapes), n_boxes=len(loaded.wh),
        skipped_images=int(loaded.skipped_images), skipped_boxes=int(loaded.skipped_boxes),
        excluded_boxes=int(loaded.excluded_boxes), missing_labels=int(loaded.missing_labels),
        messages=tuple(loaded.messages), cache_file=request.cache_file, from_cache=request.from_cache,
        clipped_boxes=int(loaded.clipped_boxes),
    )
    shown = summary.messages[:_MAX_NAMED_PROBLEMS]
    if shown:
        more = len(summary.messages) - len(shown)
        tail = f"\n  ... and {more} more (LoadSummary.messages lists them all)" if more else ""
        clipped = f" and clipped {summary.clipped_boxes} boxes to their image" if summary.clipped_boxes else ""
        request.notices.insert(
            0,
            f"{source}: skipped {summary.skipped_images} images and {summary.skipped_boxes} boxes "
            f"with bad data{clipped}:\n  "
            + "\n  ".join(shown) + tail,
        )
    if summary.n_images == 0:
        first = f"; first: {shown[0]}" if shown else ""
        raise ValueError(f"no readable images in {source} ({summary.skipped_images} skipped{first})")
    if summary.n_boxes == 0:
        hint = ""
        if summary.missing_labels:
            hint = f"; {summary.missing_labels} images have no label file"
        if shown:
            hint += f"; {summary.skipped_boxes} boxes skipped, first: {shown[0]}"
        raise ValueError(f"no boxes in {source} ({summary.n_images} images{hint})")
    boxes = BoxSizes(
        loaded.shapes, loaded.wh, loaded.image_index, image_names=loaded.names, source=source, xy=loaded.xy
    )
    return boxes, summary


def _load(
    source: Any, *, format: str | None, split: str, img_exts: Iterable[str], drop_difficult: bool,
    include_crowd: bool, cache: bool | PathLike, progress: bool,
) -> tuple[BoxSizes, LoadSummary, list[str]]:
    if format is not None and not isinstance(format, str):
        raise TypeError(f"format must be a format name or None, got {type(format).__name__}")
    path = absolute(source) if isinstance(source, (str, os.PathLike)) else None
    if path is not None:
        name = os.path.expanduser(os.fspath(source))
    else:
        name = "data mapping" if isinstance(source, Mapping) else type(source).__name__
    request = Request(
        source, path, name, split=split, img_exts=normalise_exts(img_exts), drop_difficult=drop_difficult,
        include_crowd=include_crowd, cache=cache, progress=progress,
    )
    entry = find_format(request, format)
    result = entry.read(request)
    if isinstance(result, BoxSizes):
        summary = LoadSummary(result.source or entry.name, entry.name, result.n_images, result.n_boxes)
        return result, summary, request.notices
    if not isinstance(result, Loaded):
        raise TypeError(f"the reader of format {entry.name!r} returned {type(result).__name__}; expected Loaded or BoxSizes")
    return (*_finish(result, format=entry.name, request=request), request.notices)


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
    :class:`LoadSummary` (images, boxes, skipped, clipped and excluded counts, the problem
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
