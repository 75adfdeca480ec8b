"""What a loader reads and skips: :class:`LoadSummary`, and the :class:`Collector` formats fill.

A format's reader walks its files and tells a :class:`Collector` what it kept (images,
their boxes and, where known, the boxes' centres) and what it skipped and why. The
collector turns that into a :class:`Loaded`, the raw result that the cache stores and
the loader validates into a :class:`~autoanchor.core.boxes.BoxSizes`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from tqdm import tqdm

__all__ = ["Collector", "LoadSummary", "Loaded", "clip_oversize", "clip_to_image", "progress"]

#: Overhangs up to this many pixels are rounding in converted labels: clipped without a message.
CLIP_TOLERANCE_PX = 1.0


@dataclass(frozen=True)
class LoadSummary:
    """What a load read, kept and skipped.

    Attributes:
        source: the source as given (a path, or the kind of object).
        format: the name of the format that read it (``"builtin"``, ``"boxsizes"``,
            ``"object"``, ``"npz"``, ``"yolo"``, ``"coco"``, ``"voc"`` or a registered one).
        n_images: images kept (images without boxes included).
        n_boxes: boxes kept.
        skipped_images: images left out: unreadable or missing image, corrupt label
            or annotation file, corrupt size. Their boxes are not counted in ``skipped_boxes``.
        skipped_boxes: boxes dropped one by one: zero size, malformed, duplicated row,
            unknown image, entirely outside the image.
        excluded_boxes: boxes left out on purpose by an option (COCO ``iscrowd``
            unless ``include_crowd``; VOC ``difficult`` with ``drop_difficult``).
        missing_labels: images without a label file (YOLO), kept with no boxes.
        messages: one line per problem, naming the file, in reading order.
        cache_file: the cache file read or written, if any.
        from_cache: whether the result came from the cache without reading the files.
        clipped_boxes: boxes kept but clipped to their image because they overhung it
            by more than 1 px (counted in ``n_boxes``).
    """

    source: str
    format: str
    n_images: int
    n_boxes: int
    skipped_images: int = 0
    skipped_boxes: int = 0
    excluded_boxes: int = 0
    missing_labels: int = 0
    messages: tuple[str, ...] = field(default=(), repr=False)
    cache_file: Optional[str] = None
    from_cache: bool = False
    clipped_boxes: int = 0

    def __str__(self) -> str:
        parts = [f"{self.n_images} images", f"{self.n_boxes} boxes"]
        if self.skipped_images:
            parts.append(f"{self.skipped_images} images skipped")
        if self.skipped_boxes:
            parts.append(f"{self.skipped_boxes} boxes skipped")
        if self.clipped_boxes:
            parts.append(f"{self.clipped_boxes} boxes clipped to their image")
        if self.excluded_boxes:
            parts.append(f"{self.excluded_boxes} boxes excluded by option")
        if self.missing_labels:
            parts.append(f"{self.missing_labels} images without a label file")
        cached = " (from cache)" if self.from_cache else ""
        return f"{self.source} [{self.format}]{cached}: " + ", ".join(parts)


@dataclass
class Loaded:
    """Raw result of a file-based reader, before validation; what the cache stores."""

    shapes: np.ndarray  # [I,2] float64 px
    wh: np.ndarray  # [N,2] float64 normalised
    image_index: np.ndarray  # [N] int64
    names: list[str]
    skipped_images: int = 0
    skipped_boxes: int = 0
    excluded_boxes: int = 0
    missing_labels: int = 0
    messages: list[str] = field(default_factory=list)
    xy: Optional[np.ndarray] = None  # [N,2] float32 normalised centres, None if unknown
    clipped_boxes: int = 0


class Collector:
    """Accumulates kept images and boxes, and problems, while a reader walks a dataset.

    Boxes are ``wh [m, 2]`` (width, height) as fractions of their image, with optional
    centres ``xy [m, 2]`` likewise; if any box comes without a centre, the result has none.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self._shapes: list[tuple[float, float]] = []
        self._wh: list[np.ndarray] = []
        self._xy: list[np.ndarray | None] = []
        self._index: list[np.ndarray] = []
        self.skipped_images = 0
        self.skipped_boxes = 0
        self.excluded_boxes = 0
        self.missing_labels = 0
        self.clipped_boxes = 0
        self.messages: list[str] = []

    def add_image(
        self, name: str, width: float, height: float, wh: np.ndarray | None = None, xy: np.ndarray | None = None
    ) -> int:
        """Keep an image of ``width x height`` px with boxes ``wh`` (and centres ``xy``); return its row."""
        row = len(self._shapes)
        self._shapes.append((width, height))
        self.names.append(name)
        if wh is not None:
            self.add_boxes(row, wh, xy)
        return row

    def add_boxes(self, row: int | np.ndarray, wh: np.ndarray, xy: np.ndarray | None = None) -> None:
        """Add boxes ``wh [m, 2]`` (centres ``xy [m, 2]``) to the image at ``row`` (or one row per box)."""
        wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
        if not len(wh):
            return
        self._wh.append(wh)
        self._xy.append(None if xy is None else np.asarray(xy, dtype=np.float64).reshape(-1, 2))
        self._index.append(np.broadcast_to(np.asarray(row, dtype=np.int64), (len(wh),)).copy())

    def shape(self, row: int) -> tuple[float, float]:
        """(width, height) in px of a kept image."""
        return self._shapes[row]

    def skip_image(self, name: str, reason: str) -> None:
        self.skipped_images += 1
        self.messages.append(f"{name}: {reason}; image skipped")

    def skip_boxes(self, name: str, count: int, reason: str | None) -> None:
        """Count ``count`` dropped boxes of ``name``; ``reason=None`` adds no message (already named)."""
        self.skipped_boxes += count
        if reason is not None:
            self.messages.append(f"{name}: {reason}; {count} box{'es' if count != 1 else ''} skipped")

    def clip_boxes(self, name: str, count: int) -> None:
        """Note ``count`` kept boxes of ``name`` that were clipped to their image."""
        self.clipped_boxes += count
        self.messages.append(f"{name}: {count} box{'es' if count != 1 else ''} partly outside the image, clipped to it")

    def exclude_boxes(self, count: int) -> None:
        """Note boxes left out on purpose by an option (not a problem: no message)."""
        self.excluded_boxes += count

    def missing_label(self) -> None:
        """Note an image kept without a label file."""
        self.missing_labels += 1

    def result(self) -> Loaded:
        shapes = np.asarray(self._shapes, dtype=np.float64).reshape(-1, 2)
        wh = np.concatenate(self._wh) if self._wh else np.zeros((0, 2))
        index = np.concatenate(self._index) if self._index else np.zeros(0, dtype=np.int64)
        xy = None
        if all(part is not None for part in self._xy):
            xy = np.concatenate(self._xy).astype(np.float32) if self._xy else np.zeros((0, 2), np.float32)
        # One canonical order for every format: images in reading order, each image's boxes together.
        order = np.argsort(index, kind="stable")
        return Loaded(
            shapes, wh[order], index[order], self.names, self.skipped_images, self.skipped_boxes,
            self.excluded_boxes, self.missing_labels, self.messages, None if xy is None else xy[order],
            self.clipped_boxes,
        )


