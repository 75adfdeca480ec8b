"""The torchvision head family through ``check_anchors``, with toy torchvision-shaped modules.

The real detectors are in ``test_heads_torchvision_real.py`` (skipped without torchvision).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import fail_after_prepare
from test_grid import ToyAnchorGenerator, ToyFasterRCNN, ToyRetinaNet, Wrapper, coco128, snapshot
from torch import nn

from autoanchor import BoxSizes, check_anchors
from autoanchor.grid import GridAnchors, make_samples, match_stats
from autoanchor.grid.inputs import input_samples
from autoanchor.training.heads.torchvision_model import boxes_to_input, read_detector
from autoanchor.training.heads import find_head, get_family
from autoanchor.training.heads.torchvision import TorchvisionAnchors, generator_line, pack, unpack
from autoanchor.training.report import GridReport


def same(before, module) -> bool:
    after = snapshot(module)
    return (
        before[:2] == after[:2]
        and before[3] == after[3]
        and all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(before[2], after[2]))
    )


def test_pack_and_unpack_are_inverse():
    start = GridAnchors(((32, 40, 50), (64, 80)), ((0.5, 1.0, 2.0), (0.7, 1.3)), (8, 16))
    flat = pack(start)
    # 3 + 2 sizes, then 3 + 2 ratios, in the generator's order.
    assert flat.tolist() == [32, 40, 50, 64, 80, 0.5, 1.0, 2.0, 0.7, 1.3] and flat.dtype == torch.float64
    assert unpack(flat, start) == start
    with pytest.raises(ValueError, match="9 values"):
        unpack(flat[:9], start)


def test_the_family_is_found_after_the_yolo_ones_and_everywhere():
    retina, rcnn = ToyRetinaNet(), ToyFasterRCNN()
    assert find_head(retina)[0].name == "torchvision" and find_head(retina)[2] == "model.anchor_generator"
    assert find_head(Wrapper(rcnn))[2] == "model.module.rpn.anchor_generator"
    assert find_head(retina.anchor_generator)[0].name == "torchvision"
    with pytest.raises(TypeError, match="torchvision: Linear has no anchor generator"):
        find_head(nn.Linear(2, 2))


@pytest.mark.slow
def test_replaced_only_when_the_share_matched_rises(one_cpu_thread):
    model = ToyRetinaNet()
    module = model.anchor_generator
    pointers = [c.data_ptr() for c in module.cell_anchors]
    boxes = coco128()
    report = check_anchors(boxes, model, bpr_threshold=0.98, verbose=False)
    assert report.family == "torchvision" and report.searched and report.replaced
    assert report.figures_after["matched"] > report.figures_before["matched"]
    assert isinstance(report, GridReport) and report.matched_after == report.figures_after["matched"]
    assert (report.mean_iou_before, report.positives_after) == (
        report.figures_before["mean IoU"], report.figures_after["positives"]
    )
    assert not hasattr(report, "bpr_after") and not hasattr(report, "fitness_after")  # no YOLO figures
    # The report's figures are those of the model's anchors now, measured independently here.
    detector = read_detector(model)
    samples = input_samples(boxes.shapes, boxes.wh, boxes.image_index, None, detector.resizes)
    stats = match_stats(samples, detector.generator, threshold=0.5)
    assert stats.matched == report.figures_after["matched"] and stats.positives == report.figures_after["positives"]
    assert report.figures_after["low-quality only"] == pytest.approx(1 - stats.matched)
    # The fitted levels are in scale order: every size of the stride-16 level above the stride-8 level's.
    assert min(detector.generator.sizes[1]) > max(detector.generator.sizes[0])
    assert [c.data_ptr() for c in module.cell_anchors] == pointers
    for cell, expected in zip(module.cell_anchors, detector.generator.cell_anchors()):
        assert cell.dtype == torch.float32 and torch.equal(cell, expected)
    assert torch.equal(report.anchors_after, pack(detector.generator).float())  # float32 in the report
    line = str(report)
    assert "\n" not in line and "replaced" in line and "matched" in line and "positions spread" in line
    assert "IoU >= 0.5" in line and "resize min_size" in line


def test_kept_bit_identical_when_good_enough_or_not_better(one_cpu_thread):
    model = ToyRetinaNet()
    before = snapshot(model.anchor_generator)
    report = check_anchors(coco128(), model, bpr_threshold=0.0, verbose=False)  # any share > 0 is good enough
    assert not report.searched and not report.replaced and same(before, model.anchor_generator)
    # A fit that finds nothing better keeps the model as it was.
    family = get_family("torchvision")
    original_fit = type(family).fit
    try:
        type(family).fit = lambda self, state, data, **kw: state.params.clone()
        report = check_anchors(coco128(), model, bpr_threshold=0.98, verbose=False)
    finally:
        type(family).fit = original_fit
    assert report.searched and not report.replaced and same(before, model.anchor_generator)
    assert report.figures_after == report.figures_before


def test_an_injected_error_leaves_the_model_bit_identical(one_cpu_thread, monkeypatch):
    model = ToyFasterRCNN()
    module = model.rpn.anchor_generator
    before = snapshot(module)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fail_after_prepare(monkeypatch)
    with pytest.raises(RuntimeError, match="injected"):
        check_anchors(coco128(), model, verbose=False)
    assert same(before, module)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_cell_anchor_dtype_is_kept(dtype, one_cpu_thread):
    model = ToyRetinaNet(dtype)
    report = check_anchors(coco128(), model, bpr_threshold=0.98, verbose=False)
    assert report.replaced
    generator = read_detector(model).generator
    for cell, expected in zip(model.anchor_generator.cell_anchors, generator.cell_anchors(dtype=dtype)):
        assert cell.dtype == dtype and torch.equal(cell, expected)


def test_a_training_step_runs_after_replacement(one_cpu_thread):
    model = ToyRetinaNet()
    check_anchors(coco128(), model, bpr_threshold=0.98, verbose=False)
    head = nn.Conv2d(4, sum(len(r) * len(s) for s, r in zip(model.anchor_generator.sizes,
                                                            model.anchor_generator.aspect_ratios)) // 2, 1)
    optimiser = torch.optim.SGD([*model.backbone.parameters(), *head.parameters()], lr=0.01)
    features = model.backbone(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    # One output channel per anchor of a level, as a detection head has.
    loss = head(features["0"]).square().mean()
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss.detach())
    assert head.out_channels == len(model.anchor_generator.sizes[0]) * len(model.anchor_generator.aspect_ratios[0])


def test_yolo_arguments_warn_only_when_given(one_cpu_thread):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_anchors(coco128(), ToyRetinaNet(), bpr_threshold=0.0, verbose=False)  # defaults: no warning
    with pytest.warns(UserWarning, match=r"yolov5 arguments \(thr=3.0, imgsz=512\) do not apply"):
        check_anchors(coco128(), ToyRetinaNet(), thr=3.0, imgsz=512, bpr_threshold=0.0, verbose=False)


def test_a_bare_generator_with_its_strides(one_cpu_thread):
    module = ToyAnchorGenerator(((32, 40, 50), (64, 80, 101)), ((0.5, 1.0, 2.0),) * 2)
    with pytest.raises(TypeError, match=r"pass strides= \(to check_anchors: family=TorchvisionAnchors\(strides="):
        check_anchors(coco128(), module, verbose=False)
    family = TorchvisionAnchors(strides=(8, 16), threshold=0.5)
    report = check_anchors(coco128(), module, family=family, verbose=False)
    assert report.replaced and report.figures_after["matched"] > report.figures_before["matched"]
    assert tuple(len(s) for s in module.sizes) == (3, 3)


def test_the_family_settings_are_not_check_anchors_arguments_any_more():
    from test_hook import make_model  # a yolov5-style model

    module = ToyAnchorGenerator(((32, 40, 50), (64, 80, 101)), ((0.5, 1.0, 2.0),) * 2)
    before = snapshot(module)
    with pytest.raises(
        TypeError,
        match=r"check_anchors\(\) no longer takes strides=, threshold=: .* pass "
        r"family=TorchvisionAnchors\(strides=\(8, 16\), threshold=0.5\)",
    ):
        check_anchors(coco128(), module, strides=(8, 16), threshold=0.5, verbose=False)
    with pytest.raises(TypeError, match=r"no longer takes resize=: .*family=TorchvisionAnchors\(resize=None\)"):
        check_anchors(coco128(), module, resize=None, verbose=False)
    with pytest.raises(TypeError, match="check_anchors\\(\\) got an unexpected keyword argument 'stride'"):
        check_anchors(coco128(), module, stride=8, verbose=False)
    assert same(before, module)
    # The torchvision family's settings on a YOLO head: that family does not recognise the model.
    with pytest.raises(TypeError, match=r"known family \(torchvision\): torchvision: "):
        check_anchors(coco128(), make_model(), family=TorchvisionAnchors(strides=(8, 16, 32)), verbose=False)


def test_real_positions_are_used_when_known(one_cpu_thread):
    boxes = coco128()
    rng = np.random.default_rng(0)
    xy = np.clip(rng.random(boxes.wh.shape), boxes.wh / 2, 1 - boxes.wh / 2).astype(np.float32)
    located = BoxSizes(boxes.shapes, boxes.wh, boxes.image_index, source="coco128", xy=xy)
    report = check_anchors(located, ToyRetinaNet(), bpr_threshold=0.98, verbose=False)
    assert "real box positions" in str(report) and report.replaced


def test_generator_line_is_python():
    line = generator_line(GridAnchors(((32, 40), (64,)), ((0.5, 1.0), (2.0,)), (8, 16)))
    assert line == "AnchorGenerator(sizes=((32, 40), (64,)), aspect_ratios=((0.5, 1.0), (2.0,)))"


def test_stride_bounds_and_the_per_level_table_through_check_anchors(one_cpu_thread):
    model = ToyFasterRCNN()  # strides 8 and 16, two sizes per level
    report = check_anchors(
        coco128(), model, min_stride_units=3, max_stride_units=12, bpr_threshold=1.0, verbose=False
    )
    sizes = model.rpn.anchor_generator.sizes
    assert report.replaced
    assert all(3 * 8 <= v <= 12 * 8 for v in sizes[0]) and all(3 * 16 <= v <= 12 * 16 for v in sizes[1])
    assert min(sizes[1]) > max(sizes[0])  # scale order
    # The per-level table: each level's sizes in strides, its shares adding up.
    assert [level.stride for level in report.levels] == [8.0, 16.0]
    assert sum(level.best for level in report.levels) == pytest.approx(1.0)
    first = report.levels[0]
    widths_heights = first.anchors  # [r*k, 2] rounded anchors
    assert torch.allclose(first.size_in_strides, widths_heights.prod(dim=1).sqrt() / 8)


def test_the_family_can_drop_the_level_order():
    from autoanchor.training.heads.torchvision import TorchvisionAnchors

    with pytest.raises(TypeError, match="level_order must be True or False"):
        TorchvisionAnchors(level_order="no")
    with pytest.raises(ValueError, match="min_stride_units"):
        TorchvisionAnchors(min_stride_units=-1)
    assert TorchvisionAnchors(level_order=False).level_order is False and {"min_stride_units", "max_stride_units"} <= TorchvisionAnchors.options
