"""The README, docs/*.md and benchmarks/README.md render as written, and their Python runs.

Parsed with markdown-it-py (CommonMark, as GitHub renders): every code fence is closed and
names its language, every relative link points at a file that exists (and at a heading that
exists, for a ``#fragment`` into a Markdown file), no heading skips a level, and no paragraph
repeats a run of words (the mark of two edits spliced together).

Every fenced ``python`` block of README.md and docs/*.md runs in a fresh interpreter, in a
temporary working folder, with this checkout's ``autoanchor`` first on the path. Markers in
HTML comments right before a block change that:

* ``<!-- fragment: reason -->``: not run (a line of someone else's file, an output, an API
  not there yet); the reason must be given;
* ``<!-- needs: torchvision -->``: skipped only where torchvision is not installed;
* ``<!-- slow: reason -->``: marked ``slow`` (left out of the default run);
* ``<!-- continues: what it uses -->``: runs after the block before it, with its names (a
  quick start in two parts); the two are run, skipped and marked together.

Any other block runs on its own, so that it can be copied and run as it stands.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py is in the test extra")

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").glob("*.md")])
RUN_PAGES = [page for page in PAGES if page.parent.name != "benchmarks"]
MARKER = re.compile(r"<!--\s*(fragment|needs|slow|continues)\s*:(.*?)-->", re.DOTALL)
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


def chains(page: Path) -> list[list[Block]]:
    """The runnable blocks in runs of one, or more where a block continues the one before it."""
    found: list[list[Block]] = []
    previous = None
    for block in blocks(page):
        if block.lang != "python":
            continue
        if "continues" in block.markers and previous is not None and found and found[-1][-1] is previous:
            if "fragment" not in block.markers:
                found[-1].append(block)
        elif "fragment" not in block.markers:
            found.append([block])
        previous = block if "fragment" not in block.markers else None
    return found


def python_runs() -> list:
    """One run per page for its unmarked blocks (one interpreter start), one per marked chain."""
    params = []
    for page in RUN_PAGES:
        plain, marked = [], []
        for chain in chains(page):
            markers = {kind for block in chain for kind in block.markers if kind != "continues"}
            (marked if markers else plain).append(chain)
        if plain:
            params.append(pytest.param(plain, id=rel(page)))
        for chain in marked:
            slow = any("slow" in block.markers for block in chain)
            params.append(pytest.param([chain], id=chain[0].id, marks=[pytest.mark.slow] if slow else []))
    return params


# -- rendering ---------------------------------------------------------------------------------


def fence_problems(text: str, name: str) -> list[str]:
    """Unclosed fences, and fences without a language.

    An unclosed fence swallows the rest of the page; one fence too few or too many turns the
    following prose into code and the next block's code into prose, leaving a fence without a
    language: both show here.
    """
    tokens = markdown_it.MarkdownIt("commonmark").parse(text)
    lines = text.splitlines()
    problems = []
    for token in tokens:
        if token.type != "fence":
            continue
        start, end = token.map
        closing = lines[end - 1].strip() if end - 1 > start else ""
        if not (closing.startswith(token.markup) and set(closing) == {token.markup[0]}):
            problems.append(f"{name}:{start + 1}: the {token.markup} fence is never closed")
        if not token.info.strip():
            problems.append(f"{name}:{start + 1}: a {token.markup} fence without a language")
        # A closing fence takes no language, so "```bash" inside a block is the next block's
        # opening fence, swallowed because this block was not closed before it.
        for offset, line in enumerate(token.content.splitlines()):
            if re.match(rf"^\s*{re.escape(token.markup)}\s*\w", line):
                problems.append(f"{name}:{start + 1}: the block is not closed before the fence at line {start + 2 + offset}")
    return problems


def test_fence_check_finds_the_errors_it_is_for() -> None:
    good = "# t\n\n```python\nx = 1\n```\n\ntext\n"
    assert fence_problems(good, "p") == []
    # The old README's error: a block left open before the next section.
    unclosed = "# t\n\n```python\nx = 1\n\n## Next\n\ntext\n"
    assert fence_problems(unclosed, "p") == ["p:3: the ``` fence is never closed"]
    # A closing fence missing between two blocks: the first runs on through the prose into the second.
    missing = "```python\nx = 1\n\ntext\n\n```bash\nls\n```\n"
    assert fence_problems(missing, "p") == ["p:1: the block is not closed before the fence at line 6"]
    # One fence too many: the stray one opens a block without a language that runs to the end.
    extra = "```python\nx = 1\n```\n```\n\ntext\n"
    assert fence_problems(extra, "p") == ["p:4: the ``` fence is never closed", "p:4: a ``` fence without a language"]


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_fences_are_closed_and_name_their_language(page: Path) -> None:
    problems = fence_problems(page.read_text(encoding="utf-8"), rel(page))
    assert not problems, "\n".join(problems)


def repeated_runs(text: str, name: str, *, words: int = 6) -> list[str]:
    """Top-level paragraphs that repeat a run of ``words`` words: the mark of two edits spliced."""
    problems = []
    for token in markdown_it.MarkdownIt("commonmark").enable("table").parse(text):
        if token.type != "inline" or token.level != 1:  # a paragraph's text (not a list's, not a table's)
            continue
        tokens = token.content.split()
        seen: dict[tuple[str, ...], int] = {}
        for i in range(len(tokens) - words + 1):
            run = tuple(tokens[i:i + words])
            if i - seen.setdefault(run, i) >= words:
                problems.append(f"{name}:{token.map[0] + 1}: the paragraph repeats '{' '.join(run)}'")
                break
    return problems


def test_splice_check_finds_a_repeated_sentence() -> None:
    # The old README's Options paragraph: two versions of one sentence, spliced.
    spliced = ("Options: `--n 9 --thr 4.0`; `--seed` takes 0 to 2**64 − 1. `--no-cache` reads every label file and\n"
               "--device cpu --scale S`; `--seed` takes 0 to 2**64 − 1. `check` prints a table.\n")
    assert repeated_runs(spliced, "p") == ["p:1: the paragraph repeats '`--seed` takes 0 to 2**64 −'"]
    assert repeated_runs("One sentence, then another sentence that differs from it.\n", "p") == []


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_no_paragraph_is_spliced(page: Path) -> None:
    problems = repeated_runs(page.read_text(encoding="utf-8"), rel(page))
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


def prose_code(page: Path) -> list[tuple[int, str]]:
    """The inline code spans of a page's prose and tables (fenced blocks are run, not read)."""
    tokens, _ = parse(page)
    return [(token.map[0] + 1, child.content) for token in tokens if token.type == "inline"
            for child in token.children if child.type == "code_inline"]


