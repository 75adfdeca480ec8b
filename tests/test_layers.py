"""The layers of the package, checked by tools rather than lists: import-linter and grimp.

The contract itself lives in ``setup.cfg`` (``[importlinter:contract:*]``) and CI runs
``lint-imports``; these tests run the same check inside ``pytest -q`` and add what a
layers contract does not see: import cycles within a layer, and module length.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")

ROOT = Path(__file__).resolve().parents[1]
# Top first; modules in one set are siblings (neither imports the other).
LAYERS = [
    {"autoanchor.cli", "autoanchor.lightning"}, {"autoanchor.training"}, {"autoanchor.io"}, {"autoanchor.grid"},
    {"autoanchor.core"},
]
MAX_LINES = 500


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("autoanchor")


def test_setup_cfg_declares_the_layers_in_order():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser["importlinter:contract:layers"]["layers"].strip().splitlines()
    declared = [{name.strip() for name in line.split("|")} for line in lines]
    assert declared == LAYERS


def test_lint_imports_keeps_every_contract():
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 kept, 0 broken" in run.stdout


def test_no_lower_layer_reaches_a_higher_one(graph):
    # the same rule as the contract, through grimp's own query (so the contract's text cannot drift)
    illegal = graph.find_illegal_dependencies_for_layers(layers=LAYERS, containers=set())
    assert not illegal, sorted((d.importer, d.imported) for d in illegal)


def test_the_layer_check_can_fail():
    # a core module importing the training layer is caught (on a graph of its own: the fixture stays clean)
    graph = grimp.build_graph("autoanchor")
    graph.add_import(importer="autoanchor.core.metrics", imported="autoanchor.training.hook", line_number=1,
                     line_contents="from ..training import hook")
    illegal = graph.find_illegal_dependencies_for_layers(layers=LAYERS, containers=set())
    assert {(d.importer, d.imported) for d in illegal} == {("autoanchor.core", "autoanchor.training")}


def test_no_import_cycle(graph):
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                cycles.append((module, imported))
    # a package's __init__ importing its own submodules, which import siblings, is not a cycle:
    # grimp records "from . import x" in x's parent, so only pairs of modules count here
    real = [(a, b) for a, b in cycles if not (b.startswith(a + ".") or a.startswith(b + "."))]
    assert real == []


@pytest.mark.parametrize("path", sorted((ROOT / "autoanchor").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_short(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES
