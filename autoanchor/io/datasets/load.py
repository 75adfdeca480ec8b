"""The loader: one entry point that dispatches through the format registry.

:func:`load_boxes` builds a :class:`~.registry.Request`, lets
:func:`~.registry.find_format` pick the format that recognises the source (or the one
named by ``format=``), runs its reader, validates the result into a
:class:`~autoanchor.core.boxes.BoxSizes` and gives the one aggregated warning. It never
names a format.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from ...core._warn import warn
from ...core.boxes import BoxSizes
from .files import IMG_EXTS, PathLike, absolute, normalise_exts
from .registry import Request, find_format
from .summary import LoadSummary, Loaded, clip_oversize

__all__ = ["load_boxes", "load_boxes_with_report"]

logger = logging.getLogger("autoanchor.io.datasets")

_MAX_NAMED_PROBLEMS = 5  # problems spelled out in the warning; all are in LoadSummary.messages


def _count(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def _problem_counts(summary: LoadSummary) -> str:
    """``skipped 2 images with bad data, clipped 1 box to its image``: only the counts that are not zero."""
    skipped = [
        _count(n, singular, plural)
        for n, singular, plural in ((summary.skipped_images, "image", "images"), (summary.skipped_boxes, "box", "boxes"))
        if n
    ]
    parts = [f"skipped {' and '.join(skipped)} with bad data"] if skipped else []
    if summary.clipped_boxes:
        parts.append(f"clipped {_count(summary.clipped_boxes, 'box to its image', 'boxes to their image')}")
    return ", ".join(parts) or "problems found"


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
        request.notices.insert(0, f"{source}: {_problem_counts(summary)}:\n  " + "\n  ".join(shown) + tail)
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


def _clip_given_sizes(boxes: BoxSizes, request: Request) -> tuple[BoxSizes, int, int]:
    """Boxes over their image's edge (an ``.npz``, a dataset object): clipped to it as the file formats do,
    with one warning; ``(boxes, clipped, skipped)``. Untouched (the same object) when none overhangs."""
    kept, wh, xy, clipped, messages = clip_oversize(boxes.shapes, boxes.wh, boxes.image_index, boxes.xy)
    if not messages:
        return boxes, 0, 0
    shown = "\n  ".join(messages[:_MAX_NAMED_PROBLEMS])
    more = len(messages) - _MAX_NAMED_PROBLEMS
    n_clipped, n_skipped = int(clipped.sum()), int((~kept).sum())
    request.notices.append(
        f"{request.name}: {n_clipped} boxes larger than or over the edge of their image clipped to it"
        + (f", {n_skipped} entirely outside skipped" if n_skipped else "")
        + f" (one policy in every format):\n  {shown}" + (f"\n  ... and {more} more" if more > 0 else "")
    )
    fixed = BoxSizes(
        boxes.shapes, wh, boxes.image_index[kept], image_names=boxes.image_names, source=boxes.source, xy=xy
    )
    return fixed, n_clipped, n_skipped


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
        clipped = skipped = 0
        if entry.name != "boxsizes":  # a BoxSizes given by the caller is used as it is
            result, clipped, skipped = _clip_given_sizes(result, request)
        summary = LoadSummary(
            result.source or entry.name, entry.name, result.n_images, result.n_boxes, skipped_boxes=skipped,
            clipped_boxes=clipped,
        )
        return result, summary, request.notices
    if not isinstance(result, Loaded):
        raise TypeError(
            f"the reader of format {entry.name!r} returned {type(result).__name__}; expected Loaded or BoxSizes"
        )
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

    The source is read by the first registered format that recognises it (by suffix,
    first bytes or folder layout), or by the one named in ``format=``; see
    :func:`autoanchor.io.datasets.formats` and each format module's docstring. Built in:

    * ``None`` or ``"coco128"``: the coco128 statistics shipped with autoanchor;
    * a :class:`BoxSizes` (returned as is) or a yolov5-style dataset object
      (``.shapes`` ``[I, 2]`` px and ``.labels``, ``[m, 5]`` rows ``class, x, y, w, h``);
    * an ``.npz`` with ``shapes`` ``[I, 2]``, ``wh`` ``[N, 2]``, ``image_index`` ``[N]``
      and optionally ``xy`` ``[N, 2]`` (:mod:`~autoanchor.io.datasets.npz`);
    * a yolov5 data yaml (or the parsed mapping), a folder of images or a ``.txt`` list
      of images, with YOLO labels (:mod:`~autoanchor.io.datasets.yolo`). A relative
      ``path:`` is looked up from the yaml's folder, then the working folder (where
      yolov5 runs its stock yamls from), then the yaml's parent folder; the one used is
      logged. Label files follow yolov5's rule on the image path as written (symbolic
      links unresolved), then on its real path;
    * a COCO instances json (:mod:`~autoanchor.io.datasets.coco`);
    * a PASCAL VOC ``.xml``, a folder of them, or the folder holding ``Annotations/``
      (:mod:`~autoanchor.io.datasets.voc`); a folder with ``.xml`` and no ``.txt`` files is VOC.
    * a COCO dict (``pycocotools.COCO(...).dataset``), and the CSVs of DeepForest
      (``image_path,xmin,ymin,xmax,ymax,label``) and keras-retinanet (``path,x1,y1,x2,y2,class_name``);
    * PyTorch dataset objects (:mod:`~autoanchor.io.datasets.torch_datasets`): torchvision's
      ``CocoDetection`` and ``VOCDetection`` (read from their annotations, also under the
      transforms-v2 wrapper), ``Subset``, ``ConcatDataset``, a ``DataLoader`` (its dataset),
      DeepForest datasets, and any map-style dataset whose ``ds[i]`` is ``(image,
      {"boxes": [N, 4] xyxy px, ...})``, iterated once (the image size is what it returns).

    Bad data is skipped and reported in one warning naming the files (the first few,
    and how many more), and counted in the summary: a missing or unreadable image, an
    image under 10 px, a corrupt YOLO label file (wrong column count, text, a negative
    value, a coordinate above 1) or an unusable VOC file (malformed, DOCTYPE or entity
    declarations, no or a zero ``<size>``) drops that image; a zero-size box, a
    malformed box and a repeated label row drop that box. Every format applies one
    policy to boxes outside their image: a box partly outside is clipped to it (named
    when it overhung by more than 1 px), a box entirely outside is skipped.

    Args:
        source: the dataset, as above.
        format: the name of a registered format (``"yolo"``, ``"coco"``, ``"voc"``,
            ``"npz"``, ...) to read the source with; ``None`` to recognise it.
        split: the data yaml key to read (``"train"``; ``"val"`` works too).
        img_exts: image file extensions (no dot, any case) taken from folders and
            lists; yolov5's by default.
        drop_difficult: leave out VOC objects marked ``<difficult>1``. They are kept by
            default (the shared VOC statistics keep them; darknet's converter drops them).
        include_crowd: keep COCO ``iscrowd`` annotations, excluded by default.
        cache: ``True`` to cache file-based reads in a hidden file beside the labels
            (``.autoanchor-cache-<folder>-<hash>.cache``), ``False`` for none, or the
            path of the cache file to use. The cache is keyed by the path, size and
            modification time of every image, label and annotation file read, so it is
            rebuilt when any of them changes; a cache that is damaged or unreadable is
            rebuilt too (its contents are checksummed). It is written atomically with
            the permissions of any new file (the umask). A cache that cannot be written
            is a warning.
        progress: show a tqdm progress bar while reading files.
        verbose: log the summary of what was read at INFO (else at DEBUG).

    Returns:
        The dataset's :class:`BoxSizes`: ``shapes`` ``[I, 2]`` px, ``wh`` ``[N, 2]``
        normalised, ``image_index`` ``[N]``, each image's boxes together in reading
        order, and ``xy`` ``[N, 2]`` normalised box centres where the source has
        positions (YOLO, COCO, VOC; ``None`` otherwise). Use
        :func:`load_boxes_with_report` for the counts.

    Raises:
        ValueError: if the source cannot be read at all, naming the file: it does not
            exist; no format recognises it (the message lists the known formats); an
            unknown ``format``; a yaml without ``split``; a json without ``images``; an
            ``.npz`` that is not autoanchor's; no usable image or box left; invalid sizes.
        TypeError: if the source is neither a path nor an object a format reads.

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
