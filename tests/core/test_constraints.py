"""The stride-bounded search and the training scale in the search API, hook, CLI and advice."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from helpers import generator, shared_npz

from autoanchor.core.advise import advise
from autoanchor.cli import main
from autoanchor.io.configs import anchors_by_name, strides_by_name
from autoanchor.io.datasets import load_boxes
from autoanchor.core.differential import differential_evolution
from autoanchor.training.dropins import kmean_anchors
from autoanchor.core.evolve import evolve
from autoanchor.core.jitter import jitter_wh, scale_jittered_wh
from autoanchor.core.levels import clamp_to_strides, stride_bounds
from autoanchor.core.metrics import anchor_stats
from autoanchor.core.objectives import objective_class
from autoanchor.core.polish import polish
from autoanchor.core.search import search_anchors
from autoanchor.core.settings import SearchSettings

from test_hook import STRIDES, check, make_model

TOLERANCE = 1e-6  # relative: float32 anchors measured in float64


def quiet_search(wh, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*boxes have a side under", category=UserWarning)
        return search_anchors(wh, *args, **kwargs)


def outside_bounds(anchors, strides, low_units, high_units) -> list[str]:
    """Plain loop: sort by area, split evenly over the strides, compare each sqrt(w*h) with its level's bounds."""
    pairs = sorted(anchors.tolist(), key=lambda a: a[0] * a[1])
    per_level = len(pairs) // len(strides)
    bad = []
    for rank, (w, h) in enumerate(pairs):
        stride = strides[rank // per_level]
        size = math.sqrt(w * h)
        if low_units is not None and size < low_units * stride * (1 - TOLERANCE):
            bad.append(f"{w}x{h} under {low_units} x {stride}")
        if high_units is not None and size > high_units * stride * (1 + TOLERANCE):
            bad.append(f"{w}x{h} over {high_units} x {stride}")
    return bad


def random_case(seed: int):
    """Log-normal boxes, 1 to 3 levels of random strides and random (sometimes one-sided) bounds."""
    rng = np.random.default_rng(seed)
    wh = torch.from_numpy(np.exp(rng.normal(3.0, 1.0, size=(400, 2)))).float().clamp(min=2.5)
    levels = int(rng.integers(1, 4))
    strides = tuple(float(rng.uniform(4, 12)) * 2**level for level in range(levels))
    kind = seed % 3
    low = float(rng.uniform(0.5, 2.5)) if kind != 1 else None
    high = (low if low is not None else 0.5) * float(rng.uniform(1.2, 3.0)) if kind != 0 else None
    n = levels * int(rng.integers(1, 4))
    return wh, n, strides, low, high


# ---- settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, match",
    [
        ({"strides": (8, 8, 32)}, "strides must be strictly increasing"),
        ({"strides": (8, -16)}, "strides must be positive"),
        ({"strides": "8,16"}, "strides must be a sequence"),
        ({"min_stride_units": 1.0}, "min_stride_units=1.0 needs the levels' strides"),
        ({"max_stride_units": 4.0}, "max_stride_units=4.0 needs the levels' strides"),
        ({"strides": (8,), "min_stride_units": 0}, "min_stride_units must be a finite number greater than 0"),
        ({"strides": (8,), "max_stride_units": math.inf}, "max_stride_units must be a finite number greater than 0"),
        ({"strides": (8,), "min_stride_units": 2, "max_stride_units": 1.5}, r"min_stride_units \(2\) exceeds"),
        ({"scale": 1.0}, "scale must be a finite number in"),
        ({"scale": -0.1}, "scale must be a finite number in"),
    ],
)
def test_bad_settings_name_the_field(options, match):
    with pytest.raises(ValueError, match=match):
        SearchSettings(**options)


