"""Layers point one way: the search core never imports the dataset, hook or command-line layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autoanchor"

CORE = [
    "_warn", "rng", "boxes", "parallel", "metrics", "objectives", "kmeans", "evolve", "differential", "polish",
    "settings", "search", "levels", "jitter", "advise", "generators/grid", "generators/matching", "generators/fit",
]
EDGE = {
    "datasets", "hook", "heads", "report", "cli", "dropins", "distributed", "modelyaml", "plot", "configs", "darknet",
    "torchvision_model", "agreement", "check_options", "__main__",
}


def imported_modules(tree: ast.AST) -> list[tuple[str, int, str]]:
    """``(module, line, enclosing function)`` of every import, module-level or not, resolved within the package."""
    found = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.ImportFrom):
                if child.level > 0 and child.module:  # from .x import y
                    found.append((child.module.split(".")[0], child.lineno, function))
                elif child.level > 0:  # from . import x, y
                    found.extend((alias.name, child.lineno, function) for alias in child.names)
                elif child.module and child.module.startswith("autoanchor."):
                    found.append((child.module.split(".")[1], child.lineno, function))
            elif isinstance(child, ast.Import):
                found.extend(
                    (alias.name.split(".")[1], child.lineno, function)
                    for alias in child.names
                    if alias.name.startswith("autoanchor.")
                )
            visit(child, inner)

    visit(tree, "")
    return found


@pytest.mark.parametrize("module", CORE)
def test_core_never_imports_the_edges(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    bad = [
        (name, line)
        for name, line, function in imported_modules(tree)
        # the one exception: the deprecated alias autoanchor.search.kmean_anchors, resolved on first use
        if name in EDGE and not (module == "search" and function == "__getattr__" and name == "dropins")
    ]
    assert bad == [], f"autoanchor/{module}.py imports {bad}"


def test_the_check_sees_imports():
    # the walker finds relative, absolute and function-level imports (so the test above can fail)
    tree = ast.parse("from .datasets import x\nimport autoanchor.hook\ndef f():\n    from . import cli\n")
    assert imported_modules(tree) == [("datasets", 1, ""), ("hook", 2, ""), ("cli", 4, "f")]

