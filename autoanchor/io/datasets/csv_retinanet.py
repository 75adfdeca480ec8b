"""keras-retinanet's annotation CSV: no header, rows ``path,x1,y1,x2,y2,class_name`` in pixels.

An image without objects is one row ``path,,,,,``. Image paths are relative to the CSV's
folder (keras-retinanet's default ``base_dir``); sizes come from the image headers. A
row with another number of fields, or coordinates that are not numbers, is named and
skipped, as in the other formats.
"""

from __future__ import annotations

import csv
from typing import Optional

from .corners import read_csv_table
from .registry import Request, register_format
from .summary import Loaded

__all__: list[str] = []


def _looks_like(request: Request) -> bool:
    if request.suffix != ".csv" or not request.is_file():
        return False
    first = request.head(64).split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    fields = first.split(",")
    if len(fields) < 6:  # the first 64 bytes may cut the class name, never the five commas before it
        return False
    coordinates = fields[1:5]
    if all(not value.strip() for value in coordinates):
        return True
    try:
        [float(value) for value in coordinates]
    except ValueError:
        return False
    return True


def _parse(fields: list[str]) -> tuple[str, Optional[tuple[float, ...]]]:
    if len(fields) != 6:
        raise ValueError(f"{len(fields)} fields; expected path,x1,y1,x2,y2,class_name")
    image, *coordinates, label = (field.strip() for field in fields)
    if not image:
        raise ValueError("no image path")
    if not any(coordinates) and not label:
        return image, None  # an image without objects
    return image, tuple(float(value) for value in coordinates)


def _read(request: Request) -> Loaded:
    try:
        with open(request.path, newline="", encoding="utf-8-sig") as file:
            table = list(csv.reader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"cannot read the CSV {request.name}: {error}") from error
    rows = ((line, fields) for line, fields in enumerate(table, start=1) if any(f.strip() for f in fields))
    return read_csv_table(request, rows, _parse, "retinanet-csv")


register_format(
    "retinanet-csv", description="a keras-retinanet .csv (path,x1,y1,x2,y2,class_name, no header)",
    accept=_looks_like, read=_read, priority=32,
)
