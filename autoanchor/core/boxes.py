"""Box statistics of a detection dataset, independent of where they were read from.

:class:`BoxSizes` is the one currency between the dataset adapters
(:mod:`autoanchor.io.datasets`) and everything that searches or checks anchors: the
pixel size of every image and the size of every box as a fraction of its image,
exactly what YOLO label files store. :meth:`BoxSizes.pixel_wh` turns them into box
sizes in pixels of the letterboxed training image.

It also holds the few facts about box and anchor sizes that every layer shares:
which boxes a search looks at (:func:`searchable_mask`), the smallest anchor
side (:data:`MIN_ANCHOR_PX`) and the order of anchors within a set
(:func:`sort_by_area`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .rng import resolve_generator
from .validate import check_device, check_float

__all__ = ["BoxSizes", "MIN_BOX_PX", "MIN_ANCHOR_PX", "searchable_mask", "searchable_boxes", "sort_by_area"]

MIN_BOX_PX = 2.0
"""Boxes with both sides under this many pixels are left out of searches and checks (yolov5's rule)."""

MIN_ANCHOR_PX = 2.0
"""Anchors never shrink below this many pixels per side (yolov5's rule)."""


def searchable_mask(wh: Tensor) -> Tensor:
    """Which boxes a search or check looks at: ``Tensor[N, 2] -> bool Tensor[N]``.

    yolov5 keeps a box when either side reaches :data:`MIN_BOX_PX`; a box with a
    zero side has no log size, so it is left out too.

    Example:
        >>> searchable_mask(torch.tensor([[1.0, 1.5], [1.0, 3.0], [0.0, 9.0]]))
        tensor([False,  True, False])
    """
    return (wh >= MIN_BOX_PX).any(1) & (wh > 0).all(1)


def searchable_boxes(wh: Tensor) -> Tensor:
    """The rows of ``wh [N, 2]`` that :func:`searchable_mask` keeps, ``[M, 2]`` in the same order."""
    return wh[searchable_mask(wh)]


def sort_by_area(anchors: Tensor) -> Tensor:
    """Sort ``[..., n, 2]`` anchors by area (width times height) within each set, stable on ties.

    Example:
        >>> sort_by_area(torch.tensor([[4.0, 4.0], [1.0, 2.0]]))
        tensor([[1., 2.],
                [4., 4.]])
    """
    order = anchors.prod(-1).argsort(dim=-1, stable=True)
    return anchors.gather(-2, order[..., None].expand_as(anchors))


def _image_name(names: Sequence[str] | None, index: int) -> str:
    if names is not None and 0 <= index < len(names):
        return f"image {index} ({names[index]})"
    return f"image {index}"


@dataclass(frozen=True, eq=False)
class BoxSizes:
    """Image sizes and normalised box sizes of a dataset.

    Args:
        shapes: ``[I, 2]`` image (width, height) in pixels, as stored on disk
            (after EXIF orientation, as yolov5 reads them).
        wh: ``[N, 2]`` box (width, height) divided by its image's (width, height),
            as in YOLO labels. Values above 1 are allowed (boxes that overhang).
        image_index: ``[N]`` row of ``shapes`` that each box belongs to.
        image_names: optional name of each image (a file path, say), used in
            error messages.
        source: where the statistics came from, for logs and reports.
        xy: optional ``[N, 2]`` float32 centre (x, y) of each box as a fraction of its
            image's (width, height), in [0, 1]; ``None`` when the source has no positions
            (box sizes alone, an ``.npz`` without ``xy``).

    Raises:
        ValueError: on wrong shapes, an empty dataset, non-finite or non-positive
            image sizes, non-finite or negative box sizes, an image index out of
            range, or centres ``xy`` of the wrong shape or outside [0, 1]; the message
            names the offending image.

    Example:
        >>> sizes = BoxSizes(np.array([[640, 480]]), np.array([[0.5, 0.25]]), np.array([0]))
        >>> sizes.pixel_wh(640)
        tensor([[320., 120.]])
    """

    shapes: np.ndarray
    wh: np.ndarray
    image_index: np.ndarray
    image_names: Sequence[str] | None = field(default=None, repr=False)
    source: str = ""
    xy: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        shapes = np.asarray(self.shapes, dtype=np.float64)
        wh = np.asarray(self.wh, dtype=np.float64)
        image_index = np.asarray(self.image_index)
        if shapes.ndim != 2 or shapes.shape[1] != 2:
            raise ValueError(f"shapes must be [n_images, 2] (width, height), got shape {tuple(shapes.shape)}")
        if wh.ndim != 2 or wh.shape[1] != 2:
            raise ValueError(f"wh must be [n_boxes, 2] (width, height), got shape {tuple(wh.shape)}")
        if image_index.shape != (wh.shape[0],):
            raise ValueError(
                f"image_index must be [n_boxes] = [{wh.shape[0]}], got shape {tuple(image_index.shape)}"
            )
        if image_index.size and not np.issubdtype(image_index.dtype, np.integer):
            raise ValueError(f"image_index must hold integers, got dtype {image_index.dtype}")
        image_index = image_index.astype(np.int64)
        if self.image_names is not None and len(self.image_names) != shapes.shape[0]:
            raise ValueError(
                f"image_names has {len(self.image_names)} entries for {shapes.shape[0]} images"
            )
        if wh.shape[0] == 0:
            where = f" in {self.source}" if self.source else ""
            raise ValueError(f"the dataset has no boxes{where} ({shapes.shape[0]} images)")
        bad_shape = ~np.isfinite(shapes).all(1) | (shapes <= 0).any(1)
        if bad_shape.any():
            i = int(np.flatnonzero(bad_shape)[0])
            raise ValueError(
                f"{_image_name(self.image_names, i)} has size {shapes[i].tolist()}; "
                "width and height must be finite and positive"
            )
        out_of_range = (image_index < 0) | (image_index >= shapes.shape[0])
        if out_of_range.any():
            j = int(np.flatnonzero(out_of_range)[0])
            raise ValueError(
                f"box {j} refers to image {int(image_index[j])}, but there are {shapes.shape[0]} images"
            )
        bad_box = ~np.isfinite(wh).all(1) | (wh < 0).any(1)
        if bad_box.any():
            j = int(np.flatnonzero(bad_box)[0])
            i = int(image_index[j])
            raise ValueError(
                f"{_image_name(self.image_names, i)} has a box of size {wh[j].tolist()}; "
                "box sizes must be finite and non-negative"
            )
        if self.xy is not None:
            xy = np.asarray(self.xy, dtype=np.float32)
            if xy.shape != wh.shape:
                raise ValueError(f"xy must be [n_boxes, 2] = [{wh.shape[0]}, 2], got shape {tuple(xy.shape)}")
            bad_xy = ~np.isfinite(xy).all(1) | (xy < 0).any(1) | (xy > 1).any(1)
            if bad_xy.any():
                j = int(np.flatnonzero(bad_xy)[0])
                raise ValueError(
                    f"{_image_name(self.image_names, int(image_index[j]))} has a box centred at {xy[j].tolist()}; "
                    "centres must be fractions of the image in [0, 1]"
                )
            object.__setattr__(self, "xy", xy)
        object.__setattr__(self, "shapes", shapes)
        object.__setattr__(self, "wh", wh)
        object.__setattr__(self, "image_index", image_index)

    @classmethod
    def from_labels(
        cls,
        shapes: np.ndarray,
        labels: Sequence[np.ndarray],
        *,
        image_names: Sequence[str] | None = None,
        source: str = "",
    ) -> BoxSizes:
        """Build from yolov5-style per-image labels.

        Args:
            shapes: ``[I, 2]`` image (width, height) in pixels.
            labels: one ``[m, 5]`` array per image, rows ``class, x, y, w, h`` with
                ``x, y, w, h`` normalised to the image; ``m`` may be 0.
            image_names: optional name of each image, for error messages.
            source: where the labels came from.

        Raises:
            ValueError: if the counts disagree or a label array is not ``[m, 5]``;
                the message names the image.
        """
        shapes = np.asarray(shapes, dtype=np.float64)
        if shapes.ndim != 2 or shapes.shape[1] != 2:
            raise ValueError(f"shapes must be [n_images, 2] (width, height), got shape {tuple(shapes.shape)}")
        if len(labels) != shapes.shape[0]:
            raise ValueError(f"got {len(labels)} label arrays for {shapes.shape[0]} images")
        counts = np.fromiter((len(rows) for rows in labels), dtype=np.int64, count=len(labels))
        try:  # fast path: one concatenation; a malformed array makes it fail or mis-shape
            rows = np.concatenate([np.asarray(r, dtype=np.float64).reshape(-1, 5) for r in labels if len(r)])
            well_formed = all(np.shape(r)[1:] == (5,) for r in labels if len(r))
        except ValueError:
            well_formed = False
        if not well_formed:
            for i, image_labels in enumerate(labels):
                try:
                    shape = np.asarray(image_labels, dtype=np.float64).shape
                except (TypeError, ValueError) as error:  # ragged rows, text
                    raise ValueError(
                        f"{_image_name(image_names, i)} has unreadable labels ({error}); "
                        "expected [m, 5] rows of class, x, y, w, h"
                    ) from None
                if len(image_labels) and (len(shape) != 2 or shape[1] != 5):
                    raise ValueError(
                        f"{_image_name(image_names, i)} has labels of shape {tuple(shape)}; "
                        "expected [m, 5] rows of class, x, y, w, h"
                    )
        if counts.sum() == 0:
            rows = np.zeros((0, 5))
        wh = rows[:, 3:5]
        image_index = np.repeat(np.arange(len(labels), dtype=np.int64), counts)
        return cls(shapes, wh, image_index, image_names=image_names, source=source)

    @classmethod
    def from_xyxy(
        cls,
        boxes_per_image: Sequence[Any],
        image_sizes: Sequence[Sequence[float]],
        *,
        order: str = "hw",
        image_names: Sequence[str] | None = None,
        source: str = "boxes",
    ) -> BoxSizes:
        """Build from box corners in pixels that you already hold, image by image.

        Boxes partly outside their image are clipped to it and boxes with no area
        inside it are left out, the policy of every dataset format.

        Args:
            boxes_per_image: one ``[m, 4]`` array or tensor per image, rows ``x0, y0,
                x1, y1`` in pixels (torchvision's ``target["boxes"]``); ``m`` may be 0.
            image_sizes: one size per image, in pixels: ``(height, width)`` as
                torchvision gives them (``image.shape[-2:]``, ``canvas_size``) with the
                default ``order="hw"``, or ``(width, height)`` with ``order="wh"``.
            order: ``"hw"`` or ``"wh"``, the order of ``image_sizes``.
            image_names: optional name of each image, for messages.
            source: where the boxes came from, for logs.

        Returns:
            The :class:`BoxSizes`, with box centres (``xy``).

        Raises:
            ValueError: counts that disagree, an array not ``[m, 4]``, a non-finite
                corner, ``x1 < x0`` or ``y1 < y0`` (the message names the image), an
                unknown ``order``, or no box left.

        Example:
            >>> sizes = BoxSizes.from_xyxy([np.array([[0, 0, 32, 16]])], [(480, 640)])
            >>> sizes.shapes.tolist(), sizes.wh.tolist()
            ([[640.0, 480.0]], [[0.05, 0.0333]])
        """
        if order not in ("hw", "wh"):
            raise ValueError(f"order must be 'hw' (height, width) or 'wh', got {order!r}")
        sizes = np.asarray(image_sizes, dtype=np.float64)
        if sizes.ndim != 2 or sizes.shape[1] != 2:
            raise ValueError(f"image_sizes must be one (height, width) pair per image, got shape {tuple(sizes.shape)}")
        shapes = sizes[:, ::-1].copy() if order == "hw" else sizes
        if len(boxes_per_image) != len(shapes):
            raise ValueError(f"got {len(boxes_per_image)} box arrays for {len(shapes)} image sizes")
        wh_parts, xy_parts, index_parts = [], [], []
        for i, boxes in enumerate(boxes_per_image):
            if hasattr(boxes, "detach"):
                boxes = boxes.detach().cpu().double().numpy()
            corners = np.asarray(boxes, dtype=np.float64)
            if corners.size == 0:
                continue
            if corners.ndim != 2 or corners.shape[1] != 4:
                raise ValueError(
                    f"{_image_name(image_names, i)} has boxes of shape {tuple(corners.shape)}; expected [m, 4]"
                )
            if not np.isfinite(corners).all() or (corners[:, 2:] < corners[:, :2]).any():
                j = int(np.flatnonzero(~np.isfinite(corners).all(1) | (corners[:, 2:] < corners[:, :2]).any(1))[0])
                raise ValueError(
                    f"{_image_name(image_names, i)} has a box {corners[j].tolist()}; expected finite x0, y0, x1, y1 "
                    "with x1 >= x0 and y1 >= y0, in pixels"
                )
            size = np.tile(shapes[i], 2)  # [4] w, h, w, h
            inside = np.clip(corners, 0.0, size)  # [m,4]
            kept = (inside[:, 2] > inside[:, 0]) & (inside[:, 3] > inside[:, 1])
            inside = inside[kept]
            wh_parts.append((inside[:, 2:] - inside[:, :2]) / shapes[i])
            xy_parts.append(np.clip((inside[:, 2:] + inside[:, :2]) / 2 / shapes[i], 0.0, 1.0))
            index_parts.append(np.full(len(inside), i, dtype=np.int64))
        wh = np.concatenate(wh_parts) if wh_parts else np.zeros((0, 2))
        xy = np.concatenate(xy_parts) if xy_parts else np.zeros((0, 2))
        index = np.concatenate(index_parts) if index_parts else np.zeros(0, dtype=np.int64)
        return cls(shapes, wh, index, image_names=image_names, source=source, xy=xy.astype(np.float32))

    @property
    def n_images(self) -> int:
        return int(self.shapes.shape[0])

    @property
    def n_boxes(self) -> int:
        return int(self.wh.shape[0])

    def pixel_wh(
        self,
        img_size: float,
        *,
        scale_jitter: tuple[float, float] | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Box sizes in pixels of the letterboxed training image.

        Each image is scaled so that its long side is ``img_size`` (yolov5's
        letterbox); its boxes scale with it.

        Args:
            img_size: training image size in pixels (long side).
            scale_jitter: optional ``(low, high)``: each image's scale is further
                multiplied by a factor drawn from U(low, high), as yolov5's
                ``check_anchors`` does with (0.9, 1.1) to mimic scale augmentation.
            generator: the random generator for the jitter (on ``device``); a fresh
                one seeded with :data:`autoanchor.core.rng.DEFAULT_SEED` when omitted.
            device: where the result lives; defaults to the CPU.

        Returns:
            Tensor[N, 2] float32, box (width, height) in pixels.

        Raises:
            ValueError: for an ``img_size`` that is not a positive number, or a device
                this machine lacks (:func:`~autoanchor.core.validate.check_device`).
        """
        img_size = check_float("img_size", img_size, low=0, low_open=True, what="(pixels)")
        device = check_device(device) or torch.device("cpu")
        shapes = torch.as_tensor(self.shapes, dtype=torch.float64, device=device)
        image_scale = img_size / shapes.amax(1, keepdim=True)  # [I,1]
        if scale_jitter is not None:
            low, high = scale_jitter
            generator = resolve_generator(generator, device)
            factor = torch.rand(shapes.shape[0], 1, generator=generator, device=device, dtype=torch.float64)
            image_scale = image_scale * (low + (high - low) * factor)
        letterboxed = shapes * image_scale  # [I,2]
        index = torch.as_tensor(self.image_index, device=device)
        wh = torch.as_tensor(self.wh, dtype=torch.float64, device=device)
        return (wh * letterboxed[index]).float()
