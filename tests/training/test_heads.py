"""The head-family protocol and registry, bad anchors in a head, and the meta device."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import pytest
import torch
from torch import nn

from autoanchor.training import heads
from autoanchor.core._format import format_anchors
from autoanchor.training.heads import HeadFamily, HeadNotFound, HeadState, Measure, Write, find_head, register_family
from autoanchor.training.heads import base as heads_base
from autoanchor.training.hook import AnchorReport, check_anchor_order, check_anchors
from autoanchor.training.report import Outcome, YoloReport
from autoanchor.core.metrics import anchor_stats
from test_hook import P5, POOR, DetectV6, Model, check, fixed_search, head_of, make_model, no_search, snapshot

# ---------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------


def test_the_two_yolo_families_are_told_apart():
    assert heads.family_names()[:2] == ["yolov5", "yolov7"]
    for head, name in (("v6", "yolov5"), ("v7", "yolov7")):
        model = make_model(P5, head=head)
        family, found, where = find_head(model)
        assert family.name == name and found is head_of(model) and where == "model.module.model[-1]"
        assert check(None, model).family == name


def test_unknown_model_lists_the_families_and_what_was_found():
    with pytest.raises(TypeError) as error:
        find_head(nn.Linear(2, 2))
    message = str(error.value)
    assert "known family (yolov5, yolov7" in message
    assert "Linear has no attribute 'model'" in message
    assert message.count("Linear has no attribute") == 1  # the same reason is given once


def test_get_family_and_registration_errors():
    assert heads.get_family("yolov7").name == "yolov7"
    with pytest.raises(ValueError, match="unknown head family 'darknet'; known: yolov5, yolov7"):
        heads.get_family("darknet")
    with pytest.raises(ValueError, match="head family 'yolov5' is already registered"):
        register_family(type("Again", (heads.get_family("yolov5").__class__,), {}))  # name "yolov5" is taken
    with pytest.raises(ValueError, match="needs a non-empty name"):
        register_family(type("Nameless", (HeadFamily,), {}))
    with pytest.raises(TypeError, match="HeadFamily subclass"):
        register_family(nn.Linear)
    old = type("OldStyle", (SquareFamily,), {"name": "old", "yolo_options": False, "note": lambda self, s, d: ""})
    with pytest.raises(TypeError, match=r"OldStyle defines yolo_options, note of the autoanchor 0.1 .* options .* report\(\)"):
        register_family(old)
    assert heads.family_names()[:2] == ["yolov5", "yolov7"] and "old" not in heads.family_names()


# ---------------------------------------------------------------------------------
# A third family, registered by a test: the hook's flow works for it unchanged
# ---------------------------------------------------------------------------------


class SquareHead(nn.Module):
    """A made-up detector head: ``side_px`` [k], square anchors in pixels, and a cache."""

    def __init__(self, sides) -> None:
        super().__init__()
        self.register_buffer("side_px", torch.tensor(sides, dtype=torch.float32))
        self.cache = "stale"


class SquareDetector(nn.Module):
    def __init__(self, sides) -> None:
        super().__init__()
        self.square_head = SquareHead(sides)


class SquareData(NamedTuple):
    wh: torch.Tensor


class SquareFamily(HeadFamily):
    """Anchors are squares: params ``[1, k, 2]`` (side, side); the score is BPR."""

    name = "squares"

    def locate(self, model: Any):
        if not hasattr(model, "square_head"):
            raise HeadNotFound(f"{type(model).__name__} has no square_head")
        return model.square_head, "model.square_head"

    def recognise(self, head: Any, where: str) -> None:
        if not isinstance(getattr(head, "side_px", None), torch.Tensor):
            raise HeadNotFound(f"{where} has no side_px")

    def read(self, head: Any, where: str) -> HeadState:
        sides = head.side_px.detach().double()
        return HeadState(head, where, torch.stack([sides, sides], -1)[None], head.side_px)

    def data(self, state, sizes, *, imgsz, seed, device, rank, world_size):
        return SquareData(sizes.pixel_wh(imgsz)[rank::world_size])

    def measure(self, state, params, data, *, thr, reducer):
        stats = anchor_stats(data.wh, params.reshape(-1, 2).float(), thr=thr, reducer=reducer)
        return Measure(stats.bpr, {"share_matched": stats.bpr, "mean_best_iou": stats.avg_iou})

    def fit(self, state, data, *, thr, gen, seed, search, reducer, progress):
        found = search(data.wh, state.params.shape[1], thr=thr, gen=gen, seed=seed, reducer=reducer, progress=progress)
        sides = found.anchors.double().prod(-1).sqrt().sort().values
        return torch.stack([sides, sides], -1)[None].float().double()

    def prepare(self, state, params) -> Write:
        return Write(params, params[0, :, 0].to(state.extra.dtype))

    def write(self, state, write) -> None:
        with torch.no_grad():
            state.extra.copy_(write.payload)
        state.module.cache = None


@pytest.fixture
def squares():
    register_family(SquareFamily)
    yield SquareFamily
    heads_base.FAMILIES.unregister(SquareFamily.name)


def test_a_new_family_is_one_class_and_one_registration(squares):
    model = SquareDetector([2.0, 3.0, 4.0])  # far too small for coco128 at 640
    pointer = model.square_head.side_px.data_ptr()
    search = fixed_search(torch.tensor([[30.0, 30.0], [90.0, 90.0], [250.0, 250.0]]))

    report = check(None, model, search=search, bpr_threshold=0.9)

    assert report.family == "squares" and report.searched and report.replaced
    assert model.square_head.side_px.tolist() == [30.0, 90.0, 250.0]
    assert model.square_head.side_px.data_ptr() == pointer and model.square_head.cache is None
    assert report.figures_before["share_matched"] < report.figures_after["share_matched"]
    assert type(report) is AnchorReport and list(report.figures_after) == ["share_matched", "mean_best_iou"]
    assert not hasattr(report, "bpr_after") and not hasattr(report, "levels")  # no YOLO figures, no NaNs
    assert report == report and "nan" not in str(report) and report.lines() == [str(report)]
    assert str(report).startswith("autoanchor: anchors replaced, share matched ")
    with pytest.raises(TypeError, match="orders YOLO levels by stride; model.square_head is a squares head"):
        check_anchor_order(model)


def test_family_can_be_named_or_passed_unregistered():
    with pytest.raises(TypeError, match=r"known family \(yolov7\): yolov7: model.module.model\[-1\] has no registered"):
        check_anchors(None, make_model(P5, head="v6"), family="yolov7", verbose=False)
    with pytest.raises(ValueError, match="unknown head family 'darknet'"):
        check_anchors(None, make_model(P5), family="darknet", verbose=False)
    assert check(None, make_model(P5, head="v6"), family="yolov5").family == "yolov5"
    # An instance needs no registration (e.g. a family built with per-model settings).
    model = SquareDetector([20.0, 40.0, 70.0, 120.0, 250.0])
    assert "squares" not in heads.family_names()
    assert check(None, model, family=SquareFamily(), bpr_threshold=0.5).family == "squares"
    with pytest.raises(TypeError, match="family must be a family name or a HeadFamily, got int"):
        check(None, model, family=3)


def test_a_new_family_keeps_good_anchors(squares):
    model = SquareDetector([20.0, 40.0, 70.0, 120.0, 250.0])
    before = snapshot(model)
    report = check(None, model, search=no_search, bpr_threshold=0.5)
    assert not report.replaced and snapshot(model) == before and model.square_head.cache == "stale"
    assert str(report).endswith(": current anchors fit, kept") and "share matched" in str(report)


# ---------------------------------------------------------------------------------
# Bad anchors and strides in a head (issue 11, item 3)
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -2.0])
@pytest.mark.parametrize("head", ["v6", "v7"])
def test_anchors_that_match_nothing_are_named_and_the_model_untouched(head, value):
    model = make_model(P5, head=head)
    with torch.no_grad():
        head_of(model).anchors[1, 2, 0] = value
    before = snapshot(model)
    with pytest.raises(ValueError, match=rf"anchors must be finite and positive, but level 1, anchor 2 is \({value}, "):
        check(None, model)  # the search (no_search) is never reached
    assert snapshot(model) == before
    with pytest.raises(ValueError, match="level 1, anchor 2"):
        check_anchor_order(model)
    assert snapshot(model) == before


def test_every_bad_anchor_is_counted():
    model = make_model(P5)
    with torch.no_grad():
        head_of(model).anchors[0] = 0.0  # three anchors of level 0
    with pytest.raises(ValueError, match=r"level 0, anchor 0 is \(0.0, 0.0\) in stride units \(2 more such anchors\)"):
        check(None, model)


def test_bad_stride_names_the_level():
    model = make_model(P5)
    head_of(model).stride = torch.tensor([8.0, 16.0, float("nan")])
    with pytest.raises(ValueError, match="level 2 has stride nan"):
        check(None, model)


# ---------------------------------------------------------------------------------
# The meta device (issue 11, item 9)
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["v6", "v7"])
def test_a_model_on_the_meta_device_is_refused_for_what_it_is(head):
    model = make_model(P5, head=head).to("meta")
    with pytest.raises(ValueError, match=r"anchors is on the meta device, which holds no values"):
        check(None, model)
    with pytest.raises(ValueError, match="meta device"):
        check_anchor_order(model)


def test_meta_strides_are_refused_too():
    detect = DetectV6(P5)
    detect.stride = detect.stride.to("meta")
    with pytest.raises(ValueError, match=r"detect\.stride is on the meta device"):
        check(None, Model(detect), detect=detect)


@pytest.mark.parametrize("device", ["meta", torch.device("meta")])
def test_device_meta_is_refused(device):
    model = make_model(POOR)
    before = snapshot(model)
    with pytest.raises(ValueError, match="meta device holds no values"):
        check_anchors(None, model, device=device, verbose=False)
    with pytest.raises(ValueError, match="device must name a torch device"):
        check_anchors(None, model, device="no-such-device", verbose=False)
    assert snapshot(model) == before


# ---------------------------------------------------------------------------------
# Shared helpers: anchors as text, the report
# ---------------------------------------------------------------------------------


def test_format_anchors():
    levels = torch.tensor(P5).view(3, 3, 2)
    # 3 levels of 3 pairs: pairs joined by ",  ", levels by " | ", each value rounded.
    expected = "10,13,  16,30,  33,23 | 30,61,  62,45,  59,119 | 116,90,  156,198,  373,326"
    assert format_anchors(levels) == expected
    assert format_anchors(torch.tensor([[10.4, 12.6], [30.0, 61.0]])) == "10,13,  30,61"
    with pytest.raises(ValueError, match=r"got shape \[9\]"):
        format_anchors(torch.ones(9))


def test_report_equality_is_by_value():
    anchors = torch.ones(1, 2, 2)
    kept = Measure(0.5, {"share": 0.5, "spread": math.nan})

    def report(anchors_after):
        return AnchorReport.of("squares", Outcome(kept, kept, anchors, anchors_after, False, False))

    one, same, other = report(anchors), report(anchors.clone()), report(anchors * 2)
    assert one == same and one != other  # a NaN figure on both sides compares equal
    assert str(one) == "autoanchor: share 0.5000, spread nan: current anchors fit, kept"
    v7 = check(None, make_model(P5, head="v7"))
    v5 = check(None, make_model(P5, head="v6"))
    assert isinstance(v5, YoloReport) and v7 != v5 and str(v7) == str(v5)  # same figures, different family
    assert v5 == check(None, make_model(P5, head="v6")) and v5 != one
