"""The output formats of ``fit`` and ``check``: one registered function each.

A writer takes the command's result (:class:`FitOutput` or :class:`CheckOutput`) and
returns the whole text, ending with a newline. Adding a format is adding one function
here (or in any module imported by :mod:`autoanchor.cli`) with
:func:`~autoanchor.cli.registry.register_writer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import __version__
from .registry import register_writer

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
        line: with ``--model x.cfg``: the cfg's new ``anchors =`` line, ``[[w, h], ...]``
            integer pixels sorted by area, from which ``masks`` pick ``rows``; else None.
        masks: with ``--model x.cfg``: each level's mask (indices into ``line``), finest
            first; else None.
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
    line: list[list[int]] | None = None
    masks: Sequence[Sequence[int]] | None = None
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
        strides: with ``--model x.cfg``: the stride of each level, finest first, whose
            anchors follow each other in ``anchors``; else None (one list of anchors).
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
    strides: Sequence[int] | None = None
    levels: tuple = ()
    below_stride: tuple = ()

    @property
    def fits(self) -> bool:
        """BPR above the threshold: the check the hook makes before searching new anchors."""
        return self.stats.bpr > self.bpr_threshold


def size_text(info: dict[str, Any]) -> str:
    """How the boxes were sized: ``img 640`` (yolov5's letterbox) or darknet's network size and resize."""
    network = info.get("network")
    if network is None:
        return f"img {info['img']}"
    how = "letterboxed (darknet letter_box=1)" if network["letter_box"] else "stretched as darknet"
    return f"{network['width']}x{network['height']} {how}, {network['size_from']}"
def _scale_note(info: dict[str, Any]) -> str:
    """``, scale 0.5 (8 draws per image, seed 0)`` when the boxes were scaled as in training."""
    if info.get("scale") is None:
        return ""
    return f", scale {info['scale']:g} ({info['draws']} draws per image, seed {info['seed']})"


def _level_lines(levels: Sequence[Any], below_stride: Sequence[Any]) -> list[str]:
    from ..core.levels import format_below_stride, format_level_table

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


@register_writer("text", command="fit", help="readable")
def fit_text(result: FitOutput) -> str:
    from ..core.levels import level_name

    info = result.info
    lines = [
        f"{info['n']} anchors for {info['data']} ({result.boxes}; {size_text(info)}, thr {info['thr']}, "
        f"metric {info['metric']}, gen {info['gen']}, seed {info['seed']}{_scale_note(info)}), w,h in pixels:"
    ]
    width = max(len(level_name(s, with_stride=True)) for s in result.strides)
    for level, stride in zip(result.rows, result.strides):
        pairs = "  ".join(f"{w},{h}".ljust(9) for w, h in level).rstrip()
        lines.append(f"  {level_name(stride, with_stride=True).ljust(width)}  {pairs}")
    lines.append(stats_line(result.stats))
    lines.append(f"({result.figures_for}, on {result.boxes})")
    lines.extend(_level_lines(result.levels, result.below_stride))
    return "\n".join(lines) + "\n"


@register_writer("yaml", command="fit", help="a model-yaml anchors: block")
def fit_yaml(result: FitOutput) -> str:
    from ..io.modelyaml import anchors_yaml_block

    info, stats = result.info, result.stats
    header = (
        f"# autoanchor {__version__}: {info['n']} anchors for {info['data']} at {size_text(info)}, "
        f"thr {info['thr']}{_scale_note(info)}: fitness {stats.fitness:.4f}, BPR {stats.bpr:.4f}, "
        f"anchors/target {stats.aat:.2f}, Avg IoU {stats.avg_iou:.4f}\n"
        f"# {result.figures_for}, on {result.boxes}"
    )
    return f"{header}\n{anchors_yaml_block(result.rows, strides=result.strides)}\n"


@register_writer("json", command="fit", help="one JSON document")
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
    if result.line is not None:
        document["darknet"] = {"anchors": result.line, "masks": [list(mask) for mask in result.masks or ()]}
    return json_text(document)


@register_writer("darknet", command="fit", help="the anchors= line and each level's mask= line of a darknet .cfg")
def fit_darknet(result: FitOutput) -> str:
    from ..io.darknet import darknet_lines

    if result.line is not None:
        return darknet_lines(result.line, result.masks, strides=result.strides)
    return darknet_lines(result.rows, strides=result.strides)


@register_writer("mmyolo", command="fit", help="a prior_generator=dict(...) for an mmyolo config")
def fit_mmyolo(result: FitOutput) -> str:
    from ..io.mmyolo import mmyolo_snippet

    return mmyolo_snippet(result.rows, result.strides)


# -- check ------------------------------------------------------------------------------------------


@register_writer("text", command="check", help="readable")
def check_text(result: CheckOutput) -> str:
    info, stats = result.info, result.stats
    what = f"{len(result.anchors)} anchors" + (f" ({result.label})" if result.label else "")
    verdict = (
        f"BPR above {result.bpr_threshold:g}: these anchors fit the data"
        if result.fits
        else f"BPR not above {result.bpr_threshold:g}: consider 'autoanchor fit' for this data"
    )
    head = f"{what} on {result.data} ({result.boxes}; {size_text(info)}, thr {info['thr']}{_scale_note(info)})"
    if result.strides is None:
        lines = [f"{head}: " + ",  ".join(f"{w:g},{h:g}" for w, h in result.anchors)]
    else:
        from ..core.levels import level_name

        per_level = len(result.anchors) // len(result.strides)
        width = max(len(level_name(s, with_stride=True)) for s in result.strides)
        lines = [f"{head}, w,h in pixels:"]
        for level, stride in enumerate(result.strides):
            level_anchors = result.anchors[level * per_level : (level + 1) * per_level]
            pairs = "  ".join(f"{w:g},{h:g}".ljust(9) for w, h in level_anchors).rstrip()
            lines.append(f"  {level_name(stride, with_stride=True).ljust(width)}  {pairs}")
    lines += [
        f"BPR {stats.bpr:.4f}  anchors/target {stats.aat:.2f}  fitness {stats.fitness:.4f}  "
        f"Avg IoU {stats.avg_iou:.4f}",
        *(
            _level_lines(result.levels, result.below_stride)
            or ["(no per-level table: anchors given as numbers have no strides; name a shipped set or use --model)"]
        ),
        verdict,
    ]
    return "\n".join(lines) + "\n"


@register_writer("json", command="check", help="one JSON document")
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
    if result.strides is not None:
        document["strides"] = list(result.strides)
    return json_text(document)
