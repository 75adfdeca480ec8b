"""Replace a file atomically: readers see the old bytes or the new ones, never a mix.

One writer for every file autoanchor writes (model configs, caches): the new bytes go to a
hidden temporary file in the target's folder, which then replaces the target with
:func:`os.replace`. The temporary file is removed on every failure, ``KeyboardInterrupt``
included, and errors name the target, never the temporary file.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

__all__ = ["ReadOnlyFileError", "is_read_only", "write_atomic"]

_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def is_read_only(mode: int) -> bool:
    """Whether a file of this ``st_mode`` has no write permission bit (refused, as editors do)."""
    return not mode & _WRITE_BITS


class ReadOnlyFileError(PermissionError):
    """The target exists and has no write permission bit: refused, as editors do."""


def _umask() -> int:
    # os.umask can only be read by setting it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, encoding: str = "utf-8") -> None:
    """Write ``data`` to ``path`` so that the file is either fully replaced or untouched.

    A file that exists keeps its permission bits and, where the process may set it, its
    owner and group; a new file gets the permissions of any file the process creates
    (``0o666`` less the umask).

    Args:
        path: the file to write.
        data: the new content; ``str`` is encoded with ``encoding``.
        encoding: text encoding for ``str`` data.

    Raises:
        ReadOnlyFileError: ``path`` exists without any write permission bit.
        OSError: the folder cannot be written, or the disk is full; the message names ``path``.
    """
    path = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    try:
        existing = path.stat()
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISREG(existing.st_mode):
            raise IsADirectoryError(f"{path} is not a regular file")
        if is_read_only(existing.st_mode):
            raise ReadOnlyFileError(f"{path} is read-only (mode {stat.filemode(existing.st_mode)}); not written")
        mode = stat.S_IMODE(existing.st_mode)
    else:
        mode = 0o666 & ~_umask()

    temporary = _temporary_name(path)
    replaced = False
    try:
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            raise type(error)(error.errno, f"cannot write {path}: {error.strerror}") from None
        with os.fdopen(descriptor, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        if existing is not None and hasattr(os, "chown"):
            try:
                os.chown(temporary, existing.st_uid, existing.st_gid)
            except PermissionError:
                pass  # only a privileged process may give a file away; the mode is kept regardless
        os.replace(temporary, path)
        replaced = True
    except OSError as error:
        if isinstance(error, ReadOnlyFileError) or str(path) in str(error):
            raise
        raise type(error)(error.errno, f"cannot write {path}: {error.strerror}") from None
    finally:
        if not replaced:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
