"""The ssd family against torchvision itself: geometry bit for bit, figures against its own matcher.

CI runs this file in the torchvision environment (``torch==2.14.1``, ``torchvision==0.29.1``);
models are built with ``weights=None, weights_backbone=None``: nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

torchvision = pytest.importorskip("torchvision")
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large  # noqa: E402
from torchvision.models.detection._utils import SSDMatcher  # noqa: E402
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402
from torchvision.ops import box_iou  # noqa: E402

from autoanchor import check_anchors  # noqa: E402
from autoanchor.grid.centred import image_samples, match_stats_centred  # noqa: E402
from autoanchor.grid.default_boxes import DefaultBoxes  # noqa: E402
from autoanchor.io.datasets import load_boxes  # noqa: E402
from autoanchor.training.heads.ssd import write_default_boxes  # noqa: E402
from helpers import fail_after_prepare  # noqa: E402

SSD300_GRID = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
SSDLITE_GRID = [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]


def build(name: str) -> torch.nn.Module:
    builder = {"ssd300": ssd300_vgg16, "ssdlite320": ssdlite320_mobilenet_v3_large}[name]
    return builder(weights=None, weights_backbone=None)


def library_boxes(generator: DefaultBoxGenerator, grid, side: int) -> torch.Tensor:
    images = ImageList(torch.zeros(1, 3, side, side), [(side, side)])
    return generator(images, [torch.zeros(1, 1, h, w) for h, w in grid])[0]


def settings_of(generator) -> DefaultBoxes:
    return DefaultBoxes(tuple(generator.scales), tuple(tuple(a) for a in generator.aspect_ratios),
                        None if generator.steps is None else tuple(generator.steps), generator.clip)


@pytest.mark.parametrize(
    "generator, grid, side",
    [
        (DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]], scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
                             steps=[8, 16, 32, 64, 100, 300]), SSD300_GRID, 300),
        (DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95), SSDLITE_GRID, 320),
        (DefaultBoxGenerator([[1.7, 2.45], [3.1]], scales=[0.05, 0.4, 1.3], steps=[16, 50]), [(19, 19), (6, 6)], 300),
        (DefaultBoxGenerator([[2.5]], scales=[0.3, 0.9], clip=False), [(7, 7)], 224),
    ],
)
def test_default_boxes_equal_torchvision_bit_for_bit(generator, grid, side):
    mine = settings_of(generator)
    assert [tuple(p.shape) for p in mine.wh_pairs()] == [tuple(p.shape) for p in generator._wh_pairs]
    assert all(torch.equal(a, b) for a, b in zip(mine.wh_pairs(), generator._wh_pairs))
    assert torch.equal(mine.boxes(grid, (side, side)), library_boxes(generator, grid, side))
    assert list(mine.anchors_per_location) == generator.num_anchors_per_location()


def test_from_ratios_spreads_the_scales_as_torchvision():
    generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    assert list(DefaultBoxes.from_ratios([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95).scales) == generator.scales


def library_figures(samples, boxes: torch.Tensor, threshold: float = 0.5) -> tuple[float, float, float]:
    """Share matched, mean best IoU and positives per box by torchvision's box_iou and SSDMatcher,
    each row alone in its image (as the figures are defined)."""
    corners = torch.cat([samples.xy - samples.wh / 2, samples.xy + samples.wh / 2], dim=1).float()
    matcher = SSDMatcher(threshold)
    matched = mean = positives = 0.0
    for row in range(corners.shape[0]):
        quality = box_iou(corners[row : row + 1], boxes)  # [1, D]
        best = float(quality.max())
        matched += best >= threshold
        mean += best
        positives += int((matcher(quality) == 0).sum())
    n = corners.shape[0]
    return matched / n, mean / n, positives / n


@pytest.mark.parametrize("dataset", ["coco128", "widerface_val"])
def test_figures_equal_torchvision_own_count_within_half_a_percent(dataset, one_cpu_thread):
    data = np.load(f"/work/shared/data/{dataset}.npz") if dataset != "coco128" else np.load("autoanchor/data/coco128.npz")
    rows = torch.randperm(data["wh"].shape[0], generator=torch.Generator().manual_seed(0))[:400]
    wh = torch.tensor(data["wh"][rows.numpy()], dtype=torch.float64) * 300
    samples = image_samples(wh, None, torch.full_like(wh, 300.0), positions=2)
    settings = DefaultBoxes(
        (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05), ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)), (8, 16, 32, 64, 100, 300)
    )
    mine = match_stats_centred(samples, settings.levels(SSD300_GRID, (300, 300)), threshold=0.5)
    matched, mean, positives = library_figures(samples, settings.boxes(SSD300_GRID, (300, 300)))
    assert mine.matched == pytest.approx(matched, rel=0.005, abs=1e-9)
    assert mine.mean_iou == pytest.approx(mean, rel=0.005)
    assert mine.positives == pytest.approx(positives, rel=0.005)


def state_of(model) -> tuple:
    generator = model.anchor_generator
    return (
        list(generator.scales), [list(a) for a in generator.aspect_ratios], [p.clone() for p in generator._wh_pairs],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def unchanged(model, before) -> bool:
    now = state_of(model)
    return (
        now[:2] == before[:2]
        and all(torch.equal(a, b) for a, b in zip(now[2], before[2]))
        and all(torch.equal(before[3][k], v) for k, v in now[3].items())
    )


def levels_in_scale_order(generator) -> bool:
    """Each level's smallest default box (sqrt of area, clipped) is larger than the previous level's."""
    smallest = [float(p.clamp(0, 1).prod(dim=1).sqrt().min()) for p in generator._wh_pairs]
    return all(b > a for a, b in zip(smallest, smallest[1:])) and all(
        b > a for a, b in zip(generator.scales, generator.scales[1:])
    )


def training_step(model) -> torch.Tensor:
    model.train()
    images = [torch.rand(3, 180, 240, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 120.0, 150.0]]), "labels": torch.tensor([1])}] * 2
    loss = sum(model(images, targets).values())
    loss.backward()
    return loss.detach()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ssdlite320", "ssd300"])
def test_replaced_in_place_when_more_boxes_match_and_a_training_step_runs(name, one_cpu_thread):
    model = build(name)
    generator = model.anchor_generator
    pointers = [p.data_ptr() for p in generator._wh_pairs]
    report = check_anchors(load_boxes(None), model, verbose=False)
    assert report.family == "ssd" and report.replaced
    assert report.figures_after["matched"] > report.figures_before["matched"]
    assert [p.data_ptr() for p in generator._wh_pairs] == pointers
    assert levels_in_scale_order(generator)
    # torchvision's own generator built from the written settings gives the same cache and boxes.
    fresh = DefaultBoxGenerator(generator.aspect_ratios, scales=generator.scales, steps=generator.steps, clip=generator.clip)
    assert all(torch.equal(a, b) for a, b in zip(fresh._wh_pairs, generator._wh_pairs))
    grid, side = (SSD300_GRID, 300) if name == "ssd300" else (SSDLITE_GRID, 320)
    assert torch.equal(library_boxes(fresh, grid, side), library_boxes(generator, grid, side))
    assert fresh.num_anchors_per_location() == build(name).anchor_generator.num_anchors_per_location()
    assert torch.isfinite(training_step(model))


@pytest.mark.slow
def test_an_injected_error_leaves_the_model_bit_identical(one_cpu_thread, monkeypatch):
    model = build("ssdlite320")
    before = state_of(model)
    fail_after_prepare(monkeypatch, "ssd")
    with pytest.raises(RuntimeError, match="injected"):
        check_anchors(load_boxes(None), model, verbose=False)
    assert unchanged(model, before)


def test_a_failing_write_is_rolled_back():
    generator = DefaultBoxGenerator([[2], [2, 3]], scales=[0.1, 0.3, 0.6], steps=[16, 32])
    before = (list(generator.scales), [list(a) for a in generator.aspect_ratios], [p.clone() for p in generator._wh_pairs])
    new = DefaultBoxes((0.12, 0.35, 0.7), ((2.5,), (2.0, 3.5)), (16, 32))
    pairs = new.wh_pairs()
    pairs[1] = pairs[1][:3]  # the second copy fails after the first has been written
    with pytest.raises(RuntimeError):
        write_default_boxes(generator, new, pairs)
    assert generator.scales == before[0] and generator.aspect_ratios == before[1]
    assert all(torch.equal(a, b) for a, b in zip(generator._wh_pairs, before[2]))


def test_kept_bit_identical_when_good_enough(one_cpu_thread):
    model = build("ssdlite320")
    before = state_of(model)
    report = check_anchors(load_boxes(None), model, bpr_threshold=0.0, verbose=False)
    assert report.family == "ssd" and not report.searched and not report.replaced and unchanged(model, before)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ssd300", "ssdlite320"])
def test_cli_presets_are_the_real_models_numbers(name):
    from autoanchor.cli.centred import CENTRED_PRESETS
    from autoanchor.training.heads import find_head

    preset = CENTRED_PRESETS[name]
    family, head, where = find_head(build(name))
    extra = family.read(head, where).extra
    if "scales" in preset:
        expected = DefaultBoxes(preset["scales"], preset["aspect_ratios"], preset["steps"])
    else:
        expected = DefaultBoxes.from_ratios(preset["aspect_ratios"], min_ratio=preset["min_ratio"],
                                            max_ratio=preset["max_ratio"])
    assert extra.boxes == expected
    assert extra.grid_sizes == list(preset["grid_sizes"]) and extra.image_size == preset["image_size"]
    assert extra.threshold == 0.5
