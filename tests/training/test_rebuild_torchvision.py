"""Fitted torchvision anchors through save and load: never back silently with the defaults.

CI runs this file in the torchvision environment; models are built with ``weights=None``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

torchvision = pytest.importorskip("torchvision")
from torchvision.models.detection import (  # noqa: E402
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn,
    retinanet_resnet50_fpn,
)

from autoanchor import BoxSizes, check_anchors  # noqa: E402
from autoanchor.training.rebuild import STATE_KEY, restore_anchors  # noqa: E402

pytestmark = pytest.mark.slow  # every test builds ResNet-50 detectors (about 3 s each) and one fit is shared

KEY = f"anchor_generator.{STATE_KEY}"


def tall_boxes(n: int = 200, seed: int = 0) -> BoxSizes:
    """Tall boxes (width 5-20 %, height 20-60 % of a 640x480 image): the default anchors match fewer."""
    rng = np.random.default_rng(seed)
    wh = np.stack([rng.uniform(0.05, 0.2, n), rng.uniform(0.2, 0.6, n)], 1)
    xy = np.stack([rng.uniform(0.3, 0.7, n), rng.uniform(0.35, 0.65, n)], 1)
    return BoxSizes(np.tile([[640.0, 480.0]], (50, 1)), wh, rng.integers(0, 50, n), xy=xy)


def retinanet(**kwargs) -> nn.Module:
    return retinanet_resnet50_fpn(weights=None, weights_backbone=None, min_size=320, max_size=512, **kwargs)


def cells_equal(a: nn.Module, b: nn.Module) -> bool:
    return a.sizes == b.sizes and a.aspect_ratios == b.aspect_ratios and all(
        x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a.cell_anchors, b.cell_anchors)
    )


@pytest.fixture(scope="module")
def fitted():
    model = retinanet()
    report = check_anchors(tall_boxes(), model, bpr_threshold=0.98, verbose=False)
    assert report.replaced
    return model, report, {k: v.clone() for k, v in model.state_dict().items()}


def test_a_default_built_model_refuses_the_fitted_state_and_says_how(fitted):
    model, _, state = fitted
    assert KEY in state and torch.equal(state[KEY], state[KEY].double())
    fresh = retinanet()
    default = [c.clone() for c in fresh.anchor_generator.cell_anchors]
    with pytest.raises(RuntimeError, match="Unexpected key.*autoanchor_fitted_anchors__see_autoanchor_restore_anchors"):
        fresh.load_state_dict(state)
    # strict=False ignores unexpected keys by torch's design: the fitted anchors' key is what it reports
    result = fresh.load_state_dict(state, strict=False)
    assert result.unexpected_keys == [KEY]
    assert all(torch.equal(a, b) for a, b in zip(fresh.anchor_generator.cell_anchors, default))


def test_restore_anchors_then_load_gives_the_fitted_anchors_bit_for_bit(fitted, tmp_path):
    model, _, state = fitted
    fresh = retinanet()
    weights = restore_anchors(fresh, state)
    assert cells_equal(fresh.anchor_generator, model.anchor_generator)
    assert not fresh.load_state_dict(weights).unexpected_keys  # strict: every key taken
    assert all(torch.equal(v, state[k]) for k, v in fresh.state_dict().items())  # saved again with the fit
    # a checkpoint file, a checkpoint dict and a wrapper module (a LightningModule's self.model)
    torch.save({"model": state, "epoch": 3}, tmp_path / "checkpoint.pt")
    wrapper = nn.Module()
    wrapper.model = retinanet()
    restore_anchors(wrapper, tmp_path / "checkpoint.pt")
    assert cells_equal(wrapper.model.anchor_generator, model.anchor_generator)
    wrapped_state = {f"model.{k}": v for k, v in state.items()}
    inner = retinanet()
    restore_anchors(inner, {"state_dict": wrapped_state, "epoch": 1})
    assert cells_equal(inner.anchor_generator, model.anchor_generator)


def test_building_with_report_anchor_generator_gives_the_fitted_anchors(fitted):
    model, report, state = fitted
    rebuilt = retinanet(anchor_generator=report.anchor_generator())
    assert cells_equal(rebuilt.anchor_generator, model.anchor_generator)
    assert not rebuilt.load_state_dict(state).unexpected_keys


def test_a_fitted_model_keeps_its_anchors_when_loading_weights_saved_before_the_fit(fitted):
    model, _, state = fitted
    pretrained = retinanet().state_dict()  # e.g. COCO weights: no fitted anchors in them
    again = retinanet()
    restore_anchors(again, state)
    again.load_state_dict(pretrained)
    assert cells_equal(again.anchor_generator, model.anchor_generator)
    again.load_state_dict(state)  # its own state: restored by the load hook
    assert cells_equal(again.anchor_generator, model.anchor_generator)


def test_mismatched_models_and_states_without_a_fit_are_refused(fitted):
    _, _, state = fitted
    three_levels = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    with pytest.raises(ValueError, match="5 levels, this generator 3"):
        restore_anchors(three_levels, state)
    with pytest.raises(ValueError, match="holds no fitted anchors"):
        restore_anchors(retinanet(), retinanet().state_dict())


def test_rpn_generators_round_trip_and_the_mobilenet_builder_takes_an_assignment():
    boxes = tall_boxes(seed=1)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=320, max_size=512)
    report = check_anchors(boxes, model, bpr_threshold=0.98, verbose=False)
    state = model.state_dict()
    assert report.replaced
    rebuilt = fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=320, max_size=512, rpn_anchor_generator=report.anchor_generator()
    )
    assert cells_equal(rebuilt.rpn.anchor_generator, model.rpn.anchor_generator)
    assert not rebuilt.load_state_dict(state).unexpected_keys
    mobile = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    report = check_anchors(boxes, mobile, bpr_threshold=0.98, verbose=False)
    assert report.replaced
    with pytest.raises(TypeError):  # the builder passes its own rpn_anchor_generator
        fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None,
                                          rpn_anchor_generator=report.anchor_generator())
    rebuilt = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None)
    rebuilt.rpn.anchor_generator = report.anchor_generator()  # the documented way for this builder
    assert cells_equal(rebuilt.rpn.anchor_generator, mobile.rpn.anchor_generator)
    assert not rebuilt.load_state_dict(mobile.state_dict()).unexpected_keys
