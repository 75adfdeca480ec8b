"""The hook's per-level figures, anchors under one stride, and the training-time scale."""

from __future__ import annotations

import logging

import pytest
import torch

from autoanchor.io.datasets import load_boxes
from autoanchor.training.hook import CheckOptions, check_anchors, run_check
from autoanchor.core.jitter import scale_jittered_wh
from autoanchor.core.levels import level_stats
from autoanchor.core.metrics import anchor_stats

from test_heads import SquareDetector, squares  # noqa: F401  (squares: the fixture registering SquareFamily)
from test_hook import P5, POOR, STRIDES, check, fixed_search, make_model, no_search

P5_LEVELS = torch.tensor(P5, dtype=torch.float32).view(3, 3, 2)


def jittered_coco(seed: int) -> torch.Tensor:
    """What the check measures without a scale: one seeded draw of U(0.9, 1.1) per image."""
    return load_boxes(None).pixel_wh(640, scale_jitter=(0.9, 1.1), generator=torch.Generator().manual_seed(seed))


def dicts(levels) -> list[dict]:
    return [level.to_dict() for level in levels]


def test_report_levels_are_level_stats_of_the_kept_anchors_on_the_measured_boxes():
    report = check(None, make_model(P5), seed=3)
    assert not report.replaced
    assert dicts(report.levels) == dicts(level_stats(jittered_coco(3), P5_LEVELS, STRIDES))
    assert [level.name for level in report.levels] == ["P3", "P4", "P5"]
    assert report.below_stride == ()  # the smallest yolov5 anchor, 10x13, is 11.4 px: 1.4 strides of 8
    assert report.scale is None


def test_report_levels_are_of_the_new_anchors_after_a_replacement():
    new = P5_LEVELS.reshape(-1, 2) * 1.25  # 12.5x16.25 ...: on coco128 a better fit than POOR
    report = check(None, make_model(POOR), search=fixed_search(new), seed=0)
    assert report.replaced
    assert torch.equal(report.levels[0].anchors, report.anchors_after[0])
    assert dicts(report.levels) == dicts(level_stats(jittered_coco(0), report.anchors_after, STRIDES))


def test_anchors_under_one_stride_are_named_with_their_shortfall():
    # P5 (stride 32) gets a 20x20 anchor: sqrt(400) / 32 = 0.625 strides, 37.5 % under one stride.
    anchors = [P5[0], P5[1], [20, 20, 156, 198, 373, 326]]
    report = check(None, make_model(anchors))
    (item,) = report.below_stride
    assert (item.level, item.stride, item.anchor) == (2, 32.0, (20.0, 20.0))
    assert item.size_in_strides == pytest.approx(0.625) and item.shortfall == pytest.approx(0.375)
    assert str(report).endswith("; 1 anchor(s) under one stride of their level (P5)")
    assert "\n" not in str(report)
    lines = report.level_lines()
    assert lines[-2:] == ["1 anchor(s) under one stride of their level:", f"  {item}"]
    assert "P5 (stride 32): anchor 20x20 px is 0.62 strides, 38% under one stride" in lines[-1]


def test_poor_tiny_anchors_list_every_level():
    # POOR: 3 to 11 px squares, every one under one stride (11 / 32 < 1 on P5); a search that finds
    # nothing better keeps them, and the report says so level by level.
    same = fixed_search(torch.tensor(POOR, dtype=torch.float32).view(-1, 2))
    with pytest.warns(UserWarning, match="still fit the data poorly"):
        report = check(None, make_model(POOR), search=same)
    assert not report.replaced and report.searched
    assert len(report.below_stride) == 9
    assert str(report).endswith("; 9 anchor(s) under one stride of their level (P3, P4, P5)")


def test_the_hook_logs_the_table_after_the_report_line(caplog):
    with caplog.at_level(logging.INFO, logger="autoanchor"):
        report = check(None, make_model(P5), verbose=True)
    messages = [r.getMessage() for r in caplog.records if r.name == "autoanchor.training.hook"]
    at = messages.index(str(report))
    table = messages[at + 1 :]
    assert table[0] == "autoanchor: per level (final anchors, 929 boxes):"
    assert table[1].startswith("autoanchor: level  stride  anchors (px)")
    assert [line.split()[1] for line in table[2:]] == ["P3", "P4", "P5"]


