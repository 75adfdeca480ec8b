"""Boxes over their image's edge from an .npz or a dataset object: clipped to the image and said, as the
file formats do; sources without such boxes (the shared data sets) are read bit for bit as before."""

from __future__ import annotations

import numpy as np
import pytest

from autoanchor.io.datasets import load_boxes, load_boxes_with_report
from helpers import shared_npz, write_npz


def test_npz_box_larger_than_its_image_is_clipped_with_a_warning(tmp_path):
    # Image 640x480; box 0 is 1.5 x 0.5 of it (960 px wide), box 1 fits, box 2 overhangs by 0.5 px (rounding).
    path = write_npz(tmp_path / "big.npz", [[640, 480]], [[1.5, 0.5], [0.25, 0.5], [1.0 + 0.5 / 640, 0.2]], [0, 0, 0])
    with pytest.warns(UserWarning, match=r"(?s)1 boxes larger than or over the edge.*box 0 \(960x240 px\) in image 0"):
        boxes, summary = load_boxes_with_report(path, cache=False)
    assert boxes.wh.tolist() == [[1.0, 0.5], [0.25, 0.5], [1.0 + 0.5 / 640, 0.2]]
    assert summary.clipped_boxes == 1 and "1 boxes clipped to their image" in str(summary)
    assert float(boxes.pixel_wh(640)[:, 0].max()) <= 640 + 1


def test_npz_with_centres_clips_to_the_image_and_skips_boxes_outside(tmp_path):
    # Box 0 centred at x=0.9 with width 0.4 spans 0.7..1.1: clipped to 0.7..1.0 (width 0.3, centre 0.85).
    path = write_npz(
        tmp_path / "xy.npz", [[100, 100]], [[0.4, 0.2], [0.2, 0.2], [0.1, 0.1]], [0, 0, 0],
        xy=np.array([[0.9, 0.5], [0.5, 0.5], [1.0, 1.0]], dtype=np.float32),
    )
    with pytest.warns(UserWarning, match="clipped to it"):
        boxes, summary = load_boxes_with_report(path, cache=False)
    assert np.allclose(boxes.wh, [[0.3, 0.2], [0.2, 0.2], [0.05, 0.05]])
    assert np.allclose(boxes.xy, [[0.85, 0.5], [0.5, 0.5], [0.975, 0.975]])
    assert summary.clipped_boxes == 2


class _Dataset:
    """A yolov5-style dataset object: .shapes (width, height) px and .labels rows class, x, y, w, h."""

    def __init__(self) -> None:
        self.shapes = np.array([[640.0, 640.0], [320.0, 240.0]])
        self.labels = [np.array([[0, 0.5, 0.5, 1.5, 1.5], [1, 0.5, 0.5, 0.1, 0.2]]), np.array([[0, 0.5, 0.5, 0.5, 0.5]])]


def test_dataset_object_box_larger_than_its_image_is_clipped():
    with pytest.warns(UserWarning, match=r"box 0 \(960x960 px\) in image 0"):
        boxes = load_boxes(_Dataset())
    assert boxes.pixel_wh(640).max().item() <= 640
    assert boxes.wh.tolist()[1:] == [[0.1, 0.2], [0.5, 0.5]]


@pytest.mark.parametrize("name", ["coco128", "voc2012_trainval"])
def test_shared_data_is_read_bit_for_bit(name):
    path = shared_npz(name)
    with np.load(path) as raw:
        wh, xy = raw["wh"], raw["xy"] if "xy" in raw.files else None
    boxes, summary = load_boxes_with_report(path, cache=False)
    assert summary.clipped_boxes == 0 and summary.skipped_boxes == 0
    assert np.array_equal(np.asarray(boxes.wh), wh)
    if xy is not None:
        assert np.array_equal(np.asarray(boxes.xy), xy)


def test_builtin_is_unchanged():
    from autoanchor.io.datasets.npz import builtin_path

    with np.load(builtin_path()) as raw:
        wh = raw["wh"]
    assert np.array_equal(np.asarray(load_boxes(None).wh), wh)
