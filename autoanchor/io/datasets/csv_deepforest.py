"""DeepForest's annotation CSV: a header ``image_path,xmin,ymin,xmax,ymax,label`` (other
columns allowed), one box per row, in pixels.

Image paths are relative to the CSV's folder (DeepForest's ``root_dir`` when it is that
folder); sizes come from the image headers. A row ``0,0,0,0`` is DeepForest's mark of an
image without objects: the image is kept with no box. A row that is not numbers is named
and skipped, as in the other formats.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Optional

from .corners import add_images_from_files, read_csv_table
from .registry import Request, register_format
from .torch_datasets import register_annotation_reader
from .summary import Collector, Loaded

__all__: list[str] = []

COLUMNS = ("image_path", "xmin", "ymin", "xmax", "ymax")


def _header(request: Request) -> Optional[list[str]]:
    first = request.head(64).split(b"\n", 1)[0].decode("utf-8", "replace").strip().lstrip("\ufeff")
    fields = [field.strip() for field in first.split(",")]
    return fields if all(column in fields for column in COLUMNS) else None


def _read(request: Request) -> Loaded:
    try:
        with open(request.path, newline="", encoding="utf-8-sig") as file:
            table = list(csv.reader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"cannot read the CSV {request.name}: {error}") from error
    header = [field.strip() for field in table[0]] if table else []
    missing = [column for column in COLUMNS if column not in header]
    if missing:
        raise ValueError(
            f"{request.name} has no column {', '.join(missing)}; DeepForest's CSV needs {', '.join(COLUMNS)}"
        )
    columns = [header.index(column) for column in COLUMNS]

    def parse(fields: list[str]) -> tuple[str, Optional[tuple[float, ...]]]:
        if len(fields) != len(header):
            raise ValueError(f"{len(fields)} fields, the header has {len(header)}")
        image, *coordinates = (fields[i].strip() for i in columns)
        if not image:
            raise ValueError("no image_path")
        corners = tuple(float(value) for value in coordinates)
        return image, None if corners == (0.0, 0.0, 0.0, 0.0) else corners

    rows = ((line, fields) for line, fields in enumerate(table[1:], start=2) if any(f.strip() for f in fields))
    return read_csv_table(request, rows, parse, "deepforest-csv")


def is_frame_dataset(dataset: Any) -> bool:
    """A DeepForest-style dataset: an ``annotations`` frame with ``image_path, xmin, ymin, xmax, ymax`` columns."""
    columns = getattr(getattr(dataset, "annotations", None), "columns", None)
    return columns is not None and all(column in list(columns) for column in COLUMNS)


def read_frame_dataset(dataset: Any, positions: Any, request: Request) -> Loaded:
    """The images at ``positions`` (all when None) of a DeepForest-style dataset, from its frame.

    Images are ``dataset.image_names`` (else the frame's ``image_path`` values in
    first-seen order) under ``dataset.root_dir``; sizes come from the image headers.
    """
    frame = dataset.annotations
    names = getattr(dataset, "image_names", None)
    names = [str(name) for name in (names if names is not None else frame["image_path"].unique())]
    chosen = names if positions is None else [names[i] for i in positions]
    root = getattr(dataset, "root_dir", None) or ""
    owner = type(dataset).__name__
    grouped: dict[str, list[tuple[str, tuple[float, ...]]]] = {name: [] for name in chosen}
    collector = Collector()
    for row, values in zip(frame.index, frame[list(COLUMNS)].itertuples(index=False, name=None)):
        image, *coordinates = values
        if str(image) not in grouped:
            continue
        where = f"{owner}.annotations row {row!r} ({image})"
        try:
            corners = tuple(float(value) for value in coordinates)
        except (TypeError, ValueError):
            collector.skip_boxes(where, 1, f"coordinates {coordinates!r} are not numbers")
            continue
        if corners != (0.0, 0.0, 0.0, 0.0):  # DeepForest's mark of an image without objects
            grouped[str(image)].append((where, corners))
    images = ((name, os.path.join(root, name), grouped[name]) for name in chosen)
    add_images_from_files(collector, images, total=len(chosen), show_progress=request.progress)
    return collector.result()


register_format(
    "deepforest-csv", description="a DeepForest .csv (image_path,xmin,ymin,xmax,ymax,label with a header)",
    accept=lambda request: request.suffix == ".csv" and request.is_file() and _header(request) is not None,
    read=_read, priority=31,
)
register_annotation_reader(
    "a DeepForest-style dataset (annotations frame)", accept=is_frame_dataset, read=read_frame_dataset
)
