"""``fit --generator ... --format python``: a program that runs as printed.

It imports torchvision, builds the fitted ``AnchorGenerator`` and shows how each preset
model takes it: RetinaNet's builder as ``anchor_generator=``, Faster R-CNN's as
``rpn_anchor_generator=``; ``fasterrcnn_mobilenet_v3_large_fpn``'s builder passes its
own generator and refuses the keyword, so the model's ``rpn.anchor_generator`` is
assigned after building (the head's anchor count per location is unchanged, so the
weights still fit).
"""

from __future__ import annotations

from typing import Any

__all__ = ["python_program"]

_BUILDERS = {
    "retinanet_resnet50_fpn": ("retinanet_resnet50_fpn", "anchor_generator=anchor_generator"),
    "fasterrcnn_resnet50_fpn (RPN)": ("fasterrcnn_resnet50_fpn", "rpn_anchor_generator=anchor_generator"),
    "fasterrcnn_mobilenet_v3_large_fpn (RPN)": ("fasterrcnn_mobilenet_v3_large_fpn", None),
}


def _levels(values: Any, as_float: bool) -> str:
    def number(value: float) -> str:
        return repr(float(value)) if as_float or not float(value).is_integer() else str(int(value))

    inner = []
    for level in values:
        items = [number(v) for v in level]
        inner.append("(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")")
    return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"


def python_program(generator: Any, info: dict[str, Any]) -> str:
    """Python source that builds ``generator`` (a ``GridAnchors``) and a model with it.

    ``info`` is the fit's (``model``, ``data``, ``min_size``, ``max_size``): the preset
    model chooses the builder; a resize other than torchvision's 800 / 1333 is passed
    to it, since the anchors were fitted for it.
    """
    resize = ""
    min_size = info.get("min_size")
    if isinstance(min_size, (tuple, list)):  # the training sizes (one, or several for multi-scale training)
        min_size = float(min_size[0]) if len(min_size) == 1 else tuple(float(v) for v in min_size)
    if min_size is not None and (min_size, info["max_size"]) != (800.0, 1333.0):
        sizes = f"{min_size:g}" if isinstance(min_size, float) else "(" + ", ".join(f"{v:g}" for v in min_size) + ")"
        resize = f", min_size={sizes}, max_size={info['max_size']:g}"
    lines = [
        f"# Anchors fitted by autoanchor to {info.get('data', 'the data')} for {info.get('model', 'the model')}.",
        "from torchvision.models.detection.anchor_utils import AnchorGenerator",
    ]
    builder = _BUILDERS.get(info.get("model"))
    if builder is not None:
        lines.append(f"from torchvision.models.detection import {builder[0]}")
    lines += [
        "",
        "anchor_generator = AnchorGenerator(",
        f"    sizes={_levels(generator.sizes, False)},",
        f"    aspect_ratios={_levels(generator.aspect_ratios, True)},",
        ")",
        "",
    ]
    weights = "weights=None, weights_backbone=None"  # put your weights here; the head's shapes are unchanged
    if builder is None:
        lines += [
            "# Pass it to the detector: RetinaNet(..., anchor_generator=anchor_generator),",
            "# FasterRCNN / MaskRCNN / KeypointRCNN(..., rpn_anchor_generator=anchor_generator),",
            "# or assign it to a built model: model.anchor_generator / model.rpn.anchor_generator = anchor_generator",
        ]
    elif builder[1] is None:
        lines += [
            f"# {builder[0]} passes its own generator (the keyword is refused): assign it after building.",
            f"model = {builder[0]}({weights}{resize})",
            "model.rpn.anchor_generator = anchor_generator",
        ]
    else:
        lines += [f"model = {builder[0]}({weights}, {builder[1]}{resize})"]
    lines += [
        "# A model whose anchors autoanchor.check_anchors replaced saves them in its state_dict; load such a",
        "# state into a model built without them with autoanchor.restore_anchors(model, state).",
    ]
    return "\n".join(lines) + "\n"
