"""Rules on the sizes of a grid generator's levels: scale order and bounds in strides.

An FPN hands each level the objects of its scale, so a fitted generator keeps its
levels in that order: :class:`LevelRules` says which whole-pixel sizes a level may
take given the others, checks a set of sizes, and projects one into the rules
(used by :func:`~autoanchor.grid.fit.fit_grid_anchors` for its starts and kicks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LevelRules"]


@dataclass(frozen=True)
class LevelRules:
    """Which sizes a level may take, in whole pixels.

    Args:
        strides: per level, in pixels.
        level_order: every size of a level above every size of each level of a
            smaller stride (by at least one pixel).
        min_stride_units: every size of a level of stride ``s`` at least ``min * s``.
        max_stride_units: ... at most ``max * s``.

    Raises:
        ValueError: bad bounds, or bounds no set of sizes can keep.
    """

    strides: tuple[int, ...]
    level_order: bool = True
    min_stride_units: float | None = None
    max_stride_units: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_stride_units", "max_stride_units"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name} must be a positive number of strides or None, got {value!r}")
        low, high = self.min_stride_units, self.max_stride_units
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_stride_units={low} is above max_stride_units={high}")

    def stride_bounds(self, level: int) -> tuple[float, float]:
        """``(lowest, highest)`` size of ``level`` from the stride bounds alone, in pixels."""
        stride = self.strides[level]
        low = 1.0 if self.min_stride_units is None else max(1.0, math.ceil(self.min_stride_units * stride - 1e-9))
        high = math.inf if self.max_stride_units is None else math.floor(self.max_stride_units * stride + 1e-9)
        return low, high

    def bounds(self, level: int, sizes: list[list[float]]) -> tuple[float, float]:
        """``(lowest, highest)`` size ``level`` may take while the other levels keep ``sizes`` (pixels)."""
        low, high = self.stride_bounds(level)
        if self.level_order:
            stride = self.strides[level]
            for other, values in enumerate(sizes):
                if self.strides[other] < stride:
                    low = max(low, max(values) + 1)
                elif self.strides[other] > stride:
                    high = min(high, min(values) - 1)
        return low, high

    def keeps(self, sizes: list[list[float]]) -> bool:
        """Whether ``sizes`` (pixels, per level) keep every rule."""
        for level, values in enumerate(sizes):
            low, high = self.bounds(level, sizes)
            if min(values) < low or max(values) > high:
                return False
        return True

    def project(self, sizes: list[list[float]]) -> list[list[float]]:
        """Sizes (whole pixels, per level) brought into the rules.

        With ``level_order`` the sizes are first sorted and dealt out again in stride
        order (each level keeps its count: the smallest sizes go to the finest
        stride), then raised or lowered by the fewest pixels that keep the order and
        the stride bounds.

        Raises:
            ValueError: if no sizes keep the rules (stride bounds too tight for the order).
        """
        groups: dict[int, list[int]] = {}
        for level, stride in enumerate(self.strides):
            groups.setdefault(stride, []).append(level)
        order = [groups[stride] for stride in sorted(groups)]
        if self.level_order:
            pool = iter(sorted(v for level in sizes for v in level))
            dealt = [list(v) for v in sizes]
            for group in order:
                for level in group:
                    dealt[level] = [next(pool) for _ in sizes[level]]
            sizes = dealt

        def forward(values: list[list[float]]) -> list[list[float]]:
            result = [list(v) for v in values]
            floor = 0.0
            for group in order:
                top = floor
                for level in group:
                    low, high = self.stride_bounds(level)
                    if self.level_order:
                        low = max(low, floor + 1)
                    result[level] = [max(min(v, high), low) for v in result[level]]
                    top = max(top, max(result[level]))
                floor = top if self.level_order else 0.0
            return result

        result = forward(sizes)
        if self.level_order:
            ceiling = math.inf
            for group in reversed(order):
                bottom = ceiling
                for level in group:
                    low, _high = self.stride_bounds(level)
                    result[level] = [max(min(v, ceiling - 1), low) for v in result[level]]
                    bottom = min(bottom, min(result[level]))
                ceiling = bottom
        if not self.keeps(result):
            result = forward([[1.0] * len(v) for v in sizes])  # the smallest sizes the rules allow
            if not self.keeps(result):
                raise ValueError(
                    f"no sizes keep min_stride_units={self.min_stride_units}, max_stride_units="
                    f"{self.max_stride_units} with level_order={self.level_order} on strides {self.strides}"
                )
        return result


def _pixels(log_sizes: list[Tensor]) -> list[list[float]]:
    """Rounded sizes in pixels, as the scorer rounds them."""
    return [torch.round(torch.exp2(s)).clamp(min=1).tolist() for s in log_sizes]


def _project_log(log_sizes: list[Tensor], rules: LevelRules) -> list[Tensor]:
    projected = rules.project(_pixels(log_sizes))
    return [torch.log2(torch.tensor(v, dtype=torch.float64, device=s.device)) for v, s in zip(projected, log_sizes)]
