"""Box sizes as the detector trains on them: under yolov5's random scale augmentation.

yolov5's ``random_perspective`` scales every training mosaic by a factor drawn
from U(1 - scale, 1 + scale), ``scale = hyp['scale']`` (0.5 in its default
hyper-parameters), so a box of 40 px is seen at anything from 20 to 60 px. Anchors
fitted to the un-augmented sizes miss that spread. The functions here draw the
factors, seeded, and pool several draws of every image so that a search on the
result fits the distribution the detector actually trains on:

* :func:`scale_jittered_wh` from a :class:`~autoanchor.core.boxes.BoxSizes` (the
  letterbox and the per-image draw are :meth:`BoxSizes.pixel_wh`'s);
* :func:`jitter_wh` from pixel sizes you already have, with or without the image
  each box belongs to.

Nothing is filtered: boxes that shrink under 2 px are left to the search, which
drops them as yolov5 does. yolov5 also crops boxes at the border of the
augmented image; that loss is not modelled.
"""

from __future__ import annotations


import torch
from torch import Tensor

from .blocks import SizeBlocks, jitter_index
from .boxes import BoxSizes
from .metrics import check_wh
from .rng import resolve_generator
from .validate import check_device, check_int, check_scale

__all__ = ["DEFAULT_DRAWS", "YOLOV5_SCALE", "scale_range", "scale_jittered_wh", "jitter_wh", "jitter_blocks"]

YOLOV5_SCALE = 0.5
"""``hyp['scale']`` of yolov5's default hyper-parameters (``hyp.scratch-low.yaml``; its
``-med`` and ``-high`` files use 0.9)."""

DEFAULT_DRAWS = 8
"""Draws per image. Eight factors per image put every box at eight sizes spread over the
range, so the pooled sizes follow the augmented distribution closely, while the search
(whose cost hardly grows with the number of boxes, see :mod:`autoanchor.core.search`) stays
about as fast. Measured on coco128 (128 images, 929 boxes): the fitness of fixed anchors on
jittered sizes varies between seeds with a standard deviation of 0.0047 for one draw,
0.0022 for 4, 0.0016 for 8 and 0.0012 for 16; anchors fitted to 8 draws beat anchors
fitted to the plain sizes on each of 24 independently jittered test sets (3 fitting seeds
times 8 test seeds) by at least 0.002 (0.004 on average), while with 4 draws the margin
fell to 0.0005. Larger datasets need fewer draws (VOC:
0.0002 for 8), but 8 costs them little."""


def scale_range(scale: float) -> tuple[float, float]:
    """``(1 - scale, 1 + scale)``, the range of yolov5's scale factor.

    Raises:
        ValueError: unless ``0 <= scale < 1`` (a factor of 0 or less has no size).
    """
    scale = check_scale(scale)
    return 1.0 - scale, 1.0 + scale