def test_verbose_false_logs_the_table_at_debug_only(caplog):
    with caplog.at_level(logging.DEBUG, logger="autoanchor"):
        report = check(None, make_model(P5))
    table = [r for r in caplog.records if "per level (final anchors" in r.getMessage()]
    assert len(table) == 1 and table[0].levelno == logging.DEBUG
    assert report.levels


def test_reports_with_different_levels_differ():
    first = check(None, make_model(P5), seed=3)
    assert first == check(None, make_model(P5), seed=3)
    assert first != check(None, make_model(P5), seed=3, scale=0.5)


# -- the training scale ---------------------------------------------------------------


def test_scale_measures_on_pooled_seeded_draws():
    report = check_anchors(None, make_model(P5), verbose=False, scale=0.5)
    pooled = scale_jittered_wh(load_boxes(None), 640, scale=0.5, draws=8, seed=0)  # [929 * 8, 2]
    stats = anchor_stats(pooled, P5_LEVELS.view(-1, 2))
    assert (report.bpr_before, report.aat_before, report.fitness_before) == (stats.bpr, stats.aat, stats.fitness)
    assert report.levels[0].n_boxes == 929 * 8
    assert dicts(report.levels) == dicts(level_stats(pooled, P5_LEVELS, STRIDES))
    assert report.scale == 0.5

    default = check_anchors(None, make_model(P5), verbose=False)
    assert report.fitness_before != default.fitness_before  # U(0.5, 1.5) is not U(0.9, 1.1)
    assert report == check_anchors(None, make_model(P5), verbose=False, scale=0.5)  # seeded
    other_seed = check_anchors(None, make_model(P5), verbose=False, scale=0.5, seed=1)
    assert other_seed.fitness_before != report.fitness_before


def test_scale_zero_is_the_plain_sizes_eight_times():
    report = check(None, make_model(P5), scale=0.0)
    plain = load_boxes(None).pixel_wh(640)
    assert report.fitness_before == anchor_stats(plain, P5_LEVELS.view(-1, 2)).fitness
    assert report.levels[0].n_boxes == 8 * plain.shape[0]


def test_scale_fits_the_search_on_the_pooled_draws():
    seen = []

    def search(wh, n=9, **options):
        seen.append(wh.clone())
        return fixed_search(P5_LEVELS.view(-1, 2))(wh, n, **options)

    report = check(None, make_model(POOR), search=search, scale=0.5, seed=4)
    assert report.replaced
    (wh,) = seen
    assert torch.equal(wh, scale_jittered_wh(load_boxes(None), 640, scale=0.5, seed=4))


@pytest.mark.parametrize("scale", [1.5, 1.0, -0.1, float("nan"), "0.5", True])
def test_bad_scale_is_refused_naming_it(scale):
    with pytest.raises(ValueError, match="scale"):
        CheckOptions(scale=scale)
    model = make_model(P5)
    before = model.module.model[-1].anchors.clone()
    with pytest.raises(ValueError, match="scale"):
        check_anchors(None, model, verbose=False, scale=scale)
    assert torch.equal(model.module.model[-1].anchors, before)


def test_scale_is_refused_for_a_family_that_does_not_model_it(squares):
    model = SquareDetector([20.0, 60.0])
    with pytest.raises(ValueError, match="squares family .* does not support"):
        run_check(None, model, CheckOptions(verbose=False, scale=0.5), search=no_search)
    report = run_check(None, model, CheckOptions(verbose=False, bpr_threshold=0.0), search=no_search)
    assert not hasattr(report, "levels") and report.lines() == [str(report)]  # no strided levels: no table


def test_scale_is_part_of_the_settings_every_rank_must_share():
    assert CheckOptions(scale=0.5).settings_key() != CheckOptions().settings_key()
    assert CheckOptions(scale=0.5).settings_key() == CheckOptions(scale=0.5).settings_key()