def test_settings_normalise_the_values():
    settings = SearchSettings(strides=torch.tensor([8, 16, 32]), min_stride_units=1, scale=0)
    assert settings.strides == (8.0, 16.0, 32.0) and settings.min_stride_units == 1.0 and settings.scale == 0.0
    assert settings.bounded and not SearchSettings(strides=(8,)).bounded


def test_anchor_count_must_split_over_the_levels():
    wh = torch.rand(50, 2) * 50 + 3
    with pytest.raises(ValueError, match=r"n=8 anchors do not split evenly over the 3 levels"):
        search_anchors(wh, 8, strides=(8, 16, 32), min_stride_units=1.0)


# ---- every stage keeps the bounds ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("metric", ["ratio", "iou"])
@pytest.mark.parametrize("method", ["ga", "de"])
def test_bounded_search_stays_within_bounds_and_beats_its_start(seed, metric, method):
    wh, n, strides, low, high = random_case(seed)
    result = quiet_search(
        wh, n, strides=strides, min_stride_units=low, max_stride_units=high, metric=metric, method=method,
        gen=60, seed=seed,
    )
    assert outside_bounds(result.anchors, strides, low, high) == []
    figure = objective_class(metric).figure
    assert figure(result.stats) >= figure(result.start_stats)  # the start is the projected k-means start
    assert result.stats == pytest.approx(tuple(anchor_stats(wh, result.anchors)), rel=1e-6)


def test_bounds_change_the_result_only_where_they_bind():
    # Tiny boxes (3 to 6 px) on one level of stride 8: unbounded, the anchors sit among the boxes; with
    # min_stride_units=1 every anchor is at least 8 px, and a bound far below the boxes changes nothing
    # of substance (the fitness stays within float noise of the unbounded one).
    wh = torch.tensor([[3.0, 4.0], [4.0, 3.0], [5.0, 6.0], [6.0, 5.0], [4.0, 4.0]]).repeat(20, 1)
    free = quiet_search(wh, 3, gen=50, seed=0)
    assert float(free.anchors.prod(-1).sqrt().max()) < 8
    bound = quiet_search(wh, 3, gen=50, seed=0, strides=(8,), min_stride_units=1.0)
    assert outside_bounds(bound.anchors, (8.0,), 1.0, None) == []
    assert bound.stats.fitness < free.stats.fitness
    loose = quiet_search(wh, 3, gen=50, seed=0, strides=(8,), min_stride_units=0.01)
    assert loose.stats.fitness == pytest.approx(free.stats.fitness, abs=1e-4)


@pytest.mark.parametrize("search", [evolve, differential_evolution])
def test_evolution_scores_only_projected_candidates(search):
    wh = torch.tensor([[3.0, 4.0], [5.0, 6.0], [30.0, 40.0], [50.0, 70.0]]).repeat(10, 1)
    low, high = stride_bounds((8, 32), 2, min_units=1.0, max_units=1.5)
    objective = objective_class("ratio")(wh, thr=4.0)
    start = clamp_to_strides(torch.tensor([[4.0, 5.0], [40.0, 50.0]]), low, high)
    seen = []

    def project(anchors):
        projected = clamp_to_strides(anchors, low, high)
        seen.append(projected)
        return projected

    best, fitness = search(objective, start, gen=40, population=4, generator=generator(0), project=project)
    assert seen and all(outside_bounds(set_, (8, 32), 1.0, 1.5) == [] for p in seen for set_ in p)
    assert outside_bounds(best, (8, 32), 1.0, 1.5) == []
    assert float(fitness) >= float(objective(start))


def test_polish_never_takes_a_move_out_of_bounds():
    # The boxes pull every anchor below 8 px; a bounded climb with hops must stop at the bound.
    wh = torch.tensor([[3.0, 4.0], [4.0, 3.0], [6.0, 5.0], [12.0, 20.0]]).repeat(10, 1)
    objective = objective_class("ratio")(wh, thr=4.0)
    low, high = stride_bounds((8,), 2, min_units=1.0)
    start = torch.tensor([[9.0, 9.0], [14.0, 18.0]])
    free, _ = polish(objective, start)
    assert float(free.prod(-1).sqrt().min()) < 8
    bound, fitness = polish(objective, start, bounds=(low, high), relocations=8, generator=generator(1))
    assert outside_bounds(bound, (8.0,), 1.0, None) == []
    assert float(fitness) >= float(objective(start))


