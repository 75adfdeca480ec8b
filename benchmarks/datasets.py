"""Benchmark datasets: the shared real box statistics, letterboxing, and large tiled sets.

The shared statistics live in ``<workspace>/shared/data/NAME.npz`` (``shapes``
``[I, 2]`` image (width, height) px, ``wh`` ``[N, 2]`` box size normalised by its
image, ``image_index`` ``[N]``). Set ``AUTOANCHOR_SHARED_DATA`` to read them from
elsewhere.

Large sets are built by tiling a real set: the images and their boxes are repeated
until there are ``n_boxes`` boxes. In the ``"jitter"`` variant each box's width and
height are then multiplied by independent U(0.9, 1.1) factors (seeded), so no two
boxes are identical (the hard case for any method that deduplicates sizes); in the
``"plain"`` variant the copies are exact (real annotations repeat sizes a lot).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "VARIANTS",
    "Boxes",
    "Yolov5StyleDataset",
    "shared_data_dir",
    "load_shared",
    "letterbox_wh",
    "tile",
    "to_autoanchor",
    "to_yolov5_style",
]

DATASETS = ("coco128", "voc2012_trainval")
VARIANTS = ("jitter", "plain")
JITTER = (0.9, 1.1)


def shared_data_dir() -> Path:
    """Directory of the shared ``.npz`` statistics (``$AUTOANCHOR_SHARED_DATA`` overrides)."""
    override = os.environ.get("AUTOANCHOR_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Boxes:
    """Plain arrays of a dataset's statistics (no validation, no torch).

    Attributes:
        shapes: ``[I, 2]`` float64 image (width, height) in pixels.
        wh: ``[N, 2]`` float64 box (width, height) normalised by its image's size.
        image_index: ``[N]`` int64 row of ``shapes`` for each box.
        name: a label for tables.
    """

    shapes: np.ndarray
    wh: np.ndarray
    image_index: np.ndarray
    name: str = ""

    @property
    def n_boxes(self) -> int:
        return int(self.wh.shape[0])

    @property
    def n_images(self) -> int:
        return int(self.shapes.shape[0])


def load_shared(name: str) -> Boxes:
    """Read ``NAME.npz`` from :func:`shared_data_dir`.

    Raises:
        ValueError: if the file does not exist or lacks an array.
    """
    path = shared_data_dir() / f"{name}.npz"
    if not path.is_file():
        raise ValueError(f"no shared dataset {name!r}: {path} does not exist (set AUTOANCHOR_SHARED_DATA?)")
    with np.load(path) as archive:
        missing = {"shapes", "wh", "image_index"} - set(archive.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)}")
        return Boxes(
            shapes=archive["shapes"].astype(np.float64),
            wh=archive["wh"].astype(np.float64),
            image_index=archive["image_index"].astype(np.int64),
            name=name,
        )


def letterbox_wh(dataset, img_size: float = 640) -> np.ndarray:
    """Box sizes in pixels of the letterboxed image (long side ``img_size``), float32 ``[N, 2]``.

    Accepts :class:`Boxes` or an ``autoanchor.BoxSizes`` (vectorised:
    ``wh * (img_size * shapes / shapes.max(1))[image_index]``) or a yolov5-style
    object with ``.shapes`` and ``.labels`` (concatenated image by image, as yolov5
    does).
    """
    if hasattr(dataset, "image_index"):
        shapes = np.asarray(dataset.shapes, dtype=np.float64)
        scaled = img_size * shapes / shapes.max(1, keepdims=True)  # [I,2]
        return (np.asarray(dataset.wh) * scaled[np.asarray(dataset.image_index)]).astype(np.float32)
    if hasattr(dataset, "labels"):
        shapes = np.asarray(dataset.shapes, dtype=np.float64)
        scaled = img_size * shapes / shapes.max(1, keepdims=True)
        return np.concatenate([labels[:, 3:5] * s for s, labels in zip(scaled, dataset.labels)]).astype(np.float32)
    raise TypeError(f"cannot letterbox a {type(dataset).__name__}: need image_index or labels")


def tile(base: Boxes, n_boxes: int, *, variant: str = "jitter", seed: int = 0) -> Boxes:
    """Repeat ``base`` (images and boxes) until it has exactly ``n_boxes`` boxes.

    Whole copies of the dataset are stacked (copy ``c`` of image ``i`` is image
    ``c * I + i``); the last copy is cut after the box that reaches ``n_boxes``,
    keeping its images (some then hold fewer or no boxes).

    Args:
        base: the real statistics to repeat.
        n_boxes: boxes in the result.
        variant: ``"jitter"`` multiplies every box's width and height by
            independent U(0.9, 1.1) factors drawn from ``np.random.default_rng(seed)``
            (all boxes, the first copy too); ``"plain"`` repeats them exactly.
        seed: seed of the jitter.

    Returns:
        The tiled :class:`Boxes`, named like ``voc2012_trainval x63.4 jitter``.

    Raises:
        ValueError: on an unknown variant or a non-positive ``n_boxes``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if n_boxes < 1:
        raise ValueError(f"n_boxes must be positive, got {n_boxes}")
    copies = -(-n_boxes // base.n_boxes)  # ceil
    offsets = np.repeat(np.arange(copies, dtype=np.int64) * base.n_images, base.n_boxes)[:n_boxes]
    image_index = np.tile(base.image_index, copies)[:n_boxes] + offsets
    shapes = np.tile(base.shapes, (copies, 1))
    wh = np.tile(base.wh, (copies, 1))[:n_boxes]
    if variant == "jitter":
        rng = np.random.default_rng(seed)
        wh = wh * rng.uniform(*JITTER, size=wh.shape)
    name = f"{base.name} x{n_boxes / base.n_boxes:.1f} {variant}"
    return Boxes(shapes=shapes, wh=wh, image_index=image_index, name=name)


def to_autoanchor(boxes: Boxes):
    """The same statistics as an ``autoanchor.BoxSizes`` (imports autoanchor lazily)."""
    from autoanchor.core.boxes import BoxSizes

    return BoxSizes(boxes.shapes, boxes.wh, boxes.image_index, source=boxes.name)


@dataclass
class Yolov5StyleDataset:
    """What yolov5's ``kmean_anchors`` reads from a ``LoadImagesAndLabels``.

    Attributes:
        shapes: ``[I, 2]`` image (width, height) in pixels.
        labels: one ``[m, 5]`` float32 array per image, rows ``class, x, y, w, h``
            normalised (class 0, centre 0.5, 0.5 here: only w, h matter).
    """

    shapes: np.ndarray
    labels: list


def to_yolov5_style(boxes: Boxes) -> Yolov5StyleDataset:
    """Split the statistics into per-image yolov5 label arrays."""
    order = np.argsort(boxes.image_index, kind="stable")
    counts = np.bincount(boxes.image_index, minlength=boxes.n_images)
    rows = np.zeros((boxes.n_boxes, 5), dtype=np.float32)
    rows[:, 1:3] = 0.5
    rows[:, 3:5] = boxes.wh[order]
    labels = np.split(rows, np.cumsum(counts)[:-1])
    return Yolov5StyleDataset(shapes=boxes.shapes.copy(), labels=labels)
