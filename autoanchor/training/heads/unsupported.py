"""Detectors autoanchor recognises but must not fit, or cannot fit yet: named, and left untouched.

* **Anchor-free** (torchvision ``FCOS``): FCOS builds an ``AnchorGenerator`` with one
  size per level (8, 16, ..., 128 px) and one ratio, but it matches no box to an anchor
  by IoU. A box is assigned to a level when its regression targets fall inside that
  level's range, which FCOS derives from those sizes (``lower_bound = size * 4``,
  ``upper_bound = size * 8``), and to the locations near its centre. "Fitting" the
  sizes would move the levels' regression ranges, not anchors, and break the
  assignment the head was trained (or designed) with. :func:`refuse_anchor_free`
  raises before anything is read or written.
* **A bare SSD generator** (torchvision's ``DefaultBoxGenerator`` on its own, or in a
  model the ``ssd`` family cannot read): the family needs the detector around it (its
  transform's input size, its backbone's feature maps, its matcher), so
  :func:`explain_unrecognised` names the generator and says to pass the whole SSD model;
  a registered family always takes precedence.

Nothing here imports torchvision: models are recognised by their attributes.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["UnsupportedDetector", "explain_unrecognised", "refuse_anchor_free"]


class UnsupportedDetector(TypeError):
    """A detector autoanchor recognises but must not (anchor-free) or cannot yet (no family) fit;
    the message says which and why. A ``TypeError``, as for any head no family takes."""


def _unwrap(model: Any) -> Any:
    inner = getattr(model, "module", None)
    return inner if inner is not None and not hasattr(model, "anchor_generator") else model


def _is_fcos(model: Any) -> bool:
    """FCOS by its attributes: a centre-sampling radius beside the anchor generator, or an FCOS head."""
    if hasattr(model, "center_sampling_radius") and hasattr(model, "anchor_generator"):
        return True
    head = getattr(model, "head", None)
    return head is not None and type(head).__name__ == "FCOSHead"


def refuse_anchor_free(model: Any) -> None:
    """Raise if ``model`` (or its ``.module``) is an anchor-free detector such as FCOS.

    Raises:
        UnsupportedDetector: (a ``TypeError``) naming the model and why its generator's sizes must not be fitted.
    """
    model = _unwrap(model)
    if _is_fcos(model):
        raise UnsupportedDetector(
            f"{type(model).__name__} is anchor-free (FCOS): its anchor_generator's sizes are not anchors matched by "
            "IoU but set each level's regression range (a box goes to the level whose range, 4 to 8 times the "
            "size, holds its distances to the location), so they must not be fitted to box sizes; "
            "autoanchor leaves the model untouched. Nothing needs fitting: FCOS adapts to box sizes through "
            "its centre sampling and level ranges"
        )


def _default_box_generator(model: Any) -> Optional[str]:
    for path in ("anchor_generator", "module.anchor_generator", ""):
        found = model
        for name in filter(None, path.split(".")):
            found = getattr(found, name, None)
        if found is not None and all(hasattr(found, a) for a in ("scales", "aspect_ratios", "steps")):
            return path or "the model"
    return None


def explain_unrecognised(model: Any, detect: Any = None) -> Optional[str]:
    """Why a model no registered family took cannot be fitted, if it is a known kind; else None."""
    where = _default_box_generator(detect if detect is not None else model)
    if where is None:
        return None
    owner = type(detect if detect is not None else model).__name__
    return (
        f"{owner} has SSD default boxes (a DefaultBoxGenerator at {where}: scales relative to the input, "
        "aspect_ratios and steps), but not the SSD detector around them, which the ssd family reads for its "
        "input size, feature maps and matcher: pass the whole model (torchvision's ssd300_vgg16 or "
        "ssdlite320_mobilenet_v3_large, or your SSD with .anchor_generator, .transform and .backbone). "
        "The generator is left untouched"
    )
