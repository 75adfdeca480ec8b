"""The format registry: a new format is one module that registers itself; dispatch never names one."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from autoanchor.io.datasets import (
    Collector,
    Request,
    formats,
    load_boxes,
    load_boxes_with_report,
    register_format,
    unregister_format,
)
from helpers import assert_same_boxes, write_npz

# ----------------------------------------------------------------------------------------
# A whole test-only format: rows `image,width,height,w,h` (pixels), one box a row.
# This section (with `csv`, `Collector`, `Request` and `register_format` imported) is all
# that a new format needs.

CSV_HEADER = b"image,width,height,w,h"


def _accept_csv(request: Request) -> bool:
    return request.suffix == ".csv" and request.head(len(CSV_HEADER)) == CSV_HEADER


def _read_csv(request: Request):
    collector, rows = Collector(), {}
    with open(request.path, newline="", encoding="utf-8") as file:
        for line, record in enumerate(csv.DictReader(file), start=2):
            try:
                width, height, w, h = (float(record[key]) for key in ("width", "height", "w", "h"))
            except (TypeError, ValueError):
                collector.skip_boxes(f"{request.path} line {line}", 1, "not numbers")
                continue
            if record["image"] not in rows:
                rows[record["image"]] = collector.add_image(record["image"], width, height)
            collector.add_boxes(rows[record["image"]], [[w / width, h / height]])
    return collector.result()


def register_csv():
    return register_format("csv", description="a .csv of image,width,height,w,h rows",
                           accept=_accept_csv, read=_read_csv)

# ----------------------------------------------------------------------------------------


@pytest.fixture
def csv_format():
    entry = register_csv()
    yield entry
    unregister_format("csv")


def test_a_registered_format_loads_through_load_boxes(tmp_path, csv_format):
    path = tmp_path / "boxes.csv"
    path.write_text("image,width,height,w,h\na.jpg,640,480,64,48\nb.jpg,500,400,50,100\na.jpg,640,480,320,240\n"
                    "b.jpg,500,400,x,1\n")
    with pytest.warns(UserWarning, match="boxes.csv line 5: not numbers"):
        boxes, summary = load_boxes_with_report(path)
    # a: 64/640 = 0.1, 48/480 = 0.1; 320/640 = 0.5, 240/480 = 0.5; b: 50/500 = 0.1, 100/400 = 0.25
    expected = load_boxes(write_npz(tmp_path / "e.npz", [[640, 480], [500, 400]],
                                    [[0.1, 0.1], [0.5, 0.5], [0.1, 0.25]], [0, 0, 1]))
    assert_same_boxes(boxes, expected)
    assert boxes.image_names == ["a.jpg", "b.jpg"] and boxes.xy is None  # no positions in this format
    assert (summary.format, summary.skipped_boxes) == ("csv", 1)
    assert csv_format in formats()
    with pytest.warns(UserWarning, match="line 5"):
        assert load_boxes(path, format="csv", cache=False).n_boxes == 3


def test_a_format_recognises_its_own_files_only(tmp_path, csv_format):
    other = tmp_path / "other.csv"
    other.write_text("x,y\n1,2\n")  # a .csv, but not the format's first bytes
    with pytest.raises(ValueError, match="no known format recognises.*other.csv.*csv \\(a .csv of image"):
        load_boxes(other)


def test_unknown_source_and_format_list_the_known_formats(tmp_path):
    (tmp_path / "a.csv").write_text("image,width,height,w,h\n")
    with pytest.raises(ValueError) as error:
        load_boxes(tmp_path / "a.csv")
    message = str(error.value)
    known = message.split("known formats:")[1]
    assert "a.csv" in message and not re.search(r"(^|; )csv \(", known.strip())  # unregistered again
    for name in ("yolo", "coco", "voc", "npz"):
        assert f"{name} (" in message
    with pytest.raises(ValueError, match="format must be one of.*'voc'.*got 'darknet'"):
        load_boxes(tmp_path / "a.csv", format="darknet")
    with pytest.raises(TypeError, match="int.*known formats"):
        load_boxes(42)
    with pytest.raises(TypeError, match="format 'coco' does not read a dict"):
        load_boxes({"train": "images"}, format="coco")


def test_registering_twice_or_badly_is_refused():
    with pytest.raises(ValueError, match="'yolo' is already registered"):
        register_format("yolo", description="", accept=bool, read=bool)
    with pytest.raises(TypeError, match="callable"):
        register_format("new", description="", accept=None, read=bool)
    with pytest.raises(ValueError, match="unknown dataset format 'nope'; known: .*yolo"):
        unregister_format("nope")


def test_builtin_formats_are_asked_in_priority_order():
    names = [entry.name for entry in formats()]
    # in-memory objects first; a folder of .xml files is VOC before it is YOLO
    assert names.index("boxsizes") < names.index("npz") and names.index("voc") < names.index("yolo")
    assert {"builtin", "boxsizes", "object", "npz", "coco", "voc", "yolo"} <= set(names)


def test_reader_must_return_loaded_or_boxsizes(tmp_path):
    register_format("broken", description="returns nonsense", accept=lambda request: request.suffix == ".brk",
                    read=lambda request: 42)
    try:
        (tmp_path / "x.brk").write_text("")
        with pytest.raises(TypeError, match="'broken' returned int"):
            load_boxes(tmp_path / "x.brk")
    finally:
        unregister_format("broken")


def test_npz_box_centres_are_optional(tmp_path):
    path = write_npz(tmp_path / "with_xy.npz", [[640, 480]], [[0.5, 0.25]], [0], xy=np.array([[0.5, 0.5]]))
    np.testing.assert_array_equal(load_boxes(path).xy, np.float32([[0.5, 0.5]]))
    assert load_boxes(write_npz(tmp_path / "plain.npz", [[640, 480]], [[0.5, 0.25]], [0])).xy is None
    bad = write_npz(tmp_path / "bad_xy.npz", [[640, 480]], [[0.5, 0.25]], [0], xy=np.array([[1.5, 0.5]]))
    with pytest.raises(ValueError, match="bad_xy.npz.*centred at"):
        load_boxes(bad)
