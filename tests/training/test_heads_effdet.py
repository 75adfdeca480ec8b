"""The effdet family against effdet itself: geometry bit for bit, figures against its own matcher.

CI runs this file in the torchvision environment, which must have ``effdet`` installed
(``pip install effdet``); models are built with ``pretrained=False,
pretrained_backbone=False``: nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

effdet = pytest.importorskip("effdet")
from effdet import create_model  # noqa: E402
from effdet.anchors import Anchors  # noqa: E402
from effdet.object_detection import ArgMaxMatcher, BoxList, IouSimilarity  # noqa: E402

from autoanchor import check_anchors  # noqa: E402
from autoanchor.grid.centred import image_samples, match_stats_centred  # noqa: E402
from autoanchor.grid.effdet_anchors import EffdetAnchors, letterbox  # noqa: E402
from autoanchor.io.datasets import load_boxes  # noqa: E402
from autoanchor.training.heads import find_head  # noqa: E402
from autoanchor.training.heads.effdet import EffdetFamily  # noqa: E402
from helpers import fail_after_prepare  # noqa: E402

D0_RATIOS = [(1.0, 1.0), (1.4, 0.7), (0.7, 1.4)]


@pytest.mark.parametrize(
    "levels, num_scales, ratios, anchor_scale, size",
    [
        ((3, 7), 3, D0_RATIOS, 4.0, (512, 512)),
        ((3, 7), 3, [1.0, 2.0, 0.5], 4.0, (640, 640)),
        ((3, 7), 2, [(1.3, 0.77), (0.6, 1.66)], 3.3, (768, 512)),
        ((2, 6), 4, D0_RATIOS, 2.5, (500, 300)),
    ],
)
def test_anchor_boxes_equal_effdet_bit_for_bit(levels, num_scales, ratios, anchor_scale, size):
    library = Anchors(levels[0], levels[1], num_scales, ratios, anchor_scale, size)
    mine = EffdetAnchors.from_config(levels[0], levels[1], num_scales, ratios, anchor_scale, size)
    assert torch.equal(mine.boxes(), library.boxes)
    assert mine.anchors_per_location == library.get_anchors_per_location()


def library_figures(samples, boxes_yxyx: torch.Tensor, threshold: float = 0.5) -> tuple[float, float, float]:
    """Share matched, mean best IoU and positives per box by effdet's IouSimilarity and
    ArgMaxMatcher as its AnchorLabeler sets them up, each row alone in its image."""
    corners = torch.cat([samples.xy - samples.wh / 2, samples.xy + samples.wh / 2], dim=1).float()
    corners = corners[:, [1, 0, 3, 2]]  # effdet boxes are (y1, x1, y2, x2)
    matcher = ArgMaxMatcher(
        threshold, unmatched_threshold=threshold, negatives_lower_than_unmatched=True, force_match_for_each_row=True
    )
    similarity = IouSimilarity()
    anchors = BoxList(boxes_yxyx)
    matched = mean = positives = 0.0
    for row in range(corners.shape[0]):
        quality = similarity.compare(BoxList(corners[row : row + 1]), anchors)  # [1, D]
        best = float(quality.max())
        matched += best >= threshold
        mean += best
        positives += int((matcher.match(quality).match_results == 0).sum())
    n = corners.shape[0]
    return matched / n, mean / n, positives / n


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["coco128", "widerface_val"])
def test_figures_equal_effdet_own_count_within_half_a_percent(dataset, one_cpu_thread):
    path = "autoanchor/data/coco128.npz" if dataset == "coco128" else f"/work/shared/data/{dataset}.npz"
    data = np.load(path)
    rows = torch.randperm(data["wh"].shape[0], generator=torch.Generator().manual_seed(0))[:300].numpy()
    settings = EffdetAnchors.from_config(3, 7, 3, D0_RATIOS, 4.0, (384, 384))
    factor, content = letterbox(torch.tensor(data["shapes"]), settings.image_size)
    index = torch.tensor(data["image_index"][rows]).long()
    wh = torch.tensor(data["wh"][rows], dtype=torch.float64) * content[index]
    samples = image_samples(wh, None, content[index], positions=2)
    mine = match_stats_centred(samples, settings.levels(), threshold=0.5)
    matched, mean, positives = library_figures(samples, settings.boxes())
    assert mine.matched == pytest.approx(matched, rel=0.005, abs=1e-9)
    assert mine.mean_iou == pytest.approx(mean, rel=0.005)
    assert mine.positives == pytest.approx(positives, rel=0.005)


def build(image_size: int = 256) -> torch.nn.Module:
    return create_model(
        "efficientdet_d0", bench_task="train", pretrained=False, pretrained_backbone=False, bench_labeler=True,
        image_size=(image_size, image_size),
    )


def state_of(bench) -> tuple:
    anchors = bench.anchors
    return (
        list(anchors.anchor_scales), [tuple(a) for a in anchors.aspect_ratios], dict(anchors.config),
        bench.config.anchor_scale, [tuple(a) for a in bench.config.aspect_ratios],
        {k: v.clone() for k, v in bench.state_dict().items()},
    )


def unchanged(bench, before) -> bool:
    now = state_of(bench)
    return now[:5] == before[:5] and all(torch.equal(before[5][k], v) for k, v in now[5].items())


def training_step(bench) -> torch.Tensor:
    bench.train()
    side = bench.anchors.image_size[0]
    images = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    target = {"bbox": torch.tensor([[[30.0, 20.0, 150.0, 120.0]], [[60.0, 50.0, 200.0, 240.0]]]),
              "cls": torch.tensor([[1.0], [2.0]])}
    loss = bench(images, target)["loss"]
    loss.backward()
    return loss.detach()


@pytest.mark.slow
@pytest.mark.parametrize("fit_octaves", [True, False])
def test_replaced_in_place_when_more_boxes_match_and_a_training_step_runs(fit_octaves, one_cpu_thread):
    bench = build()
    pointer = bench.anchors.boxes.data_ptr()
    family = None if fit_octaves else EffdetFamily(fit_octaves=False)
    if fit_octaves:
        with pytest.warns(UserWarning, match="octave scales"):
            report = check_anchors(load_boxes(None), bench, verbose=False, family=family)
    else:
        report = check_anchors(load_boxes(None), bench, verbose=False, family=family)
    assert report.family == "effdet" and report.replaced
    assert report.figures_after["matched"] > report.figures_before["matched"]
    anchors = bench.anchors
    assert anchors.boxes.data_ptr() == pointer
    octaves = [entry[1] for entry in anchors.config[anchors.min_level][:: len(anchors.aspect_ratios)]]
    assert all(b > a for a, b in zip(octaves, octaves[1:]))  # a level's anchors in scale order
    # effdet rebuilds the same boxes from the written settings (config entries included).
    rebuilt = Anchors(3, 7, 3, anchors.aspect_ratios, anchors.anchor_scales[0], anchors.image_size)
    rebuilt.config = anchors.config
    assert torch.equal(rebuilt._generate_boxes(), anchors.boxes)
    assert bench.config.anchor_scale == anchors.anchor_scales[0]
    if not fit_octaves:  # then the config alone describes the anchors
        assert torch.equal(Anchors.from_config(bench.config).boxes, anchors.boxes)
    assert torch.isfinite(training_step(bench))


def test_found_as_the_effdet_family_and_figures_measured():
    bench = build(128)
    family, head, where = find_head(bench)
    assert family.name == "effdet" and where == "model.anchors"
    state = family.read(head, where)
    assert state.params.tolist()[:4] == [4.0, 0.0, 1 / 3, 2 / 3]


@pytest.mark.slow
def test_an_injected_error_leaves_the_bench_bit_identical(one_cpu_thread, monkeypatch):
    bench = build()
    before = state_of(bench)
    fail_after_prepare(monkeypatch, "effdet")
    with pytest.raises(RuntimeError, match="injected"):
        check_anchors(load_boxes(None), bench, verbose=False)
    assert unchanged(bench, before)


@pytest.mark.slow
def test_kept_bit_identical_when_good_enough(one_cpu_thread):
    bench = build(128)
    before = state_of(bench)
    report = check_anchors(load_boxes(None), bench, bpr_threshold=0.0, verbose=False)
    assert report.family == "effdet" and not report.searched and not report.replaced and unchanged(bench, before)


def test_cli_preset_is_effdet_d0s_config():
    from effdet.config import get_efficientdet_config

    from autoanchor.cli.centred import CENTRED_PRESETS

    preset, config = CENTRED_PRESETS["efficientdet-d0"], get_efficientdet_config("efficientdet_d0")
    assert preset["levels"] == (config.min_level, config.max_level) and preset["num_scales"] == config.num_scales
    assert [tuple(a) for a in config.aspect_ratios] == list(preset["aspect_ratios"])
    assert preset["anchor_scale"] == config.anchor_scale and tuple(config.image_size) == preset["image_size"]
