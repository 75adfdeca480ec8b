"""DeepForest's and keras-retinanet's CSVs: the same boxes as the COCO json of the same annotations."""

from __future__ import annotations

import numpy as np
import pytest

from autoanchor.io.datasets import load_boxes, load_boxes_with_report
from annotation_files import write_detection_files
from helpers import assert_same_boxes


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_detection_files(tmp_path_factory.mktemp("det"))


@pytest.mark.parametrize("flavour", ["deepforest_csv", "retinanet_csv"])
def test_a_csv_gives_the_boxes_of_the_coco_json(written, flavour):
    boxes, summary = load_boxes_with_report(getattr(written, flavour), cache=False)
    expected = load_boxes(written.coco_json, cache=False)
    assert summary.format == flavour.replace("_", "-")
    assert_same_boxes(boxes, expected)
    np.testing.assert_array_equal(boxes.xy, expected.xy)
    assert boxes.image_names == written.names  # the image without objects is kept, with no box
    assert 2 not in boxes.image_index.tolist() and boxes.n_images == len(written.names)


def test_deepforest_bad_rows_are_named_and_skipped(tmp_path, image_writer):
    image_writer(tmp_path / "a.png", 100, 50)
    path = tmp_path / "a.csv"
    path.write_text(
        "image_path,xmin,ymin,xmax,ymax,label\n"
        "a.png,10,10,30,20,Tree\n"
        "a.png,x,1,2,3,Tree\n"  # line 3: not numbers
        "a.png,5,5,5,9,Tree\n"  # line 4: zero width
        "missing.png,1,1,2,2,Tree\n"  # an image that does not exist
        "a.png,90,40,120,60,Tree\n"  # partly outside: clipped to 90..100 x 40..50
    )
    with pytest.warns(UserWarning) as record:
        boxes, summary = load_boxes_with_report(path, cache=False)
    message = str(record[0].message)
    assert "a.csv:3" in message and "a.csv:4" in message and "missing.png" in message
    assert (summary.skipped_boxes, summary.skipped_images, summary.clipped_boxes) == (2, 1, 1)
    # 20/100, 10/50; clipped 10/100, 10/50
    np.testing.assert_allclose(boxes.wh, [[0.2, 0.2], [0.1, 0.2]])


def test_retinanet_rows_of_the_wrong_length_are_named(tmp_path, image_writer):
    image_writer(tmp_path / "b.jpg", 64, 64)
    path = tmp_path / "train.csv"
    path.write_text("b.jpg,1,2,33,34,cat\nb.jpg,1,2,3\nb.jpg,,,,,\n")
    with pytest.warns(UserWarning, match="train.csv:2.*4 fields"):
        boxes = load_boxes(path, cache=False)
    np.testing.assert_allclose(boxes.wh, [[0.5, 0.5]])  # 32/64
    assert boxes.n_images == 1


def test_a_csv_of_another_layout_is_not_taken(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("name,score\nx,1\n")
    with pytest.raises(ValueError, match="no known format recognises"):
        load_boxes(path)
