"""What a check found and did: one report type per kind of head, each one line for a training log.

:class:`AnchorReport` holds what every head family reports: whether the anchors were
searched and replaced, the anchors before and after, and the family's figures by name.
A family with figures of its own returns a subclass that names them:
:class:`YoloReport` (best possible recall, anchors per target, fitness; the per-level
figures of the final anchors and the anchors under one stride) and :class:`GridReport`
(torchvision anchor generators: the share of boxes matched, mean best IoU, positives).
Each figure is stored once, in ``figures_before`` / ``figures_after``; the named
attributes read from there.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor

from ..core.levels import BelowStride, LevelStats, format_below_stride, format_level_table, level_name

__all__ = ["AnchorReport", "GridReport", "Measure", "Outcome", "YoloReport"]

R = TypeVar("R", bound="AnchorReport")


class Measure(NamedTuple):
    """How well some anchors fit the data, in a family's own figures.

    Attributes:
        score: the figure the hook compares with ``bpr_threshold`` ("good enough")
            and between the current and the searched anchors ("better"): higher is
            better, in [0, 1]. Best possible recall for YOLO heads.
        figures: named figures for the report and the log, the same keys in the
            same order for every measure of one family (e.g. ``{"bpr": ...,
            "aat": ..., "fitness": ...}``).
    """

    score: float
    figures: dict[str, float]


class Outcome(NamedTuple):
    """What the hook decided, for a family to turn into its report.

    Attributes:
        before: the measure of the model's anchors.
        after: the measure of the final anchors (``before`` when they were kept).
        anchors_before: the family's anchors as read (``HeadState.params``).
        anchors_after: the final anchors, as stored.
        replaced: whether the model's anchors were replaced.
        searched: whether new anchors were searched.
    """

    before: Measure
    after: Measure
    anchors_before: Tensor
    anchors_after: Tensor
    replaced: bool
    searched: bool


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and torch.equal(a, b)
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, LevelStats) and isinstance(b, LevelStats):
        return a.to_dict() == b.to_dict()
    return a == b


def _names(figures: Mapping[str, float]) -> list[str]:
    return [name.replace("_", " ") for name in figures]


@dataclass(frozen=True, eq=False)
class AnchorReport:
    """What :func:`~autoanchor.training.hook.check_anchors` found and did, for any head family.

    ``*_before`` describe the anchors the model had, ``*_after`` the anchors it has now
    (the same values when nothing was replaced).

    Attributes:
        family: the head family's name (``"yolov5"``, ``"yolov7"``, ``"torchvision"``, ...).
        replaced: whether the model's anchors were replaced.
        searched: whether new anchors were searched (the original ones did not pass the
            threshold); ``searched and not replaced`` means the search found nothing better.
        figures_before: the family's figures of the original anchors, by name, in the
            family's order (``{"bpr", "aat", "fitness"}`` for YOLO heads).
        figures_after: the same for the final anchors.
        anchors_before: the original anchors, float32 on the CPU, in the family's form
            (``Tensor[nl, na, 2]`` in pixels for YOLO heads).
        anchors_after: the same for the final anchors, exactly as stored in the model
            (after rounding to its dtype).
    """

    family: str
    replaced: bool
    searched: bool
    figures_before: Mapping[str, float]
    figures_after: Mapping[str, float]
    anchors_before: Tensor
    anchors_after: Tensor

    @classmethod
    def of(cls: type[R], family: str, outcome: Outcome, **extra: Any) -> R:
        """The report of ``outcome`` for ``family``; ``extra`` fills a subclass's own fields."""
        return cls(
            family=family,
            replaced=outcome.replaced,
            searched=outcome.searched,
            figures_before=dict(outcome.before.figures),
            figures_after=dict(outcome.after.figures),
            anchors_before=outcome.anchors_before.float(),
            anchors_after=outcome.anchors_after.float(),
            **extra,
        )

    def _verdict(self) -> str:
        return "no better anchors found, kept the current ones" if self.searched else "current anchors fit, kept"

    def __str__(self) -> str:
        names, before, after = _names(self.figures_before), self.figures_before, self.figures_after
        if self.replaced:
            changes = ", ".join(f"{n} {before[k]:.4f} -> {after[k]:.4f}" for n, k in zip(names, before))
            return f"autoanchor: anchors replaced, {changes}"
        figures = ", ".join(f"{n} {before[k]:.4f}" for n, k in zip(names, before))
        return f"autoanchor: {figures}: {self._verdict()}"

    def lines(self) -> list[str]:
        """What the hook logs: ``str(self)``, then any lines the family adds (no newlines)."""
        return [str(self)]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self))

    __hash__ = None  # type: ignore[assignment]  # holds tensors


