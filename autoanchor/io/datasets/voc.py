"""PASCAL VOC: a folder of ``.xml`` annotations (or its parent holding ``Annotations/``, or one file).

Each file gives ``<size>`` and every ``<object><bndbox>`` ``xmin, ymin, xmax, ymax`` px.
A file that cannot be used (malformed XML, a DOCTYPE or entity declaration, no or a
zero ``<size>``) is skipped and named; the load fails only if no file is usable. Boxes
are clipped to their image like every format's (:func:`~.summary.clip_to_image`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable
from xml.etree import ElementTree
from xml.parsers import expat

import numpy as np

from .cache import cache_file_for
from .files import extension, walk
from .registry import Request, register_format
from .torch_datasets import register_annotation_reader
from .summary import Collector, Loaded, clip_to_image, progress

__all__: list[str] = []


class _BadAnnotation(ValueError):
    """An annotation file that cannot be used; its image is skipped."""


def _parse_xml(path: Path) -> ElementTree.Element:
    """Parse an XML file with expat, refusing any DOCTYPE or entity declaration.

    Annotation files are untrusted: a DOCTYPE can declare entities that expand
    exponentially ("billion laughs") or pull in external files. VOC files never need
    one, so any DOCTYPE is refused before its declarations are read.

    Raises:
        _BadAnnotation: the file cannot be read, is not well-formed, or declares a
            DOCTYPE or an entity.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise _BadAnnotation(f"cannot read the file ({error})") from error

    def refuse(what: str) -> Callable[..., None]:
        def handler(*args: Any) -> None:
            raise _BadAnnotation(f"contains {what}; refused (DOCTYPE and entities are not allowed in annotations)")

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
        raise _BadAnnotation(f"not well-formed XML ({error})") from error
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


def _read_voc_file(collector: Collector, path: Path, *, drop_difficult: bool) -> None:
    try:
        root = _parse_xml(path)
    except _BadAnnotation as error:
        collector.skip_image(str(path), str(error))
        return
    size = root.find("size")
    if size is None:
        collector.skip_image(str(path), "no <size>; a VOC annotation needs <size><width>, <height>")
        return
    width, height = _xml_number(size, "width"), _xml_number(size, "height")
    if width is None or height is None or width <= 0 or height <= 0:
        reason = f"invalid <size>: width {size.findtext('width')!r}, height {size.findtext('height')!r}"
        collector.skip_image(str(path), reason)
        return
    corners = []
    malformed, excluded = 0, 0
    for obj in root.iter("object"):
        if drop_difficult and (obj.findtext("difficult") or "0").strip() not in ("", "0"):
            excluded += 1
            continue
        bndbox = obj.find("bndbox")
        coordinates = None
        if bndbox is not None:
            coordinates = [_xml_number(bndbox, tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if coordinates is None or None in coordinates:
            malformed += 1
            continue
        corners.append(coordinates)
    corners_px = np.asarray(corners, dtype=np.float64).reshape(-1, 4)
    zero_size = (corners_px[:, 2] <= corners_px[:, 0]) | (corners_px[:, 3] <= corners_px[:, 1])
    kept, clipped, wh, xy = clip_to_image(corners_px[~zero_size], width, height)
    collector.exclude_boxes(excluded)
    if malformed:
        collector.skip_boxes(str(path), malformed, "<object> without a numeric <bndbox> xmin, ymin, xmax, ymax")
    if zero_size.any():
        collector.skip_boxes(str(path), int(zero_size.sum()), "zero-size box")
    if not kept.all():
        collector.skip_boxes(str(path), int((~kept).sum()), f"box entirely outside the image {width:g}x{height:g}")
    if clipped.any():
        collector.clip_boxes(str(path), int(clipped.sum()))
    collector.add_image(str(path), width, height, wh, xy)


def _voc_files(path: Path) -> tuple[list[str], Path]:
    """The ``.xml`` files of a VOC source and the folder (or file) they belong to."""
    if path.is_file():
        return [str(path)], path
    if (path / "Annotations").is_dir():
        path = path / "Annotations"
    files = sorted(file for file in walk(path) if extension(file) == "xml")
    if not files:
        raise ValueError(f"no .xml annotation files in {path}")
    return files, path


def _read(request: Request) -> Loaded:
    files, anchor = _voc_files(request.path)
    drop_difficult = request.drop_difficult

    def build() -> Loaded:
        collector = Collector()
        bar = progress(files, total=len(files), desc="Reading annotations", unit="files", enabled=request.progress)
        for file in bar:
            _read_voc_file(collector, Path(file), drop_difficult=drop_difficult)
        return collector.result()

    default_cache = cache_file_for(anchor, f"voc\n{anchor}") if len(files) > 1 else None
    return request.cached(files, f"voc drop_difficult={drop_difficult}", default_cache, build)


def _accept(request: Request) -> bool:
    if request.is_file():
        return request.suffix == ".xml"
    if not request.is_dir():
        return False
    if (request.path / "Annotations").is_dir():
        return True
    extensions = request.extensions()
    return "xml" in extensions and "txt" not in extensions


def is_voc_dataset(dataset: Any) -> bool:
    """torchvision's ``VOCDetection`` (or alike): ``.annotations``, a list of ``.xml`` paths."""
    files = getattr(dataset, "annotations", None)
    return isinstance(files, list) and bool(files) and isinstance(files[0], str) and files[0].lower().endswith(".xml")


def read_voc_dataset(dataset: Any, positions: Any, request: Request) -> Loaded:
    """The images at ``positions`` (all when None) of a ``VOCDetection``, from its ``.xml`` files
    (no image is decoded)."""
    files = dataset.annotations
    chosen = files if positions is None else [files[i] for i in positions]
    collector = Collector()
    bar = progress(chosen, total=len(chosen), desc="Reading annotations", unit="files", enabled=request.progress)
    for file in bar:
        _read_voc_file(collector, Path(file), drop_difficult=request.drop_difficult)
    return collector.result()


register_format(
    "voc", description="a PASCAL VOC .xml, a folder of them, or the folder holding Annotations/",
    accept=_accept, read=_read, priority=20,
)
register_annotation_reader("VOCDetection", accept=is_voc_dataset, read=read_voc_dataset)
