"""search_anchors and advise refuse more anchors than the boxes have distinct sizes, before searching."""

from __future__ import annotations

import time

import pytest
import torch

from autoanchor.core.advise import advise
from autoanchor.core.search import search_anchors


def test_search_refuses_more_anchors_than_distinct_sizes_at_once():
    # 929 boxes, 7 distinct sizes among them: an 8th anchor could only repeat one.
    wh = torch.tensor([[10.0 + 5 * (i % 7), 20.0 + 3 * (i % 7)] for i in range(929)])
    start = time.perf_counter()
    with pytest.raises(ValueError, match="only 7 distinct sizes"):
        search_anchors(wh, 5000, gen=0)
    with pytest.raises(ValueError, match="only 7 distinct sizes"):
        search_anchors(wh, 8, gen=0)
    assert time.perf_counter() - start < 5
    assert search_anchors(wh, 7, gen=0, seed=0).anchors.shape == (7, 2)


def test_advise_refuses_counts_beyond_distinct_sizes_before_any_search():
    wh = torch.tensor([[10.0 + 5 * (i % 7), 20.0 + 3 * (i % 7)] for i in range(100)])
    start = time.perf_counter()
    with pytest.raises(ValueError, match="counts up to 1000 anchors.*only 7 distinct sizes"):
        advise(wh, img_size=640, counts=range(3, 1001))
    assert time.perf_counter() - start < 5
