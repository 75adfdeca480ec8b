"""Geometry of grid anchor generators (torchvision's ``AnchorGenerator`` family).

Pure tensor code: nothing here imports torchvision or touches a model. The rules
reproduced, all in pixels of the model's input image (after its transform resized it):

* A level ``l`` has ``k`` sizes and ``r`` aspect ratios (height / width). Its cell
  anchors are the ``r * k`` shapes ``w = size / sqrt(ratio)``, ``h = size * sqrt(ratio)``
  in the order *ratios outer, sizes inner*; their corners ``(-w/2, -h/2, w/2, h/2)`` are
  rounded to integers half-to-even, so an anchor is ``2 * round(w / 2)`` pixels wide
  and stays centred on its grid point.
* The grid points of a level of stride ``s`` are ``(i * s, j * s)`` for
  ``i = 0 .. W-1``, ``j = 0 .. H-1``: anchors sit on cell *corners*, not cell centres.
* The resize (``GeneralizedRCNNTransform``): in evaluation mode the shorter image side
  goes to ``min_size`` unless the longer side would then pass ``max_size``, in which
  case the longer side goes to ``max_size``; each side is floored to an integer and
  boxes scale by new / old size per axis. The batch is padded to a multiple of
  ``size_divisible``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.validate import check_int, is_number

__all__ = ["GridAnchors", "ResizeRule", "cell_anchors", "grid_anchors", "lattice_offsets"]


def _as_levels(values: Sequence, name: str) -> tuple[tuple[float, ...], ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise TypeError(f"{name} must be a non-empty sequence of per-level sequences, got {values!r}")
    levels = []
    for index, level in enumerate(values):
        if isinstance(level, (str, bytes)) or not isinstance(level, Sequence) or len(level) == 0:
            raise TypeError(f"{name}[{index}] must be a non-empty sequence of numbers, got {level!r}")
        row = []
        for value in level:
            if not is_number(value):
                raise TypeError(f"{name}[{index}] must hold numbers, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}[{index}] must hold finite positive numbers, got {value!r}")
            row.append(float(value))
        levels.append(tuple(row))
    return tuple(levels)


def cell_anchors(
    sizes: Sequence[float],
    aspect_ratios: Sequence[float],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """The anchors of one level centred on the origin, rounded as torchvision rounds them.

    Args:
        sizes: the level's ``k`` sizes (square root of the anchor area before the
            ratio is applied), in input pixels.
        aspect_ratios: the level's ``r`` ratios, height / width.
        dtype: dtype of the result; the rounding happens in this dtype.
        device: device of the result.

    Returns:
        Tensor[r * k, 4]: ``(x1, y1, x2, y2)`` corners, ratios outer and sizes inner.

    Example:
        >>> cell_anchors([32.0], [0.5, 1.0, 2.0])
        tensor([[-23., -11.,  23.,  11.],
                [-16., -16.,  16.,  16.],
                [-11., -23.,  11.,  23.]])
    """
    scales = torch.as_tensor(list(sizes), dtype=dtype, device=device)
    ratios = torch.as_tensor(list(aspect_ratios), dtype=dtype, device=device)
    height_factor = torch.sqrt(ratios)
    width_factor = 1 / height_factor
    widths = (width_factor[:, None] * scales[None, :]).reshape(-1)  # [r*k]
    heights = (height_factor[:, None] * scales[None, :]).reshape(-1)  # [r*k]
    return (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()


def grid_anchors(cell: Tensor, grid_size: tuple[int, int], stride: tuple[int, int]) -> Tensor:
    """All anchors of one level: the cell anchors placed on every grid point.

    Args:
        cell: ``[A, 4]`` cell anchors from :func:`cell_anchors`.
        grid_size: ``(H, W)`` of the feature map, in cells.
        stride: ``(stride_y, stride_x)`` in input pixels.

    Returns:
        Tensor[H * W * A, 4]: corners in input pixels, row-major over the grid, then
        the cell anchors, the order torchvision's ``AnchorGenerator`` returns them in.
    """
    height, width = grid_size
    stride_y, stride_x = stride
    xs = torch.arange(width, device=cell.device, dtype=cell.dtype) * stride_x  # [W]
    ys = torch.arange(height, device=cell.device, dtype=cell.dtype) * stride_y  # [H]
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([grid_x, grid_y, grid_x, grid_y], dim=-1).reshape(-1, 1, 4)  # [H*W,1,4]
    return (shifts + cell.reshape(1, -1, 4)).reshape(-1, 4)


def lattice_offsets(count: int, *, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """A fixed, evenly spread set of positions in the unit square.

    Used where a box's position is unknown: the box is counted at each of these
    offsets within a cell of the coarsest stride, each with weight ``1 / count``. The
    points are an additive recurrence with the plastic-number steps
    (``x_i = frac(0.5 + i / p)``, ``y_i = frac(0.5 + i / p**2)``, ``p = 1.3247...``), so
    they stay evenly spread after scaling by any power of two, that is modulo every
    finer stride of a pyramid.

    Args:
        count: number of points, at least 1.

    Returns:
        Tensor[count, 2]: ``(x, y)`` in ``[0, 1)``.
    """
    count = check_int("count", count, low=1)
    plastic = 1.324717957244746
    index = torch.arange(count, dtype=torch.float64)
    steps = torch.tensor([1 / plastic, 1 / plastic**2], dtype=torch.float64)
    points = torch.frac(0.5 + index[:, None] * steps[None, :])  # [count,2]
    return points.to(dtype=dtype, device=device)


@dataclass(frozen=True)
class GridAnchors:
    """Sizes, aspect ratios and strides of a grid anchor generator.

    Args:
        sizes: per level, the ``k_l`` anchor sizes in input pixels.
        aspect_ratios: per level, the ``r_l`` ratios (height / width).
        strides: per level, the stride of its feature map in input pixels (the
            same on both axes).

    Raises:
        TypeError, ValueError: on ragged or non-positive input; the message names
            the field and level.

    Example:
        >>> g = GridAnchors(((32, 40, 50),), ((0.5, 1.0, 2.0),), (8,))
        >>> g.anchors_per_location
        (9,)
    """

    sizes: tuple[tuple[float, ...], ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    strides: tuple[int, ...]

    def __post_init__(self) -> None:
        sizes = _as_levels(self.sizes, "sizes")
        ratios = _as_levels(self.aspect_ratios, "aspect_ratios")
        if isinstance(self.strides, (str, bytes)) or not isinstance(self.strides, Sequence):
            raise TypeError(f"strides must be a sequence of integers, got {self.strides!r}")
        strides = []
        for stride in self.strides:
            if not is_number(stride) or stride != int(stride):
                raise TypeError(f"strides must hold integers, got {stride!r} in {self.strides!r}")
            if stride < 1:
                raise ValueError(f"strides must be >= 1 pixel, got {stride!r} in {self.strides!r}")
            strides.append(int(stride))
        if not len(sizes) == len(ratios) == len(strides):
            raise ValueError(
                f"sizes, aspect_ratios and strides must have one entry per level, got "
                f"{len(sizes)}, {len(ratios)} and {len(strides)}"
            )
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "aspect_ratios", ratios)
        object.__setattr__(self, "strides", tuple(strides))

    @property
    def num_levels(self) -> int:
        """Number of feature-map levels."""
        return len(self.sizes)

    @property
    def anchors_per_location(self) -> tuple[int, ...]:
        """Per level, ``k_l * r_l``: what the head's convolutions are shaped for."""
        return tuple(len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios))

    @property
    def shared_ratios(self) -> bool:
        """Whether every level has the same aspect ratios."""
        return all(r == self.aspect_ratios[0] for r in self.aspect_ratios)

    @property
    def cell(self) -> int:
        """Least common multiple of the strides, in pixels: the period of the whole grid."""
        period = 1
        for stride in self.strides:
            period = period * stride // math.gcd(period, stride)
        return period

    def same_structure(self, other: GridAnchors) -> bool:
        """Whether ``other`` has the same levels, strides and sizes / ratios per level."""
        return (
            self.strides == other.strides
            and [len(s) for s in self.sizes] == [len(s) for s in other.sizes]
            and [len(r) for r in self.aspect_ratios] == [len(r) for r in other.aspect_ratios]
        )

    def cell_anchors(self, *, dtype: torch.dtype = torch.float32, device=None) -> list[Tensor]:
        """Per level, the rounded cell anchors ``[A_l, 4]`` (see :func:`cell_anchors`)."""
        return [cell_anchors(s, r, dtype=dtype, device=device) for s, r in zip(self.sizes, self.aspect_ratios)]

    def anchor_wh(self, *, dtype: torch.dtype = torch.float64, device=None) -> list[Tensor]:
        """Per level, the rounded anchor (width, height) ``[A_l, 2]`` in input pixels.

        The rounding is done in float32, as the model does it by default.
        """
        return [
            (c[:, 2:] - c[:, :2]).to(dtype=dtype, device=device)
            for c in self.cell_anchors(dtype=torch.float32, device=device)
        ]

    def rounded(self, *, size_decimals: int = 0, ratio_decimals: int = 3) -> GridAnchors:
        """A copy with sizes and ratios rounded for writing into configs and models."""

        def fix(value: float, decimals: int) -> float:
            return float(round(value)) if decimals == 0 else round(value, decimals)

        return GridAnchors(
            tuple(tuple(max(fix(v, size_decimals), 1.0) for v in level) for level in self.sizes),
            tuple(
                tuple(max(fix(v, ratio_decimals), 10.0**-ratio_decimals) for v in level) for level in self.aspect_ratios
            ),
            self.strides,
        )

    def __str__(self) -> str:
        def number(value: float) -> str:
            return str(int(value)) if value == int(value) else f"{value:g}"

        sizes = ", ".join(
            "(" + ", ".join(number(v) for v in level) + ("," if len(level) == 1 else "") + ")" for level in self.sizes
        )
        ratios = ", ".join(
            "(" + ", ".join(number(v) for v in level) + ("," if len(level) == 1 else "") + ")"
            for level in self.aspect_ratios
        )
        return f"AnchorGenerator(sizes=({sizes},), aspect_ratios=({ratios},))  # strides {self.strides}"


