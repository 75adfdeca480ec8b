"""The training hook on toy detection heads shaped like yolov5 v6+ and yolov7 / yolov5 v5.0."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from autoanchor.io.configs import anchors_by_name, strides_by_name
from autoanchor.io.datasets import load_boxes
from autoanchor.training.hook import CheckOptions, check_anchor_order, check_anchors, find_detect, run_check
from autoanchor.core.metrics import anchor_stats
from autoanchor.core.search import SearchResult, search_anchors

ROOT = Path(__file__).resolve().parents[2]
GEN = 100  # generations for searches in tests: enough for BPR > 0.98 on coco128

# yolov5's default P5 anchors in pixels, one flat w,h row per level, and strides 8, 16, 32.
P5 = anchors_by_name("yolov5-p5").view(3, -1).tolist()
STRIDES = tuple(float(s) for s in strides_by_name("yolov5-p5"))
# 3 to 11 px squares: far too small for coco128 at 640 (BPR about 0.34).
POOR = [[3, 3, 4, 4, 5, 5], [6, 6, 7, 7, 8, 8], [9, 9, 10, 10, 11, 11]]


# ---------------------------------------------------------------------------------
# Toy detection heads
# ---------------------------------------------------------------------------------


class DetectV6(nn.Module):
    """yolov5 v6+ ``Detect``: an ``anchors`` buffer in stride units and lazily built
    ``grid`` / ``anchor_grid`` lists, rebuilt when their shape disagrees with the
    feature map."""

    def __init__(self, anchors_px, strides=STRIDES, nc: int = 2, ch=(4, 4, 4)) -> None:
        super().__init__()
        self.nl, self.na, self.no = len(anchors_px), len(anchors_px[0]) // 2, nc + 5
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.grid = [torch.empty(0) for _ in range(self.nl)]
        self.anchor_grid = [torch.empty(0) for _ in range(self.nl)]
        self.register_buffer("anchors", torch.tensor(anchors_px, dtype=torch.float32).view(self.nl, -1, 2))
        # yolov5's Model sets the strides as a plain attribute and divides the anchors.
        self.stride = torch.tensor(strides, dtype=torch.float32)
        self.anchors /= self.stride.view(-1, 1, 1)

    def _make_grid(self, nx: int, ny: int, i: int):
        device, dtype = self.anchors[i].device, self.anchors[i].dtype
        yv, xv = torch.meshgrid(
            torch.arange(ny, device=device, dtype=dtype), torch.arange(nx, device=device, dtype=dtype), indexing="ij"
        )
        shape = (1, self.na, ny, nx, 2)
        grid = torch.stack((xv, yv), 2).expand(shape) - 0.5
        anchor_grid = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2).expand(shape)
        return grid, anchor_grid

    def forward(self, features):
        out = []
        for i, x in enumerate(features):
            x = self.m[i](x)
            bs, _, ny, nx = x.shape
            x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if self.grid[i].shape[2:4] != x.shape[2:4]:
                self.grid[i], self.anchor_grid[i] = self._make_grid(nx, ny, i)
            xy, wh, conf = x.sigmoid().split((2, 2, self.no - 4), 4)
            xy = (xy * 2 + self.grid[i]) * self.stride[i]
            wh = (wh * 2) ** 2 * self.anchor_grid[i]
            out.append(torch.cat((xy, wh, conf), 4).view(bs, -1, self.no))
        return torch.cat(out, 1)


class DetectV7(nn.Module):
    """yolov7 ``IDetect`` / yolov5 v5.0 ``Detect``: ``anchors`` in stride units plus a
    registered ``anchor_grid`` buffer ``[nl, 1, na, 1, 1, 2]`` in pixels."""

    def __init__(self, anchors_px, strides=STRIDES, nc: int = 2, ch=(4, 4, 4)) -> None:
        super().__init__()
        self.nl, self.na, self.no = len(anchors_px), len(anchors_px[0]) // 2, nc + 5
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.grid = [torch.zeros(1)] * self.nl
        a = torch.tensor(anchors_px, dtype=torch.float32).view(self.nl, -1, 2)
        self.register_buffer("anchors", a)
        self.register_buffer("anchor_grid", a.clone().view(self.nl, 1, -1, 1, 1, 2))
        self.stride = torch.tensor(strides, dtype=torch.float32)
        self.anchors /= self.stride.view(-1, 1, 1)

    def forward(self, features):
        out = []
        for i, x in enumerate(features):
            x = self.m[i](x)
            bs, _, ny, nx = x.shape
            x = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if self.grid[i].shape[2:4] != x.shape[2:4]:
                yv, xv = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
                self.grid[i] = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).float()
            y = x.sigmoid()
            xy = (y[..., 0:2] * 2 - 0.5 + self.grid[i]) * self.stride[i]
            wh = (y[..., 2:4] * 2) ** 2 * self.anchor_grid[i]
            out.append(torch.cat((xy, wh, y[..., 4:]), -1).view(bs, -1, self.no))
        return torch.cat(out, 1)


class Model(nn.Module):
    """yolov5's layout: the head is ``model.model[-1]``."""

    def __init__(self, detect: nn.Module) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), detect)


