"""The training-time scale draws: range, per-image factors, seeding, and that fitting them pays off."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from autoanchor.core.boxes import BoxSizes
from autoanchor.core.jitter import DEFAULT_DRAWS, jitter_wh, scale_jittered_wh, scale_range
from autoanchor.core.metrics import anchor_fitness
from autoanchor.core.search import search_anchors
from helpers import shared_npz


def load_npz(name: str) -> BoxSizes:
    data = np.load(shared_npz(name))
    return BoxSizes(data["shapes"], data["wh"], data["image_index"], source=name)


def toy_sizes(n_images: int = 50, boxes_per_image: int = 3, seed: int = 0) -> BoxSizes:
    rng = np.random.default_rng(seed)
    shapes = rng.integers(200, 1000, size=(n_images, 2)).astype(float)
    wh = rng.uniform(0.01, 0.9, size=(n_images * boxes_per_image, 2))
    return BoxSizes(shapes, wh, np.repeat(np.arange(n_images), boxes_per_image))


def test_scale_range():
    assert scale_range(0.5) == (0.5, 1.5)
    assert scale_range(0) == (1.0, 1.0)
    for bad in (1.0, -0.1, float("nan"), "0.5", True, None):
        with pytest.raises(ValueError, match="scale must be"):
            scale_range(bad)


def test_each_draw_scales_each_image_by_one_factor_in_range():
    sizes = toy_sizes()
    plain = sizes.pixel_wh(640).double()  # [150,2]
    wh = scale_jittered_wh(sizes, 640, scale=0.5, draws=4, seed=3)
    assert wh.shape == (4 * 150, 2) and wh.dtype == torch.float32
    factor = wh.double().view(4, 150, 2) / plain  # [draws,N,2]
    # Width and height of a box scale together, and every box of an image by the same factor.
    assert torch.allclose(factor[..., 0], factor[..., 1], rtol=1e-6)
    per_image = factor[..., 0].view(4, 50, 3)
    assert torch.allclose(per_image, per_image[..., :1].expand_as(per_image), rtol=1e-6)
    assert bool((factor >= 0.5 - 1e-6).all()) and bool((factor <= 1.5 + 1e-6).all())
    # The draws differ from each other.
    assert not torch.allclose(per_image[0], per_image[1])


def test_factors_are_uniform_on_the_range():
    sizes = toy_sizes(n_images=2000, boxes_per_image=1)
    factor = (scale_jittered_wh(sizes, 640, scale=0.4, draws=5, seed=0).double().view(5, -1, 2)
              / sizes.pixel_wh(640).double())[..., 0].flatten()  # 10000 draws of U(0.6, 1.4)
    # U(0.6, 1.4): mean 1, standard deviation 0.8 / sqrt(12) = 0.2309; the mean of 10000
    # draws is within 4 standard errors (4 * 0.2309 / 100 = 0.0092) of 1.
    assert abs(float(factor.mean()) - 1) < 0.0093
    assert float(factor.std()) == pytest.approx(0.8 / 12**0.5, rel=0.03)
    assert 0.6 <= float(factor.min()) < 0.61 and 1.39 < float(factor.max()) <= 1.4
    # A quarter of the draws in each quarter of the range, within 4 binomial standard errors (0.0173).
    quarters = torch.histc(factor.float(), bins=4, min=0.6, max=1.4) / factor.numel()
    assert bool(((quarters - 0.25).abs() < 0.0174).all())


def test_scale_zero_repeats_the_plain_sizes():
    sizes = toy_sizes()
    wh = scale_jittered_wh(sizes, 640, scale=0.0, draws=3)
    assert torch.equal(wh, sizes.pixel_wh(640).repeat(3, 1))


def test_same_seed_same_sizes_other_seed_other_sizes():
    sizes = toy_sizes()
    a = scale_jittered_wh(sizes, 640, seed=7)
    assert a.shape == (DEFAULT_DRAWS * sizes.n_boxes, 2)
    assert torch.equal(a, scale_jittered_wh(sizes, 640, seed=7))
    assert not torch.equal(a, scale_jittered_wh(sizes, 640, seed=8))
    generator = torch.Generator().manual_seed(7)
    assert torch.equal(a, scale_jittered_wh(sizes, 640, generator=generator))
    # The passed generator advanced: a second call with it draws new factors.
    assert not torch.equal(a, scale_jittered_wh(sizes, 640, generator=generator))


def test_global_random_state_is_untouched():
    state = torch.get_rng_state()
    scale_jittered_wh(toy_sizes(), 640, seed=1)
    jitter_wh(torch.ones(5, 2), seed=1)
    assert torch.equal(state, torch.get_rng_state())


def test_jitter_wh_with_image_index_shares_factors_per_image():
    sizes = toy_sizes(n_images=20, boxes_per_image=4)
    plain = sizes.pixel_wh(640)
    index = torch.as_tensor(sizes.image_index)
    wh = jitter_wh(plain, scale=0.5, draws=3, image_index=index, seed=2)
    factor = (wh.double().view(3, -1, 2) / plain.double())[..., 0].view(3, 20, 4)
    assert torch.allclose(factor, factor[..., :1].expand_as(factor), rtol=1e-6)
    assert bool((factor >= 0.5 - 1e-6).all() and (factor <= 1.5 + 1e-6).all())


def test_jitter_wh_without_image_index_draws_per_box():
    plain = torch.full((1000, 2), 10.0, dtype=torch.float64)
    wh = jitter_wh(plain, scale=0.5, draws=2, seed=0)
    assert wh.dtype == torch.float64 and wh.shape == (2000, 2)
    assert torch.equal(wh[:, 0], wh[:, 1])
    # 2000 independent factors: many distinct sizes, all in [5, 15].
    assert wh[:, 0].unique().numel() > 1900
    assert bool((wh >= 5).all() and (wh <= 15).all())


def test_jitter_wh_stays_on_device(device):
    wh = torch.rand(10, 2, generator=torch.Generator().manual_seed(0)).to(device) * 100
    out = jitter_wh(wh, draws=2, image_index=torch.arange(10, device=device) // 2, seed=0)
    assert out.device == wh.device and out.shape == (20, 2)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"draws": 0}, ValueError, "draws must be an integer of at least 1, got 0"),
        ({"draws": 2.0}, ValueError, "draws must be"),
        ({"scale": 1.5}, ValueError, r"scale must be a finite number in \[0, 1\)"),
        ({"seed": -1}, ValueError, "seed must be"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator"),
        ({"image_index": torch.zeros(4, dtype=torch.long)}, ValueError, r"shape \[5\].*\[4\]"),
        ({"image_index": torch.zeros(5)}, ValueError, "must hold integers"),
        ({"image_index": torch.tensor([0, 1, -1, 0, 0])}, ValueError, "non-negative, got -1"),
    ],
)
def test_jitter_wh_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        jitter_wh(torch.ones(5, 2), **kwargs)


def test_scale_jittered_wh_bad_input():
    with pytest.raises(TypeError, match="sizes must be a BoxSizes"):
        scale_jittered_wh(torch.ones(5, 2), 640)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="img_size"):
        scale_jittered_wh(toy_sizes(), -640)
    with pytest.raises(TypeError, match="wh must be a torch.Tensor"):
        jitter_wh(np.ones((5, 2)))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["coco128", "voc2012_trainval"])
def test_anchors_fitted_to_the_jitter_fit_jittered_boxes_better(name, one_cpu_thread):
    sizes = load_npz(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the few boxes under 3 px
        plain_anchors = search_anchors(sizes.pixel_wh(640), 9, seed=0).anchors
        jitter_anchors = search_anchors(scale_jittered_wh(sizes, 640, scale=0.5, seed=1), 9, seed=0).anchors
    # Judged on sizes jittered independently (other seeds) of the ones the anchors were fitted to.
    for seed in (101, 102, 103):
        test = scale_jittered_wh(sizes, 640, scale=0.5, seed=seed)
        assert float(anchor_fitness(test, jitter_anchors)) > float(anchor_fitness(test, plain_anchors))
    # And the other way round: on the plain sizes, the plain anchors are the fitter ones.
    plain = sizes.pixel_wh(640)
    assert float(anchor_fitness(plain, plain_anchors)) > float(anchor_fitness(plain, jitter_anchors))


def test_jitter_by_draws_is_bit_identical_to_the_whole_product(monkeypatch):
    # jitter_wh multiplies draw by draw in chunks (issue 22, item 6: no [draws, N, 2] float64 temporary);
    # the values must be those of the single product, bit for bit, also across chunk boundaries.
    import autoanchor.core.jitter as jitter

    monkeypatch.setattr(jitter, "_JITTER_CHUNK", 7)
    g = torch.Generator().manual_seed(5)
    wh = torch.rand(50, 2, generator=g) * 100 + 1
    index = torch.randint(0, 6, (50,), generator=g)
    got = jitter.jitter_wh(wh, scale=0.5, draws=3, image_index=index, seed=11)
    factor = torch.rand(3, 6, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    factor = 0.5 + (1.5 - 0.5) * factor
    expected = (wh.double()[None] * factor[:, index, None]).reshape(-1, 2).to(wh.dtype)
    assert torch.equal(got, expected)
