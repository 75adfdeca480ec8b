"""Box sizes made a block at a time (``SizeBlocks``): the same rows, pools and figures as one tensor."""

from __future__ import annotations

import pytest
import torch

from autoanchor import load_boxes
from autoanchor.core import blocks as blocks_module
from autoanchor.core.boxes import searchable_mask
from autoanchor.core.blocks import WHOLE_ROWS, SizeBlocks, pool_blocks, stats_over
from autoanchor.core.jitter import jitter_blocks, jitter_wh
from autoanchor.core.metrics import anchor_stats_batch
from autoanchor.core.search import pool_sizes, search_anchors


@pytest.fixture(scope="module")
def coco():
    sizes = load_boxes(None)
    return sizes.pixel_wh(640), torch.as_tensor(sizes.image_index, dtype=torch.long)


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("rows", [100, 1 << 18])
def test_jittered_blocks_are_jitter_wh_rows_in_order(coco, per_image, rows):
    wh, image_index = coco
    index = image_index if per_image else None
    made = SizeBlocks(wh, low=0.5, high=1.5, draws=8, image_index=index, seed=7, rows=rows)
    expected = jitter_wh(wh, scale=0.5, draws=8, image_index=index, seed=7)
    assert torch.equal(made.materialise(), expected)
    assert torch.equal(made.materialise(), expected), "a second pass must make the same rows"
    assert max(block.shape[0] for block in made) <= rows


def test_plain_sizes_up_to_whole_rows_are_one_block(coco):
    wh, _ = coco
    assert torch.equal(SizeBlocks(wh).single(), wh)
    assert len(list(SizeBlocks(wh))) == 1
    jittered = SizeBlocks(wh, low=0.9, high=1.1, draws=2)
    assert jittered.single() is None and len(list(jittered)) == 2


def test_where_and_sharded_filter_every_block(coco):
    wh, _ = coco
    made = SizeBlocks(wh, low=0.5, high=1.5, draws=3, seed=1, rows=200)
    every = made.materialise()
    big = made.where(lambda b: b[:, 0] > 40, dtype=torch.float64)
    assert big.materialise().dtype == torch.float64
    assert torch.equal(big.materialise(), every[every[:, 0] > 40].double())
    shares = [made.sharded(rank, 2).materialise() for rank in range(2)]
    assert sum(s.shape[0] for s in shares) == every.shape[0]
    assert torch.equal(torch.cat(shares).sort(0).values, every.sort(0).values)


@pytest.mark.parametrize("cell", [0.0, 0.005, 0.05])
def test_pooled_blocks_match_pooling_all_rows_at_once(coco, cell):
    wh, image_index = coco
    made = SizeBlocks(wh, low=0.5, high=1.5, draws=8, image_index=image_index, seed=3, rows=300)
    points, weights = pool_blocks(made, cell)
    ref_points, ref_weights = pool_sizes(made.materialise(), cell=cell)
    assert points.shape == ref_points.shape and points.dtype == ref_points.dtype
    assert torch.equal(weights, ref_weights)
    if cell == 0:
        assert torch.equal(points, ref_points)  # identical sizes merge exactly
    else:
        torch.testing.assert_close(points, ref_points, rtol=1e-6, atol=0)


def test_pooled_blocks_of_plain_sizes_are_pool_sizes(coco):
    wh, _ = coco
    points, weights = pool_blocks(SizeBlocks(wh), 0.005)
    ref = pool_sizes(wh, cell=0.005)
    assert torch.equal(points, ref[0]) and torch.equal(weights, ref[1])


def test_stats_over_blocks_add_up_to_the_figures_of_all_rows(coco):
    wh, _ = coco
    made = SizeBlocks(wh, low=0.5, high=1.5, draws=8, seed=2, rows=250)
    population = torch.tensor([[[10.0, 13], [30, 61], [156, 198]], [[20.0, 20], [60, 60], [200, 200]]])
    got = stats_over(made, population, thr=4.0)
    want = anchor_stats_batch(made.materialise(), population, thr=4.0)
    for g, w in zip(got, want):
        for field in ("fitness", "bpr", "aat", "avg_iou", "n_boxes"):
            assert getattr(g, field) == pytest.approx(getattr(w, field), rel=1e-12)


def test_search_under_scale_draws_is_the_search_of_the_drawn_sizes(coco):
    """search_anchors(scale=) streams the draws; it finds what a search of the materialised draws finds."""
    wh, _ = coco
    streamed = search_anchors(wh, 9, scale=0.5, seed=4, gen=200)
    drawn = jitter_wh(wh, scale=0.5, draws=8, seed=4)
    whole = search_anchors(drawn, 9, seed=4, gen=200)
    assert torch.equal(streamed.anchors, whole.anchors)
    assert streamed.n_boxes == whole.n_boxes == int(searchable_mask(drawn).sum())
    assert streamed.stats.fitness == pytest.approx(whole.stats.fitness, rel=1e-12)


def test_search_under_scale_never_holds_all_draws(coco, monkeypatch):
    """The defect (#22, item 6): the eight draws were one [8 N, 2] tensor, pooled at once (1e7 boxes: 8.7 GB).
    Now the search sees them a draw (or a block) at a time, however it pools, counts or measures."""
    wh, _ = coco
    seen = []
    original = SizeBlocks.__iter__

    def spy(self):
        for block in original(self):
            seen.append(block.shape[0])
            yield block

    monkeypatch.setattr(SizeBlocks, "__iter__", spy)
    search_anchors(wh, 9, scale=0.5, seed=0, gen=10)
    assert seen and max(seen) <= wh.shape[0] < 8 * wh.shape[0]


def test_plain_sizes_past_whole_rows_are_searched_in_blocks(monkeypatch):
    """More plain rows than WHOLE_ROWS are pooled block by block (shrunk here to keep the test small)."""
    wh = load_boxes(None).pixel_wh(640).repeat(3, 1)
    whole = search_anchors(wh, 9, seed=1, gen=50)
    monkeypatch.setattr(blocks_module, "WHOLE_ROWS", 1000)
    monkeypatch.setattr(blocks_module, "BLOCK_ROWS", 700)
    blocked = search_anchors(wh, 9, seed=1, gen=50)
    assert WHOLE_ROWS > wh.shape[0]
    assert torch.equal(blocked.anchors, whole.anchors)
    assert blocked.stats.fitness == pytest.approx(whole.stats.fitness, rel=1e-12)


def test_jitter_blocks_are_jitter_wh_made_lazily(coco):
    wh, image_index = coco
    lazy = jitter_blocks(wh, scale=0.3, draws=4, image_index=image_index, seed=11)
    assert torch.equal(lazy.materialise(), jitter_wh(wh, scale=0.3, draws=4, image_index=image_index, seed=11))
    with pytest.raises(ValueError, match="scale"):
        jitter_blocks(wh, scale=1.5)
