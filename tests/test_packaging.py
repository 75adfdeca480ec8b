"""setup.cfg lists every package of the source tree, so an installed wheel has all of them."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _listed_packages() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return {name.strip() for name in parser["options"]["packages"].replace(",", "\n").split() if name.strip()}


def test_every_package_folder_is_listed_in_setup_cfg() -> None:
    found = {"autoanchor"} | {
        "autoanchor." + ".".join(init.parent.relative_to(ROOT / "autoanchor").parts)
        for init in (ROOT / "autoanchor").rglob("__init__.py")
        if init.parent != ROOT / "autoanchor"
    }
    found.add("autoanchor.configs")  # mapped from configs/ by package_dir
    assert found == _listed_packages()
