"""The training benchmark's scene renderer and its COCOeval wrapper (benchmarks/train_effect.py).

No training here: the renderer must put each object exactly in its box, repeat under a seed,
and the evaluator must score perfect, shifted and missing detections as COCO does.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torchvision")
pytest.importorskip("pycocotools")

import torch  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("train_effect", BENCHMARKS / "train_effect.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["train_effect"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    yield module
    sys.modules.pop("train_effect", None)


def test_objects_fill_their_boxes_and_repeat_under_a_seed(bench):
    sizes = np.array([[40.0, 24.0], [12.0, 30.0], [6.0, 6.0]])
    image, boxes = bench.render_scene(np.random.default_rng(3), sizes, np.zeros((0, 2)), 96)
    again, boxes_again = bench.render_scene(np.random.default_rng(3), sizes, np.zeros((0, 2)), 96)
    assert image.shape == (3, 96, 96) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(boxes, boxes_again)
    assert boxes.shape == (3, 4)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 96).all()
    # sizes kept (placed largest first), and the ellipse's rim is dark where it touches the box
    np.testing.assert_allclose(np.sort((boxes[:, 2:] - boxes[:, :2]).prod(1)), np.sort(sizes.prod(1)), rtol=1e-5)
    big = boxes[np.argmax((boxes[:, 2:] - boxes[:, :2]).prod(1))]
    cy = int((big[1] + big[3]) / 2)
    left_rim = image[:, cy, int(big[0]) + 1]
    centre = image[:, cy, int((big[0] + big[2]) / 2)]
    assert left_rim.max() < 60 and centre[0] > 150  # dark rim (0.08 * 255), warm body


def test_coco_scores_perfect_shifted_and_missing(bench):
    truth = [torch.tensor([[10.0, 10.0, 50.0, 40.0], [60.0, 60.0, 70.0, 72.0]]), torch.tensor([[0.0, 0.0, 30.0, 30.0]])]
    perfect = [{"boxes": t.clone(), "scores": torch.ones(t.shape[0])} for t in truth]
    scores = bench.coco_scores(truth, perfect, 96)
    assert scores["map50"] == pytest.approx(1.0) and scores["map"] == pytest.approx(1.0)
    # shifted by the box's own width: IoU 0 with its box, so nothing is found
    shifted = [{"boxes": t + torch.stack([t[:, 2] - t[:, 0], 0 * t[:, 0]] * 2, 1), "scores": torch.ones(t.shape[0])}
               for t in truth]
    assert bench.coco_scores(truth, shifted, 96)["map50"] == pytest.approx(0.0)
    empty = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)} for _ in truth]
    assert bench.coco_scores(truth, empty, 96) == {"map50": 0.0, "map": 0.0, "ap_small": 0.0, "ar_small": 0.0}
    # one of three boxes found: recall 1/3 at every threshold
    half = [perfect[0] | {"boxes": truth[0][:1], "scores": torch.ones(1)}, empty[1]]
    assert bench.coco_scores(truth, half, 96)["map50"] == pytest.approx(1 / 3, abs=0.01)