def resolve(dotted: str) -> object:
    """The module or attribute a dotted name such as ``autoanchor.core.rng.DEFAULT_SEED`` names."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            found = getattr(found, name)
        return found
    raise ModuleNotFoundError(dotted)


def test_resolve_finds_moved_names() -> None:
    from autoanchor.core.rng import DEFAULT_SEED

    assert resolve("autoanchor.core.rng.DEFAULT_SEED") == DEFAULT_SEED
    with pytest.raises(AttributeError):
        resolve("autoanchor.heads.torchvision")  # the module before the layout by layer
    assert len(prose_code(ROOT / "README.md")) > 10  # the README's inline code is read


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_named_modules_objects_and_files_exist(page: Path) -> None:
    # Modules move (autoanchor.heads became autoanchor.training.heads): a name in the prose must
    # still import, and a path of the repository must still be there.
    problems = []
    for line, code in prose_code(page):
        for dotted in re.findall(r"(?<![\w/.])autoanchor(?:\.\w+)+", code):
            try:
                resolve(dotted)
            except (ImportError, AttributeError) as error:
                problems.append(f"{rel(page)}:{line}: {dotted}: {error}")
        for path in re.findall(r"^(?:autoanchor|benchmarks|examples|tests|docs)/[\w/.-]+", code):
            if not (ROOT / path).exists():
                problems.append(f"{rel(page)}:{line}: {path} does not exist")
    assert not problems, "\n".join(problems)


def command_lines(page: Path) -> list[tuple[int, list[str]]]:
    """The ``autoanchor ...`` commands of a page's bash blocks, as argument lists.

    Lines with a ``[optional]`` or ``a | b`` placeholder are a synopsis, not a command: left out.
    """
    found = []
    for block in blocks(page):
        if block.lang != "bash":
            continue
        lines = block.code.splitlines()
        start = 0
        while start < len(lines):
            end = start  # a command continued with a trailing backslash is read as one line
            while lines[end].rstrip().endswith("\\") and end + 1 < len(lines):
                end += 1
            line = " ".join(part.rstrip().removesuffix("\\") for part in lines[start : end + 1])
            command = re.split(r"\s(?:#|\|\||&&)\s?", line)[0].strip()
            if command.startswith("autoanchor") and "[" not in command and " | " not in command:
                found.append((block.line + 1 + start, shlex.split(command)[1:]))
            start = end + 1
    return found


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_command_lines_parse(page: Path, capsys: pytest.CaptureFixture) -> None:
    # Every option of every documented command exists and takes the values shown (parsed only).
    from autoanchor.cli import build_parser

    problems = []
    for line, argv in command_lines(page):
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            problems.append(f"{rel(page)}:{line}: autoanchor {' '.join(argv)}: {capsys.readouterr().err.strip()}")
    assert not problems, "\n".join(problems)


def test_command_lines_are_found() -> None:
    commands = command_lines(ROOT / "docs" / "cli.md")
    assert len(commands) >= 10 and ["fit"] in [argv for _, argv in commands]
    with pytest.raises(SystemExit):  # what the test relies on: argparse refuses an unknown option
        from autoanchor.cli import build_parser

        build_parser().parse_args(["fit", "--no-such-option"])


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_markers_are_known_and_give_a_reason(page: Path) -> None:
    problems, previous = [], None
    for block in blocks(page):
        for kind, value in block.markers.items():
            if not value:
                problems.append(f"{block.id}: <!-- {kind}: --> without a reason")
            elif kind == "needs" and not set(value.split()) <= KNOWN_NEEDS:
                problems.append(f"{block.id}: needs {value!r}; known: {', '.join(sorted(KNOWN_NEEDS))}")
        if block.markers and block.lang != "python":
            problems.append(f"{block.id}: markers on a {block.lang} block, which is never run")
        if "continues" in block.markers and (previous is None or previous.lang != "python"):
            problems.append(f"{block.id}: continues, but the block before it is not a Python block")
        if "continues" in block.markers and previous is not None and "fragment" in previous.markers \
                and "fragment" not in block.markers:
            problems.append(f"{block.id}: continues a fragment, which never runs")
        previous = block
    assert not problems, "\n".join(problems)


def test_the_readme_is_short_and_has_runnable_examples() -> None:
    # The point of the README: a user finishes it. The detail lives in docs/.
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines"
    examples = runnable(ROOT / "README.md")
    assert len(examples) >= 3, [b.id for b in examples]


# -- the Python blocks run ---------------------------------------------------------------------

RUNNER = """\
import json, sys
root, runs = sys.argv[1], json.loads(sys.argv[2])
for chain in runs:
    namespace = {"__name__": "__main__"}  # one per chain: each runs as it stands
    for path, first, last in chain:
        lines = open(path, encoding="utf-8").read().splitlines(keepends=True)
        # Compiled under the page's name and line numbers, so that a traceback points into the page.
        code = "\\n" * first + "".join(lines[first:last])
        exec(compile(code, path, "exec"), namespace)