@dataclass(frozen=True)
class ResizeRule:
    """The resize of torchvision's ``GeneralizedRCNNTransform`` (evaluation mode).

    Args:
        min_size: target length of the shorter side, in pixels (``min_size[-1]`` of
            the transform: the size used in evaluation).
        max_size: the longer side never passes this, in pixels.
        size_divisible: the batch is padded to a multiple of this.
        fixed_size: ``(width, height)`` every image is resized to, if the transform
            has one; then ``min_size`` and ``max_size`` are not used.
    """

    min_size: float
    max_size: float
    size_divisible: int = 32
    fixed_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("min_size", "max_size", "size_divisible"):
            value = getattr(self, name)
            if not is_number(value) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.fixed_size is not None and (len(self.fixed_size) != 2 or min(self.fixed_size) <= 0):
            raise ValueError(f"fixed_size must be (width, height) > 0, got {self.fixed_size!r}")

    def resized_shape(self, shapes: Tensor) -> Tensor:
        """Image sizes after the resize.

        Args:
            shapes: ``[I, 2]`` image (width, height) in pixels as stored.

        Returns:
            Tensor[I, 2]: (width, height) of the model's input, in whole pixels.
        """
        shapes = torch.as_tensor(shapes, dtype=torch.float64)
        if self.fixed_size is not None:
            return torch.tensor(self.fixed_size, dtype=torch.float64).expand_as(shapes).clone()
        short = shapes.min(dim=1).values
        long = shapes.max(dim=1).values
        scale = torch.minimum(self.min_size / short, self.max_size / long)  # [I]
        # interpolate(recompute_scale_factor=True) floors each side of the output.
        return torch.floor(shapes * scale[:, None])

    def scale(self, shapes: Tensor) -> Tensor:
        """Per-axis factor from stored pixels to input pixels, ``[I, 2]`` (x, y)."""
        shapes = torch.as_tensor(shapes, dtype=torch.float64)
        return self.resized_shape(shapes) / shapes

    def padded_shape(self, shapes: Tensor) -> Tensor:
        """Input sizes padded to ``size_divisible`` (one image per batch), ``[I, 2]``."""
        resized = self.resized_shape(shapes)
        return torch.ceil(resized / self.size_divisible) * self.size_divisible
