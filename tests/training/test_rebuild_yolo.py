"""yolov5 / yolov7 anchors are buffers: a fitted head's state_dict round trip keeps them."""

from __future__ import annotations

import pytest
import torch

from autoanchor import check_anchors
from test_hook import POOR, coco128_labels, head_of, make_model, pixel_anchors


@pytest.mark.slow  # a yolov5 search for each head: about 9 s
def test_fitted_yolo_anchors_survive_state_dict_and_load(tmp_path):
    for head in ("v6", "v7"):
        model = make_model(POOR, head=head)
        report = check_anchors(coco128_labels(), model, gen=50, verbose=False)
        assert report.replaced
        torch.save(model.state_dict(), tmp_path / f"{head}.pt")
        fresh = make_model(POOR, head=head)  # built the usual way, with the poor anchors
        assert not torch.equal(pixel_anchors(head_of(fresh)), pixel_anchors(head_of(model)))
        fresh.load_state_dict(torch.load(tmp_path / f"{head}.pt"))
        assert torch.equal(head_of(fresh).anchors, head_of(model).anchors)
        if head == "v7":  # the anchor_grid buffer (pixels) too
            assert torch.equal(head_of(fresh).anchor_grid, head_of(model).anchor_grid)