def scale_jittered_wh(
    sizes: BoxSizes,
    img_size: float,
    *,
    scale: float = YOLOV5_SCALE,
    draws: int = DEFAULT_DRAWS,
    generator: torch.Generator | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Letterboxed box sizes under ``draws`` seeded draws of yolov5's scale augmentation.

    Each draw scales every image by its own factor from U(1 - scale, 1 + scale)
    (:meth:`BoxSizes.pixel_wh` with ``scale_jitter``); all of an image's boxes
    share its factor. The draws are stacked: rows ``d * N ... (d + 1) * N - 1``
    are draw ``d`` of boxes ``0 ... N - 1``.

    Args:
        sizes: the dataset's image and box sizes.
        img_size: training image size in pixels (long side), as for ``pixel_wh``.
        scale: yolov5's ``hyp['scale']``, in [0, 1); 0 gives ``draws`` copies of
            the plain sizes.
        draws: how many factors per image (see :data:`DEFAULT_DRAWS`).
        generator: the random generator, on ``device``; when omitted, a new one
            seeded with ``seed``, so that the same call gives the same sizes.
        seed: seeds the generator made when ``generator`` is omitted.
        device: where the result lives; defaults to the CPU.

    Returns:
        Tensor[N * draws, 2] float32: box (width, height) in pixels.

    Raises:
        ValueError: for a ``scale`` outside [0, 1), ``draws`` under 1, a negative
            seed or a bad ``img_size``.
        TypeError: if ``sizes`` is not a :class:`BoxSizes` or ``generator`` not a
            ``torch.Generator``.

    Example:
        >>> import numpy as np
        >>> sizes = BoxSizes(np.array([[640, 480]]), np.array([[0.5, 0.25]]), np.array([0]))
        >>> wh = scale_jittered_wh(sizes, 640, scale=0.5, draws=4, seed=0)
        >>> wh.shape, bool(((wh / sizes.pixel_wh(640)) >= 0.5).all())
        (torch.Size([4, 2]), True)
    """
    if not isinstance(sizes, BoxSizes):
        raise TypeError(f"sizes must be a BoxSizes, got {type(sizes).__name__}")
    device = check_device(device) or torch.device("cpu")
    image_index = torch.as_tensor(sizes.image_index, dtype=torch.long, device=device)
    wh = sizes.pixel_wh(img_size, device=device)
    return jitter_wh(wh, scale=scale, draws=draws, image_index=image_index, generator=generator, seed=seed)


def jitter_wh(
    wh: Tensor,
    *,
    scale: float = YOLOV5_SCALE,
    draws: int = DEFAULT_DRAWS,
    image_index: Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> Tensor:
    """Pixel box sizes under ``draws`` seeded draws of yolov5's scale augmentation.

    With ``image_index``, the boxes of one image share a factor per draw, as in
    training. Without it, every box gets its own factor: the pooled sizes then
    follow the same distribution (each box's factor is still uniform on the
    range), so any mean over boxes, such as the fitness, has the same expected
    value; only its spread between seeds differs.

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels of the letterboxed image.
        scale: yolov5's ``hyp['scale']``, in [0, 1).
        draws: how many factors per image or box (see :data:`DEFAULT_DRAWS`).
        image_index (Tensor[N], optional): integer image of each box.
        generator: the random generator, on ``wh``'s device; when omitted, a new
            one seeded with ``seed``.
        seed: seeds the generator made when ``generator`` is omitted.

    Returns:
        Tensor[N * draws, 2] of ``wh``'s dtype and device, draws stacked as in
        :func:`scale_jittered_wh`.

    Raises:
        ValueError: for a bad ``scale``, ``draws``, seed, or an ``image_index``
            that is not ``[N]`` non-negative integers.
        TypeError: if ``wh`` is not a floating-point tensor.

    Example:
        >>> jitter_wh(torch.tensor([[10.0, 20.0]]), scale=0.5, draws=3).shape
        torch.Size([3, 2])
    """
    check_wh(wh)
    low, high = scale_range(scale)
    draws = check_int("draws", draws, low=1)
    generator = resolve_generator(generator, wh.device, seed=seed)
    index, n_factors = jitter_index(wh, image_index)
    # One draw at a time, as SizeBlocks makes them (the same values on every device): the factors of a
    # draw, then its rows, without holding a [draws, N] product beside the result.
    result = torch.empty(draws * wh.shape[0], 2, dtype=wh.dtype, device=wh.device)  # [draws*N, 2]
    for rows in result.split(wh.shape[0]) if wh.shape[0] else ():
        factor = low + (high - low) * torch.rand(n_factors, generator=generator, device=wh.device, dtype=torch.float64)
        for start in range(0, wh.shape[0], _JITTER_CHUNK):
            part = slice(start, start + _JITTER_CHUNK)
            rows[part] = wh[part].double() * factor[index[part], None]
    return result


def jitter_blocks(
    wh: Tensor,
    *,
    scale: float = YOLOV5_SCALE,
    draws: int = DEFAULT_DRAWS,
    image_index: Tensor | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> SizeBlocks:
    """:func:`jitter_wh`'s rows made a block at a time instead of held at once.

    The same values in the same order (``materialise()`` gives ``jitter_wh(wh, ...)`` with the same
    ``seed``), drawn on ``wh``'s device and delivered on ``device`` (``wh``'s when omitted); every
    pass over the blocks draws them afresh from ``seed``.

    Raises:
        ValueError: for a bad ``scale``, ``draws`` or ``image_index``.
    """
    check_wh(wh)
    low, high = scale_range(scale)
    return SizeBlocks(wh, low=low, high=high, draws=draws, image_index=image_index, seed=seed, device=device)


# Boxes per step of jitter_wh's product (float64: 16 MiB per temporary).
_JITTER_CHUNK = 1 << 20
