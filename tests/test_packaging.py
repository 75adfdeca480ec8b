"""An installed wheel holds every module, the shipped configs and the built-in data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_data_file(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    (wheel,) = tmp_path.glob("autoanchor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "autoanchor").rglob("*") if p.is_file()}
    wanted = {s for s in sources if s.endswith((".py", ".yaml", ".npz", ".md", "py.typed"))}
    assert wanted - names == set()
    assert "autoanchor/io/configs/yolov5-p5.yaml" in names