class Wrapper(nn.Module):
    """Stands for DistributedDataParallel: the model is ``.module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


HEADS = {"v6": DetectV6, "v7": DetectV7}


def make_model(anchors_px=POOR, *, head: str = "v6", dtype=torch.float32, strides=STRIDES) -> Wrapper:
    model = Model(HEADS[head](anchors_px, strides)).to(dtype)
    return Wrapper(model)


def head_of(model: nn.Module) -> nn.Module:
    return model.module.model[-1]


def features(batch: int = 1, size: int = 64):
    return [torch.randn(batch, 4, size // int(s), size // int(s)) for s in STRIDES]


def snapshot(model: nn.Module) -> dict:
    """Every buffer and parameter: bytes, storage address, dtype and device."""
    return {
        name: (t.detach().cpu().numpy().tobytes(), t.data_ptr(), t.dtype, t.device)
        for name, t in model.state_dict(keep_vars=True).items()
    }


def pixel_anchors(head: nn.Module) -> torch.Tensor:
    return head.anchors.detach().double() * head.stride.double().view(-1, 1, 1)


class Labels:
    """A yolov5-style dataset: ``.shapes`` (width, height) and ``.labels`` rows ``class x y w h``."""

    def __init__(self, shapes, labels) -> None:
        self.shapes = np.asarray(shapes, dtype=np.float64)
        self.labels = [np.asarray(rows, dtype=np.float32) for rows in labels]


def coco128_labels() -> Labels:
    sizes = load_boxes(None)
    labels = []
    for i in range(sizes.n_images):
        wh = sizes.wh[sizes.image_index == i]
        rows = np.zeros((len(wh), 5), dtype=np.float32)
        rows[:, 1:3] = 0.5
        rows[:, 3:5] = wh
        labels.append(rows)
    return Labels(sizes.shapes, labels)


class MemoSearch:
    """The real search, run once per distinct input and replayed (the hook is under
    test, not the search); ``calls`` records every call."""

    def __init__(self) -> None:
        self.cache: dict = {}
        self.calls: list = []

    def __call__(self, wh, n=9, **options):
        self.calls.append((wh.shape, n, options))
        key = (wh.cpu().numpy().tobytes(), n, tuple(sorted((k, v) for k, v in options.items()
                                                        if k not in ("reducer", "progress"))))
        if key not in self.cache:
            self.cache[key] = search_anchors(wh, n, **options)
        return self.cache[key]


@pytest.fixture(scope="module")
def memo_search() -> MemoSearch:
    return MemoSearch()


def no_search(*args, **kwargs):
    raise AssertionError("the search must not run")


def fixed_search(anchors: torch.Tensor):
    """A search that answers ``anchors`` (pixels) whatever the data."""

    def search(wh, n=9, **options):
        stats = anchor_stats(wh, anchors)
        return SearchResult(anchors.clone(), stats, stats, "ratio", wh.shape[0], 0)

    return search


def check(dataset, model, *, search=no_search, detect=None, family=None, **options):
    """``check_anchors`` with the search injected; quiet unless ``verbose=True``."""
    options = CheckOptions(**{"verbose": False, **options})
    return run_check(dataset, model, options, detect=detect, family=family, search=search)


# ---------------------------------------------------------------------------------
# Good anchors: untouched
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("head", ["v6", "v7"])
def test_good_anchors_are_kept_bit_for_bit(head, dtype):
    model = make_model(P5, head=head, dtype=dtype)
    if dtype == torch.float32:
        head_of(model)(features())  # build the lazy caches
    grids = list(getattr(head_of(model), "grid"))
    before = snapshot(model)

    report = check(None, model, gen=GEN)

    assert snapshot(model) == before
    assert all(a is b for a, b in zip(head_of(model).grid, grids))  # caches untouched too
    assert not report.replaced and not report.searched
    # yolov5 reports BPR 0.9935 for these anchors on coco128 (929 boxes): 923 of 929 pass.
    assert report.bpr_before == pytest.approx(0.9935, abs=0.003)
    assert report.bpr_after == report.bpr_before and report.aat_after == report.aat_before
    assert report.fitness_after == report.fitness_before
    assert torch.equal(report.anchors_after, report.anchors_before)
    expected = torch.tensor(P5, dtype=torch.float32).view(3, 3, 2)
    assert torch.equal(report.anchors_before, expected)  # exact: 373/32 etc. are exact in fp16
    assert report.anchors_before.dtype == torch.float32 and report.anchors_before.device.type == "cpu"


def test_good_fit_figures_match_the_metrics():
    """The report's figures are the metrics of the anchors on the seeded, jittered sizes."""
    report = check_anchors(None, make_model(P5), verbose=False, seed=3)
    wh = load_boxes(None).pixel_wh(640, scale_jitter=(0.9, 1.1), generator=torch.Generator().manual_seed(3))
    stats = anchor_stats(wh, torch.tensor(P5, dtype=torch.float32).view(-1, 2))
    assert report.bpr_before == stats.bpr
    assert report.aat_before == stats.aat
    assert report.fitness_before == stats.fitness


