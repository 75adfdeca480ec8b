"""The one atomic file writer: mode and owner kept, read-only refused, no temporary left."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from autoanchor.io import _atomic
from autoanchor.io._atomic import ReadOnlyFileError, write_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_new_file_honours_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a.txt", "hello\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").read_text() == "hello\n"
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640  # 0o666 & ~0o027
    assert _leftovers(tmp_path) == []


def test_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "m.yaml"
    target.write_bytes(b"old")
    os.chmod(target, 0o604)
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o604


def test_read_only_file_is_refused_and_untouched(tmp_path: Path) -> None:
    target = tmp_path / "ro.yaml"
    target.write_bytes(b"old")
    os.chmod(target, 0o444)
    with pytest.raises(ReadOnlyFileError, match="ro.yaml is read-only"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_interrupt_leaves_no_temporary_and_keeps_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "c.yaml"
    target.write_bytes(b"old")

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_error_names_the_target_not_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "missing-folder" / "x.yaml"
    with pytest.raises(OSError) as caught:
        write_atomic(target, b"x")
    assert str(target) in str(caught.value)
    assert ".tmp" not in str(caught.value)
