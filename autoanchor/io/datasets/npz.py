"""The ``.npz`` format (the shared data's) and the built-in coco128 statistics.

An autoanchor ``.npz`` holds ``shapes`` ``[I, 2]`` image (width, height) px, ``wh``
``[N, 2]`` box sizes as fractions of the image, ``image_index`` ``[N]`` and, optionally,
``xy`` ``[N, 2]`` box centres as fractions of the image.
"""

from __future__ import annotations

import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from ...core.boxes import BoxSizes
from .registry import Request, register_format

__all__ = ["BUILTIN", "builtin_path", "read_npz"]

BUILTIN = "coco128"
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_WHAT = "an autoanchor .npz (a numpy zip archive of the arrays shapes, wh, image_index and optionally xy)"


def builtin_path(name: str = BUILTIN) -> Path:
    """Path of a box-statistics ``.npz`` shipped with the package (``coco128``)."""
    path = resources.files("autoanchor") / "data" / f"{name}.npz"
    if not path.is_file():
        raise ValueError(f"no built-in dataset named {name!r}; the package ships {BUILTIN!r}")
    return Path(str(path))


def read_npz(path: Path, *, source: str | None = None) -> BoxSizes:
    """Read an autoanchor ``.npz`` into :class:`BoxSizes`.

    Raises:
        ValueError: naming the file, if it is not a zip archive of numeric arrays with
            ``shapes``, ``wh`` and ``image_index``, or the arrays are invalid.
    """
    try:
        with open(path, "rb") as file:
            magic = file.read(4)
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    if magic not in (_ZIP_MAGIC, _EMPTY_ZIP_MAGIC):
        # numpy would try to unpickle anything else: refuse before it looks.
        raise ValueError(f"{path} is not {_WHAT}: it is not a zip archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"shapes", "wh", "image_index"} - set(archive.files)
            if missing:
                raise ValueError(f"{path} is not {_WHAT}: it lacks {sorted(missing)}")
            arrays = {name: archive[name] for name in ("shapes", "wh", "image_index", "xy") if name in archive.files}
    except ValueError as error:
        if str(path) in str(error):
            raise
        # numpy's words for object (pickled) arrays or a malformed array header
        raise ValueError(f"{path} is not {_WHAT}: {error}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"cannot read {path} as {_WHAT}: {error}") from error
    try:
        return BoxSizes(
            arrays["shapes"], arrays["wh"], arrays["image_index"], xy=arrays.get("xy"),
            source=source if source is not None else str(path),
        )
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _accept_builtin(request: Request) -> bool:
    if request.source is None:
        return True
    return isinstance(request.source, str) and request.source == BUILTIN and not request.path.exists()


register_format(
    "builtin", description="None or 'coco128': the statistics shipped with autoanchor",
    accept=_accept_builtin, read=lambda request: read_npz(builtin_path()), priority=0,
)
register_format(
    "npz", description=f"a .npz file: {_WHAT}",
    accept=lambda request: request.suffix == ".npz" and request.is_file(),
    read=lambda request: read_npz(request.path), priority=30,
)