# ---------------------------------------------------------------------------------
# Poor anchors: replaced in place
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("head", ["v6", "v7"])
def test_poor_anchors_are_replaced_in_place(head, dtype, memo_search):
    model = make_model(POOR, head=head, dtype=dtype)
    detect = head_of(model)
    if dtype == torch.float32:
        detect(features())  # build the caches from the old anchors
    keys = list(model.state_dict())
    pointer = detect.anchors.data_ptr()

    report = check(None, model, search=memo_search, gen=GEN)

    assert report.replaced and report.searched
    assert report.bpr_before < 0.5 and report.bpr_after > 0.98
    assert report.fitness_after > report.fitness_before and report.aat_after > report.aat_before
    # Same buffer, same dtype and device; same state_dict keys.
    assert detect.anchors.data_ptr() == pointer
    assert detect.anchors.dtype == dtype and detect.anchors.device.type == "cpu"
    assert list(model.state_dict()) == keys
    # The report's anchors are exactly what is stored (stride units x stride).
    assert torch.equal(pixel_anchors(detect).float(), report.anchors_after)
    assert report.anchors_after.shape == (3, 3, 2)
    # Levels follow the strides: every anchor of a level is no larger than any of the next.
    area = report.anchors_after.double().prod(-1)  # [nl,na]
    assert (area[:-1].amax(1) <= area[1:].amin(1)).all()
    assert (area[0].argsort() == torch.arange(3)).all()  # sorted within the level too
    if head == "v7":
        grid = detect.anchor_grid
        assert grid.shape == (3, 1, 3, 1, 1, 2) and grid.dtype == dtype
        assert torch.equal(grid.view(3, 3, 2), pixel_anchors(detect).to(dtype))
    else:
        assert all(g.numel() == 0 for g in detect.grid)
        assert all(g.numel() == 0 for g in detect.anchor_grid)
    if dtype == torch.float32:
        # The next forward rebuilds the caches from the new anchors.
        detect(features())
        for i in range(3):
            assert torch.equal(detect.anchor_grid[i][0, :, 0, 0], report.anchors_after[i])