# The checkout under test, not an installed copy, must have run.
module = sys.modules.get("autoanchor")
if module is not None and not module.__file__.startswith(root):
    sys.exit(f"imported autoanchor from {module.__file__}, not from {root}")
"""


@pytest.mark.parametrize("run", python_runs())
def test_python_blocks_run(run: list[list[Block]], tmp_path: Path) -> None:
    every = [block for chain in run for block in chain]
    for block in every:
        for module in block.markers.get("needs", "").split():
            if importlib.util.find_spec(module) is None:
                pytest.skip(f"{block.id} needs {module}, which is not installed")
    result = run_chains(run, tmp_path)
    assert result.returncode == 0, f"{', '.join(b.id for b in every)}:\n{result.stderr[-4000:]}"


def run_chains(run: list[list[Block]], cwd: Path) -> subprocess.CompletedProcess:
    # Each block's lines in its page: after the opening fence, as many as its code has.
    spans = [[(str(b.page), b.line, b.line + b.code.count("\n")) for b in chain] for chain in run]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(ROOT / "autoanchor"), json.dumps(spans)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S,
    )


def test_runner_fails_on_a_name_another_block_defined(tmp_path: Path) -> None:
    # The README's old torchvision example used a name it never defined: a NameError, and the
    # traceback points at the page's line. A block marked 'continues' sees the names before it.
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n```python\nboxes = [1]\n```\n\n```python\nprint(boxes)\n```\n\n"
        "<!-- continues: boxes -->\n```python\nassert boxes == [1]\n```\n",
        encoding="utf-8",
    )
    first, second = chains(page)
    assert [b.line for b in first] == [3] and [b.line for b in second] == [7, 12]
    result = run_chains([first, second], tmp_path)
    assert result.returncode == 1
    assert f'File "{page}", line 8' in result.stderr and "NameError: name 'boxes'" in result.stderr
    assert run_chains([[first[0], second[1]]], tmp_path).returncode == 0  # one namespace: boxes defined
