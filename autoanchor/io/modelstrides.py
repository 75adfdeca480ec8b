"""The stride of each Detect input of a yolov5-style model yaml, followed through its layers.

yolov5 learns its strides by running a blank image through the built model; the yaml
says the same thing layer by layer. Each entry of ``backbone`` + ``head`` is
``[from, number, module, args]``: convolutions take their stride from ``args[2]`` (1 when
absent), ``Focus`` halves the size before its convolution, pooling takes ``args[1]``
(its kernel when absent), ``nn.Upsample`` divides by ``args[1]``, ``Contract`` and
``Expand`` multiply and divide by their gain, and the blocks that keep the size (C3,
SPPF, Concat, ...) pass on the stride of their input. A layer of any other kind, or a
Concat of inputs at different strides, ends the trail: the strides are then unknown.
"""

from __future__ import annotations

from typing import Any

__all__ = ["detect_strides"]

# Modules whose stride is args[2] (1 when absent): Conv(c2, k, s), ...
_STRIDED = frozenset({"Conv", "GhostConv", "DWConv", "CrossConv", "MixConv2d", "GhostBottleneck", "Focus"})
# Transposed convolutions: args[2] divides the stride.
_TRANSPOSED = frozenset({"DWConvTranspose2d", "ConvTranspose"})
# Modules that keep the spatial size of their (first) input.
_SAME_SIZE = frozenset({
    "Bottleneck", "BottleneckCSP", "C3", "C3TR", "C3SPP", "C3Ghost", "C3x", "C2f", "SPP", "SPPF", "Concat",
    "BiFPN_Add2", "BiFPN_Add3", "BiFPN_Concat2", "BiFPN_Concat3", "nn.BatchNorm2d", "nn.Identity", "nn.ZeroPad2d",
    "SE", "CBAM", "TransformerBlock", "Shortcut", "Add",
})
_DETECT = ("Detect", "Segment")


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        return None
    return int(value)


def _step(module: str, args: list) -> tuple[int, int] | None:
    """How the layer scales the stride, as a fraction ``(multiply, divide)``; None when not followed."""
    module = module.replace("torch.nn.", "nn.")
    if module in _SAME_SIZE:
        return 1, 1
    if module in _STRIDED:
        stride = _integer(args[2]) if len(args) > 2 else 1
        if stride is None:
            return None
        return (2 * stride if module == "Focus" else stride), 1
    if module in _TRANSPOSED:
        stride = _integer(args[2]) if len(args) > 2 else 1
        return None if stride is None else (1, stride)
    if module in ("nn.MaxPool2d", "nn.AvgPool2d"):
        stride = _integer(args[1] if len(args) > 1 and args[1] is not None else (args[0] if args else None))
        return None if stride is None else (stride, 1)
    if module == "nn.Upsample":
        scale = _integer(args[1]) if len(args) > 1 else None
        return None if scale is None else (1, scale)
    if module in ("Contract", "Expand"):
        gain = _integer(args[0]) if args else 2
        if gain is None:
            return None
        return (gain, 1) if module == "Contract" else (1, gain)
    return None


def detect_strides(config: dict) -> tuple[int, ...] | None:
    """The stride in input pixels of each input of the last Detect (or Segment) layer, in its order.

    Args:
        config: the model yaml as loaded (``backbone`` and ``head`` lists of ``[from, number, module, args]``).

    Returns:
        One stride per Detect input (the anchor rows' order), or None when a layer on the way
        is of a kind not followed, an index points outside the layers, the inputs of a
        Concat disagree, or the strides are not whole, distinct and increasing.
    """
    layers = [*(config.get("backbone") or []), *(config.get("head") or [])]
    if not all(isinstance(layer, list) and len(layer) >= 3 for layer in layers):
        return None
    # Exact fractions as (numerator, denominator) per layer; None where not followed.
    strides: list[tuple[int, int] | None] = []
    for index, layer in enumerate(layers):
        source, module, args = layer[0], layer[2], layer[3] if len(layer) > 3 and isinstance(layer[3], list) else []
        inputs = source if isinstance(source, list) else [source]
        found = set()
        for item in inputs:
            if isinstance(item, bool) or not isinstance(item, int):
                return None
            position = item + index if item < 0 else item
            if position == -1 and index == 0:
                found.add((1, 1))  # the image
            elif 0 <= position < index:
                value = strides[position]
                found.add(None if value is None else _reduced(*value))
            else:
                return None
        if isinstance(module, str) and module in _DETECT:
            if index != len(layers) - 1 or None in found:
                return None
            result = []
            for item in inputs:
                value = strides[item + index if item < 0 else item]
                if value is None or value[0] % value[1]:
                    return None
                result.append(value[0] // value[1])
            if any(b <= a for a, b in zip(result, result[1:])):
                return None
            return tuple(result)
        step = _step(module, args) if isinstance(module, str) else None
        if len(found) != 1 or None in found or step is None:
            strides.append(None)
            continue
        (top, bottom), = found
        strides.append(_reduced(top * step[0], bottom * step[1]))
    return None


def _reduced(top: int, bottom: int) -> tuple[int, int]:
    from math import gcd

    divisor = gcd(top, bottom)
    return top // divisor, bottom // divisor