def clip_to_image(
    corners: np.ndarray, width: float | np.ndarray, height: float | np.ndarray, *,
    sizes: np.ndarray | None = None, tolerance: float | np.ndarray = CLIP_TOLERANCE_PX,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clip boxes to their image: the one policy of every format.

    A box partly outside its image is clipped to it; a box with no area left inside
    (entirely outside, or empty) is dropped.

    Args:
        corners: ``[m, 4]`` boxes ``x0, y0, x1, y1`` in pixels (or in any unit of
            ``width`` and ``height``).
        width: image width, one for all boxes or ``[m]``.
        height: image height, likewise.
        sizes: optional ``[m, 2]`` box (width, height) as the source gives them, used
            for the boxes that need no clipping (``x1 - x0`` may round differently).
        tolerance: overhang that is rounding, not a problem: 1 px by default;
            broadcastable to ``[m, 4]`` in the unit of ``corners``.

    Returns:
        ``(kept [m] bool, clipped [m] bool, wh [k, 2], xy [k, 2])``: the boxes with area
        inside the image; which of them overhung it by more than ``tolerance`` (less
        is rounding in converted labels and is clipped silently); the kept
        boxes' size and centre as fractions of the image (``k = kept.sum()``).
    """
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 4)
    width, height = np.asarray(width, dtype=np.float64), np.asarray(height, dtype=np.float64)
    size = np.broadcast_to(np.stack(np.broadcast_arrays(width, height, width, height), -1), corners.shape)  # [m,4]
    inside = np.clip(corners, 0.0, size)  # [m,4]
    kept = (inside[:, 2] > inside[:, 0]) & (inside[:, 3] > inside[:, 1])
    overhang = np.abs(corners - inside)  # [m,4]
    clipped = kept & (overhang > tolerance).any(1)
    box, image = inside[kept], size[kept, :2]
    wh = (box[:, 2:] - box[:, :2]) / image
    if sizes is not None:
        untouched = ~overhang[kept].any(1)
        wh[untouched] = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)[kept][untouched] / image[untouched]
    xy = np.clip((box[:, 2:] + box[:, :2]) / 2 / image, 0.0, 1.0)
    return kept, clipped, wh, xy


def progress(iterable: Iterable[Any], *, total: int, desc: str, unit: str, enabled: bool) -> Iterable[Any]:
    """A tqdm bar over ``iterable`` when ``enabled`` (on stderr, removed when done)."""
    return tqdm(iterable, total=total, desc=desc, unit=f" {unit}", disable=not enabled, leave=False)


def clip_oversize(
    shapes: np.ndarray, wh: np.ndarray, image_index: np.ndarray, xy: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, list[str]]:
    """The policy of :func:`clip_to_image` for sources that give sizes (and centres) as fractions of the image.

    Only boxes that overhang their image by more than :data:`CLIP_TOLERANCE_PX` change: without
    centres, a side above the image's is cut to it; with centres, the box is clipped to the
    image (dropped when nothing of it is inside). Every other value is returned untouched.

    Args:
        shapes: ``[I, 2]`` image (width, height) px.
        wh: ``[N, 2]`` box sizes as fractions of the image.
        image_index: ``[N]`` image of each box.
        xy: ``[N, 2]`` box centres as fractions of the image, or None.

    Returns:
        ``(kept [N] bool, wh [k, 2], xy [k, 2] or None, clipped [N] bool, messages)``, one message per
        clipped or dropped box (``box 3 (960x480 px) in image 0 (640x480)``).
    """
    size = np.asarray(shapes, dtype=np.float64)[image_index]  # [N,2] px
    wh = np.asarray(wh, dtype=np.float64)
    if xy is None:
        clipped = ((wh - 1.0) * size > CLIP_TOLERANCE_PX).any(1)
        kept = np.ones(wh.shape[0], dtype=bool)
        new_wh = np.where(clipped[:, None], np.minimum(wh, 1.0), wh)
        new_xy = None
    else:
        centre = np.asarray(xy, dtype=np.float64)
        low, high = centre - wh / 2, centre + wh / 2  # [N,2] fractions
        overhang = np.maximum(np.maximum(-low, high - 1.0), 0.0) * size  # [N,2] px
        clipped = (overhang > CLIP_TOLERANCE_PX).any(1)
        inside_low, inside_high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
        kept = ~clipped | (inside_high > inside_low).all(1)
        new_wh = np.where(clipped[:, None], inside_high - inside_low, wh)[kept]
        new_xy = np.where(clipped[:, None], (inside_high + inside_low) / 2, centre)[kept].astype(np.asarray(xy).dtype)
    messages = [
        f"box {j} ({wh[j, 0] * size[j, 0]:g}x{wh[j, 1] * size[j, 1]:g} px) in image {int(image_index[j])} "
        f"({size[j, 0]:g}x{size[j, 1]:g}) {'clipped to it' if kept[j] else 'is outside it: skipped'}"
        for j in np.flatnonzero(clipped)
    ]
    if xy is None:
        return kept, new_wh, new_xy, clipped, messages
    return kept, new_wh, new_xy, clipped & kept, messages
