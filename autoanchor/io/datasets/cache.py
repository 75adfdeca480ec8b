"""The cache of file-based reads: a hidden file beside the labels, checked before it is trusted.

A cache is only ever an optimisation. Its file holds a magic line, the SHA-256 of the
payload, and the payload (a compressed ``.npz`` of the :class:`~.summary.Loaded`
arrays); a file that is missing, from another version, for other files or options,
truncated, or whose checksum fails is treated as absent and rebuilt, with one debug log
line. It is written with the project's one atomic writer, so it gets the permissions of
any file the process creates and no temporary file survives an interruption.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .._atomic import write_atomic
from .summary import Loaded

__all__ = ["cache_file_for", "cache_key", "cached", "read_cache", "write_cache"]

logger = logging.getLogger(__name__)

_VERSION = 2
_MAGIC = f"autoanchor-cache {_VERSION}\n".encode()
_DIGEST_HEX = 64  # sha256
_PREFIX = ".autoanchor-cache"
_SUFFIX = ".cache"
_LEGACY_SUFFIX = ".npz"  # autoanchor 0.1.0 wrote unchecked .npz caches under the same stem
# count fields of Loaded stored in the `counts` array, in this order
_COUNTS = ("skipped_images", "skipped_boxes", "excluded_boxes", "missing_labels", "clipped_boxes")


def cache_key(files: Iterable[str], options: str) -> str:
    """Hash of the path, size and modification time of every file, and of the options."""
    digest = hashlib.sha256(f"autoanchor-cache {_VERSION}\n{options}\n".encode())
    for path in files:
        try:
            stat = os.stat(path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        digest.update(f"{path}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def cache_file_for(anchor: Path, spec: str) -> Path:
    """Hidden cache file beside ``anchor`` (the labels folder or annotation file)."""
    spec_hash = hashlib.sha256(spec.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return anchor.parent / f"{_PREFIX}-{anchor.name}-{spec_hash}{_SUFFIX}"


def _join(names: Sequence[str]) -> np.ndarray:
    joined = "\0".join(names).encode("utf-8", "surrogateescape")  # paths cannot hold NUL
    return np.frombuffer(joined, dtype=np.uint8)


def _split(data: np.ndarray, count: int) -> list[str]:
    if count == 0:
        return []
    return data.tobytes().decode("utf-8", "surrogateescape").split("\0")


def read_cache(path: Path, key: str) -> Optional[Loaded]:
    """The cached result for ``key``, or ``None`` if the file is absent, stale or damaged."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        logger.debug("cannot read the cache %s (%s); reading the dataset", path, error)
        return None
    head = len(_MAGIC) + _DIGEST_HEX + 1
    payload = data[head:]
    if data[: len(_MAGIC)] != _MAGIC or data[len(_MAGIC) : head - 1] != hashlib.sha256(payload).hexdigest().encode():
        logger.debug("the cache %s is from another version or damaged; reading the dataset", path)
        return None
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
            if str(archive["key"]) != key:
                return None
            shapes, wh, index = archive["shapes"], archive["wh"], archive["image_index"]
            counts = archive["counts"].tolist()
            names = _split(archive["names"], len(shapes))
            messages = _split(archive["messages"], int(archive["n_messages"]))
            xy = archive["xy"] if "xy" in archive.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        # The checksum matched, so this is a payload autoanchor did not write: still only a cache.
        logger.debug("ignoring the unreadable cache %s (%s); reading the dataset", path, error)
        return None
    consistent = (
        shapes.ndim == 2 and shapes.shape[1:] == (2,) and len(names) == len(shapes) and len(counts) == len(_COUNTS)
        and wh.ndim == 2 and wh.shape[1:] == (2,) and index.shape == (len(wh),)
        and (xy is None or xy.shape == wh.shape)
    )
    if not consistent:
        logger.debug("the cache %s does not hold a consistent result; reading the dataset", path)
        return None
    return Loaded(shapes, wh, index, names, messages=messages, xy=xy, **dict(zip(_COUNTS, map(int, counts))))


def write_cache(path: Path, key: str, loaded: Loaded) -> Optional[str]:
    """Write the cache atomically; on failure return a warning to give, else None."""
    arrays = {
        "key": np.array(key), "shapes": loaded.shapes, "wh": loaded.wh, "image_index": loaded.image_index,
        "names": _join(loaded.names), "messages": _join(loaded.messages), "n_messages": np.array(len(loaded.messages)),
        "counts": np.array([getattr(loaded, name) for name in _COUNTS], dtype=np.int64),
    }
    if loaded.xy is not None:
        arrays["xy"] = loaded.xy
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    payload = buffer.getvalue()
    try:
        write_atomic(path, _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    except OSError as error:
        return f"cannot write the dataset cache {path} ({error}); the next load reads every file again"
    legacy = path.with_suffix(_LEGACY_SUFFIX)
    if legacy.name.startswith(_PREFIX) and path.suffix == _SUFFIX:
        try:
            legacy.unlink()
        except FileNotFoundError:
            pass
        except OSError as error:
            logger.debug("cannot remove the old cache %s (%s)", legacy, error)
    return None


def cached(
    setting: "bool | os.PathLike[str] | str | None", files: Sequence[str], options: str,
    default_cache: Optional[Path], build: Callable[[], Loaded],
) -> tuple[Loaded, Optional[str], bool, Optional[str]]:
    """``build()``, or its result cached under a key of ``files`` and ``options``.

    Args:
        setting: ``load_boxes``'s ``cache=``: ``True`` for ``default_cache``, ``False`` or
            ``None`` for none, else the cache file's path.
        files: every file the build reads (their path, size and mtime key the cache).
        options: the build's options, as text.
        default_cache: where ``cache=True`` keeps the file; ``None`` for nowhere.
        build: reads the files.

    Returns:
        ``(loaded, cache_file or None, from_cache, warning or None)``.
    """
    if setting is False or setting is None:
        return build(), None, False, None
    path = default_cache if setting is True else Path(setting)
    if path is None or (setting is True and not path.parent.is_dir()):
        return build(), None, False, None  # e.g. no labels folder at all: nothing to keep a cache beside
    key = cache_key(files, options)
    loaded = read_cache(path, key)
    if loaded is not None:
        return loaded, str(path), True, None
    loaded = build()
    problem = write_cache(path, key, loaded)
    return loaded, (str(path) if problem is None else None), False, problem
