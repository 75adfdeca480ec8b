"""FCOS (anchor-free) is refused and untouched; SSD's DefaultBoxGenerator is named (torchvision CI environment)."""

from __future__ import annotations

import pytest
import torch

torchvision = pytest.importorskip("torchvision")
from torchvision.models.detection import fcos_resnet50_fpn, ssdlite320_mobilenet_v3_large  # noqa: E402
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator  # noqa: E402

from autoanchor import BoxSizes, check_anchors  # noqa: E402
from autoanchor.training.heads import find_head  # noqa: E402

pytestmark = pytest.mark.slow  # building FCOS and SSDlite takes 5-20 s on a shared CPU
from autoanchor.training.heads.torchvision import TorchvisionAnchors  # noqa: E402

BOXES = BoxSizes([[640.0, 480.0]], [[0.1, 0.5], [0.3, 0.2]], [0, 0])


def test_fcos_is_refused_as_anchor_free_and_left_untouched():
    model = fcos_resnet50_fpn(weights=None, weights_backbone=None, min_size=320, max_size=512)
    generator = model.anchor_generator
    before = (generator.sizes, generator.aspect_ratios, [c.clone() for c in generator.cell_anchors])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for options in ({}, {"family": TorchvisionAnchors(threshold=0.5)}):
        with pytest.raises(TypeError, match="anchor-free.*regression range.*must not be fitted"):
            check_anchors(BOXES, model, verbose=False, **options)
    assert (generator.sizes, generator.aspect_ratios) == before[:2]
    assert all(torch.equal(a, b) for a, b in zip(generator.cell_anchors, before[2]))
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_a_bare_default_box_generator_is_named_not_sent_to_detect():
    # the ssd family reads the whole detector (input size, feature maps, matcher): a bare generator
    # is named, with what to pass instead, and left untouched
    generator = DefaultBoxGenerator([[2], [2, 3]])
    before = [pair.clone() for pair in generator._wh_pairs]
    with pytest.raises(TypeError, match="DefaultBoxGenerator at the model.*pass the whole model") as error:
        check_anchors(BOXES, generator, verbose=False)
    assert "detect=" not in str(error.value)
    assert all(torch.equal(a, b) for a, b in zip(generator._wh_pairs, before))


def test_an_ssd_model_goes_to_the_registered_ssd_family():
    # the fallback above never pre-empts a family: torchvision's SSDlite is the ssd family's
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    family, _head, where = find_head(model)
    assert (family.name, where) == ("ssd", "model.anchor_generator")