def test_replacement_is_searched_on_unjittered_sizes(memo_search):
    calls_before = len(memo_search.calls)
    check(None, make_model(POOR), search=memo_search, gen=GEN, seed=0)
    (shape, n, options), = memo_search.calls[calls_before:]
    assert shape == (929, 2) and n == 9
    assert options["gen"] == GEN and options["thr"] == 4.0 and options["seed"] == 0


def test_levels_follow_reversed_strides(memo_search):
    """With strides listed large to small, the largest anchors go to the first level."""
    model = make_model([level for level in reversed(POOR)], strides=(32.0, 16.0, 8.0))
    report = check(None, model, search=memo_search, gen=GEN)
    assert report.replaced
    area = report.anchors_after.double().prod(-1)
    assert (area[:-1].amin(1) >= area[1:].amax(1)).all()
    assert check_anchor_order(head_of(model)) is False  # already consistent


def test_four_levels_and_four_anchors_per_level():
    """Any [nl, na]: the search's anchors (here returned out of order) are sorted by
    area and dealt out na per level, smallest on the finest stride."""
    sides = torch.tensor([float(s) for s in range(8, 8 + 16 * 12, 12)])  # 16 sizes, 8 to 188 px
    found = torch.stack([sides, sides * 1.25], 1)[torch.randperm(16, generator=torch.Generator().manual_seed(0))]
    seen = []

    def search(wh, n=9, **options):
        seen.append(n)
        return fixed_search(found)(wh, n)

    anchors = [[4 + 4 * k, 4 + 4 * k] * 4 for k in range(4)]  # [4 levels, 4 anchors], poor
    model = Wrapper(Model(DetectV6(anchors, (8.0, 16.0, 32.0, 64.0), ch=(4, 4, 4, 4))))
    report = check(None, model, search=search)
    assert seen == [16]
    assert report.replaced and report.anchors_after.shape == (4, 4, 2)
    expected = torch.stack([sides, sides * 1.25], 1).view(4, 4, 2)  # sorted by area, 4 per level
    assert torch.equal(report.anchors_after, expected)
    assert torch.equal(pixel_anchors(head_of(model)).float(), expected)


def test_nn_data_parallel_is_unwrapped(memo_search):
    model = nn.DataParallel(Model(DetectV6(POOR)))
    report = check(None, model, search=memo_search, gen=GEN)
    assert report.replaced
    assert torch.equal(pixel_anchors(model.module.model[-1]).float(), report.anchors_after)


def test_detect_argument_and_plain_models(memo_search):
    detect = DetectV6(POOR)
    report = check(None, None, detect=detect, search=memo_search, gen=GEN)
    assert report.replaced and report.bpr_after > 0.98
    assert find_detect(Model(detect)) is detect
    assert find_detect(Wrapper(Wrapper(Model(detect)))) is detect


def test_no_better_anchors_keeps_the_model_and_says_so():
    """A search that finds nothing with a higher BPR changes nothing."""
    model = make_model(POOR)
    before = snapshot(model)
    current = torch.tensor(POOR, dtype=torch.float32).view(-1, 2)
    with pytest.warns(UserWarning, match="fit the data poorly"):
        report = check(None, model, search=fixed_search(current))
    assert snapshot(model) == before
    assert report.searched and not report.replaced
    assert report.bpr_after == report.bpr_before
    assert "no better anchors" in str(report)


def test_forced_search_replaces_only_when_bpr_rises(memo_search):
    """bpr_threshold=1 searches even for good anchors; they change only if BPR rises."""
    model = make_model(P5)
    before = snapshot(model)
    report = check(None, model, search=memo_search, gen=GEN, bpr_threshold=1.0)
    assert report.searched
    if report.replaced:
        assert report.bpr_after > report.bpr_before
    else:
        assert snapshot(model) == before


# ---------------------------------------------------------------------------------
# check_anchor_order
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("head", ["v6", "v7"])
def test_check_anchor_order_flips_reversed_levels(head, dtype):
    model = make_model(list(reversed(P5)), head=head, dtype=dtype)
    detect = head_of(model)
    pointer = detect.anchors.data_ptr()
    assert check_anchor_order(detect) is True
    # The pixel anchors moved to the other end: now exactly the P5 layout.
    expected = make_model(P5, head=head, dtype=dtype)
    assert torch.equal(detect.anchors, head_of(expected).anchors)
    assert detect.anchors.data_ptr() == pointer and detect.anchors.dtype == dtype
    if head == "v7":
        assert torch.equal(detect.anchor_grid, head_of(expected).anchor_grid)
    else:
        assert all(g.numel() == 0 for g in detect.anchor_grid)
    assert check_anchor_order(detect) is False  # idempotent
    assert check_anchor_order(model) is False  # also finds the head in a model