@dataclass(frozen=True, eq=False)
class YoloReport(AnchorReport):
    """The report of a YOLO head (yolov5, yolov7): figures ``bpr``, ``aat``, ``fitness``.

    All figures are measured on the dataset's letterboxed box sizes with the seeded
    per-image scale jitter U(0.9, 1.1), or, when a training ``scale`` was given, on 8
    pooled seeded draws of U(1 - scale, 1 + scale) per image.

    Attributes:
        levels: per-level figures of the **final** anchors (the ones the model trains
            with: ``anchors_after``) on the same boxes as the figures, one
            :class:`~autoanchor.core.levels.LevelStats` per level in the head's order.
        below_stride: the final anchors smaller than one stride of their level, with how
            much smaller (:class:`~autoanchor.core.levels.BelowStride`); empty when none is.
        scale: the training scale (yolov5's ``hyp['scale']``) the figures were measured
            under, or ``None`` for yolov5's check jitter U(0.9, 1.1).
    """

    levels: tuple[LevelStats, ...] = ()
    below_stride: tuple[BelowStride, ...] = ()
    scale: float | None = None

    @property
    def bpr_before(self) -> float:
        """Best possible recall of the original anchors, in [0, 1]: the share of boxes with an
        anchor within ``thr`` in width and height (the score compared with ``bpr_threshold``)."""
        return self.figures_before["bpr"]

    @property
    def bpr_after(self) -> float:
        """Best possible recall of the final anchors."""
        return self.figures_after["bpr"]

    @property
    def aat_before(self) -> float:
        """Anchors above threshold of the original anchors: mean anchors per box that pass ``1/thr``."""
        return self.figures_before["aat"]

    @property
    def aat_after(self) -> float:
        """Anchors above threshold of the final anchors."""
        return self.figures_after["aat"]

    @property
    def fitness_before(self) -> float:
        """yolov5's fitness ``mean(best * (best > 1/thr))`` of the original anchors."""
        return self.figures_before["fitness"]

    @property
    def fitness_after(self) -> float:
        """yolov5's fitness of the final anchors."""
        return self.figures_after["fitness"]

    def __str__(self) -> str:
        if self.replaced:
            line = (
                f"autoanchor: anchors replaced, BPR {self.bpr_before:.4f} -> {self.bpr_after:.4f}, "
                f"anchors/target {self.aat_before:.2f} -> {self.aat_after:.2f}, "
                f"fitness {self.fitness_before:.4f} -> {self.fitness_after:.4f}"
            )
        else:
            line = (
                f"autoanchor: BPR {self.bpr_before:.4f}, anchors/target {self.aat_before:.2f}, "
                f"fitness {self.fitness_before:.4f}: {self._verdict()}"
            )
        if self.below_stride:
            names = dict.fromkeys(level_name(item.stride) for item in self.below_stride)  # in order, once each
            line += f"; {len(self.below_stride)} anchor(s) under one stride of their level ({', '.join(names)})"
        return line

    def level_lines(self) -> list[str]:
        """The per-level table of the final anchors and the anchors under one stride,
        as text lines (no newlines); empty without levels.

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

    def lines(self) -> list[str]:
        """The report line, then the per-level table, each table line prefixed ``autoanchor:``."""
        return [str(self), *(f"autoanchor: {line}" for line in self.level_lines())]


@dataclass(frozen=True, eq=False)
class GridReport(AnchorReport):
    """The report of a torchvision anchor generator: figures ``matched``, ``mean IoU``, ``positives``.

    The figures are measured with the detector's own matching (its foreground IoU, at
    the boxes' positions in the model's input); ``matched`` is the score compared with
    ``bpr_threshold``.

    Attributes:
        note: how the figures were measured (real box positions or a lattice), shown at
            the end of the line.
        grid_after: the final anchors as a :class:`~autoanchor.grid.anchors.GridAnchors`
            (float64 sizes and ratios), what :meth:`anchor_generator` rebuilds.
    """

    note: str = ""
    grid_after: Any = field(default=None, repr=False)
    levels: tuple[LevelStats, ...] = ()

    def level_lines(self) -> list[str]:
        """Per level of the final anchors: sizes, sizes in strides, share matched, positives per
        box and share of best anchors, as text lines; empty without levels."""
        if not self.levels:
            return []
        return [f"per level (final anchors, {self.levels[0].n_boxes} boxes):", *format_level_table(self.levels)]

    def lines(self) -> list[str]:
        """The report line, then the per-level table, each table line prefixed ``autoanchor:``."""
        return [str(self), *(f"autoanchor: {line}" for line in self.level_lines())]

    @property
    def matched_before(self) -> float:
        """Share of boxes with an anchor at IoU >= the detector's threshold, original anchors."""
        return self.figures_before["matched"]

    @property
    def matched_after(self) -> float:
        """The same for the final anchors."""
        return self.figures_after["matched"]

    @property
    def mean_iou_before(self) -> float:
        """Mean over boxes of the best anchor IoU, original anchors."""
        return self.figures_before["mean IoU"]

    @property
    def mean_iou_after(self) -> float:
        """The same for the final anchors."""
        return self.figures_after["mean IoU"]

    @property
    def positives_before(self) -> float:
        """Mean number of anchors at IoU >= the threshold per box, original anchors."""
        return self.figures_before["positives"]

    @property
    def positives_after(self) -> float:
        """The same for the final anchors."""
        return self.figures_after["positives"]

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

    def __str__(self) -> str:
        return super().__str__() + (f" ({self.note})" if self.note else "")
