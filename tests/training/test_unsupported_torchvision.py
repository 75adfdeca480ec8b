"""FCOS (anchor-free) is refused and untouched; SSD's DefaultBoxGenerator is named (torchvision CI environment)."""

from __future__ import annotations

import pytest
import torch

torchvision = pytest.importorskip("torchvision")
from torchvision.models.detection import fcos_resnet50_fpn, ssdlite320_mobilenet_v3_large  # noqa: E402

from autoanchor import BoxSizes, check_anchors  # noqa: E402
from autoanchor.training.heads import HeadFamily, HeadNotFound, register_family  # noqa: E402
from autoanchor.training.heads import base  # noqa: E402

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


def test_ssd_default_boxes_are_named_not_sent_to_detect():
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    with pytest.raises(TypeError, match="DefaultBoxGenerator at anchor_generator") as error:
        check_anchors(BOXES, model, verbose=False)
    assert "detect=" not in str(error.value)


def test_a_registered_family_for_default_boxes_takes_precedence(monkeypatch):
    class DefaultBoxes(HeadFamily):
        name = "default-boxes-test"

        def locate(self, model):
            return model.anchor_generator, "model.anchor_generator"

        def recognise(self, head, where):
            if not hasattr(head, "steps"):
                raise HeadNotFound(f"{where} has no steps")

        def read(self, head, where):
            raise ValueError("reached the registered family")

        data = measure = fit = prepare = write = None

    monkeypatch.setattr(base, "_FAMILIES", dict(base._FAMILIES))
    register_family(DefaultBoxes)
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    with pytest.raises(ValueError, match="reached the registered family"):
        check_anchors(BOXES, model, verbose=False)