def test_widerface_bounded_anchors_beat_yolov5_defaults():
    wh = load_boxes(str(shared_npz("widerface_val")), verbose=False).pixel_wh(640)
    strides = tuple(float(s) for s in strides_by_name("yolov5-p5"))
    default = anchor_stats(wh[(wh >= 2).any(1)], anchors_by_name("yolov5-p5").reshape(-1, 2))
    free = quiet_search(wh, 9, seed=0)
    bound = quiet_search(wh, 9, seed=0, strides=strides, min_stride_units=1.0)
    # Faces are tiny: unbounded, several anchors fall under one stride of their level ...
    assert outside_bounds(free.anchors, strides, 1.0, None) != []
    # ... bounded, none does, and the fit still beats yolov5's default anchors (0.773 vs 0.627 measured, seed 0).
    assert outside_bounds(bound.anchors, strides, 1.0, None) == []
    assert bound.stats.fitness > default.fitness + 0.02
    assert free.stats.fitness >= bound.stats.fitness


# ---- the training scale --------------------------------------------------------------------------------------


def test_search_scale_is_the_search_of_the_seeded_per_box_draws():
    wh = load_boxes(None).pixel_wh(640)
    scaled = quiet_search(wh, 9, gen=50, seed=3, scale=0.5)
    by_hand = quiet_search(jitter_wh(wh, scale=0.5, seed=3), 9, gen=50, seed=3)
    assert torch.equal(scaled.anchors, by_hand.anchors)
    assert scaled.n_boxes == by_hand.n_boxes > wh.shape[0]  # eight draws per box, pooled


