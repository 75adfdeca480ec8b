"""Geometry of EfficientDet anchors (``effdet``'s ``Anchors``; zylo117's ``Anchors`` alike).

Pure tensor code: nothing here imports effdet or touches a model. The rules
reproduced, in pixels of the model's (square, letterboxed) input image:

* Levels ``min_level .. max_level``; the feature sizes halve with ceiling from the
  image size (``(n - 1) // 2 + 1`` per level), and a level's stride per axis is the
  image size over its feature size (``2 ** level`` when the image divides).
* Per level, for each octave scale ``o`` (outer) and each aspect ``(a_x, a_y)``
  (inner), an anchor of width ``anchor_scale * stride_x * 2 ** o * a_x`` and height
  ``anchor_scale * stride_y * 2 ** o * a_y``; effdet's octave exponents are
  ``i / num_scales``. A scalar aspect ``r`` means ``(sqrt(r), 1 / sqrt(r))``.
* The centres are ``stride / 2 + i * stride`` up to the image side (numpy's
  ``arange``): cell centres, not corners.
* Boxes are ``(y1, x1, y2, x2)``, computed in float64 and stored in float32,
  positions outer and the level's anchors inner, levels concatenated.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .centred import CentredFit, CentredLevel, fit_centred, fit_summary, image_samples

__all__ = ["EffdetAnchors", "feature_sizes", "fit_effdet_anchors", "letterbox"]

#: Decimals written: anchor_scale and the aspect pairs to 3, the octave exponents to 4.
SCALE_DECIMALS = 3
OCTAVE_DECIMALS = 4
RATIO_DECIMALS = 3


def feature_sizes(image_size: tuple[int, int], max_level: int) -> list[tuple[int, int]]:
    """Per level ``0 .. max_level`` the feature map ``(H, W)`` (effdet's ``get_feat_sizes``)."""
    sizes = [tuple(image_size)]
    for _ in range(max_level):
        height, width = sizes[-1]
        sizes.append(((height - 1) // 2 + 1, (width - 1) // 2 + 1))
    return sizes


def _aspect(value: object, index: int) -> tuple[float, float]:
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        pair = tuple(value)
        if len(pair) != 2:
            raise ValueError(f"aspect_ratios[{index}] must be a number or an (x, y) pair, got {value!r}")
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        root = math.sqrt(value) if value > 0 else float("nan")
        pair = (root, 1.0 / root)
    else:
        raise ValueError(f"aspect_ratios[{index}] must be a number or an (x, y) pair, got {value!r}")
    if not all(isinstance(v, numbers.Real) and math.isfinite(v) and v > 0 for v in pair):
        raise ValueError(f"aspect_ratios[{index}] must be positive, got {value!r}")
    return float(pair[0]), float(pair[1])


@dataclass(frozen=True)
class EffdetAnchors:
    """Anchor settings of an EfficientDet.

    Args:
        min_level, max_level: the pyramid levels (3 and 7 in every effdet model).
        octave_scales: exponents ``o_i`` of the octave scales ``2 ** o_i``, increasing
            (effdet: ``i / num_scales``).
        aspect_ratios: ``(a_x, a_y)`` pairs (scalars are converted as effdet does).
        anchor_scale: size of the base anchor in strides (effdet 4.0).
        image_size: the model's input ``(height, width)`` in pixels.

    Example:
        >>> EffdetAnchors.from_config(3, 7, 3, [(1.0, 1.0), (1.4, 0.7), (0.7, 1.4)], 4.0, (512, 512)).strides
        ((8.0, 8.0), (16.0, 16.0), (32.0, 32.0), (64.0, 64.0), (128.0, 128.0))
    """

    min_level: int
    max_level: int
    octave_scales: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, float], ...]
    anchor_scale: float
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        if not 0 <= int(self.min_level) <= int(self.max_level):
            raise ValueError(f"need 0 <= min_level <= max_level, got {self.min_level} and {self.max_level}")
        octaves = tuple(float(o) for o in self.octave_scales)
        if not octaves or not all(math.isfinite(o) for o in octaves):
            raise ValueError(f"octave_scales must be finite exponents, got {self.octave_scales!r}")
        ratios = tuple(_aspect(a, i) for i, a in enumerate(self.aspect_ratios))
        if not ratios:
            raise ValueError("aspect_ratios must not be empty")
        if not (math.isfinite(self.anchor_scale) and self.anchor_scale > 0):
            raise ValueError(f"anchor_scale must be a finite positive number, got {self.anchor_scale!r}")
        size = tuple(int(v) for v in self.image_size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"image_size must be (height, width) in pixels, got {self.image_size!r}")
        object.__setattr__(self, "min_level", int(self.min_level))
        object.__setattr__(self, "max_level", int(self.max_level))
        object.__setattr__(self, "octave_scales", octaves)
        object.__setattr__(self, "aspect_ratios", ratios)
        object.__setattr__(self, "anchor_scale", float(self.anchor_scale))
        object.__setattr__(self, "image_size", size)

    @classmethod
    def from_config(cls, min_level, max_level, num_scales, aspect_ratios, anchor_scale, image_size) -> EffdetAnchors:
        """effdet's settings: octave exponents ``i / num_scales``."""
        return cls(
            min_level, max_level, tuple(i / float(num_scales) for i in range(num_scales)),
            tuple(aspect_ratios), anchor_scale, tuple(image_size),
        )

    @property
    def num_levels(self) -> int:
        return self.max_level - self.min_level + 1

    @property
    def anchors_per_location(self) -> int:
        return len(self.octave_scales) * len(self.aspect_ratios)

    @property
    def strides(self) -> tuple[tuple[float, float], ...]:
        """Per level ``(stride_y, stride_x)`` in pixels (as effdet computes them)."""
        sizes = feature_sizes(self.image_size, self.max_level)
        return tuple(
            (sizes[0][0] / float(sizes[level][0]), sizes[0][1] / float(sizes[level][1]))
            for level in range(self.min_level, self.max_level + 1)
        )

    def standard_octaves(self) -> int | None:
        """``num_scales`` if the octave exponents are effdet's ``i / num_scales``, else None."""
        n = len(self.octave_scales)
        return n if all(o == i / float(n) for i, o in enumerate(self.octave_scales)) else None

    def anchor_wh(self, *, dtype: torch.dtype = torch.float64) -> list[Tensor]:
        """Per level the ``[A, 2]`` anchor (width, height) in pixels, octaves outer."""
        result = []
        for stride_y, stride_x in self.strides:
            rows = []
            for octave in self.octave_scales:
                for a_x, a_y in self.aspect_ratios:
                    rows.append([
                        self.anchor_scale * stride_x * 2**octave * a_x, self.anchor_scale * stride_y * 2**octave * a_y,
                    ])
            result.append(torch.tensor(rows, dtype=dtype))
        return result

    def levels(self) -> list[CentredLevel]:
        """Per level the centres and anchor sizes in pixels (float64), for matching."""
        height, width = self.image_size
        return [
            CentredLevel(
                torch.arange(stride_x / 2, width, stride_x, dtype=torch.float64),
                torch.arange(stride_y / 2, height, stride_y, dtype=torch.float64),
                wh,
            )
            for (stride_y, stride_x), wh in zip(self.strides, self.anchor_wh())
        ]

    def boxes(self) -> Tensor:
        """Every anchor ``[D, 4]`` ``(y1, x1, y2, x2)`` in float32, as ``Anchors.boxes`` holds them."""
        out = []
        for level, wh in zip(self.levels(), self.anchor_wh()):
            grid_y, grid_x = torch.meshgrid(level.ys, level.xs, indexing="ij")
            centre_x = grid_x.reshape(-1, 1)  # [HW,1]
            centre_y = grid_y.reshape(-1, 1)
            half_w = wh[:, 0] * 0.5  # the same product as "size * aspect / 2.0" in float64
            half_h = wh[:, 1] * 0.5
            out.append(
                torch.stack([centre_y - half_h, centre_x - half_w, centre_y + half_h, centre_x + half_w], -1).reshape(-1, 4)
            )
        return torch.cat(out).float()

    def effdet_config(self) -> dict[str, object]:
        """effdet config keys: ``anchor_scale``, ``num_scales`` (None when the octaves are not ``i / n``), ``aspect_ratios``."""
        return {
            "anchor_scale": self.anchor_scale,
            "num_scales": self.standard_octaves(),
            "aspect_ratios": [tuple(a) for a in self.aspect_ratios],
        }

    def zylo117_yaml(self, *, model_anchor_scale: float = 4.0) -> str:
        """zylo117's ``project.yml`` lines; ``anchor_scale`` is folded into the scales
        (Yet-Another-EfficientDet uses ``anchor_scale`` 4 for D0-D6, 5 for D7)."""
        factor = self.anchor_scale / model_anchor_scale
        scales = []
        for octave in self.octave_scales:
            exponent = octave + math.log2(factor)
            if abs(exponent) < 5e-5:
                scales.append("2 ** 0")
            else:
                scales.append(f"2 ** ({round(exponent, 4)})")
        ratios = ", ".join(f"({round(a_x, 3)}, {round(a_y, 3)})" for a_x, a_y in self.aspect_ratios)
        return f"anchors_scales: '[{', '.join(scales)}]'\nanchors_ratios: '[{ratios}]'"


def letterbox(shapes: Tensor, image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """effdet's ``ResizePad``: per image the scale and the content (width, height) in input pixels.

    Args:
        shapes: ``[I, 2]`` image (width, height) as stored.
        image_size: the model's input ``(height, width)``.

    Returns:
        ``(scale [I], content [I, 2])``: one scale for both axes (the image keeps its
        aspect and sits in the top-left corner), and ``floor(shape * scale)``.
    """
    shapes = torch.as_tensor(shapes, dtype=torch.float64)
    height, width = image_size
    scale = torch.minimum(height / shapes[:, 1], width / shapes[:, 0])
    return scale, torch.floor(shapes * scale[:, None])


def _theta(anchors: EffdetAnchors) -> Tensor:
    octaves = [o - anchors.octave_scales[0] for o in anchors.octave_scales[1:]]
    ratios = [math.log2(a_x / a_y) for a_x, a_y in anchors.aspect_ratios]
    scale = math.log2(anchors.anchor_scale) + anchors.octave_scales[0]
    return torch.tensor([scale] + octaves + ratios, dtype=torch.float64)


def _from_theta(theta: Tensor, like: EffdetAnchors, fit_octaves: bool = True) -> EffdetAnchors | None:
    """Settings from the parameters (log2 anchor scale, octave exponents after the
    first, log2 of each aspect's x / y at its start area), rounded; None when the
    octaves are out of order."""
    n = len(like.octave_scales)
    if fit_octaves:
        octaves = [0.0] + [round(float(v), OCTAVE_DECIMALS) for v in theta[1:n]]
    else:
        octaves = [o - like.octave_scales[0] for o in like.octave_scales]
    if any(b <= a for a, b in zip(octaves, octaves[1:])):
        return None  # octave scales increasing: the level's anchors in scale order
    scale = round(2.0 ** float(theta[0]), SCALE_DECIMALS)
    ratios = []
    for (a_x, a_y), value in zip(like.aspect_ratios, theta[n:]):
        area, stretch = a_x * a_y, 2.0 ** float(value)
        ratios.append((round(math.sqrt(area * stretch), RATIO_DECIMALS), round(math.sqrt(area / stretch), RATIO_DECIMALS)))
    if scale <= 0 or any(min(r) <= 0 for r in ratios):
        return None
    return EffdetAnchors(like.min_level, like.max_level, tuple(octaves), tuple(ratios), scale, like.image_size)


def fit_effdet_anchors(
    wh: Tensor,
    xy: Tensor | None,
    extent: Tensor,
    start: EffdetAnchors,
    *,
    threshold: float = 0.5,
    fit_octaves: bool = True,
    seed: int = 0,
    generator: torch.Generator | None = None,
    max_boxes: int = 4096,
    positions: int = 4,
    iou_weight: float = 0.5,
    kicks: int = 2,
) -> CentredFit:
    """Fit ``anchor_scale``, the octave scales (increasing) and the aspect ratios of EfficientDet anchors.

    The structure is kept: the same levels, number of octave scales and of aspects
    (anchors per location unchanged); each aspect keeps its area ``a_x * a_y`` and
    moves its shape, ``anchor_scale`` moves the size.

    Args:
        wh: ``[N, 2]`` box (width, height) in the model's input pixels (see :func:`letterbox`).
        xy: ``[N, 2]`` box centres in input pixels, or None (lattice positions in the image content).
        extent: ``[N, 2]`` (width, height) of each box's image content in input pixels.
        start: the model's anchor settings.
        threshold: the matcher's IoU (effdet: 0.5).
        fit_octaves: fit the octave exponents (else keep the start's, e.g. effdet's
            ``i / num_scales``, which its config can express).
        seed, generator, max_boxes, positions, iou_weight, kicks: as for
            :func:`~autoanchor.grid.default_boxes.fit_default_boxes`.

    Returns:
        CentredFit whose ``anchors`` is an :class:`EffdetAnchors`; octave exponents
        start at 0 (the first octave folded into ``anchor_scale``).
    """
    if not isinstance(start, EffdetAnchors):
        raise TypeError(f"start must be EffdetAnchors, got {type(start).__name__}")
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    samples = image_samples(wh, xy, extent, positions=positions, max_boxes=max_boxes, generator=generator)
    levels = start.levels()

    theta0 = _theta(start)
    n = len(start.octave_scales)
    held = theta0[1:n]  # the octave entries, when they are not fitted

    def full(theta: Tensor) -> Tensor:
        return theta if fit_octaves else torch.cat([theta[:1], held, theta[1:]])

    def build(theta: Tensor) -> list[Tensor] | None:
        anchors = _from_theta(full(theta), start, fit_octaves)
        return None if anchors is None else anchors.anchor_wh()

    searched = theta0 if fit_octaves else torch.cat([theta0[:1], theta0[n:]])
    theta, fitness, fitness_start = fit_centred(
        samples, levels, searched, build, threshold=threshold, iou_weight=iou_weight, kicks=kicks,
        generator=generator,
    )
    fitted = _from_theta(full(theta), start, fit_octaves) if fitness > fitness_start else start
    before, after = fit_summary(samples, levels, fitted.levels(), threshold=threshold)
    return CentredFit(fitted, start, before, after, fitness_start, max(fitness, fitness_start), samples.wh.shape[0])
