"""The output formats of ``fit`` and ``check``: one registered function each.

A writer takes the command's result (:class:`FitOutput` or :class:`CheckOutput`) and
returns the whole text, ending with a newline. Adding a format is adding one function
here (or in any module imported by :mod:`autoanchor.cli`) with
:func:`~autoanchor.cli.registry.register_format`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import __version__
from .registry import register_format

__all__ = ["CheckOutput", "FitOutput", "stats_line"]


@dataclass(frozen=True)
class FitOutput:
    """What ``fit`` found, for its writers.

    Attributes:
        rows: the anchors as printed and written: integer ``[w, h]`` pixels,
            ``rows[level][anchor]``, levels small to large.
        exact: the search's anchors before rounding, ``[[w, h], ...]`` in pixels, sorted by area.
        strides: stride of each level in pixels (8, 16, 32, ...).
        stats: AnchorStats of ``rows`` on the measured boxes.
        info: the run's settings and counts: ``data``, ``n_images``, ``img``, ``thr``,
            ``metric``, ``gen``, ``seed``, ``n``, ``scale``, ``draws`` and
            ``BoxCounts.json_fields()``.
        boxes: e.g. ``928 of 929 boxes; 1 under 2 px left out``.
        figures_for: what the figures measure (the rounded anchors).
        levels: LevelStats of ``rows`` per level on the measured boxes.
        below_stride: BelowStride of the anchors of ``rows`` under one stride of their level.
    """

    rows: list[list[list[int]]]
    exact: list[list[float]]
    strides: Sequence[int]
    stats: Any
    info: dict[str, Any]
    boxes: str
    figures_for: str
    levels: tuple = ()
    below_stride: tuple = ()


@dataclass(frozen=True)
class CheckOutput:
    """What ``check`` measured, for its writers.

    Attributes:
        anchors: the anchors checked, ``[[w, h], ...]`` in pixels, as given.
        label: the anchor set's name or model file, or None for anchors given as numbers.
        data: the dataset's name.
        stats: AnchorStats of the anchors on the measured boxes.
        bpr_threshold: the BPR the anchors must exceed to fit.
        info: ``img``, ``thr``, ``seed``, ``scale``, ``draws`` and ``BoxCounts.json_fields()``.
        boxes: e.g. ``928 of 929 boxes; 1 under 2 px left out``.
        levels: LevelStats per level on the measured boxes; empty when the anchors
            were given as numbers (no strides to put them on).
        below_stride: BelowStride of the anchors under one stride of their level.
    """

    anchors: list[list[float]]
    label: str | None
    data: str
    stats: Any
    bpr_threshold: float
    info: dict[str, Any]
    boxes: str
    levels: tuple = ()
    below_stride: tuple = ()

    @property
    def fits(self) -> bool:
        """BPR above the threshold: the check the hook makes before searching new anchors."""
        return self.stats.bpr > self.bpr_threshold


def _scale_note(info: dict[str, Any]) -> str:
    """``, scale 0.5 (8 draws per image, seed 0)`` when the boxes were scaled as in training."""
    if info.get("scale") is None:
        return ""
    return f", scale {info['scale']:g} ({info['draws']} draws per image, seed {info['seed']})"


def _level_lines(levels: Sequence[Any], below_stride: Sequence[Any]) -> list[str]:
    from ..levels import format_below_stride, format_level_table

    return [*format_level_table(levels), *format_below_stride(below_stride)] if levels else []


def _below_stride_json(below_stride: Sequence[Any]) -> list[dict[str, Any]]:
    from .levels import below_stride_dict

    return [below_stride_dict(item) for item in below_stride]


def stats_line(stats: Any) -> str:
    """``fitness 0.6975  BPR 0.9978  anchors/target 4.15  Avg IoU 0.6140`` for an AnchorStats."""
    return (
        f"fitness {stats.fitness:.4f}  BPR {stats.bpr:.4f}  anchors/target {stats.aat:.2f}  "
        f"Avg IoU {stats.avg_iou:.4f}"
    )


# -- fit --------------------------------------------------------------------------------------------


@register_format("text", command="fit", help="readable")
def fit_text(result: FitOutput) -> str:
    from ..modelyaml import level_label

    info = result.info
    lines = [
        f"{info['n']} anchors for {info['data']} ({result.boxes}; img {info['img']}, thr {info['thr']}, "
        f"metric {info['metric']}, gen {info['gen']}, seed {info['seed']}{_scale_note(info)}), w,h in pixels:"
    ]
    width = max(len(level_label(s)) for s in result.strides)
    for level, stride in zip(result.rows, result.strides):
        pairs = "  ".join(f"{w},{h}".ljust(9) for w, h in level).rstrip()
        lines.append(f"  {level_label(stride).ljust(width)}  {pairs}")
    lines.append(stats_line(result.stats))
    lines.append(f"({result.figures_for}, on {result.boxes})")
    lines.extend(_level_lines(result.levels, result.below_stride))
    return "\n".join(lines) + "\n"


@register_format("yaml", command="fit", help="a model-yaml anchors: block")
def fit_yaml(result: FitOutput) -> str:
    from ..modelyaml import anchors_yaml_block

    info, stats = result.info, result.stats
    header = (
        f"# autoanchor {__version__}: {info['n']} anchors for {info['data']} at img {info['img']}, "
        f"thr {info['thr']}{_scale_note(info)}: fitness {stats.fitness:.4f}, BPR {stats.bpr:.4f}, "
        f"anchors/target {stats.aat:.2f}, Avg IoU {stats.avg_iou:.4f}\n"
        f"# {result.figures_for}, on {result.boxes}"
    )
    return f"{header}\n{anchors_yaml_block(result.rows, strides=result.strides)}\n"


@register_format("json", command="fit", help="one JSON document")
def fit_json(result: FitOutput) -> str:
    from .common import json_text

    stats = result.stats
    # Each level: its index, stride and integer anchors, and (when measured) its LevelStats figures.
    per_level = list(result.levels) or [None] * len(result.rows)
    document = {
        **result.info,
        "levels": [
            {"level": index, **(figures.to_dict() if figures is not None else {}), "stride": stride, "anchors": level}
            for index, (level, stride, figures) in enumerate(zip(result.rows, result.strides, per_level))
        ],
        "below_stride": _below_stride_json(result.below_stride),
        "fitness": stats.fitness,
        "bpr": stats.bpr,
        "anchors_per_target": stats.aat,
        "avg_iou": stats.avg_iou,
        "figures_for": "anchors rounded to whole pixels, as in levels",
        "note": f"{result.figures_for}, on {result.boxes}",
        "anchors_exact": [[round(w, 3), round(h, 3)] for w, h in result.exact],
    }
    return json_text(document)


@register_format("darknet", command="fit", help="an anchors= line of a darknet .cfg")
def fit_darknet(result: FitOutput) -> str:
    return "anchors = " + ",  ".join(f"{w},{h}" for level in result.rows for w, h in level) + "\n"


# -- check ------------------------------------------------------------------------------------------


@register_format("text", command="check", help="readable")
def check_text(result: CheckOutput) -> str:
    info, stats = result.info, result.stats
    what = f"{len(result.anchors)} anchors" + (f" ({result.label})" if result.label else "")
    verdict = (
        f"BPR above {result.bpr_threshold:g}: these anchors fit the data"
        if result.fits
        else f"BPR not above {result.bpr_threshold:g}: consider 'autoanchor fit' for this data"
    )
    lines = [
        f"{what} on {result.data} ({result.boxes}; img {info['img']}, thr {info['thr']}{_scale_note(info)}): "
        + ",  ".join(f"{w:g},{h:g}" for w, h in result.anchors),
        f"BPR {stats.bpr:.4f}  anchors/target {stats.aat:.2f}  fitness {stats.fitness:.4f}  "
        f"Avg IoU {stats.avg_iou:.4f}",
        *(
            _level_lines(result.levels, result.below_stride)
            or ["(no per-level table: anchors given as numbers have no strides; name a shipped set or use --model)"]
        ),
        verdict,
    ]
    return "\n".join(lines) + "\n"


@register_format("json", command="check", help="one JSON document")
def check_json(result: CheckOutput) -> str:
    from .common import json_text

    stats = result.stats
    document = {
        "anchors": result.anchors,
        "name": result.label,
        "data": result.data,
        **result.info,
        "bpr": stats.bpr,
        "anchors_per_target": stats.aat,
        "fitness": stats.fitness,
        "avg_iou": stats.avg_iou,
        "figures_for": "anchors as given",
        "note": f"figures for the anchors as given, on {result.boxes}",
        "bpr_threshold": result.bpr_threshold,
        "fits": result.fits,
        "levels": [level.to_dict() for level in result.levels],
        "below_stride": _below_stride_json(result.below_stride),
    }
    return json_text(document)
