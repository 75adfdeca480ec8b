"""The README, docs/*.md and benchmarks/README.md render as written, and their Python runs.

Parsed with markdown-it-py (CommonMark, as GitHub renders): every code fence is closed and
names its language, every relative link points at a file that exists (and at a heading that
exists, for a ``#fragment`` into a Markdown file), and no heading skips a level.

Every fenced ``python`` block of README.md and docs/*.md runs in a fresh interpreter, in a
temporary working folder, with this checkout's ``autoanchor`` first on the path. Markers in
HTML comments right before a block change that:

* ``<!-- fragment: reason -->``: not run (a line of someone else's file, an output, an API
  not there yet); the reason must be given;
* ``<!-- needs: torchvision -->``: skipped only where torchvision does not import;
* ``<!-- slow: reason -->``: marked ``slow`` (left out of the default run).

Each block runs on its own, so every example can be copied and run as it stands.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py is in the test extra")

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").glob("*.md")])
RUN_PAGES = [page for page in PAGES if page.parent.name != "benchmarks"]
MARKER = re.compile(r"<!--\s*(fragment|needs|slow)\s*:(.*?)-->", re.DOTALL)
KNOWN_NEEDS = {"torchvision"}
BLOCK_TIMEOUT_S = 600


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def parse(page: Path) -> tuple[list, list[str]]:
    text = page.read_text(encoding="utf-8")
    return markdown_it.MarkdownIt("commonmark").enable("table").parse(text), text.splitlines()


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{rel(self.page)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page, each with the markers in the HTML comments right before it."""
    tokens, _ = parse(page)
    found, pending = [], {}
    for token in tokens:
        if token.type == "html_block":
            for kind, value in MARKER.findall(token.content):
                pending[kind] = value.strip()
            continue
        if token.type == "fence":
            found.append(Block(page, token.map[0] + 1, token.info.strip().split(" ")[0], token.content, pending))
        if token.type.endswith("_close") or token.type in ("fence", "code_block", "hr"):
            pending = {}
    return found


def runnable(page: Path) -> list[Block]:
    return [block for block in blocks(page) if block.lang == "python" and "fragment" not in block.markers]


def python_runs() -> list:
    """One run per page for its unmarked blocks (one interpreter start), one per marked block."""
    params = []
    for page in RUN_PAGES:
        plain = [block for block in runnable(page) if not block.markers]
        if plain:
            params.append(pytest.param(plain, id=rel(page)))
        for block in runnable(page):
            if block.markers:
                marks = [pytest.mark.slow] if "slow" in block.markers else []
                params.append(pytest.param([block], id=block.id, marks=marks))
    return params


# -- rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_fences_are_closed_and_name_their_language(page: Path) -> None:
    # An unclosed fence swallows the rest of the page; one fence too few or too many turns the
    # following prose into code and the next block's code into prose, leaving a fence without a
    # language: both show here.
    tokens, lines = parse(page)
    problems = []
    for token in tokens:
        if token.type != "fence":
            continue
        start, end = token.map
        closing = lines[end - 1].strip() if end - 1 > start else ""
        if not (closing.startswith(token.markup) and set(closing) == {token.markup[0]}):
            problems.append(f"{rel(page)}:{start + 1}: the {token.markup} fence is never closed")
        if not token.info.strip():
            problems.append(f"{rel(page)}:{start + 1}: a {token.markup} fence without a language")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_headings_do_not_skip_a_level(page: Path) -> None:
    tokens, _ = parse(page)
    levels = [(int(t.tag[1]), t.map[0] + 1) for t in tokens if t.type == "heading_open"]
    assert levels and levels[0][0] == 1, f"{rel(page)} must start with one # heading, got {levels[:1]}"
    assert [level for level, _ in levels].count(1) == 1, f"{rel(page)} has more than one # heading"
    skipped = [f"line {line}: h{level} after h{previous}" for (previous, _), (level, line) in zip(levels, levels[1:])
               if level > previous + 1]
    assert not skipped, f"{rel(page)}: " + "; ".join(skipped)


def github_slug(text: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    tokens, _ = parse(page)
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            inline = tokens[i + 1]
            text = "".join(child.content for child in inline.children if child.type in ("text", "code_inline"))
            slug = github_slug(text)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            if count:
                seen[f"{slug}-{count}"] = 1
    return set(seen)


def links(page: Path) -> list[tuple[int, str]]:
    tokens, _ = parse(page)
    found = []
    for token in tokens:
        for child in token.children or ():
            if child.type == "link_open":
                found.append((token.map[0] + 1, child.attrGet("href")))
    return found


def test_slug_follows_github() -> None:
    assert github_slug("Quick start: yolov5 and yolov7 training") == "quick-start-yolov5-and-yolov7-training"
    assert github_slug("Anchors bounded by their level's stride") == "anchors-bounded-by-their-levels-stride"
    assert github_slug("How many levels and anchors?") == "how-many-levels-and-anchors"


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_resolve(page: Path) -> None:
    problems = []
    for line, href in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", href):  # https:, mailto:, ...
            continue
        target, _, fragment = href.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            problems.append(f"{rel(page)}:{line}: {href}: {target} does not exist")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            problems.append(f"{rel(page)}:{line}: {href}: no heading #{fragment} in {rel(path)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_markers_are_known_and_give_a_reason(page: Path) -> None:
    problems = []
    for block in blocks(page):
        for kind, value in block.markers.items():
            if not value:
                problems.append(f"{block.id}: <!-- {kind}: --> without a reason")
            elif kind == "needs" and value not in KNOWN_NEEDS:
                problems.append(f"{block.id}: needs {value!r}; known: {', '.join(sorted(KNOWN_NEEDS))}")
        if block.markers and block.lang != "python":
            problems.append(f"{block.id}: markers on a {block.lang} block, which is never run")
    assert not problems, "\n".join(problems)


def test_the_readme_is_short_and_its_examples_run() -> None:
    # The point of the README: a user finishes it. The detail lives in docs/.
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines"
    examples = runnable(ROOT / "README.md")
    assert len(examples) >= 3, [b.id for b in examples]


# -- the Python blocks run ---------------------------------------------------------------------

RUNNER = """\
import json, sys
root, runs = sys.argv[1], json.loads(sys.argv[2])
for path, first, last in runs:
    lines = open(path, encoding="utf-8").read().splitlines(keepends=True)
    # Compiled under the page's name and line numbers, so that a traceback points into the page;
    # each block in a namespace of its own, so that each runs as it stands.
    code = "\\n" * first + "".join(lines[first:last])
    exec(compile(code, path, "exec"), {"__name__": "__main__"})
# The checkout under test, not an installed copy, must have run.
module = sys.modules.get("autoanchor")
if module is not None and not module.__file__.startswith(root):
    sys.exit(f"imported autoanchor from {module.__file__}, not from {root}")
"""


@pytest.mark.parametrize("run", python_runs())
def test_python_blocks_run(run: list[Block], tmp_path: Path) -> None:
    for block in run:
        for module in block.markers.get("needs", "").split():
            if importlib.util.find_spec(module) is None:
                pytest.skip(f"{block.id} needs {module}, which is not installed")
    # Each block's lines in its page: after the opening fence, as many as its code has.
    spans = [(str(block.page), block.line, block.line + block.code.count("\n")) for block in run]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(ROOT / "autoanchor"), json.dumps(spans)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S,
    )
    assert result.returncode == 0, f"{', '.join(b.id for b in run)}:\n{result.stderr[-4000:]}"
