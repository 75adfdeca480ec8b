"""PyTorch dataset objects: torchvision's datasets, their wrappers, and any map-style detection dataset.

Containers are unwrapped without reading anything: a ``DataLoader`` (its ``.dataset``;
batching, sampling and workers play no part), torchvision's
``wrap_dataset_for_transforms_v2`` wrapper (the dataset it wraps), a ``Subset`` (only
its images, in its order) and a ``ConcatDataset`` (its members in order, nested
ones too). Each dataset left is then read

* from the annotations it holds, when an *annotation reader* recognises it (formats
  register them with :func:`register_annotation_reader`): torchvision's ``CocoDetection``
  (its pycocotools index), ``VOCDetection`` (its ``.xml`` files), a DeepForest-style
  dataset (its ``annotations`` frame, image sizes from the image headers); no image is
  decoded, and the dataset's transforms play no part;
* otherwise by iterating it once (with a progress bar if ``progress=True``): ``ds[i]`` must be
  ``(image, target, ...)`` in torchvision's detection convention, ``target["boxes"]``
  ``[N, 4]`` in pixels, ``x0, y0, x1, y1``, or a ``tv_tensors.BoundingBoxes`` in any
  of its axis-aligned formats. The image's size is taken from what the dataset returns
  (a tensor ``[..., H, W]``, a PIL image, a numpy ``[H, W, C]`` array, else the boxes'
  ``canvas_size``): with a resizing transform, the resized images and boxes are what
  is measured.

Nothing here imports torch or torchvision: objects are recognised by their attributes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from .corners import add_image_corners, merge
from .registry import Request, register_format
from .summary import Collector, Loaded, progress

__all__ = ["register_annotation_reader"]


@dataclass(frozen=True)
class _Reader:
    name: str
    accept: Callable[[Any], bool]
    read: Callable[[Any, Optional[list[int]], Request], Loaded]


_READERS: list[_Reader] = []


def register_annotation_reader(
    name: str, *, accept: Callable[[Any], bool], read: Callable[[Any, Optional[list[int]], Request], Loaded]
) -> None:
    """Read a kind of dataset object from the annotations it holds instead of iterating it.

    Args:
        name: the kind, for messages (``"CocoDetection"``).
        accept: ``accept(dataset) -> bool``, by attributes only (cheap, imports nothing).
        read: ``read(dataset, positions, request) -> Loaded``: the images at
            ``positions`` (indices of ``dataset``, in that order; ``None`` for all).
    """
    _READERS.append(_Reader(name, accept, read))


@dataclass(frozen=True)
class _Part:
    dataset: Any
    positions: Optional[list[int]]  # None: all of it


def _is_loader(obj: Any) -> bool:
    return hasattr(obj, "dataset") and (hasattr(obj, "batch_sampler") or hasattr(obj, "collate_fn"))


def _is_v2_wrapper(obj: Any) -> bool:
    return hasattr(obj, "_dataset") and hasattr(obj, "_wrapper")


def _is_subset(obj: Any) -> bool:
    return hasattr(obj, "dataset") and hasattr(obj, "indices")


def _is_concat(obj: Any) -> bool:
    return isinstance(getattr(obj, "datasets", None), (list, tuple)) and hasattr(obj, "cumulative_sizes")


def _length(obj: Any) -> int:
    try:
        return len(obj)
    except TypeError as error:
        raise TypeError(
            f"{type(obj).__name__} has no length ({error}): an iterable-style dataset cannot be indexed; pass a "
            "map-style dataset (ds[i] -> (image, target)) or the annotation files"
        ) from None


def _parts(obj: Any, positions: Optional[list[int]] = None, depth: int = 0) -> list[_Part]:
    """The datasets inside ``obj`` with the positions used of each, in order."""
    if depth > 50:
        raise ValueError(f"{type(obj).__name__}: datasets nested more than 50 deep")
    if _is_loader(obj):
        return _parts(obj.dataset, positions, depth + 1)
    if _is_v2_wrapper(obj):
        return _parts(obj._dataset, positions, depth + 1)
    if _is_subset(obj):
        indices = [int(i) for i in obj.indices]
        chosen = indices if positions is None else [indices[i] for i in positions]
        return _parts(obj.dataset, chosen, depth + 1)
    if _is_concat(obj):
        bounds = [0, *[int(b) for b in obj.cumulative_sizes]]
        wanted = range(bounds[-1]) if positions is None else positions
        runs: list[tuple[int, list[int]]] = []  # (member, local positions), consecutive runs in order
        for position in wanted:
            member = int(np.searchsorted(bounds, position, side="right")) - 1
            if not 0 <= member < len(obj.datasets):
                raise IndexError(f"position {position} is outside the ConcatDataset of {bounds[-1]} items")
            if not runs or runs[-1][0] != member:
                runs.append((member, []))
            runs[-1][1].append(position - bounds[member])
        found = []
        for member, local in runs:
            whole = positions is None
            found += _parts(obj.datasets[member], None if whole else local, depth + 1)
        return found
    return [_Part(obj, positions)]


def _reader_for(dataset: Any) -> Optional[_Reader]:
    return next((reader for reader in _READERS if reader.accept(dataset)), None)


def _map_style(dataset: Any) -> bool:
    return (
        hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
        and not isinstance(dataset, (str, bytes, Mapping, os.PathLike))
    )


def _accept(request: Request) -> bool:
    source = request.source
    if request.path is not None or isinstance(source, (str, bytes, Mapping)) or source is None:
        return False
    if not (_is_loader(source) or _is_v2_wrapper(source) or _is_subset(source) or _is_concat(source)):
        return _reader_for(source) is not None or _map_style(source)
    try:
        parts = _parts(source)
    except (TypeError, ValueError, IndexError):
        return True  # a container: its reader names the problem
    return all(_reader_for(part.dataset) is not None or _map_style(part.dataset) for part in parts)


# -- iterating ---------------------------------------------------------------------

_CONVENTION = (
    "expected ds[i] = (image, target, ...) with target['boxes'] [N, 4] x0, y0, x1, y1 in pixels (torchvision's "
    "detection convention) or a tv_tensors.BoundingBoxes"
)


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a tensor (tv_tensors subclasses included), any dtype and device
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _image_size(image: Any, boxes: Any) -> Optional[tuple[float, float]]:
    """(width, height) in pixels of an item's image, or None."""
    if hasattr(image, "size") and hasattr(image, "mode") and isinstance(image.size, tuple):  # PIL
        return float(image.size[0]), float(image.size[1])
    shape = getattr(image, "shape", None)
    if shape is not None and len(shape) >= 2:
        numpy_hwc = type(image).__module__ == "numpy" and len(shape) == 3 and shape[-1] in (1, 3, 4)
        height, width = (shape[0], shape[1]) if numpy_hwc else (shape[-2], shape[-1])
        return float(width), float(height)
    canvas = getattr(boxes, "canvas_size", None)
    if canvas is not None and len(canvas) == 2:
        return float(canvas[1]), float(canvas[0])
    return None