def test_kmean_anchors_scale_draws_per_image():
    sizes = load_boxes(None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*boxes have a side under", category=UserWarning)
        anchors = kmean_anchors(None, gen=50, verbose=False, seed=2, scale=0.5)
    by_hand = quiet_search(scale_jittered_wh(sizes, 640, scale=0.5, seed=2), 9, gen=50, seed=2)
    assert np.array_equal(anchors, by_hand.anchors.numpy())


@pytest.mark.slow
def test_scaled_anchors_fit_scale_jittered_boxes_better():
    sizes = load_boxes(None)
    wh = sizes.pixel_wh(640)
    plain = quiet_search(wh, 9, seed=0).anchors
    scaled = quiet_search(wh, 9, seed=0, scale=0.5).anchors
    # A test set the fit never saw: other seeds, per image as training draws them.
    for test_seed in (101, 102):
        test = scale_jittered_wh(sizes, 640, scale=0.5, seed=test_seed)
        test = test[(test >= 2).any(1)]
        assert anchor_stats(test, scaled).fitness > anchor_stats(test, plain).fitness


# ---- hook, advice, command line ------------------------------------------------------------------------------


def test_check_anchors_bounds_the_search_by_the_head_strides():
    # The model's tiny anchors force a search; min_stride_units reaches it with the head's strides.
    calls = []

    def search(wh, n=9, **options):
        calls.append(options)
        return quiet_search(wh, n, **options)

    report = check(None, make_model(), search=search, gen=50, min_stride_units=1.5)
    assert calls[0]["strides"] == STRIDES and calls[0]["min_stride_units"] == 1.5
    assert calls[0]["max_stride_units"] is None
    assert report.replaced
    for level in report.levels:
        assert bool((level.size_in_strides >= 1.5 * (1 - 1e-3)).all()), level.size_in_strides


def test_check_anchors_without_bounds_passes_none():
    calls = []

    def search(wh, n=9, **options):
        calls.append(options)
        return quiet_search(wh, n, **options)

    check(None, make_model(), search=search, gen=20)
    assert "strides" not in calls[0] and "min_stride_units" not in calls[0]


@pytest.mark.parametrize(
    "options, match",
    [
        ({"min_stride_units": -1}, "min_stride_units must be a finite number greater than 0"),
        ({"max_stride_units": "4"}, "max_stride_units must be a finite number greater than 0"),
        ({"min_stride_units": 2, "max_stride_units": 1}, r"min_stride_units \(2\) exceeds"),
    ],
)
def test_check_anchors_refuses_bad_bounds(options, match):
    model = make_model()
    before = model.state_dict()
    with pytest.raises(ValueError, match=match):
        check(None, model, **options)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_advise_with_a_minimum_has_no_anchor_under_it():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*boxes have a side under", category=UserWarning)
        advice = advise(load_boxes(None), counts=[3, 6], sweep_gen=20, gen=50, min_stride_units=1.0)
    assert all(row.below_stride == 0 for row in advice.rows)
    for row in advice.rows:
        for level in row.level_stats:
            assert bool((level.size_in_strides >= 1 - 1e-6).all()), (row.levels, level.size_in_strides)
    with pytest.raises(ValueError, match="min_stride_units must be a finite number greater than 0"):
        advise(load_boxes(None), counts=[3], min_stride_units=0.0)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_fit_min_stride_units_prints_anchors_at_least_that_size(capsys):
    code, out, _ = run(capsys, "fit", "--gen", "50", "--min-stride-units", "1.5", "--format", "json", "-q")
    assert code == 0
    document = json.loads(out)
    assert document["min_stride_units"] == 1.5 and document["max_stride_units"] is None
    # The printed (whole-pixel) anchors: each level's at least 1.5 strides, e.g. 12 px on P3/8.
    assert document["below_stride"] == []
    for level in document["levels"]:
        for w, h in level["anchors"]:
            assert math.sqrt(w * h) >= 1.5 * level["stride"], (w, h, level["stride"])


def test_cli_fit_bounds_use_the_model_yaml_levels(capsys, tmp_path):
    # Four levels in the yaml: strides 8, 16, 32, 64, one anchor each; 2 strides is 16 px on P3, 128 on P6.
    model = tmp_path / "p6.yaml"
    model.write_text(
        "nc: 80\nanchors:\n  - [10,13]  # P3/8\n  - [30,61]  # P4/16\n  - [116,90]  # P5/32\n"
        "  - [373,326]  # P6/64\nhead:\n  [[[17, 20, 23, 26], 1, Detect, [nc, anchors]]]\n"
    )
    code, out, err = run(capsys, "fit", "--model", str(model), "--gen", "30", "--min-stride-units", "2",
                         "--format", "json", "-q")
    assert code == 0, err
    levels = json.loads(out)["levels"]
    assert [level["stride"] for level in levels] == [8, 16, 32, 64]
    for level in levels:
        (w, h), = level["anchors"]
        assert math.sqrt(w * h) >= 2 * level["stride"], (w, h, level["stride"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--min-stride-units", "0"], "--min-stride-units must be a finite number greater than 0"),
        (["--min-stride-units", "2", "--max-stride-units", "1"], "--min-stride-units (2) exceeds --max-stride-units (1)"),
    ],
)
def test_cli_refuses_bad_bounds(capsys, args, message):
    for command in ("fit", "advise"):
        code, _, err = run(capsys, command, *args, "-q")
        assert code == 2 and message in err, err


def test_cli_fit_refuses_bounds_with_a_darknet_cfg(capsys, tmp_path):
    cfg = tmp_path / "net.cfg"
    cfg.write_text("[net]\nwidth=416\nheight=416\n")
    code, _, err = run(capsys, "fit", "--model", str(cfg), "--min-stride-units", "1", "-q")
    assert code == 2 and "not a darknet .cfg" in err, err
