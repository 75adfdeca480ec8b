"""A dataset object that must be iterated shows a progress bar only when asked (no torchvision needed)."""

from __future__ import annotations

import torch

from autoanchor import check_anchors
from autoanchor.io.datasets import load_boxes
from test_hook import make_model


class Scenes:
    """A map-style dataset in torchvision's convention: ``(image [3, H, W], {"boxes": [K, 4] xyxy})``."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        boxes = torch.tensor([[4.0, 6.0, 40.0 + 2 * i, 70.0], [50.0, 10.0, 60.0, 30.0 + 3 * i]])
        return torch.zeros(3, 96, 128), {"boxes": boxes, "labels": torch.ones(2, dtype=torch.int64)}


def test_iterating_a_dataset_is_silent_unless_progress_is_asked(capsys):
    quiet = load_boxes(Scenes())
    assert capsys.readouterr().err == ""
    shown = load_boxes(Scenes(), progress=True)
    assert "Reading Scenes" in capsys.readouterr().err
    assert quiet.wh.shape == shown.wh.shape == (24, 2)


def test_a_quiet_check_writes_nothing_and_a_verbose_one_shows_the_bar(capsys):
    check_anchors(Scenes(), make_model(), verbose=False, gen=5)
    assert capsys.readouterr().err == ""
    check_anchors(Scenes(), make_model(), verbose=True, gen=5)
    assert "Reading Scenes" in capsys.readouterr().err
