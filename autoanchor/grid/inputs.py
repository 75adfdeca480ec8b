"""Boxes in a torchvision detector's input pixels: its resize, its padded grid, its training sizes.

Pure tensor code (no ``nn.Module``): :func:`boxes_to_input` applies the transform's
resize, :func:`input_samples` builds the rows the figures are measured on (every box at
every training size, on its image's padded grid, as torchvision's own count sees it),
and the fit searches on the same rows (their weights are all equal).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .anchors import ResizeRule
from .matching import Samples, lattice_centres

__all__ = ["EVAL_ROWS", "boxes_to_input", "describe_resizes", "input_samples"]


def boxes_to_input(
    shapes: np.ndarray | Tensor,
    wh: np.ndarray | Tensor,
    image_index: np.ndarray | Tensor,
    xy: np.ndarray | Tensor | None = None,
    resize: ResizeRule | None = None,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Boxes in the model's input pixels, image by image.

    Args:
        shapes: ``[I, 2]`` image (width, height) in pixels as stored.
        wh: ``[N, 2]`` box (width, height) normalised by its image (YOLO labels).
        image_index: ``[N]`` image of each box.
        xy: ``[N, 2]`` normalised box centres, or None.
        resize: the model's resize; None keeps the stored size.

    Returns:
        ``(wh_px [N, 2], xy_px [N, 2] or None, extent [N, 2])``: sizes and centres in
        input pixels, float64, and each box's padded input (width, height).
    """
    shapes = torch.as_tensor(np.asarray(shapes), dtype=torch.float64)
    index = torch.as_tensor(np.asarray(image_index), dtype=torch.long)
    if resize is None:
        scale = torch.ones_like(shapes)
        extent = shapes
    else:
        scale = resize.scale(shapes)
        extent = resize.padded_shape(shapes)
    factor = (shapes * scale)[index]  # [N,2] normalised -> input pixels
    wh_px = torch.as_tensor(np.asarray(wh), dtype=torch.float64) * factor
    xy_px = None if xy is None else torch.as_tensor(np.asarray(xy), dtype=torch.float64) * factor
    return wh_px, xy_px, extent[index]


def describe_resizes(resizes: tuple[ResizeRule | None, ...]) -> str:
    """The resize rules in words, for report lines."""
    if not resizes or resizes[0] is None:
        return "boxes at the images' stored size"
    first = resizes[0]
    if first.fixed_size is not None:
        return f"fixed size {first.fixed_size[0]}x{first.fixed_size[1]}"
    sizes = [r.min_size for r in resizes]
    if len(sizes) == 1:
        return f"resize min_size {sizes[0]:g}, max_size {first.max_size:g}"
    return (
        f"resize min_size {min(sizes):g}..{max(sizes):g} ({len(sizes)} training sizes, each box at each), "
        f"max_size {first.max_size:g}"
    )


EVAL_ROWS = 16384
"""Rows (boxes x positions x sizes) the figures are measured on, at most, when the
data has no box centres and each box is counted at several positions."""


def input_samples(
    shapes: np.ndarray | Tensor,
    wh: np.ndarray | Tensor,
    image_index: np.ndarray | Tensor,
    xy: np.ndarray | Tensor | None,
    resizes: tuple[ResizeRule | None, ...],
    *,
    positions: int | None = None,
) -> Samples:
    """Every box at every resize, in input pixels, on its image's real padded grid.

    These rows give the figures torchvision's own count gives (its transform, its
    ``AnchorGenerator`` on the backbone's feature maps of one padded image, ``box_iou``):
    each row knows its image's padded size, so matching uses the grid torchvision lays
    on it (:func:`~autoanchor.grid.matching.level_grid`).

    Args:
        shapes: ``[I, 2]`` image (width, height) as stored.
        wh: ``[N, 2]`` box sizes normalised by their image.
        image_index: ``[N]`` image of each box.
        xy: ``[N, 2]`` normalised centres, or None: each box is then counted at
            ``positions`` centres where it lies inside its image
            (:func:`~autoanchor.grid.matching.lattice_centres`).
        resizes: one rule per training size (None: the stored size); each box is
            counted once per rule, with weight ``1 / len(resizes)``.
        positions: centres per box without ``xy``; by default as many as keep the rows
            under :data:`EVAL_ROWS` (between 1 and 64; each box has its own centres,
            so one per box still spreads the boxes evenly over their images).

    Returns:
        Samples with positive sizes only (zero-size boxes are left out), weights
        summing to the number of boxes kept.
    """
    wh = torch.as_tensor(np.asarray(wh), dtype=torch.float64)
    index = torch.as_tensor(np.asarray(image_index), dtype=torch.long)
    usable = (wh > 0).all(dim=1)
    wh, index = wh[usable], index[usable]
    if xy is not None:
        xy = torch.as_tensor(np.asarray(xy), dtype=torch.float64)[usable]
        count = 1
    else:
        n_rows = max(1, wh.shape[0] * len(resizes))
        count = positions if positions is not None else max(1, min(64, EVAL_ROWS // n_rows))
        xy = lattice_centres(wh, count).reshape(-1, 2)
        wh = wh.repeat_interleave(count, dim=0)
        index = index.repeat_interleave(count, dim=0)
    parts = [boxes_to_input(shapes, wh, index, xy, resize) for resize in resizes]
    weight = torch.full((wh.shape[0] * len(resizes),), 1.0 / (count * len(resizes)), dtype=torch.float64)
    return Samples(
        torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), weight, torch.cat([p[2] for p in parts])
    )
