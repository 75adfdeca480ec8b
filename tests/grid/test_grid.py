"""Grid anchor generators (torchvision's family) without torchvision: geometry, matching, fit, model I/O.

The real torchvision models are in ``test_generators_torchvision.py``; here toy modules
shaped like torchvision's ``AnchorGenerator`` / RetinaNet / Faster R-CNN stand in.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from autoanchor import BoxSizes
from autoanchor.grid import (
    GridAnchors,
    ResizeRule,
    best_iou,
    cell_anchors,
    fit_grid_anchors,
    grid_anchors,
    lattice_offsets,
    make_samples,
    match_stats,
    offset_iou,
    pool_samples,
    positive_counts,
)
from autoanchor.training.heads.torchvision_model import (
    boxes_to_input,
    check_grid_anchors,
    find_anchor_generator,
    measure_strides,
    read_detector,
    write_grid_anchors,
)

RETINANET = GridAnchors(
    tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512)),
    ((0.5, 1.0, 2.0),) * 5,
    (8, 16, 32, 64, 128),
)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coco128() -> BoxSizes:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "autoanchor" / "data" / "coco128.npz"
    with np.load(path) as data:
        return BoxSizes(data["shapes"], data["wh"], data["image_index"], source="coco128")


# ---------------------------------------------------------------- plain references


def corner_iou(a, b) -> float:
    """IoU of two (x1, y1, x2, y2) boxes, plain Python."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def all_anchors(g: GridAnchors, width: int, height: int) -> list[list[float]]:
    """Every anchor of a padded ``width x height`` input, with plain loops."""
    rows = []
    for cell, stride in zip(g.cell_anchors(), g.strides):
        for j in range(height // stride):
            for i in range(width // stride):
                for a in cell.tolist():
                    rows.append([a[0] + i * stride, a[1] + j * stride, a[2] + i * stride, a[3] + j * stride])
    return rows


# ---------------------------------------------------------------- geometry


def test_cell_anchors_known_values():
    # size 32, ratio 0.5 (h/w): w = 32/sqrt(.5) = 45.25 -> half 22.63 -> 23; h = 22.63 -> half 11.31 -> 11
    expected = torch.tensor([[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]])
    assert torch.equal(cell_anchors([32], [0.5, 1.0, 2.0]), expected)


def test_cell_anchors_order_and_half_to_even_rounding():
    # Ratios outer, sizes inner. Ratio 1: size 10 -> half 5; size 3 -> half 1.5 -> 2 (to even);
    # size 5 -> half 2.5 -> 2 (to even). Ratio 4: w = s/2, h = 2s: size 10 -> halves 2.5 -> 2 and 10;
    # size 3 -> halves .75 -> 1 and 3; size 5 -> halves 1.25 -> 1 and 5.
    got = cell_anchors([10, 3, 5], [1.0, 4.0])
    expected = torch.tensor(
        [
            [-5, -5, 5, 5],
            [-2, -2, 2, 2],
            [-2, -2, 2, 2],
            [-2, -10, 2, 10],
            [-1, -3, 1, 3],
            [-1, -5, 1, 5],
        ],
        dtype=torch.float32,
    )
    assert torch.equal(got, expected)


def test_grid_anchors_against_a_loop():
    cell = cell_anchors([8, 12], [0.5, 2.0])
    got = grid_anchors(cell, (3, 4), (16, 16))
    expected = [
        [a[0] + x * 16, a[1] + y * 16, a[2] + x * 16, a[3] + y * 16]
        for y in range(3)
        for x in range(4)
        for a in cell.tolist()
    ]
    assert got.tolist() == expected


def test_grid_anchors_structure_and_validation():
    assert RETINANET.anchors_per_location == (9,) * 5
    assert RETINANET.shared_ratios and RETINANET.cell == 128
    assert GridAnchors(((8,),) * 3, ((1.0,),) * 3, (32, 32, 64)).cell == 64
    with pytest.raises(ValueError, match="one entry per level"):
        GridAnchors(((32,), (64,)), ((1.0,),), (8, 16))
    with pytest.raises(ValueError, match=r"sizes\[1\]"):
        GridAnchors(((32,), (-64,)), ((1.0,), (1.0,)), (8, 16))
    with pytest.raises(TypeError, match="strides"):
        GridAnchors(((32,),), ((1.0,),), (8.5,))


def test_str_is_python_for_the_generator():
    text = str(GridAnchors(((32, 40), (64, 80)), ((0.5, 1.0),) * 2, (8, 16)))
    assert text.startswith("AnchorGenerator(sizes=((32, 40), (64, 80),), aspect_ratios=((0.5, 1), (0.5, 1),))")


def test_resize_rule_known_values():
    rule = ResizeRule(800, 1333)
    # 640x480: scale min(800/480, 1333/640) = 1.6667 -> 1066.67 floors to 1066, 800
    # 1000x500: scale min(1.6, 1.333) = 1.333 -> 1333, 666.5 floors to 666
    shapes = torch.tensor([[640.0, 480.0], [1000.0, 500.0]])
    assert rule.resized_shape(shapes).tolist() == [[1066.0, 800.0], [1333.0, 666.0]]
    assert rule.padded_shape(shapes).tolist() == [[1088.0, 800.0], [1344.0, 672.0]]
    assert ResizeRule(1, 1, fixed_size=(320, 240)).resized_shape(shapes).tolist() == [[320.0, 240.0]] * 2
    with pytest.raises(ValueError, match="min_size"):
        ResizeRule(0, 1333)


def test_lattice_offsets_deterministic_and_in_the_unit_square():
    points = lattice_offsets(64)
    assert torch.equal(points, lattice_offsets(64))
    assert ((points >= 0) & (points < 1)).all()
    assert len({tuple(p) for p in points.tolist()}) == 64
    # Spread at a finer stride too: modulo 1/4 of the cell every quarter-interval on x gets points.
    fine = torch.frac(points[:, 0] * 4)
    assert torch.histc(fine, bins=4, min=0, max=1).min() >= 8
    with pytest.raises(ValueError, match="count"):
        lattice_offsets(0)


# ---------------------------------------------------------------- matching


def test_offset_iou_against_corner_boxes():
    g = generator(0)
    wh = torch.rand(50, 2, generator=g, dtype=torch.float64) * 60 + 1
    anchors = torch.rand(7, 2, generator=g, dtype=torch.float64) * 60 + 1
    offset = (torch.rand(50, 2, generator=g, dtype=torch.float64) - 0.5) * 80
    got = offset_iou(wh, anchors, offset)
    for n in range(50):
        box = [
            offset[n, 0] - wh[n, 0] / 2,
            offset[n, 1] - wh[n, 1] / 2,
            offset[n, 0] + wh[n, 0] / 2,
            offset[n, 1] + wh[n, 1] / 2,
        ]
        for a in range(7):
            anchor = [-anchors[a, 0] / 2, -anchors[a, 1] / 2, anchors[a, 0] / 2, anchors[a, 1] / 2]
            assert got[n, a].item() == pytest.approx(
                corner_iou([float(v) for v in box], [float(v) for v in anchor]), abs=1e-12
            )


@pytest.mark.parametrize("threshold", [0.4, 0.5, 0.7])
def test_best_iou_and_positives_against_every_anchor(threshold):
    gen = GridAnchors(((20, 28), (40, 90)), ((0.5, 1.0, 2.0), (0.7, 1.4, 2.5)), (8, 16))
    width, height = 96, 64
    g = generator(1)
    wh = torch.rand(120, 2, generator=g, dtype=torch.float64) * 80 + 3
    xy = torch.rand(120, 2, generator=g, dtype=torch.float64) * torch.tensor([width, height])
    anchors = all_anchors(gen, width, height)
    samples = make_samples(wh, xy, gen.cell, extent=torch.tensor([[width, height]] * 120, dtype=torch.float64))
    best, positives = best_iou(samples, gen), positive_counts(samples, gen, threshold)
    for n in range(120):
        box = [
            float(xy[n, 0] - wh[n, 0] / 2),
            float(xy[n, 1] - wh[n, 1] / 2),
            float(xy[n, 0] + wh[n, 0] / 2),
            float(xy[n, 1] + wh[n, 1] / 2),
        ]
        ious = [corner_iou(box, a) for a in anchors]
        assert best[n].item() == pytest.approx(max(ious), abs=1e-9)
        assert positives[n].item() == sum(i >= threshold for i in ious)


def test_unknown_positions_average_over_the_lattice():
    wh = torch.tensor([[30.0, 30.0], [10.0, 50.0]], dtype=torch.float64)
    samples = make_samples(wh, None, 32, lattice=16)
    assert samples.wh.shape == (32, 2) and samples.weight.sum().item() == pytest.approx(2.0)
    gen = GridAnchors(((30,),), ((1.0,),), (32,))
    stats = match_stats(samples, gen, threshold=0.5)
    # The 30x30 box on a 30x30 anchor: IoU = (30-|dx|)(30-|dy|) / (1800 - that), computed per lattice point.
    offsets = lattice_offsets(16, dtype=torch.float64) * 32
    offsets = offsets - 32 * torch.round(offsets / 32)
    inter = (30 - offsets.abs()).clamp(min=0).prod(1)
    first = inter / (1800 - inter)
    second = offset_iou(wh[1:], torch.tensor([[30.0, 30.0]], dtype=torch.float64), offsets).flatten()
    assert stats.mean_iou == pytest.approx(float((first.mean() + second.mean()) / 2), abs=1e-12)
    assert stats.matched == pytest.approx(float(((first >= 0.5).double().mean() + (second >= 0.5).double().mean()) / 2))
    assert 0 <= stats.matched <= 1 and stats.positives >= stats.matched


def test_make_samples_rejects_bad_boxes():
    with pytest.raises(ValueError, match="box 1"):
        make_samples(torch.tensor([[1.0, 2.0], [0.0, 3.0]]), None, 8)
    with pytest.raises(ValueError, match="xy"):
        make_samples(torch.ones(2, 2), torch.ones(3, 2), 8)
    with pytest.raises(ValueError, match="threshold"):
        match_stats(make_samples(torch.ones(2, 2), None, 8), RETINANET, threshold=1.5)


# ---------------------------------------------------------------- pooling and fit


def coco_input_wh() -> torch.Tensor:
    boxes = coco128()
    wh, _xy, _extent = boxes_to_input(boxes.shapes, boxes.wh, boxes.image_index, None, ResizeRule(800, 1333))
    return wh


def test_pool_samples_keeps_the_weight_and_bounds_the_rows():
    wh = coco_input_wh()
    pooled = pool_samples(wh, None, 128, bins_per_octave=6, positions_per_pool=8)
    assert pooled.weight.sum().item() == pytest.approx(wh.shape[0])
    assert pooled.wh.shape[0] % 8 == 0 and pooled.wh.shape[0] < wh.shape[0] * 8
    xy = torch.rand(wh.shape, generator=generator(2), dtype=torch.float64) * 800
    known = pool_samples(wh, xy, 128, bins_per_octave=6, positions_per_pool=2, generator=generator(3))
    assert known.weight.sum().item() == pytest.approx(wh.shape[0])
    assert known.wh.shape[0] < wh.shape[0] and (known.xy >= 0).all() and (known.xy < 128).all()


@pytest.fixture(scope="module")
def coco_fit(one_cpu_thread):
    return fit_grid_anchors(coco_input_wh(), None, RETINANET, threshold=0.5, seed=0)


def test_fit_keeps_the_structure_and_never_scores_lower(coco_fit):
    fitted = coco_fit.generator
    assert fitted.same_structure(RETINANET) and fitted.shared_ratios
    assert fitted.anchors_per_location == RETINANET.anchors_per_location
    assert coco_fit.fitness_after >= coco_fit.fitness_before
    assert all(v == int(v) for level in fitted.sizes for v in level)


def test_fit_matches_more_coco_boxes_than_the_defaults(coco_fit):
    wh = coco_input_wh()
    evaluator = make_samples(wh, None, 128, lattice=32)
    before = match_stats(evaluator, RETINANET, threshold=0.5, positives=False)
    after = match_stats(evaluator, coco_fit.generator, threshold=0.5, positives=False)
    assert after.matched > before.matched + 0.05  # pooled search, full evaluation


def test_fit_is_deterministic_and_per_level_ratios_stay_per_level(one_cpu_thread):
    wh = coco_input_wh()[:300]
    start = GridAnchors(((32, 64), (128, 256)), ((0.5, 1.0), (1.0, 2.0)), (16, 32))
    first = fit_grid_anchors(wh, None, start, threshold=0.5, seed=5, kicks=1)
    second = fit_grid_anchors(wh, None, start, threshold=0.5, seed=5, kicks=1)
    assert first.generator == second.generator
    assert first.generator.same_structure(start) and first.fitness_after >= first.fitness_before


def test_fit_with_known_positions(one_cpu_thread):
    wh = coco_input_wh()[:300]
    xy = torch.rand(wh.shape, generator=generator(4), dtype=torch.float64) * 600
    result = fit_grid_anchors(wh, xy, RETINANET, threshold=0.5, seed=0, kicks=0)
    exact = make_samples(wh, xy, RETINANET.cell)
    before = match_stats(exact, RETINANET, threshold=0.5, positives=False)
    after = match_stats(exact, result.generator, threshold=0.5, positives=False)
    assert after.matched >= before.matched


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="box 0"):
        fit_grid_anchors(torch.tensor([[-1.0, 3.0]]), None, RETINANET, threshold=0.5)
    with pytest.raises(ValueError, match="threshold"):
        fit_grid_anchors(torch.ones(3, 2), None, RETINANET, threshold=0.0)
    with pytest.raises(TypeError, match="GridAnchors"):
        fit_grid_anchors(torch.ones(3, 2), None, ((32,),), threshold=0.5)


# ---------------------------------------------------------------- toy torchvision-shaped modules


class ToyAnchorGenerator(nn.Module):
    """Shaped like torchvision's AnchorGenerator: sizes, aspect_ratios, a list of cell anchors."""

    def __init__(self, sizes, aspect_ratios, dtype=torch.float32):
        super().__init__()
        self.sizes = sizes
        self.aspect_ratios = aspect_ratios
        self.cell_anchors = [cell_anchors(s, r, dtype=dtype) for s, r in zip(sizes, aspect_ratios)]


class ToyBackbone(nn.Module):
    """Feature maps at strides 8 and 16 with a BatchNorm (whose statistics must not move)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=8, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x):
        first = self.norm(self.conv(x))
        return OrderedDict([("0", first), ("1", self.down(first))])


class ToyTransform(nn.Module):
    def __init__(self):
        super().__init__()
        self.min_size, self.max_size, self.size_divisible, self.fixed_size = (400, 512), 700, 32, None


class ToyMatcher:
    def __init__(self, high_threshold):
        self.high_threshold = high_threshold


class ToyRetinaNet(nn.Module):
    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.backbone = ToyBackbone()
        self.transform = ToyTransform()
        self.anchor_generator = ToyAnchorGenerator(((32, 40, 50), (64, 80, 101)), ((0.5, 1.0, 2.0),) * 2, dtype)
        self.proposal_matcher = ToyMatcher(0.5)


class ToyRPN(nn.Module):
    def __init__(self):
        super().__init__()
        self.anchor_generator = ToyAnchorGenerator(((32, 64), (128, 256)), ((0.5, 1.0, 2.0),) * 2)
        self.proposal_matcher = ToyMatcher(0.7)


class ToyFasterRCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = ToyBackbone()
        self.transform = ToyTransform()
        self.rpn = ToyRPN()


class Wrapper(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module


def snapshot(module) -> tuple:
    return (
        module.sizes,
        module.aspect_ratios,
        [c.clone() for c in module.cell_anchors],
        [c.data_ptr() for c in module.cell_anchors],
    )


def test_find_anchor_generator_everywhere():
    retina, rcnn = ToyRetinaNet(), ToyFasterRCNN()
    assert find_anchor_generator(retina) == ("anchor_generator", retina.anchor_generator)
    assert find_anchor_generator(rcnn) == ("rpn.anchor_generator", rcnn.rpn.anchor_generator)
    assert find_anchor_generator(Wrapper(rcnn)) == ("module.rpn.anchor_generator", rcnn.rpn.anchor_generator)
    assert find_anchor_generator(retina.anchor_generator)[0] == ""
    with pytest.raises(TypeError, match="Linear has no anchor generator"):
        find_anchor_generator(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        find_anchor_generator("model")


def test_measure_strides_leaves_the_model_as_it_was():
    model = ToyRetinaNet().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert measure_strides(model) == (8, 16)
    assert model.training and model.backbone.norm.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_read_detector_reads_threshold_resize_and_strides():
    retina = read_detector(ToyRetinaNet())
    assert (retina.family, retina.threshold, retina.generator.strides) == ("retinanet", 0.5, (8, 16))
    assert retina.resize == ResizeRule(512.0, 700.0, 32, None)  # min_size[-1] is the evaluation size
    rpn = read_detector(Wrapper(ToyFasterRCNN()))
    assert (rpn.family, rpn.threshold, rpn.path) == ("rpn", 0.7, "module.rpn.anchor_generator")
    bare = ToyAnchorGenerator(((32,),), ((1.0,),))
    with pytest.raises(TypeError, match="strides="):
        read_detector(bare)
    with pytest.raises(ValueError, match="threshold="):
        read_detector(bare, strides=(8,))
    assert read_detector(bare, strides=(8,), threshold=0.6).family == "generator"
    with pytest.raises(ValueError, match="2 levels but there are 1 strides"):
        read_detector(ToyRetinaNet(), strides=(8,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_write_replaces_in_place_keeping_dtype_and_tensors(dtype):
    module = ToyRetinaNet(dtype).anchor_generator
    pointers = [c.data_ptr() for c in module.cell_anchors]
    new = GridAnchors(((20, 30, 44), (70, 90, 120)), ((0.4, 1.1, 2.5),) * 2, (8, 16))
    write_grid_anchors(module, new)
    assert module.sizes == ((20, 30, 44), (70, 90, 120)) and module.aspect_ratios == ((0.4, 1.1, 2.5),) * 2
    assert [c.data_ptr() for c in module.cell_anchors] == pointers
    for cell, expected in zip(module.cell_anchors, new.cell_anchors(dtype=dtype)):
        assert cell.dtype == dtype and torch.equal(cell, expected)


def test_write_refuses_another_structure_and_changes_nothing():
    module = ToyRetinaNet().anchor_generator
    before = snapshot(module)
    with pytest.raises(ValueError, match="level 1 has 3 sizes"):
        write_grid_anchors(module, GridAnchors(((20, 30, 44), (70, 90)), ((0.5, 1.0, 2.0),) * 2, (8, 16)))
    after = snapshot(module)
    assert before[:2] == after[:2] and before[3] == after[3]
    assert all(torch.equal(a, b) for a, b in zip(before[2], after[2]))


class FailingGenerator(ToyAnchorGenerator):
    """Refuses its new aspect ratios, after the cell anchors were already written."""

    def __setattr__(self, name, value):
        if name == "aspect_ratios" and hasattr(self, "aspect_ratios"):
            raise RuntimeError("no writes here")
        super().__setattr__(name, value)


def test_write_rolls_back_on_a_late_failure():
    module = FailingGenerator(((32, 40), (64, 80)), ((0.5, 1.0),) * 2)
    before = snapshot(module)
    with pytest.raises(RuntimeError, match="no writes here"):
        write_grid_anchors(module, GridAnchors(((20, 30), (70, 90)), ((0.4, 1.1),) * 2, (8, 16)))
    after = snapshot(module)
    assert before[:2] == after[:2] and before[3] == after[3]
    assert all(torch.equal(a, b) for a, b in zip(before[2], after[2]))


def test_check_grid_anchors_replaces_when_more_boxes_match(one_cpu_thread):
    model = ToyRetinaNet()
    report = check_grid_anchors(coco128(), model)
    assert report.replaced and report.after.matched > report.before.matched
    assert report.generator_after.sizes == tuple(tuple(float(v) for v in s) for s in model.anchor_generator.sizes)
    for cell, expected in zip(model.anchor_generator.cell_anchors, report.generator_after.cell_anchors()):
        assert torch.equal(cell, expected)
    assert "\n" not in str(report) and "replaced" in str(report)


def test_check_grid_anchors_without_replace_changes_nothing(one_cpu_thread):
    model = ToyFasterRCNN()
    before = snapshot(model.rpn.anchor_generator)
    report = check_grid_anchors(coco128(), model, replace=False)
    assert not report.replaced and report.after == report.before
    after = snapshot(model.rpn.anchor_generator)
    assert before[:2] == after[:2] and all(torch.equal(a, b) for a, b in zip(before[2], after[2]))


def test_boxes_to_input_follows_the_resize_per_image():
    shapes = np.array([[640.0, 480.0], [1000.0, 500.0]])
    wh = np.array([[0.5, 0.5], [0.1, 0.2]])
    xy = np.array([[0.5, 0.5], [1.0, 1.0]])
    got_wh, got_xy, extent = boxes_to_input(shapes, wh, np.array([0, 1]), xy, ResizeRule(800, 1333))
    # image 0 -> 1066 x 800; image 1 -> 1333 x 666
    # 0.5 * 1066 = 533, 0.5 * 800 = 400; 0.1 * 1333 = 133.3, 0.2 * 666 = 133.2
    assert got_wh.flatten().tolist() == pytest.approx([533.0, 400.0, 133.3, 133.2], abs=1e-9)
    assert got_xy.tolist() == [[533.0, 400.0], [1333.0, 666.0]]
    assert extent.tolist() == [[1088.0, 800.0], [1344.0, 672.0]]


@pytest.mark.parametrize("sizes_per_level", [1, 3])
def test_best_without_one_size_or_ratio_against_a_loop(sizes_per_level):
    from autoanchor.grid.fit import _Best

    g = generator(11)
    table = [torch.rand(40, 3, sizes_per_level, generator=g) for _ in range(4)]  # [S, r, k] per level
    best = _Best([t.clone() for t in table])
    table[2] = torch.rand(40, 3, sizes_per_level, generator=g)
    best.set(2, table[2].clone())
    best.refresh()
    for row in range(40):
        everything = max(float(t[row].max()) for t in table)
        assert float(best.best()[row]) == everything
        for level in range(4):
            for j in range(sizes_per_level):  # leave out size j of `level` (all its ratios)
                rest = [float(t[row].max()) for l, t in enumerate(table) if l != level]
                rest += [float(table[level][row, :, k].max()) for k in range(sizes_per_level) if k != j]
                assert float(best.without([level], None, j)[row]) == max(rest, default=0.0)
            for i in range(3):  # leave out ratio i of every level (shared ratios)
                rest = [float(t[row, r].max()) for t in table for r in range(3) if r != i]
                assert float(best.without([0, 1, 2, 3], i, None)[row]) == max(rest)


def test_fit_rejects_a_bad_coarse_factor():
    with pytest.raises(ValueError, match="coarse_factor must be an integer of at least 1, got 0"):
        fit_grid_anchors(torch.ones(3, 2) * 10, None, RETINANET, threshold=0.5, coarse_factor=0)


def test_position_iou_objective_scores_as_the_fit_does(one_cpu_thread):
    from autoanchor.grid.objective import PositionIoUObjective

    wh = coco_input_wh()
    fit = fit_grid_anchors(wh, None, RETINANET, threshold=0.5, seed=0)
    objective = PositionIoUObjective(wh, None, strides=RETINANET.strides, cell=RETINANET.cell, threshold=0.5)
    scores = objective.score([RETINANET, fit.generator])
    # The same pooling and formula as the fit: its own before/after fitness, to float32 rounding.
    assert scores.tolist() == pytest.approx([fit.fitness_before, fit.fitness_after], abs=1e-5)
    stats = objective.stats(fit.generator)
    assert scores[1] == pytest.approx(stats.matched + 0.5 * stats.mean_iou, abs=1e-5)
    with pytest.raises(ValueError, match="strides"):
        objective.score([GridAnchors(((32,),), ((1.0,),), (8,))])
