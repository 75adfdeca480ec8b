"""positive_counts: work bounded by the boxes and the image, not by the largest anchor; same counts as a
plain loop over every anchor of the image, for ordinary and extreme anchor shapes."""

from __future__ import annotations

import resource
import time

import pytest
import torch

from autoanchor.grid import GridAnchors, make_samples, positive_counts


def _corner_iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _plain_counts(gen: GridAnchors, wh, xy, width: int, height: int, threshold: float) -> list[int]:
    counts = []
    for (w, h), (x, y) in zip(wh.tolist(), xy.tolist()):
        box = [x - w / 2, y - h / 2, x + w / 2, y + h / 2]
        count = 0
        for cell, stride in zip(gen.cell_anchors(), gen.strides):
            for j in range(height // stride):
                for i in range(width // stride):
                    for a in cell.tolist():
                        anchor = [a[0] + i * stride, a[1] + j * stride, a[2] + i * stride, a[3] + j * stride]
                        count += _corner_iou(box, anchor) >= threshold
        counts.append(count)
    return counts


@pytest.mark.parametrize("ratios", [(0.5, 1.0, 2.0), (1e-3, 1.0, 1e3), (0.05, 20.0)])
def test_counts_match_a_plain_loop_for_any_anchor_shape(ratios):
    gen = GridAnchors(((24, 48), (64,)), (ratios, ratios), (8, 16))
    width, height = 128, 96
    g = torch.Generator().manual_seed(3)
    wh = torch.rand(60, 2, generator=g, dtype=torch.float64) * 90 + 2
    xy = torch.rand(60, 2, generator=g, dtype=torch.float64) * torch.tensor([width, height])
    samples = make_samples(wh, xy, gen.cell, extent=torch.tensor([[width, height]] * 60, dtype=torch.float64))
    counts = positive_counts(samples, gen, 0.5)
    assert counts.tolist() == _plain_counts(gen, wh, xy, width, height, 0.5)


def test_extreme_anchor_shapes_take_bounded_time_and_memory():
    # A 1e-9 / 1e9 aspect ratio makes a 32 px anchor ~1e6 px long: the old reach (its long side over the
    # stride) asked for arrays of millions of grid points per box.
    gen = GridAnchors(((32,), (64,)), ((1e-9, 1.0, 1e9),) * 2, (8, 16))
    wh = torch.tensor([[30.0, 34.0], [60.0, 70.0], [5.0, 200.0]], dtype=torch.float64)
    samples = make_samples(wh, None, gen.cell)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    counts = positive_counts(samples, gen, 0.5)
    assert time.perf_counter() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: under 0.5 GB more
    square = positive_counts(samples, GridAnchors(((32,), (64,)), ((1.0,),) * 2, (8, 16)), 0.5)
    assert torch.equal(counts, square)  # the extreme anchors match nothing: only the square ones count


def test_large_boxes_in_a_large_image_are_counted_in_bounded_steps():
    # Boxes of 5000 px at stride 8: ~600 grid steps each way; memory stays bounded by the step size.
    gen = GridAnchors(((4096, 6000),), ((0.5, 1.0, 2.0),), (8,))
    wh = torch.tensor([[5000.0, 5200.0], [4000.0, 6000.0]], dtype=torch.float64)
    xy = torch.tensor([[6000.0, 6000.0], [3000.0, 9000.0]], dtype=torch.float64)
    samples = make_samples(wh, xy, gen.cell, extent=torch.tensor([[12000.0, 12000.0]] * 2, dtype=torch.float64))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counts = positive_counts(samples, gen, 0.5)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000
    assert bool((counts > 0).all())
