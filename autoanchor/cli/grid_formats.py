"""What ``fit`` / ``check`` / ``advise --generator`` print: text, JSON, and configs that load where they go.

* ``python``: a snippet that runs as printed (its import included) and builds
  ``anchor_generator``, a torchvision ``AnchorGenerator``;
* ``detectron2``: a YAML block that ``yaml.safe_load`` reads into
  ``MODEL: ANCHOR_GENERATOR: SIZES / ASPECT_RATIOS`` (what ``cfg.merge_from_file`` takes);
* ``mmdet``: an mmdetection ``anchor_generator=dict(...)``;
* ``text`` and ``json``: the figures (one set: the same numbers in both), each level's
  sizes in pixels and in strides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .options import CommandLineError
from .registry import register_writer

__all__ = [
    "GridCheckOutput", "GridFitOutput", "detectron2_text", "grid_check_text", "grid_fit_text", "grid_json",
    "mmdet_fields", "mmdet_text", "python_text",
]


@dataclass(frozen=True)
class GridFitOutput:
    """What ``fit --generator`` found.

    Attributes:
        start: the GridAnchors fitted from (the preset's or given ones).
        fitted: the GridAnchors found (the start when nothing matched more boxes).
        before: MatchStats of ``start``; after: of ``fitted`` (every box, on its image's grid).
        levels_before, levels_after: per level, ``matched``, ``positives`` and ``best`` shares.
        info: ``data``, ``model``, ``iou``, ``resize``, ``boxes``, ``positions``, ``seed``,
            ``level_order``, ``min_stride_units``, ``max_stride_units``, ``seconds``.
    """

    start: Any
    fitted: Any
    before: Any
    after: Any
    levels_before: list
    levels_after: list
    info: dict[str, Any]


@dataclass(frozen=True)
class GridCheckOutput:
    """What ``check --generator`` measured: ``anchors`` (GridAnchors), ``stats`` (MatchStats), ``levels``, ``info``."""

    anchors: Any
    stats: Any
    levels: list
    bpr_threshold: float
    info: dict[str, Any]

    @property
    def fits(self) -> bool:
        return self.stats.matched > self.bpr_threshold


def header(info: dict[str, Any]) -> str:
    """The one-line report: data, boxes, positions, resize, IoU threshold, generator."""
    return (
        f"{info['data']}: {info['boxes']} boxes at {info['positions']}, {info['resize']}, "
        f"IoU >= {info['iou']:g}, generator {info['model']}"
    )


def low_quality_line(stats: Any) -> str:
    """The share only a low-quality match serves, in words (empty when every box is matched)."""
    if stats.low_quality_only <= 0:
        return ""
    return (
        f"  {stats.low_quality_only:.1%} of boxes have no anchor at IoU >= {stats.threshold:g}: torchvision's matcher "
        f"(allow_low_quality_matches=True) still trains each on its best anchor, at mean IoU {stats.unmatched_iou:.3f}"
    )


def level_lines(generator: Any, levels: list) -> list[str]:
    """Per level: name, stride, sizes in pixels and in strides, share matched, positives per box, best share."""
    from ..core.levels import level_name

    pixels = [", ".join(_number(v) for v in level) for level in generator.sizes]
    strides = [
        ", ".join(f"{v / s:.1f}" for v in level) for level, s in zip(generator.sizes, generator.strides)
    ]
    width_px = max([len("sizes (px)")] + [len(t) for t in pixels])
    width_st = max([len("sizes (strides)")] + [len(t) for t in strides])
    lines = [
        f"  {'level':<5}  {'stride':>6}  {'sizes (px)':<{width_px}}  {'sizes (strides)':<{width_st}}  "
        f"{'matched':>7}  {'positives/box':>13}  {'best':>6}"
    ]
    for stride, px, st, figures in zip(generator.strides, pixels, strides, levels):
        lines.append(
            f"  {level_name(stride):<5}  {stride:>6}  {px:<{width_px}}  {st:<{width_st}}  "
            f"{figures['matched']:>7.4f}  {figures['positives']:>13.2f}  {figures['best']:>6.1%}"
        )
    return lines


def python_text(generator: Any) -> str:
    """A snippet that runs as printed: the import, then ``anchor_generator = AnchorGenerator(...)``."""
    from ..training.heads.torchvision import generator_line

    return (
        "from torchvision.models.detection.anchor_utils import AnchorGenerator\n\n"
        f"anchor_generator = {generator_line(generator)}  # strides {tuple(generator.strides)}"
    )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def detectron2_text(generator: Any) -> str:
    """A YAML block for detectron2's ``cfg.merge_from_file``: ``MODEL.ANCHOR_GENERATOR.SIZES`` / ``ASPECT_RATIOS``.

    detectron2 takes one list of ratios for every level, or one per level.
    """
    sizes = "[" + ", ".join("[" + ", ".join(_number(v) for v in level) + "]" for level in generator.sizes) + "]"
    ratio_levels = generator.aspect_ratios[:1] if generator.shared_ratios else generator.aspect_ratios
    ratios = "[" + ", ".join("[" + ", ".join(repr(float(v)) for v in level) + "]" for level in ratio_levels) + "]"
    return f"MODEL:\n  ANCHOR_GENERATOR:\n    SIZES: {sizes}\n    ASPECT_RATIOS: {ratios}"


def mmdet_fields(generator: Any) -> tuple[dict[str, Any], float]:
    """mmdetection ``AnchorGenerator`` arguments for ``generator`` and how far they are from it.

    mmdet's anchors on a level are ``base_size * scale`` for each of one shared list of
    ``scales`` and one shared list of ``ratios`` (height / width). So ``base_sizes`` are
    each level's first size and ``scales`` the sizes of level 0 divided by its first;
    this is exact when every level's sizes are in the same proportions (one size per
    level always is) and ratios are shared.

    Returns:
        ``(fields, worst)``: the arguments, and the largest relative difference between
        a size of ``generator`` and mmdet's ``base_size * scale`` (0 when exact).

    Raises:
        ValueError: if the levels have different numbers of sizes or different ratios
            (mmdet's generator shares both).
    """
    counts = {len(level) for level in generator.sizes}
    if len(counts) != 1 or not generator.shared_ratios:
        raise ValueError(
            "mmdetection's AnchorGenerator shares the scales and ratios across levels; these anchors have "
            f"sizes per level {[len(s) for s in generator.sizes]} and shared ratios: {generator.shared_ratios}"
        )
    base_sizes = [float(level[0]) for level in generator.sizes]
    scales = [float(v) / base_sizes[0] for v in generator.sizes[0]]
    worst = max(
        abs(base * scale - size) / size
        for base, level in zip(base_sizes, generator.sizes)
        for scale, size in zip(scales, level)
    )
    fields = {
        "type": "AnchorGenerator",
        "strides": list(generator.strides),
        "ratios": [float(v) for v in generator.aspect_ratios[0]],
        "scales": scales,
        "base_sizes": base_sizes,
    }
    return fields, worst


def mmdet_text(generator: Any) -> str:
    """An mmdetection ``anchor_generator=dict(...)``."""
    try:
        fields, worst = mmdet_fields(generator)
    except ValueError as error:
        return f"# {error}"
    body = ",\n".join(f"    {key}={value!r}" for key, value in fields.items())
    text = f"anchor_generator=dict(\n{body})"
    if worst > 1e-9:
        text = (
            f"# mmdet shares scales across levels: level 0's proportions are used, so sizes differ from the fitted "
            f"ones by up to {worst:.1%}\n{text}"
        )
    return text


def _fit_output(result: Any, fmt: str) -> GridFitOutput:
    if not isinstance(result, GridFitOutput):
        raise CommandLineError(
            f"--format {fmt} writes torchvision grid anchors (an AnchorGenerator, its detectron2 or mmdetection "
            "config): add --generator, or the grid options --sizes/--strides/--iou"
        )
    return result


@register_writer(
    "python", command="fit", help="with --generator: a Python program building the AnchorGenerator and the model"
)
def fit_python(result: Any) -> str:
    from .grid_python import python_program

    output = _fit_output(result, "python")
    return python_program(output.fitted, output.info)


@register_writer("detectron2", command="fit", help="with --generator: a detectron2 MODEL.ANCHOR_GENERATOR YAML block")
def fit_detectron2(result: Any) -> str:
    return detectron2_text(_fit_output(result, "detectron2").fitted) + "\n"


@register_writer("mmdet", command="fit", help="with --generator: an mmdetection anchor_generator=dict(...)")
def fit_mmdet(result: Any) -> str:
    return mmdet_text(_fit_output(result, "mmdet").fitted) + "\n"


def stats_text(stats: Any) -> str:
    """One set of figures, as everywhere (``MatchStats.__str__``)."""
    return str(stats)


def grid_fit_text(result: GridFitOutput) -> str:
    info = result.info
    verdict = "fitted" if result.fitted != result.start else "nothing matched more boxes: the start is kept"
    lines = [
        header(info) + f", seed {info['seed']}",
        f"  start:  {stats_text(result.before)}",
        f"  fitted: {stats_text(result.after)} ({verdict}, {info['seconds']:.1f} s)",
    ]
    if low_quality_line(result.after):
        lines.append(low_quality_line(result.after))
    rules = "levels in scale order" if info["level_order"] else "levels not ordered (--no-level-order)"
    bounds = "".join(
        f", {word} {info[key]:g} strides" for word, key in (("min", "min_stride_units"), ("max", "max_stride_units"))
        if info.get(key) is not None
    )
    lines += [
        f"per level (fitted anchors; {rules}{bounds}):",
        *level_lines(result.fitted, result.levels_after),
        "",
        "# torchvision",
        python_text(result.fitted),
        "",
        "# detectron2 (YAML for cfg.merge_from_file)",
        detectron2_text(result.fitted),
        "",
        "# mmdetection",
        mmdet_text(result.fitted),
    ]
    return "\n".join(lines) + "\n"


def grid_check_text(result: GridCheckOutput) -> str:
    threshold = result.bpr_threshold
    verdict = (
        f"matched above {threshold:g}: these anchors fit the data" if result.fits
        else f"matched not above {threshold:g}: consider 'autoanchor fit --generator' for this data"
    )
    lines = [header(result.info), f"  {python_text(result.anchors).splitlines()[-1]}", f"  {stats_text(result.stats)}"]
    if low_quality_line(result.stats):
        lines.append(low_quality_line(result.stats))
    lines += ["per level:", *level_lines(result.anchors, result.levels), verdict]
    return "\n".join(lines) + "\n"


def _generator_json(generator: Any, stats: Any, levels: list) -> dict[str, Any]:
    return {
        "sizes": [list(level) for level in generator.sizes],
        "aspect_ratios": [list(level) for level in generator.aspect_ratios],
        "strides": list(generator.strides),
        "matched": stats.matched,
        "mean_iou": stats.mean_iou,
        "positives": stats.positives,
        "low_quality_only": stats.low_quality_only,
        "levels": [
            {"stride": stride, "sizes_in_strides": [v / stride for v in sizes], **figures}
            for stride, sizes, figures in zip(generator.strides, generator.sizes, levels)
        ],
    }


def grid_json(result: GridFitOutput | GridCheckOutput) -> str:
    """One JSON document with the same figures as the text."""
    from .common import json_text

    if isinstance(result, GridFitOutput):
        document = {
            **result.info,
            "start": _generator_json(result.start, result.before, result.levels_before),
            "fitted": _generator_json(result.fitted, result.after, result.levels_after),
            "replaced": result.fitted != result.start,
        }
    else:
        document = {
            **result.info,
            "anchors": _generator_json(result.anchors, result.stats, result.levels),
            "bpr_threshold": result.bpr_threshold,
            "fits": result.fits,
        }
    return json_text(document)


def _advise_pick(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The fewest sizes per level within one point of share matched of the best row."""
    best = max(row["stats"].matched for row in rows)
    return next(row for row in rows if row["stats"].matched >= best - 0.01)


def advise_text(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """``advise --generator``: share matched per number of sizes per level, and what each level serves."""
    lines = [
        header(info) + f", seed {info['seed']}",
        "  sizes/level  anchors/location  matched  mean best IoU  positives/box  seconds",
    ]
    for row in rows:
        stats = row["stats"]
        lines.append(
            f"  {row['sizes_per_level']:>11}  {row['anchors_per_location']:>16}  {stats.matched:>7.4f}  "
            f"{stats.mean_iou:>13.4f}  {stats.positives:>13.2f}  {row['seconds']:>7.1f}"
        )
    pick = _advise_pick(rows)
    lines += [
        f"recommended: {pick['sizes_per_level']} size(s) per level ({pick['anchors_per_location']} anchors per "
        "location; a count other than the model's changes its head, which then trains from scratch):",
        *level_lines(pick["generator"], pick["levels"]),
        python_text(pick["generator"]),
    ]
    from ..core.levels import level_name

    for stride, figures in zip(pick["generator"].strides, pick["levels"]):
        if figures["best"] < 0.01:
            lines.append(
                f"note: level {level_name(stride)} (stride {stride}) holds the best anchor of only "
                f"{figures['best']:.1%} of boxes: the data hardly uses it"
            )
    return "\n".join(lines) + "\n"


def advise_json(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    from .common import json_text

    pick = _advise_pick(rows)
    document = {
        **info,
        "rows": [
            {
                "sizes_per_level": row["sizes_per_level"],
                "anchors_per_location": row["anchors_per_location"],
                "seconds": row["seconds"],
                **_generator_json(row["generator"], row["stats"], row["levels"]),
            }
            for row in rows
        ],
        "recommended_sizes_per_level": pick["sizes_per_level"],
    }
    return json_text(document)
