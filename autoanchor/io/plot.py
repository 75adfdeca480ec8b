"""A picture of how anchors cover a dataset's box sizes (needs the ``plot`` extra: matplotlib).

One log-log panel: the density of box (width, height) in pixels as hexagonal
bins, every anchor as a dot coloured by its output level, and around each anchor
the rectangle of box sizes it matches at the ratio threshold ``thr``
(``[w/thr, w*thr] x [h/thr, h*thr]``, yolov5's rule). Boxes outside every
rectangle are the ones no anchor can learn.

matplotlib is imported only when a figure is drawn, and only through its
object-oriented API with the Agg canvas, so the global backend and any open
pyplot figures are left alone.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._atomic import write_atomic
from ..core.metrics import check_thr, check_wh
from ..core.levels import level_name

__all__ = ["check_plot_path", "plot_anchors", "require_matplotlib"]

INSTALL_HINT = 'pip install "autoanchor[plot]"'
# Level colours: distinct on a grey density map and for the common colour-vision deficiencies (Okabe-Ito).
LEVEL_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
# One dash pattern per anchor within a level, so overlapping rectangles of one colour stay apart.
ANCHOR_DASHES = ("-", "--", ":", "-.")


def require_matplotlib() -> Any:
    """Import matplotlib or raise an ImportError that says how to install it.

    Returns:
        The ``matplotlib`` module.

    Raises:
        ImportError: if matplotlib is not installed; the message gives the install
            command ``pip install "autoanchor[plot]"``.
    """
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    return matplotlib


def check_plot_path(path: str | os.PathLike) -> str:
    """Check, before any work, that a figure can be saved under this file name.

    Args:
        path: the image file; its suffix picks the format (``.png``, ``.svg``, ``.pdf``, ...).

    Returns:
        The format name matplotlib will write (the suffix without the dot, lower case).

    Raises:
        ImportError: if matplotlib is missing (the message gives the install command).
        ValueError: if the suffix is missing or not a format matplotlib can write; the
            message names the file and lists the formats.
    """
    require_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        given = f"suffix '.{suffix}'" if suffix else "no suffix"
        raise ValueError(f"cannot plot to {str(path)!r}: {given}; use one of .{', .'.join(formats)}")
    return suffix


def _level_list(anchors_by_level: Tensor | Sequence) -> list[np.ndarray]:
    """Anchors ``[nl, na, 2]`` (or a list of ``[na_i, 2]``) as a list of float64 arrays."""
    if isinstance(anchors_by_level, Tensor):
        if anchors_by_level.ndim == 2:
            anchors_by_level = anchors_by_level[None]
        levels = [level.detach().double().cpu().numpy() for level in anchors_by_level]
    else:
        levels = [np.asarray(torch.as_tensor(level, dtype=torch.float64).cpu()) for level in anchors_by_level]
    if not levels:
        raise ValueError("anchors_by_level is empty; give at least one level of anchors")
    for index, level in enumerate(levels):
        if level.ndim != 2 or level.shape[1] != 2 or level.shape[0] == 0:
            raise ValueError(f"level {index} of the anchors must have shape [na, 2], got {list(level.shape)}")
        if not np.isfinite(level).all() or (level <= 0).any():
            raise ValueError(f"level {index} of the anchors must be finite and positive, got {level.tolist()}")
    return levels


def _level_name(index: int, strides: Sequence[int] | None) -> str:
    return f"level {index}" if strides is None else level_name(int(strides[index]), with_stride=True)


def plot_anchors(
    wh: Tensor,
    anchors_by_level: Tensor | Sequence,
    thr: float,
    path: str | os.PathLike,
    *,
    strides: Sequence[int] | None = None,
    title: str | None = None,
    subtitle: str | None = None,
    dpi: int = 150,
) -> Path:
    """Draw box sizes, anchors and the sizes each anchor matches, and save the figure.

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels of the letterboxed
            training image. Boxes with a zero side cannot be shown on log axes and
            are left out of the picture.
        anchors_by_level (Tensor[nl, na, 2] or a list of Tensor[na_i, 2]): anchor
            (width, height) in pixels, levels from the smallest stride to the largest.
        thr: ratio threshold (yolov5's ``anchor_t``): an anchor matches boxes whose
            width and height are both within a factor ``thr`` of its own.
        path: the image file to write; its suffix picks the format (``.png``, ``.svg``, ``.pdf``).
        strides: stride of each level in pixels, for the legend (``P3/8``);
            without it levels are numbered.
        title: the figure's title; a default names the box count.
        subtitle: a second title line (say, BPR and fitness).
        dpi: resolution of raster formats.

    Returns:
        The path written.

    Raises:
        ImportError: if matplotlib is missing (the message says ``pip install "autoanchor[plot]"``).
        ValueError: for malformed box sizes or anchors, ``strides`` of the wrong length,
            or a ``path`` whose suffix is no format matplotlib writes (see :func:`check_plot_path`).
        OSError: if the file cannot be written; it is replaced atomically, so it is either
            the whole new figure or what it was.
    """
    check_wh(wh)
    thr = check_thr(thr)
    levels = _level_list(anchors_by_level)
    if strides is not None and len(strides) != len(levels):
        raise ValueError(f"got {len(strides)} strides for {len(levels)} levels of anchors")
    sizes = wh.detach().double().cpu().numpy()
    sizes = sizes[np.isfinite(sizes).all(1) & (sizes > 0).all(1)]
    if sizes.shape[0] == 0:
        raise ValueError("no box with a positive width and height to plot")

    image_format = check_plot_path(path)
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap, LogNorm
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle
    from matplotlib.ticker import FuncFormatter, LogLocator

    figure = Figure(figsize=(8.5, 7.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()

    every_anchor = np.concatenate(levels)
    low = min(sizes.min(), (every_anchor / thr).min()) / 1.25
    high = max(sizes.max(), (every_anchor * thr).max()) * 1.25
    density = axes.hexbin(
        sizes[:, 0],
        sizes[:, 1],
        xscale="log",
        yscale="log",
        gridsize=45,
        extent=(math.log10(low), math.log10(high), math.log10(low), math.log10(high)),
        # Greys from light to black: a hexagon holding one box must still show on white.
        cmap=ListedColormap(colormaps["Greys"](np.linspace(0.25, 1.0, 256))),
        norm=LogNorm(),
        mincnt=1,
        linewidths=0.1,
        edgecolors="face",
    )
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    colorbar = figure.colorbar(density, ax=axes, shrink=0.8, label="boxes per hexagon (log scale)")
    colorbar.ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    colorbar.ax.yaxis.set_major_formatter(plain)
    colorbar.ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    axes.plot([low, high], [low, high], color="0.55", linewidth=0.8, linestyle=(0, (1, 3)), zorder=1)

    handles = []
    for index, level in enumerate(levels):
        color = LEVEL_COLORS[index % len(LEVEL_COLORS)]
        for number, (width, height) in enumerate(level):
            axes.add_patch(
                Rectangle(
                    (width / thr, height / thr),
                    width * thr - width / thr,
                    height * thr - height / thr,
                    fill=False,
                    edgecolor=color,
                    linewidth=1.3,
                    linestyle=ANCHOR_DASHES[number % len(ANCHOR_DASHES)],
                    alpha=0.85,
                    zorder=3,
                )
            )
        axes.scatter(level[:, 0], level[:, 1], s=90, color=color, edgecolors="white", linewidths=1.2, zorder=5)
        sizes_text = ", ".join(f"{w:.0f}x{h:.0f}" for w, h in level)
        handles.append(
            Line2D([], [], marker="o", linestyle="", markersize=9, color=color, markeredgecolor="white",
                   label=f"{_level_name(index, strides)}: {sizes_text}")
        )
    handles.append(
        Patch(fill=False, edgecolor="0.3", linewidth=1.3,
              label=f"sizes an anchor matches: width and height within x{thr:g} (thr)")
    )
    handles.append(Line2D([], [], color="0.55", linewidth=0.8, linestyle=(0, (1, 3)), label="square boxes (w = h)"))

    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_aspect("equal")
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_formatter(plain)
    axes.set_xlabel("box width (pixels)")
    axes.set_ylabel("box height (pixels)")
    axes.grid(True, which="major", color="0.85", linewidth=0.6, zorder=0)
    axes.legend(handles=handles, loc="upper left", fontsize=8, title="anchors (w x h px) by level",
                title_fontsize=8, framealpha=0.9)
    heading = title if title is not None else f"Box sizes and anchors ({sizes.shape[0]} boxes)"
    axes.set_title(heading if subtitle is None else f"{heading}\n{subtitle}", fontsize=11)

    path = Path(path)
    image = io.BytesIO()
    figure.savefig(image, dpi=dpi, format=image_format)
    write_atomic(path, image.getvalue())  # the old file or the whole new one, never a part
    return path