def _corners(boxes: Any, where: str) -> np.ndarray:
    """``[N, 4]`` x0, y0, x1, y1 from a boxes tensor (xyxy) or a ``BoundingBoxes`` in its format."""
    kind = getattr(boxes, "format", None)
    kind = str(getattr(kind, "name", kind or "XYXY")).upper()
    values = _array(boxes)
    if values.size and (values.ndim != 2 or values.shape[1] != 4):
        raise ValueError(f"{where}: target['boxes'] has shape {tuple(values.shape)}; {_CONVENTION}")
    values = values.reshape(-1, 4)
    if kind == "XYXY":
        return values
    if kind == "XYWH":
        return np.concatenate([values[:, :2], values[:, :2] + values[:, 2:]], axis=1)
    if kind == "CXCYWH":
        half = values[:, 2:] / 2
        return np.concatenate([values[:, :2] - half, values[:, :2] + half], axis=1)
    raise ValueError(f"{where}: boxes in format {kind} are not axis-aligned x0, y0, x1, y1; {_CONVENTION}")


def _item_boxes(target: Any, where: str) -> np.ndarray:
    if isinstance(target, Mapping) and "boxes" in target:
        return _corners(target["boxes"], where)
    if isinstance(target, (list, tuple)) and all(isinstance(t, Mapping) and "bbox" in t for t in target):
        xywh = np.asarray([t["bbox"] for t in target], dtype=np.float64).reshape(-1, 4)  # COCO-style targets
        return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    found = sorted(target) if isinstance(target, Mapping) else type(target).__name__
    raise TypeError(f"{where}: the target is {found!r}, with no 'boxes'; {_CONVENTION}")


def _iterate(dataset: Any, positions: Optional[list[int]], request: Request) -> Loaded:
    owner = type(dataset).__name__
    chosen = range(_length(dataset)) if positions is None else positions
    collector = Collector()
    bar = progress(chosen, total=len(chosen), desc=f"Reading {owner}", unit="images", enabled=request.progress)
    for position in bar:
        where = f"{owner}[{position}]"
        item = dataset[position]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise TypeError(f"{where} is a {type(item).__name__}; {_CONVENTION}")
        image, target = item[0], item[1]
        corners = _item_boxes(target, where)
        size = _image_size(image, target.get("boxes") if isinstance(target, Mapping) else None)
        if size is None:
            raise TypeError(f"{where}: cannot tell the size of an image of type {type(image).__name__}; {_CONVENTION}")
        add_image_corners(collector, where, size[0], size[1], [(where, box) for box in corners])
    return collector.result()


def _read(request: Request) -> Loaded:
    parts = _parts(request.source)
    loaded = []
    for part in parts:
        reader = _reader_for(part.dataset)
        if reader is not None:
            loaded.append(reader.read(part.dataset, part.positions, request))
        elif _map_style(part.dataset):
            loaded.append(_iterate(part.dataset, part.positions, request))
        else:
            raise TypeError(
                f"{type(request.source).__name__} holds a {type(part.dataset).__name__}, which is neither a known "
                f"dataset ({', '.join(r.name for r in _READERS)}) nor map-style; {_CONVENTION}"
            )
    return merge(loaded)


register_format(
    "torch-dataset",
    description=(
        "a PyTorch dataset object: torchvision CocoDetection / VOCDetection (also wrapped for transforms v2), "
        "Subset, ConcatDataset, a DataLoader (its dataset), or any map-style dataset whose items are "
        "(image, {'boxes': [N, 4] xyxy px})"
    ),
    accept=_accept, read=_read, priority=60,
)
