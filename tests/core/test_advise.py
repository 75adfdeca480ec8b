"""advise: which rows are swept, how the recommendation is chosen, the small-box note, the table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autoanchor.core.advise import LEVEL_SETS, Advice, advise, format_advice
from autoanchor.core.boxes import BoxSizes
from autoanchor.core.levels import anchors_below_stride, split_levels
from autoanchor.core.metrics import anchor_fitness, best_possible_recall
from helpers import shared_npz

# The search's notes on tiny boxes and on data with fewer distinct sizes than anchors.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*boxes have a side under 3 px:UserWarning"),
    pytest.mark.filterwarnings("ignore:kmeans. asked for .* distinct sizes:UserWarning"),
]


def load_npz(name: str) -> BoxSizes:
    data = np.load(shared_npz(name))
    return BoxSizes(data["shapes"], data["wh"], data["image_index"], source=name)


def log_normal_sizes(n: int, *, seed: int, median: float, spread: float = 0.6) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = median * (spread * torch.randn(n, 1, generator=generator, dtype=torch.float64)).exp()  # [n,1]
    aspect = (0.3 * torch.randn(n, 1, generator=generator, dtype=torch.float64)).exp()
    return torch.cat([size * aspect, size / aspect], 1).float()


@pytest.fixture(scope="module")
def small_advice(one_cpu_thread) -> Advice:
    wh = torch.cat([log_normal_sizes(150, seed=0, median=30.0), log_normal_sizes(150, seed=1, median=150.0)])
    return advise(wh, counts=range(3, 9), seed=0, sweep_gen=20, gen=50)


def recommended_by_the_rule(rows, margin, order):
    """The documented rule, spelled out: qualify by fitness, then the smallest by the stated order."""
    best = max(row.fitness for row in rows)
    qualifying = [row for row in rows if row.fitness >= (1 - margin) * best]
    qualifying.sort(key=lambda r: (r.below_stride, len(r.strides), r.n_anchors, order.index(r.levels)))
    return qualifying[0]


def test_counts_map_onto_level_sets_by_divisibility(small_advice):
    # counts 3..8: P3-P5 takes 3 and 6; the 4-level sets take 4 and 8.
    assert [(row.levels, row.n_anchors) for row in small_advice.rows] == [
        ("P3-P5", 3), ("P3-P5", 6), ("P2-P5", 4), ("P2-P5", 8), ("P3-P6", 4), ("P3-P6", 8),
    ]
    for row in small_advice.rows:
        assert row.strides == tuple(float(s) for s in LEVEL_SETS[row.levels])
        assert row.per_level * len(row.strides) == row.n_anchors
        assert row.anchors.shape == (len(row.strides), row.per_level, 2)


def test_rows_hold_the_figures_of_their_anchors(small_advice):
    wh = torch.cat([log_normal_sizes(150, seed=0, median=30.0), log_normal_sizes(150, seed=1, median=150.0)])
    for row in small_advice.rows:
        flat = row.anchors.reshape(-1, 2)
        assert row.fitness == pytest.approx(float(anchor_fitness(wh, flat)), abs=1e-6)
        assert row.bpr == pytest.approx(float(best_possible_recall(wh, flat)), abs=1e-6)
        # Split by area as yolov5 assigns them: every level's anchors are no larger than the next level's.
        assert torch.equal(row.anchors, split_levels(flat, len(row.strides)))
        assert row.below_stride == len(anchors_below_stride(row.anchors, row.strides))
        assert sum(level.best for level in row.level_stats) == pytest.approx(1.0)
        assert row.spread == [(float(s.size_in_strides.min()), float(s.size_in_strides.max())) for s in row.level_stats]
    # A count's anchors are searched once: the two 4-level sets share them.
    by_count = {}
    for row in small_advice.rows:
        by_count.setdefault(row.n_anchors, []).append(row.anchors.reshape(-1, 2))
    assert torch.equal(by_count[4][0], by_count[4][1]) and torch.equal(by_count[8][0], by_count[8][1])


def test_the_recommendation_follows_the_stated_rule(small_advice):
    chosen = recommended_by_the_rule(small_advice.rows, small_advice.margin, list(LEVEL_SETS))
    assert (small_advice.recommended.levels, small_advice.recommended.n_anchors) == (chosen.levels, chosen.n_anchors)
    # The final, longer search only replaces the anchors when it is no worse on either count.
    assert small_advice.recommended.fitness >= chosen.fitness
    assert small_advice.recommended.below_stride <= chosen.below_stride
    assert small_advice.best_fitness == max(row.fitness for row in small_advice.rows)
    assert small_advice.margin == 0.1 and small_advice.thr == 4.0 and small_advice.n_boxes == 300


@pytest.mark.parametrize("margin", [0.0, 0.02, 0.3, 0.9])
def test_the_margin_trades_fit_for_size(margin, one_cpu_thread):
    wh = torch.cat([log_normal_sizes(100, seed=2, median=40.0), log_normal_sizes(100, seed=3, median=200.0)])
    advice = advise(wh, counts=(3, 4, 6), margin=margin, seed=0, sweep_gen=10, gen=10)
    chosen = recommended_by_the_rule(advice.rows, margin, list(LEVEL_SETS))
    assert (advice.recommended.levels, advice.recommended.n_anchors) == (chosen.levels, chosen.n_anchors)
    if margin == 0.0:  # only the fittest row qualifies
        fittest = max(advice.rows, key=lambda row: row.fitness)
        assert advice.recommended.n_anchors == fittest.n_anchors


def test_many_boxes_under_the_finest_stride_suggest_a_p2_level(one_cpu_thread):
    # 60 of 100 boxes are about 5 px (long side under 8 px), 40 are about 60 px.
    wh = torch.cat([torch.full((60, 2), 5.0), torch.full((40, 2), 60.0)])
    wh = wh * torch.linspace(0.9, 1.1, 100)[:, None]  # sizes 4.5..6.1 and 59..66 px
    advice = advise(wh, counts=(3,), seed=0, sweep_gen=5, gen=5)
    assert advice.warnings[0] == "60% of boxes are under 8 px (long side), the finest stride: add a P2 level, stride 4"
    # Against a P4-P6 baseline the note names stride 16 and a P3 level; the 60 px boxes are still above it.
    advice = advise(wh, counts=(3,), level_sets={"P4-P6": (16, 32, 64)}, seed=0, sweep_gen=5, gen=5)
    assert advice.warnings[0] == "60% of boxes are under 16 px (long side), the finest stride: add a P3 level, stride 8"
    # With 9 of 100 boxes under 8 px (under the 10 % bar) there is no note.
    # (Sizes spread by up to 1 %, so that there are at least 3 distinct ones for 3 anchors.)
    spread = torch.linspace(0.99, 1.01, 100)[:, None]
    wh = torch.cat([torch.full((9, 2), 5.0), torch.full((91, 2), 60.0)]) * spread
    assert not any("add a" in note for note in advise(wh, counts=(3,), seed=0, sweep_gen=5, gen=5).warnings)
    wh = torch.cat([torch.full((10, 2), 5.0), torch.full((90, 2), 60.0)]) * spread
    assert advise(wh, counts=(3,), seed=0, sweep_gen=5, gen=5).warnings[0].startswith("10% of boxes are under 8 px")


def test_few_small_boxes_no_note(small_advice):
    assert not any("add a" in note for note in small_advice.warnings)


def test_anchors_below_a_stride_are_noted(one_cpu_thread):
    # Boxes of 4-6 px on a P3-P5 head: the anchors on P3 (stride 8) and above are under one stride.
    wh = torch.linspace(4.0, 6.0, 50)[:, None].repeat(1, 2)
    advice = advise(wh, counts=(3,), level_sets={"P3-P5": (8, 16, 32)}, seed=0, sweep_gen=5, gen=5)
    assert advice.recommended.below_stride == 3
    assert "3 of the recommended anchors are under one stride of their level" in advice.warnings[-1]


def test_same_seed_same_advice(one_cpu_thread):
    wh = log_normal_sizes(120, seed=4, median=50.0)
    a, b = (advise(wh, counts=(3, 4), seed=5, sweep_gen=10, gen=10) for _ in range(2))
    assert format_advice(a) == format_advice(b)


def test_box_sizes_are_letterboxed_and_scale_is_pooled(one_cpu_thread):
    sizes = BoxSizes(np.array([[1280, 960], [640, 640]]), np.array([[0.1, 0.2], [0.3, 0.1], [0.05, 0.05]]),
                     np.array([0, 0, 1]))
    advice = advise(sizes, img_size=320, counts=(3,), level_sets={"P3-P5": (8, 16, 32)}, sweep_gen=5, gen=5)
    # At 320 the boxes are 32x48, 96x24 (image 0 scaled by 1/4) and 16x16 px (image 1 by 1/2).
    assert advice.n_boxes == 3
    assert advice.rows[0].level_stats[0].n_boxes == 3
    jittered = advise(sizes, img_size=320, counts=(3,), level_sets={"P3-P5": (8, 16, 32)}, scale=0.5,
                      sweep_gen=5, gen=5)
    assert jittered.n_boxes == 3 * 8  # the default 8 draws per image


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"counts": [5, 7]}, ValueError, r"no count in \[5, 7\] is a multiple of the levels"),
        ({"counts": [0, 3]}, ValueError, "counts must be positive integers"),
        ({"counts": []}, ValueError, "counts must be positive integers"),
        ({"margin": 1.0}, ValueError, r"margin must be a finite number in \[0, 1\) \(a relative fitness margin\), got 1.0"),
        ({"margin": -0.1}, ValueError, "margin must be"),
        ({"seed": -1}, ValueError, "seed must be"),
        ({"thr": 0.5}, ValueError, "thr must be"),
        ({"level_sets": {}}, ValueError, "level_sets must be a non-empty mapping"),
        ({"level_sets": {"odd": (32, 16, 8)}}, ValueError, r"level set 'odd' must list distinct strides finest first"),
        ({"level_sets": {"bad": (8, -16)}}, ValueError, "level set 'bad' must be a non-empty sequence of positive"),
        ({"scale": 1.0}, ValueError, "scale must be"),
    ],
)
def test_bad_options_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        advise(torch.full((10, 2), 20.0), **kwargs)


def test_bad_data_is_named():
    with pytest.raises(TypeError, match="data must be a BoxSizes or a Tensor"):
        advise([[10.0, 20.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data must have shape \[N, 2\]"):
        advise(torch.ones(4, 3))


def test_format_advice_lays_out_every_row(small_advice):
    lines = format_advice(small_advice)
    rows = small_advice.rows
    assert lines[0].split()[:4] == ["levels", "anchors", "fitness", "BPR"]
    table = lines[1 : 1 + len(rows)]
    for line, row in zip(table, rows):
        assert line[1:].startswith(row.levels)
        assert f"{row.n_anchors} ({len(row.strides)}x{row.per_level})" in line
        assert f"{row.fitness:.4f}" in line and f"{row.bpr:.4f}" in line
    marked = [line for line in table if line.startswith("*")]
    chosen = small_advice.recommended
    assert len(marked) == 1 and marked[0][1:].startswith(chosen.levels)
    assert f"{chosen.n_anchors} ({len(chosen.strides)}x{chosen.per_level})" in marked[0]
    assert lines[1 + len(rows)] == ""
    assert lines[2 + len(rows)].startswith(f"recommended: {chosen.levels} with {chosen.n_anchors} anchors")
    assert len(lines) == 3 + len(rows) + len(chosen.strides) + len(small_advice.warnings)


def test_advise_on_coco128_prints_its_table(one_cpu_thread):
    advice = advise(load_npz("coco128"), img_size=640)
    lines = format_advice(advice)
    # 3..15: five P3-P5 rows and three for each 4-level set.
    assert len(advice.rows) == 11
    assert len(lines) == 1 + 11 + 2 + len(advice.recommended.strides) + len(advice.warnings)
    chosen = recommended_by_the_rule(advice.rows, 0.1, list(LEVEL_SETS))
    assert (advice.recommended.levels, advice.recommended.n_anchors) == (chosen.levels, chosen.n_anchors)
    assert advice.recommended.bpr > 0.99
    # coco128 has few boxes under 8 px (long side): no P2 note.
    assert not any("P2" in note for note in advice.warnings)