def test_check_anchor_order_compares_in_pixels():
    """Stride units would mislead: 16 px at stride 8 is 2 units, 32 px at stride 32 is 1.

    Pixel areas grow with the strides (16² < 24² < 32²) although the stride-unit
    areas shrink (4 > 2.25 > 1): the order is right and must stay.
    """
    anchors = [[16, 16] * 3, [24, 24] * 3, [32, 32] * 3]
    model = make_model(anchors)
    before = snapshot(model)
    assert check_anchor_order(head_of(model)) is False
    assert snapshot(model) == before


def test_check_anchor_order_equal_areas_do_not_flip():
    anchors = [[16, 16, 8, 32, 32, 8]] * 3  # every level has mean area 256 px²
    model = make_model(anchors, strides=(8.0, 8.0 * 2, 8.0 * 4))
    before = snapshot(model)
    assert check_anchor_order(head_of(model)) is False
    assert snapshot(model) == before


def test_check_anchor_order_flips_four_levels_in_pixel_space():
    anchors = [[40 - 8 * k, 40 - 8 * k] * 3 for k in range(4)]  # 40, 32, 24, 16 px: reversed
    strides = (8.0, 16.0, 32.0, 64.0)
    detect = DetectV6(anchors, strides, ch=(4, 4, 4, 4))
    assert check_anchor_order(detect) is True
    sides = pixel_anchors(detect)[:, 0, 0].tolist()
    assert sides == [16.0, 24.0, 32.0, 40.0]


# ---------------------------------------------------------------------------------
# Atomicity: bad data, bad heads, failing searches
# ---------------------------------------------------------------------------------


def _bad(kind: str) -> Labels:
    data = coco128_labels()
    if kind == "nan":
        data.labels[1][0, 3] = np.nan
    elif kind == "negative":
        data.labels[1][0, 4] = -0.1
    elif kind == "four_columns":
        data.labels[1] = data.labels[1][:, :4]
    elif kind == "no_boxes":
        data.labels = [np.zeros((0, 5), dtype=np.float32) for _ in data.labels]
    elif kind == "bad_image_size":
        data.shapes[1] = (0, 480)
    return data


@pytest.mark.parametrize(
    "kind, message",
    [
        ("nan", "image 1"),
        ("negative", "image 1"),
        ("four_columns", "image 1"),
        ("no_boxes", "no boxes"),
        ("bad_image_size", "image 1"),
    ],
)
@pytest.mark.parametrize("head", ["v6", "v7"])
def test_bad_data_is_refused_and_the_model_untouched(kind, message, head):
    model = make_model(POOR, head=head)
    before = snapshot(model)
    with pytest.raises(ValueError, match=message):
        check(_bad(kind), model)
    assert snapshot(model) == before


def test_good_labels_object_is_accepted():
    """The yolov5-style dataset object gives the same figures as the built-in statistics."""
    from_object = check(coco128_labels(), make_model(P5))
    builtin = check(None, make_model(P5))
    assert from_object.bpr_before == builtin.bpr_before
    assert from_object.fitness_before == builtin.fitness_before


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_failing_search_leaves_the_model_untouched(dtype):
    model = make_model(POOR, head="v7", dtype=dtype)
    before = snapshot(model)
    calls = []

    def search(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("search failed half-way")

    with pytest.raises(RuntimeError, match="search failed half-way"):
        check(None, model, search=search)
    assert calls == [1]
    assert snapshot(model) == before


def test_search_returning_nonsense_is_refused():
    model = make_model(POOR)
    before = snapshot(model)
    anchors = torch.full((9, 2), 10.0)
    anchors[3, 1] = float("nan")
    with pytest.raises(ValueError, match="finite, positive"):
        check(None, model, search=fixed_search(anchors))
    assert snapshot(model) == before


@pytest.mark.parametrize(
    "options, message",
    [
        ({"thr": 1.0}, "thr"),
        ({"imgsz": 0}, "imgsz"),
        ({"imgsz": float("nan")}, "imgsz"),
        ({"gen": -1}, "gen"),
        ({"gen": 2.5}, "gen"),
        ({"bpr_threshold": 1.5}, "bpr_threshold"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.0}, "seed"),
        ({"distributed": True}, "process group"),
    ],
)
def test_bad_options_are_refused(options, message):
    model = make_model(POOR)
    before = snapshot(model)
    with pytest.raises(ValueError, match=message):
        check_anchors(None, model, verbose=False, **options)  # refused before any search
    assert snapshot(model) == before


class NoHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(3, 4, 3))


class Strideless(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("anchors", torch.ones(3, 3, 2))


def test_head_not_found_says_what_was_looked_for():
    with pytest.raises(TypeError, match=r"model\.model\[-1\].*Conv2d.*'anchors'"):
        check_anchors(None, NoHead(), verbose=False)
    with pytest.raises(TypeError, match=r"model\.module\.model\[-1\]"):
        check_anchors(None, Wrapper(NoHead()), verbose=False)
    with pytest.raises(TypeError, match=r"looked for model\.model\[-1\].*Linear has no attribute 'model'"):
        check_anchors(None, nn.Linear(2, 2), verbose=False)
    with pytest.raises(TypeError, match=r"detect is a Strideless without 'stride'"):
        check_anchors(None, None, detect=Strideless(), verbose=False)
    with pytest.raises(TypeError, match="model is None"):
        check_anchors(None, None, verbose=False)


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda d: setattr(d, "stride", torch.tensor([8.0, 16.0])), ValueError, "one entry per level"),
        (lambda d: setattr(d, "stride", torch.tensor([8.0, 0.0, 32.0])), ValueError, "finite and positive"),
        (lambda d: setattr(d, "stride", "8,16,32"), TypeError, "stride"),
        (lambda d: d.register_buffer("anchors", torch.ones(9, 2)), ValueError, r"\[nl, na, 2\]"),
        (lambda d: d.register_buffer("anchors", torch.ones(3, 3, 2, dtype=torch.int64)), TypeError, "floating"),
        (lambda d: d.register_buffer("anchor_grid", torch.ones(3, 1, 2, 1, 1, 2)), ValueError, "anchor_grid"),
    ],
)
def test_invalid_heads_are_refused(change, error, message):
    model = make_model(POOR, head="v7")
    change(head_of(model))
    before = snapshot(model)
    with pytest.raises(error, match=message):
        check(None, model)
    assert snapshot(model) == before


def test_strides_as_a_list_are_accepted():
    model = make_model(P5)
    head_of(model).stride = [8, 16, 32]
    assert not check(None, model).replaced


# ---------------------------------------------------------------------------------
# Report, logging, determinism
# ---------------------------------------------------------------------------------


def test_report_is_a_frozen_one_line_summary(memo_search):
    report = check(None, make_model(POOR), search=memo_search, gen=GEN)
    line = str(report)
    assert "\n" not in line
    assert f"{report.bpr_before:.4f} -> {report.bpr_after:.4f}" in line and "replaced" in line
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.replaced = False  # type: ignore[misc]
    kept = check(None, make_model(P5), search=memo_search)
    assert "\n" not in str(kept) and "kept" in str(kept) and f"{kept.bpr_before:.4f}" in str(kept)
    assert report == dataclasses.replace(report)
    assert report != kept


def test_verbose_false_logs_nothing_at_info(caplog, memo_search):
    with caplog.at_level(logging.INFO, logger="autoanchor"):
        check(None, make_model(POOR), search=memo_search, gen=GEN)
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


def test_verbose_logs_before_and_after(caplog, memo_search):
    with caplog.at_level(logging.INFO, logger="autoanchor"):
        report = check(None, make_model(POOR), search=memo_search, gen=GEN, verbose=True)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("autoanchor")]
    assert any("best possible recall" in m for m in messages)
    assert any("poor fit" in m for m in messages)
    # The report line, then the per-level table of the final anchors (header, column names, 3 levels).
    table = [f"autoanchor: {line}" for line in report.level_lines()]
    assert len(table) == 5 and table[2].startswith("autoanchor: P3 ")
    assert messages[-6:] == [str(report), *table]


