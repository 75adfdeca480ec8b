"""What a check found and did: :class:`AnchorReport`, one line for a training log.

It carries the YOLO figures in named fields (BPR, anchors per target, fitness) and
any head family's own figures by name, so a new family needs no new report type.
Families whose anchors sit on strided levels (the YOLO heads) add per-level figures
of the final anchors (:attr:`AnchorReport.levels`) and the anchors smaller than one
stride of their level (:attr:`AnchorReport.below_stride`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .heads import Measure
from ..core.levels import BelowStride, LevelStats, format_below_stride, format_level_table, level_name

__all__ = ["AnchorReport"]

_YOLO_FIGURES = ("bpr", "aat", "fitness")


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@dataclass(frozen=True, eq=False)
class AnchorReport:
    """What :func:`check_anchors` found and did.

    ``*_before`` describe the anchors the model had, ``*_after`` the anchors it has
    now (the same values when nothing was replaced). For YOLO heads all figures are
    measured on the dataset's letterboxed box sizes with the seeded per-image scale
    jitter U(0.9, 1.1), or, when a training ``scale`` was given, on 8 pooled seeded
    draws of U(1 - scale, 1 + scale) per image.

    Attributes:
        replaced: whether the model's anchors were replaced.
        bpr_before: best possible recall of the original anchors, in [0, 1] (for
            other families: their score, the figure compared with ``bpr_threshold``).
        bpr_after: the same for the final anchors.
        aat_before: anchors above threshold (mean number of anchors per box that
            pass ``1/thr``) of the original anchors; NaN for families without it.
        aat_after: the same for the final anchors.
        fitness_before: yolov5 fitness ``mean(best * (best > 1/thr))`` of the
            original anchors; NaN for families without it.
        fitness_after: the same for the final anchors.
        anchors_before: ``Tensor[nl, na, 2]`` float32 on the CPU, the original
            anchors in pixels (anchors × stride), or the family's own anchors.
        anchors_after: the same for the final anchors, exactly as stored in the
            model (after rounding to its dtype).
        searched: whether new anchors were searched (the original ones did not pass
            the threshold); ``searched and not replaced`` means the search found
            nothing better.
        family: the head family's name (``"yolov5"``, ``"yolov7"``, ...).
        figures_before: the family's figures of the original anchors, by name
            (``{"bpr", "aat", "fitness"}`` for YOLO heads).
        figures_after: the same for the final anchors.
        levels: per-level figures of the **final** anchors (the ones the model
            trains with: ``anchors_after``) on the same boxes as the figures, one
            :class:`~autoanchor.core.levels.LevelStats` per level in the head's order;
            empty for families without strided levels.
        below_stride: the final anchors smaller than one stride of their level,
            with how much smaller (:class:`~autoanchor.core.levels.BelowStride`); empty
            when none is (or the family has no levels).
        scale: the training scale (yolov5's ``hyp['scale']``) the figures were
            measured under, or ``None`` for yolov5's check jitter U(0.9, 1.1).
        note: the family's remark on how the figures were measured (torchvision:
            real box positions or a lattice), shown at the end of the line; may be empty.
        grid_after: the final anchors as the family describes them for a rebuild
            (torchvision: a :class:`~autoanchor.grid.anchors.GridAnchors`, float64 sizes
            and ratios); None for other families. See :meth:`anchor_generator`.
    """

    replaced: bool
    bpr_before: float
    bpr_after: float
    aat_before: float
    aat_after: float
    fitness_before: float
    fitness_after: float
    anchors_before: Tensor
    anchors_after: Tensor
    searched: bool = False
    family: str = "yolov5"
    figures_before: dict = field(default_factory=dict)
    figures_after: dict = field(default_factory=dict)
    levels: tuple[LevelStats, ...] = ()
    below_stride: tuple[BelowStride, ...] = ()
    scale: float | None = None
    note: str = ""
    grid_after: Any = field(default=None, repr=False)

    @classmethod
    def from_measures(
        cls, *, family: str, before: Measure, after: Measure, anchors_before: Tensor, anchors_after: Tensor,
        replaced: bool, searched: bool, levels: tuple[LevelStats, ...] = (),
        below_stride: tuple[BelowStride, ...] = (), scale: float | None = None, note: str = "",
        grid_after: Any = None,
    ) -> AnchorReport:
        """A report from a family's measures; YOLO figures fill the named fields."""

        def figure(measure: Measure, name: str) -> float:
            if name == "bpr":
                return float(measure.figures.get("bpr", measure.score))
            return float(measure.figures.get(name, math.nan))

        return cls(
            replaced=replaced,
            bpr_before=figure(before, "bpr"),
            bpr_after=figure(after, "bpr"),
            aat_before=figure(before, "aat"),
            aat_after=figure(after, "aat"),
            fitness_before=figure(before, "fitness"),
            fitness_after=figure(after, "fitness"),
            anchors_before=anchors_before.float(),
            anchors_after=anchors_after.float(),
            searched=searched,
            family=family,
            figures_before=dict(before.figures),
            figures_after=dict(after.figures),
            levels=tuple(levels),
            below_stride=tuple(below_stride),
            scale=scale,
            note=note,
            grid_after=grid_after,
        )

    def anchor_generator(self) -> Any:
        """A new torchvision ``AnchorGenerator`` with the final sizes and ratios (torchvision family only).

        Pass it as ``anchor_generator=`` (RetinaNet) or ``rpn_anchor_generator=``
        (Faster / Mask / Keypoint R-CNN) when building the model to train or deploy
        with the fitted anchors; its cell anchors equal the checked model's bit for
        bit (:func:`autoanchor.training.rebuild.anchor_generator`).

        Raises:
            TypeError: if the report is not of a torchvision anchor generator.
            ImportError: if torchvision is not installed.
        """
        if self.grid_after is None:
            raise TypeError(
                f"anchor_generator() rebuilds torchvision anchor generators; this report is of a {self.family} head"
            )
        from .rebuild import anchor_generator

        return anchor_generator(self.grid_after.sizes, self.grid_after.aspect_ratios)

    def level_lines(self) -> list[str]:
        """The per-level table of the final anchors and the anchors under one stride,
        as text lines (no newlines); empty for a family without levels.

        Example::

            per level (final anchors, 929 boxes):
            level  stride  anchors (px)              size (strides)  matched  targets/box   best
            P3          8  10x13  16x30  33x23       1.4  2.7  3.4     61.2%         1.33  37.5%
            ...
        """
        if not self.levels:
            return []
        header = f"per level (final anchors, {self.levels[0].n_boxes} boxes):"
        return [header, *format_level_table(self.levels), *format_below_stride(self.below_stride)]

    def _below_stride_suffix(self) -> str:
        if not self.below_stride:
            return ""
        names = dict.fromkeys(level_name(item.stride) for item in self.below_stride)  # in order, once each
        return f"; {len(self.below_stride)} anchor(s) under one stride of their level ({', '.join(names)})"

    def __str__(self) -> str:
        return self._summary() + self._below_stride_suffix() + (f" ({self.note})" if self.note else "")

    def _summary(self) -> str:
        verdict = "no better anchors found, kept the current ones" if self.searched else "current anchors fit, kept"
        if self.figures_before and tuple(self.figures_before) != _YOLO_FIGURES:
            names = list(self.figures_before)
            if self.replaced:
                changes = ", ".join(
                    f"{n.replace('_', ' ')} {self.figures_before[n]:.4f} -> {self.figures_after[n]:.4f}" for n in names
                )
                return f"autoanchor: anchors replaced, {changes}"
            figures = ", ".join(f"{n.replace('_', ' ')} {self.figures_before[n]:.4f}" for n in names)
            return f"autoanchor: {figures}: {verdict}"
        if self.replaced:
            return (
                f"autoanchor: anchors replaced, BPR {self.bpr_before:.4f} -> {self.bpr_after:.4f}, "
                f"anchors/target {self.aat_before:.2f} -> {self.aat_after:.2f}, "
                f"fitness {self.fitness_before:.4f} -> {self.fitness_after:.4f}"
            )
        return (
            f"autoanchor: BPR {self.bpr_before:.4f}, anchors/target {self.aat_before:.2f}, "
            f"fitness {self.fitness_before:.4f}: {verdict}"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AnchorReport):
            return NotImplemented
        return (
            self.replaced == other.replaced
            and self.searched == other.searched
            and self.family == other.family
            and all(
                _same(getattr(self, name), getattr(other, name))
                for name in ("bpr_before", "bpr_after", "aat_before", "aat_after", "fitness_before", "fitness_after")
            )
            and self.figures_before.keys() == other.figures_before.keys()
            and all(_same(v, other.figures_before[k]) for k, v in self.figures_before.items())
            and self.figures_after.keys() == other.figures_after.keys()
            and all(_same(v, other.figures_after[k]) for k, v in self.figures_after.items())
            and torch.equal(self.anchors_before, other.anchors_before)
            and torch.equal(self.anchors_after, other.anchors_after)
            and self.scale == other.scale
            and [lv.to_dict() for lv in self.levels] == [lv.to_dict() for lv in other.levels]
            and self.below_stride == other.below_stride
        )

    __hash__ = None  # type: ignore[assignment]  # holds tensors
