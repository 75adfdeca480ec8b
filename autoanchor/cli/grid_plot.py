"""``--plot`` for grid anchors: box sizes at the model's resize against each level's anchors.

Matched boxes (an anchor at IoU >= the threshold at their grid position) are drawn as
grey density, the unmatched ones on top in red, so what the generator misses shows;
each level's anchors are markers in the level's colour.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_grid_anchors"]


def plot_grid_anchors(
    samples: Any, generator: Any, threshold: float, path: str | os.PathLike, *, title: str, subtitle: str,
    dpi: int = 150,
) -> Path:
    """Draw the rows' (width, height) and the generator's anchors, and save the figure atomically.

    Args:
        samples: rows (:class:`~autoanchor.grid.matching.Samples`) in input pixels.
        generator: the GridAnchors drawn.
        threshold: the foreground IoU; rows whose best IoU is below it are drawn in red.
        path: the image file; its suffix picks the format.
        title, subtitle: the figure's two title lines.
        dpi: resolution of raster formats.

    Returns:
        The path written.
    """
    from ..grid.matching import best_iou
    from ..io._atomic import write_atomic
    from ..io.plot import LEVEL_COLORS, check_plot_path
    from ..core.levels import level_name

    image_format = check_plot_path(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    sizes = samples.wh.detach().double().cpu().numpy()
    missed = (best_iou(samples, generator) < threshold).cpu().numpy()
    anchors = [level.cpu().numpy() for level in generator.anchor_wh()]
    every = np.concatenate([sizes, *anchors])
    low, high = every.min() / 1.25, every.max() * 1.25

    figure = Figure(figsize=(8.5, 7.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    extent = (math.log10(low), math.log10(high), math.log10(low), math.log10(high))
    if (~missed).any():
        axes.hexbin(
            sizes[~missed, 0], sizes[~missed, 1], xscale="log", yscale="log", gridsize=45, extent=extent,
            cmap="Greys", norm=LogNorm(), mincnt=1, linewidths=0.1, edgecolors="face",
        )
    axes.scatter(sizes[missed, 0], sizes[missed, 1], s=4, color="tab:red", alpha=0.5, linewidths=0, zorder=4)
    handles = [
        Line2D([], [], marker="h", linestyle="", color="0.4", label="boxes matched (density)"),
        Line2D([], [], marker="o", linestyle="", color="tab:red",
               label=f"boxes with no anchor at IoU >= {threshold:g}: {missed.mean():.1%}"),
    ]
    for index, (level, stride) in enumerate(zip(anchors, generator.strides)):
        color = LEVEL_COLORS[index % len(LEVEL_COLORS)]
        axes.scatter(level[:, 0], level[:, 1], s=80, color=color, edgecolors="white", linewidths=1.2, zorder=5)
        size_text = ", ".join(f"{v:g}" for v in generator.sizes[index])
        handles.append(
            Line2D([], [], marker="o", linestyle="", markersize=9, color=color, markeredgecolor="white",
                   label=f"{level_name(stride)}/{stride}: sizes {size_text} px")
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_aspect("equal")
    axes.set_xlabel("box width (input pixels)")
    axes.set_ylabel("box height (input pixels)")
    axes.grid(True, which="major", color="0.85", linewidth=0.6, zorder=0)
    axes.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.9)
    axes.set_title(f"{title}\n{subtitle}", fontsize=10)
    path = Path(path)
    image = io.BytesIO()
    figure.savefig(image, dpi=dpi, format=image_format)
    write_atomic(path, image.getvalue())
    return path