# How yolov5 v7.0 sets up logging (utils/general.py, set_logging): a handler on its own
# "yolov5" logger, which does not propagate; the root logger is left alone.
YOLOV5_LOGGING = """
import logging.config
logging.config.dictConfig({
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"yolov5": {"format": "%(message)s"}},
    "handlers": {"yolov5": {"class": "logging.StreamHandler", "formatter": "yolov5", "level": "INFO"}},
    "loggers": {"yolov5": {"level": "INFO", "handlers": ["yolov5"], "propagate": False}},
})
logging.getLogger("yolov5").info("yolov5 is set up")
"""
# How yolov7's train.py does it (utils/general.py, set_logging): basicConfig on the root.
YOLOV7_LOGGING = """
import logging
logging.basicConfig(format="%(message)s", level=logging.INFO)
"""
CHECK_TWICE = """  # run with tests/training on the path (imports test_hook): a kept and a replaced report
import torch
from autoanchor.training.hook import CheckOptions, run_check
from test_hook import P5, POOR, fixed_search, make_model
p5 = torch.tensor(P5).view(-1, 2)
for anchors in (P5, POOR):
    run_check(None, make_model(anchors), CheckOptions(verbose=VERBOSE), search=fixed_search(p5))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "setup, verbose, expected",
    [
        (YOLOV5_LOGGING, True, 1),  # no handler on autoanchor's way to the root: stderr
        ("", True, 1),  # a bare script: stderr
        (YOLOV7_LOGGING, True, 1),  # through the root handler, not a second time on stderr
        ("import logging; logging.basicConfig()\n", True, 0),  # configured at WARNING: obeyed
        ("import logging; logging.getLogger('autoanchor').setLevel(logging.WARNING)\n", True, 0),  # silenced
    ],
    ids=["yolov5", "bare", "yolov7", "root-warning", "autoanchor-warning"],
)
def test_the_report_reaches_a_training_log(setup, verbose, expected):
    script = setup + CHECK_TWICE.replace("VERBOSE", str(verbose))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "training")))),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    kept = [line for line in lines if "current anchors fit, kept" in line]
    replaced = [line for line in lines if "anchors replaced, BPR" in line]
    assert len(kept) == expected and len(replaced) == expected, result.stderr[-2000:]
    assert all(line.startswith("autoanchor: ") for line in kept + replaced)
    # Each report line is followed by the per-level table, the same way.
    assert sum(line.startswith("autoanchor: P3 ") for line in lines) == 2 * expected, result.stderr[-2000:]
    assert result.stdout == ""
    if setup is YOLOV5_LOGGING:
        assert "yolov5 is set up" in result.stderr  # yolov5's own logging still works


def test_seed_only_changes_the_jitter():
    first = check(None, make_model(P5), seed=7)
    again = check(None, make_model(P5), seed=7)
    other = check(None, make_model(P5), seed=8)
    assert first == again
    assert first.bpr_before != other.bpr_before or first.aat_before != other.aat_before


def test_global_rng_is_untouched():
    model = make_model(P5)  # (initialising the convolutions draws from the global RNG)
    state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    check(None, model)
    assert torch.equal(torch.get_rng_state(), state)
    assert (np.random.get_state()[1] == np_state).all()


def test_real_search_is_deterministic():
    """Two models, one seed, the public entry point: bit-identical anchors."""
    first, second = make_model(POOR), make_model(POOR)
    check_anchors(None, first, verbose=False, gen=10, seed=5)
    check_anchors(None, second, verbose=False, gen=10, seed=5)
    assert torch.equal(head_of(first).anchors, head_of(second).anchors)


# ---------------------------------------------------------------------------------
# The example
# ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_example_train_hook_runs():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_hook.py"), "--steps", "3", "--gen", "30"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "autoanchor:" in result.stderr + result.stdout
    assert "step 3" in result.stdout
    assert math.isfinite(float(result.stdout.strip().splitlines()[-1].split()[-1]))
