"""Geometry of SSD default boxes (torchvision's ``DefaultBoxGenerator``: SSD300, SSDlite320).

Pure tensor code: nothing here imports torchvision or touches a model. The rules
reproduced, in fractions of the model's (fixed-size) input image unless stated:

* ``L`` levels have ``L + 1`` scales ``s_0 .. s_L`` (given, or spread linearly from
  ``min_ratio`` to ``max_ratio`` with a final ``1.0``). Level ``k`` has the square boxes
  ``s_k`` and ``sqrt(s_k * s_{k+1})``, then for each aspect ratio ``a`` of the level the
  pair ``(s_k * sqrt(a), s_k / sqrt(a))`` and its transpose: ``2 + 2 * len(ratios_k)``
  boxes per location, in that order (computed in float32 from Python floats).
* With ``clip`` the (width, height) pairs are clamped to ``[0, 1]``: no default box is
  wider or taller than the image.
* The centres of level ``k`` with an ``H_k x W_k`` feature map are ``(i + 0.5) / f``
  for ``i = 0 .. W_k - 1`` (and likewise in y), where ``f = image_side / steps[k]``
  when ``steps`` are given, else ``f = W_k``; in pixels ``(i + 0.5) * step``.
* The boxes in pixels are ``(centre -/+ wh / 2) * (image width, image height)``,
  positions outer and the level's boxes inner, levels concatenated.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .centred import CentredFit, CentredLevel, fit_centred, fit_summary, image_samples

__all__ = ["DefaultBoxes", "fit_default_boxes"]

#: Decimals of the scales and ratios written into a generator (0.0001 of 300 px is 0.03 px).
SCALE_DECIMALS = 4
RATIO_DECIMALS = 3
#: Fitted ratios stay within [1, MAX_RATIO] (each level holds ``a`` and ``1 / a``); wider
#: ones are clipped to image-wide strips on the coarse levels.
MAX_RATIO = 8.0


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class DefaultBoxes:
    """Scales, aspect ratios and steps of an SSD default-box generator.

    Args:
        scales: the ``L + 1`` scales, fractions of the image side, increasing.
        aspect_ratios: per level, the ratios ``a`` (each adds ``a`` and ``1 / a``).
        steps: per level, the step between centres in input pixels, or None
            (centres then spread over the feature map).
        clip: clamp (width, height) to the image, as ``DefaultBoxGenerator(clip=True)``.

    Raises:
        ValueError: on counts that do not agree or non-positive values; the message
            names the field and level.

    Example:
        >>> DefaultBoxes.from_ratios([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95).scales[:2]
        (0.2, 0.35)
    """

    scales: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    steps: tuple[float, ...] | None = None
    clip: bool = True

    def __post_init__(self) -> None:
        ratios = tuple(
            tuple(_positive(a, f"aspect_ratios[{k}]") for a in level) for k, level in enumerate(self.aspect_ratios)
        )
        if not ratios:
            raise ValueError("aspect_ratios must have one entry per level, got none")
        scales = tuple(_positive(s, "scales") for s in self.scales)
        if len(scales) != len(ratios) + 1:
            raise ValueError(f"{len(ratios)} levels need {len(ratios) + 1} scales, got {len(scales)}: {scales}")
        steps = None
        if self.steps is not None:
            steps = tuple(_positive(s, "steps") for s in self.steps)
            if len(steps) != len(ratios):
                raise ValueError(f"{len(ratios)} levels need {len(ratios)} steps, got {len(steps)}: {steps}")
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "aspect_ratios", ratios)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "clip", bool(self.clip))

    @classmethod
    def from_ratios(
        cls,
        aspect_ratios: Sequence[Sequence[float]],
        *,
        min_ratio: float = 0.15,
        max_ratio: float = 0.9,
        steps: Sequence[float] | None = None,
        clip: bool = True,
    ) -> DefaultBoxes:
        """Scales spread from ``min_ratio`` to ``max_ratio`` as the generator spreads them."""
        levels = len(aspect_ratios)
        if levels > 1:
            scales = [min_ratio + (max_ratio - min_ratio) * k / (levels - 1.0) for k in range(levels)] + [1.0]
        else:
            scales = [min_ratio, max_ratio]
        return cls(tuple(scales), tuple(tuple(level) for level in aspect_ratios), steps, clip)

    @property
    def num_levels(self) -> int:
        return len(self.aspect_ratios)

    @property
    def anchors_per_location(self) -> tuple[int, ...]:
        """Per level ``2 + 2 * len(ratios)``: what the head's convolutions are shaped for."""
        return tuple(2 + 2 * len(level) for level in self.aspect_ratios)

    def same_structure(self, other: DefaultBoxes) -> bool:
        return self.anchors_per_location == other.anchors_per_location and self.steps == other.steps

    def wh_pairs(self, *, dtype: torch.dtype = torch.float32, device=None) -> list[Tensor]:
        """Per level the ``[A_k, 2]`` (width, height) fractions, before clipping (the generator's cache)."""
        pairs = []
        for k, ratios in enumerate(self.aspect_ratios):
            s_k = self.scales[k]
            s_prime = math.sqrt(self.scales[k] * self.scales[k + 1])
            rows = [[s_k, s_k], [s_prime, s_prime]]
            for ratio in ratios:
                root = math.sqrt(ratio)
                rows += [[s_k * root, s_k / root], [s_k / root, s_k * root]]
            pairs.append(torch.as_tensor(rows, dtype=dtype, device=device))
        return pairs

    def level_wh(self, image_size: tuple[int, int]) -> list[Tensor]:
        """Per level the ``[A_k, 2]`` box (width, height) in input pixels (float64, clipped if ``clip``)."""
        height, width = image_size
        scale = torch.tensor([width, height], dtype=torch.float64)
        return [(p.clamp(min=0, max=1) if self.clip else p) * scale for p in self.wh_pairs(dtype=torch.float64)]

    def levels(self, grid_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int]) -> list[CentredLevel]:
        """Per level the centres and box sizes in input pixels (float64), for matching.

        Args:
            grid_sizes: per level the feature map ``(H_k, W_k)``.
            image_size: the input ``(height, width)`` in pixels.
        """
        if len(grid_sizes) != self.num_levels:
            raise ValueError(f"{self.num_levels} levels, but {len(grid_sizes)} feature map sizes {grid_sizes}")
        height, width = image_size
        result = []
        for k, ((rows, cols), wh) in enumerate(zip(grid_sizes, self.wh_pairs(dtype=torch.float64))):
            f_x, f_y = (width / self.steps[k], height / self.steps[k]) if self.steps is not None else (cols, rows)
            xs = (torch.arange(cols, dtype=torch.float64) + 0.5) / f_x * width
            ys = (torch.arange(rows, dtype=torch.float64) + 0.5) / f_y * height
            if self.clip:
                wh = wh.clamp(min=0, max=1)
            result.append(CentredLevel(xs, ys, wh * torch.tensor([width, height], dtype=torch.float64)))
        return result

    def boxes(
        self, grid_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int], *, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Every default box ``[D, 4]`` ``(x1, y1, x2, y2)`` in input pixels, as the generator's forward returns them.

        Args:
            grid_sizes: per level the feature map ``(H_k, W_k)``.
            image_size: the input ``(height, width)`` in pixels.
            dtype: the feature maps' dtype (the computation's).
        """
        height, width = image_size
        pairs = self.wh_pairs(dtype=torch.float32)
        out = []
        for k, (rows, cols) in enumerate(grid_sizes):
            f_x, f_y = (width / self.steps[k], height / self.steps[k]) if self.steps is not None else (cols, rows)
            # arange is int64; + 0.5 and / f happen in the default float dtype, then cast (as the generator does).
            xs = ((torch.arange(0, cols) + 0.5) / f_x).to(dtype=dtype)
            ys = ((torch.arange(0, rows) + 0.5) / f_y).to(dtype=dtype)
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)) * len(pairs[k]), dim=-1).reshape(-1, 2)
            wh = pairs[k].clamp(min=0, max=1) if self.clip else pairs[k]
            out.append(torch.cat((shifts, wh.repeat(rows * cols, 1)), dim=1))
        centred = torch.cat(out, dim=0)
        size = torch.tensor([width, height])
        return torch.cat([(centred[:, :2] - 0.5 * centred[:, 2:]) * size, (centred[:, :2] + 0.5 * centred[:, 2:]) * size], -1)

    def constructor(self) -> str:
        """``DefaultBoxGenerator(aspect_ratios=..., scales=..., steps=..., clip=...)`` as Python."""

        def number(value: float) -> str:
            return str(int(value)) if float(value).is_integer() else repr(round(float(value), 6))

        ratios = "[" + ", ".join("[" + ", ".join(number(a) for a in level) + "]" for level in self.aspect_ratios) + "]"
        scales = "[" + ", ".join(repr(round(s, 6)) for s in self.scales) + "]"
        steps = "None" if self.steps is None else "[" + ", ".join(number(s) for s in self.steps) + "]"
        return f"DefaultBoxGenerator({ratios}, scales={scales}, steps={steps}, clip={self.clip})"


def _theta(boxes: DefaultBoxes) -> Tensor:
    values = [math.log2(s) for s in boxes.scales] + [abs(math.log2(a)) for level in boxes.aspect_ratios for a in level]
    return torch.tensor(values, dtype=torch.float64)


def _from_theta(theta: Tensor, like: DefaultBoxes, fit_ratios: bool) -> DefaultBoxes | None:
    """Settings from log2 parameters, rounded as written; None when the scales are out of order."""
    n = len(like.scales)
    scales = [round(2.0 ** float(v), SCALE_DECIMALS) for v in theta[:n]]
    if any(b <= a for a, b in zip(scales, scales[1:])) or scales[0] <= 0:
        return None  # levels in scale order: each level's boxes larger than the previous level's
    if fit_ratios:
        flat = iter(round(min(2.0 ** abs(float(v)), MAX_RATIO), RATIO_DECIMALS) for v in theta[n:])
        ratios = tuple(tuple(next(flat) for _ in level) for level in like.aspect_ratios)
    else:
        ratios = like.aspect_ratios
    return DefaultBoxes(tuple(scales), ratios, like.steps, like.clip)


def fit_default_boxes(
    wh: Tensor,
    xy: Tensor | None,
    start: DefaultBoxes,
    grid_sizes: list[tuple[int, int]],
    image_size: tuple[int, int],
    *,
    threshold: float = 0.5,
    fit_ratios: bool = True,
    seed: int = 0,
    generator: torch.Generator | None = None,
    max_boxes: int = 4096,
    positions: int = 4,
    iou_weight: float = 0.5,
    kicks: int = 2,
) -> CentredFit:
    """Fit the scales (increasing) and, with ``fit_ratios``, the aspect ratios of SSD default boxes.

    The structure is kept so the head still fits: the same levels, steps, clipping and
    number of ratios per level (boxes per location unchanged).

    Args:
        wh: ``[N, 2]`` box (width, height) in the model's input pixels.
        xy: ``[N, 2]`` box centres in input pixels, or None (lattice positions in the image).
        start: the generator's settings.
        grid_sizes: per level the feature map ``(H_k, W_k)``.
        image_size: the (fixed) input ``(height, width)`` in pixels.
        threshold: the matcher's IoU (torchvision's SSD: 0.5).
        fit_ratios: fit the ratios too (else only the scales).
        seed, generator: the draws (box subset, kicks).
        max_boxes, positions: rows scored: a seeded subset of boxes, each at this many
            lattice positions when its centre is unknown.
        iou_weight: weight of the mean best IoU next to the share matched.
        kicks: seeded random restarts.

    Returns:
        CentredFit whose ``anchors`` is a :class:`DefaultBoxes`.
    """
    if not isinstance(start, DefaultBoxes):
        raise TypeError(f"start must be DefaultBoxes, got {type(start).__name__}")
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    height, width = image_size
    wh = torch.as_tensor(wh, dtype=torch.float64)
    extent = torch.tensor([float(width), float(height)], dtype=torch.float64).expand_as(wh)
    samples = image_samples(wh, xy, extent, positions=positions, max_boxes=max_boxes, generator=generator)
    levels = start.levels(grid_sizes, image_size)

    def build(theta: Tensor) -> list[Tensor] | None:
        boxes = _from_theta(theta, start, fit_ratios)
        return None if boxes is None else boxes.level_wh(image_size)

    theta0 = _theta(start)
    if build(theta0) is None:
        raise ValueError(f"the start scales must increase, got {start.scales}")
    theta, fitness, fitness_start = fit_centred(
        samples, levels, theta0, build, threshold=threshold, iou_weight=iou_weight, kicks=kicks, generator=generator
    )
    fitted = _from_theta(theta, start, fit_ratios) if fitness > fitness_start else start
    before, after = fit_summary(samples, levels, fitted.levels(grid_sizes, image_size), threshold=threshold)
    return CentredFit(fitted, start, before, after, fitness_start, max(fitness, fitness_start), samples.wh.shape[0])
