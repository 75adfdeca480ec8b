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

__all__ = ["ReadOnlyFileError", "is_read_only", "is_stream", "write_atomic", "writable_problem"]

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


# Folders hold names of at most 255 bytes on common file systems: a long target name gets a short temporary.
_MAX_TEMPORARY_STEM = 200


def _temporary_name(path: Path) -> Path:
    stem = path.name if len(os.fsencode(path.name)) <= _MAX_TEMPORARY_STEM else "autoanchor"
    return path.with_name(f".{stem}.{secrets.token_hex(4)}.tmp")


def _access(path: str | os.PathLike[str], mode: int) -> bool:
    """``os.access`` with the process's effective ids where the platform allows."""
    if os.access in os.supports_effective_ids:
        return os.access(path, mode, effective_ids=True)
    return os.access(path, mode)


def is_stream(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (followed through links) is an existing FIFO, terminal, device or socket, not a file.

    Such a target is written straight through (``/dev/stdout``, a named pipe): it cannot be
    replaced, and there is nothing to keep whole.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def writable_problem(path: str | os.PathLike[str]) -> str | None:
    """Why :func:`write_atomic` would refuse or fail to replace ``path``, or None when it can.

    The same rules as :func:`write_atomic`, checked without writing anything, so that a
    command can refuse before any work: the target (a symlink is followed) must be a
    regular file or not exist yet; an existing one must have a write permission bit, be
    writable by this process, and be its own (or the process must be able to give the new
    file the old owner, as root can); its folder must let this process create files.
    """
    given = Path(path)
    target = Path(os.path.realpath(given))
    shown = f"{str(given)!r} (a link to {str(target)!r})" if given.is_symlink() else repr(str(given))
    try:
        existing = target.stat()
    except FileNotFoundError:
        existing = None
    except OSError as error:
        return f"{shown}: cannot be written: {error.strerror}"
    if existing is not None:
        if stat.S_ISDIR(existing.st_mode):
            return f"{shown} is a directory; give a file name"
        if not stat.S_ISREG(existing.st_mode):
            return f"{shown} is not a regular file"
        mode = stat.filemode(existing.st_mode)
        if is_read_only(existing.st_mode):
            return f"{shown} is read-only (mode {mode}); not written"
        if not _access(target, os.W_OK):
            return f"{shown} is not writable by this user (mode {mode}, owner uid {existing.st_uid}); not written"
        if hasattr(os, "geteuid") and os.geteuid() not in (0, existing.st_uid):
            return (
                f"{shown} belongs to uid {existing.st_uid}, not to this user (uid {os.geteuid()}); replacing it "
                "would change its owner; not written"
            )
    folder = target.parent
    if not folder.is_dir():
        return f"cannot write {shown}: the folder {str(folder)!r} does not exist"
    if not _access(folder, os.W_OK | os.X_OK):
        return (
            f"{shown}: this user may not create files in {str(folder)!r}, which replacing "
            "the file atomically needs"
        )
    return None


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, encoding: str = "utf-8") -> None:
    """Write ``data`` to ``path`` so that the file is either fully replaced or untouched.

    A file that exists keeps its permission bits, its owner and, where the process may set
    it, its group; a file this process may not write, or that belongs to another user (unless
    the process may give the new file that owner, as root can), is refused, untouched. A
    new file gets the permissions of any file the process creates (``0o666`` less the
    umask). A symlink is followed and its target replaced; the link stays.

    Args:
        path: the file to write.
        data: the new content; ``str`` is encoded with ``encoding``.
        encoding: text encoding for ``str`` data.

    Raises:
        ReadOnlyFileError: ``path`` exists without any write permission bit.
        PermissionError: this process may not write ``path`` or its folder, or ``path``
            belongs to another user; nothing is written.
        OSError: the folder does not exist, or the disk is full; the message names ``path``.
    """
    given = Path(path)
    path = Path(os.path.realpath(given))
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    try:
        existing = path.stat()
    except FileNotFoundError:
        existing = None
    if existing is not None:
        if not stat.S_ISREG(existing.st_mode):
            raise IsADirectoryError(f"{given} is not a regular file")
        if is_read_only(existing.st_mode):
            raise ReadOnlyFileError(f"{given} is read-only (mode {stat.filemode(existing.st_mode)}); not written")
        mode = stat.S_IMODE(existing.st_mode)
    else:
        mode = 0o666 & ~_umask()
    problem = writable_problem(given)
    if problem is not None and path.parent.is_dir():  # a missing folder fails below, naming the target
        raise PermissionError(problem)

    temporary = _temporary_name(path)
    replaced = False
    try:
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            raise type(error)(error.errno, f"cannot write {given}: {error.strerror}") from None
        with os.fdopen(descriptor, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        if existing is not None and hasattr(os, "chown"):
            try:
                os.chown(temporary, existing.st_uid, existing.st_gid)
            except PermissionError:
                # The owner is this process's (checked above); only the group may be one it is not in.
                pass
        os.replace(temporary, path)
        replaced = True
    except OSError as error:
        if isinstance(error, ReadOnlyFileError) or str(given) in str(error):
            raise
        raise type(error)(error.errno, f"cannot write {given}: {error.strerror}") from None
    finally:
        if not replaced:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
