"""Dataset adapters: every supported source becomes a :class:`~autoanchor.core.boxes.BoxSizes`.

One entry point, :func:`load_boxes` (and :func:`load_boxes_with_report`, which also
returns the counts), reads the image sizes and the normalised box sizes (and, where the
source has them, the box centres) of any registered format. Built in:

* ``builtin``: the coco128 statistics shipped with the package (``None`` or ``"coco128"``);
* ``boxsizes`` and ``object``: a :class:`BoxSizes`, or a yolov5-style dataset object
  (``.shapes`` and ``.labels``);
* ``npz``: an ``.npz`` with ``shapes``, ``wh``, ``image_index`` and optionally ``xy``;
* ``yolo``: a yolov5 data yaml (or mapping), a folder of images or a ``.txt`` list of
  images, with YOLO label files found by yolov5's rule and sizes from the image headers;
* ``coco``: a COCO instances json;
* ``voc``: a PASCAL VOC folder of ``.xml`` annotations (or a single ``.xml``);
* ``coco-dict``: a parsed COCO instances dict (``pycocotools.COCO(...).dataset``);
* ``deepforest-csv`` and ``retinanet-csv``: DeepForest's CSV (with a header) and
  keras-retinanet's (without), sizes from the image headers;
* ``torch-dataset``: PyTorch dataset objects (:mod:`.torch_datasets`): torchvision's
  ``CocoDetection`` and ``VOCDetection`` (read from their annotations), a DeepForest
  dataset (its frame), ``Subset``, ``ConcatDataset``, the v2 wrapper, a ``DataLoader``,
  and any map-style dataset in torchvision's detection convention (iterated once).

A new format is one module that calls :func:`register_format` with how to recognise a
source (:class:`Request` offers the suffix, the first bytes and a folder's files) and how
to read it (filling a :class:`Collector`). Bad data is skipped, named in one aggregated
warning and counted in a :class:`LoadSummary`; boxes partly outside their image are
clipped to it. File-based reads are cached beside the labels (:mod:`.cache`).

Modules: :mod:`.summary` (``LoadSummary``, ``Collector``, clipping) and :mod:`.files`
(image headers, folder walks) know no format; :mod:`.cache` uses ``summary``;
:mod:`.registry` uses both; each format module (:mod:`.npz`, :mod:`.objects`,
:mod:`.voc`, :mod:`.coco`, :mod:`.yolo`) uses those and registers itself; :mod:`.load`
uses the registry only. Importing this package imports every built-in format.
"""

from __future__ import annotations

# each registers its format
from . import coco, csv_deepforest, csv_retinanet, npz, objects, torch_datasets, voc, yolo  # noqa: F401
from .files import IMG_EXTS, image_size
from .load import load_boxes, load_boxes_with_report
from .npz import BUILTIN, builtin_path
from .registry import DATASET_FORMATS, DatasetFormat, Request, formats, register_format, unregister_format
from .summary import Collector, LoadSummary, Loaded
from .yolo import label_path

__all__ = [
    "BUILTIN",
    "DATASET_FORMATS",
    "Collector",
    "DatasetFormat",
    "IMG_EXTS",
    "LoadSummary",
    "Loaded",
    "Request",
    "builtin_path",
    "formats",
    "image_size",
    "label_path",
    "load_boxes",
    "load_boxes_with_report",
    "register_format",
    "unregister_format",
]
