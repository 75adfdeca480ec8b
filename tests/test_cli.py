"""The command line, run as users run it: ``python -m autoanchor ...`` in a subprocess.

Each run pays for a fresh interpreter and torch import, so all runs are started up
front by one fixture, as many at a time as there are cores, each with
``OMP_NUM_THREADS=1`` (the search works on small tensors; several torch thread
pools on few cores only slow each other down), and fits use ``--gen 30``. The tests
then check the recorded outputs and files. A few extra error paths are checked
in-process through :func:`autoanchor.cli.main`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import pytest
import torch
import yaml

from autoanchor.cli import main
from autoanchor.configs import anchors_by_name
from autoanchor.datasets import load_boxes
from autoanchor.metrics import anchor_stats

GEN = "30"

P5_MODEL = """\
# Test model ✓ in the yolov5s layout

# Parameters
nc: 80  # number of classes
depth_multiple: 0.33  # model depth multiple
width_multiple: 0.50  # layer channel multiple
anchors:
  - [10,13, 16,30, 33,23]  # P3/8
  - [30,61, 62,45, 59,119]  # P4/16
  - [116,90, 156,198, 373,326]  # P5/32

# YOLOv5 head
head:
  [[-1, 1, Conv, [512, 1, 1]],  # 10
   [[17, 20, 23], 1, Detect, [nc, anchors]],  # Detect(P3, P4, P5)
  ]
"""

TINY_MODEL = """\
nc: 80  # number of classes
anchors:
  - [10,14, 23,27, 37,58]  # P4/16
  - [81,82, 135,169, 344,319]  # P5/32
head:
  [[[19, 15], 1, Detect, [nc, anchors]]]  # Detect(P4, P5)
"""

P6_COUNT_MODEL = """\
# Parameters
nc: 80 # number of classes
anchors: 3 # AutoAnchor evolves 3 anchors per P output layer

# head with (P3, P4, P5, P6) outputs
head: [
    [-1, 1, Conv, [768, 1, 1]],
    [[23, 26, 29, 32], 1, Detect, [nc, anchors]], # Detect(P3, P4, P5, P6)
  ]
"""


P5_FLAT = ", ".join(f"{w:.0f},{h:.0f}" for w, h in anchors_by_name("yolov5-p5").reshape(-1, 2).tolist())

# Every subprocess run: name -> arguments. They run in one folder holding the model files below.
RUNS = {
    "yaml": ["fit", "--gen", GEN, "--format", "yaml"],
    "text": ["fit", "--gen", GEN, "--out", "result.txt", "--plot", "anchors.png"],
    "json": ["fit", "--gen", GEN, "--format", "json", "--n", "8", "--levels", "4", "--seed", "3", "-q"],
    "darknet": ["fit", "--gen", GEN, "--format", "darknet", "--model", "tiny.yaml"],
    "write": ["fit", "--gen", GEN, "--model", "yolov5s.yaml", "--write", "--format", "yaml"],
    "write_count": ["fit", "--gen", GEN, "--model", "yolov5-p6.yaml", "--write"],
    "check_name": ["check", "--anchors", "yolov5-p5"],
    "check_string": ["check", "--anchors", P5_FLAT],
    "check_model": ["check", "--model", "yolov5s-copy.yaml"],
}
# Error runs: name -> (arguments, text the one-line message must contain).
ERRORS = {
    "missing data": (["fit", "missing.npz", "--gen", "1"], "missing.npz"),
    "bad anchors": (["check", "--anchors", "10,13, 16"], "even count"),
    "n not divisible": (["fit", "--n", "10", "--levels", "3"], "cannot be split evenly"),
    "unknown config": (["check", "--anchors", "yolov9-p5"], "valid names: yolov3, yolov3-tiny, yolov5-p5"),
    "bad choice": (["fit", "--format", "xml"], "invalid choice: 'xml'"),
}
MODEL_FILES = {
    "yolov5s.yaml": P5_MODEL,
    "yolov5s-copy.yaml": P5_MODEL,
    "tiny.yaml": TINY_MODEL,
    "yolov5-p6.yaml": P6_COUNT_MODEL,
    "count.yaml": P6_COUNT_MODEL,
}


class Run(NamedTuple):
    code: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    for name, text in MODEL_FILES.items():
        (folder / name).write_bytes(text.encode("utf-8"))
    return folder


@pytest.fixture(scope="module")
def runs(folder):
    """Run every case of RUNS and ERRORS once, in parallel, and record the results."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("AUTOANCHOR_TRACEBACK", None)
    cases = {**RUNS, **{name: args for name, (args, _) in ERRORS.items()}}

    def run(args: list[str]) -> Run:
        done = subprocess.run(
            [sys.executable, "-m", "autoanchor", *args], cwd=folder, env=env, capture_output=True, text=True,
            timeout=600,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        futures = {name: pool.submit(run, args) for name, args in cases.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def ok(runs):
    def get(name: str) -> Run:
        result = runs[name]
        assert result.code == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result

    return get


def pairs(text: str) -> list[list[int]]:
    """Every ``w,h`` integer pair in ``text``, in order."""
    return [[int(w), int(h)] for w, h in re.findall(r"(\d+),\s*(\d+)", text)]


def check_levels(rows: list[list[int]], levels: int, per_level: int) -> None:
    """``rows``: flat ``[w1,h1, ...]`` per level; right shape, levels small to large."""
    assert len(rows) == levels
    assert all(len(row) == 2 * per_level and all(isinstance(v, int) and v > 0 for v in row) for row in rows)
    mean_area = [sum(w * h for w, h in zip(row[::2], row[1::2])) / per_level for row in rows]
    assert mean_area == sorted(mean_area)


@pytest.fixture(scope="module")
def coco_wh():
    wh = load_boxes(None).pixel_wh(640)
    return wh[(wh >= 2).any(1)]  # the boxes the CLI measures on (as the search)


# -- fit ------------------------------------------------------------------------------------------


def test_fit_yaml_is_a_model_yaml_anchors_block(ok):
    result = ok("yaml")
    config = yaml.safe_load(result.stdout)
    assert list(config) == ["anchors"]
    check_levels(config["anchors"], 3, 3)
    areas = [w * h for row in config["anchors"] for w, h in zip(row[::2], row[1::2])]
    assert areas == sorted(areas)  # sorted by area overall, split into levels small to large
    assert "anchors:\n  - [" in result.stdout and "]  # P3/8\n" in result.stdout


def test_fit_text_with_plot_and_out_matches_the_yaml_run(ok, folder):
    assert ok("text").stdout == ""
    text = (folder / "result.txt").read_text(encoding="utf-8")
    for word in ("P3/8", "P4/16", "P5/32", "fitness", "BPR", "anchors/target", "Avg IoU"):
        assert word in text
    level_lines = [line for line in text.splitlines() if line.strip().startswith("P")]
    # Same data, same seed: the same anchors as the yaml run, in the same order.
    rows = yaml.safe_load(ok("yaml").stdout)["anchors"]
    assert [pairs(line) for line in level_lines] == [[row[i : i + 2] for i in range(0, len(row), 2)] for row in rows]
    assert (folder / "anchors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_json_with_levels(ok, coco_wh):
    result = ok("json")
    document = json.loads(result.stdout)
    assert [level["stride"] for level in document["levels"]] == [8, 16, 32, 64]
    rows = [[v for pair in level["anchors"] for v in pair] for level in document["levels"]]
    check_levels(rows, 4, 2)
    for key in ("fitness", "bpr", "avg_iou"):
        assert 0 < document[key] <= 1
    assert 0 < document["anchors_per_target"] <= 8
    # The figures are those of the integer anchors printed, on the boxes of at least 2 px.
    anchors = torch.tensor([pair for level in document["levels"] for pair in level["anchors"]], dtype=torch.float32)
    stats = anchor_stats(coco_wh, anchors, thr=4.0)
    assert document["bpr"] == pytest.approx(stats.bpr, abs=1e-12)
    assert document["fitness"] == pytest.approx(stats.fitness, abs=1e-12)
    assert document["n_boxes"] == coco_wh.shape[0]
    assert "Evolving" not in result.stderr  # -q: no progress bar


def test_fit_darknet_with_model_takes_its_shape_and_leaves_it_alone(ok, folder):
    line = ok("darknet").stdout.strip()
    assert line.startswith("anchors = ") and "\n" not in line
    numbers = [int(v) for v in line.removeprefix("anchors = ").split(",")]
    assert len(numbers) == 12  # the model's 2 levels x 3 anchors
    assert (folder / "tiny.yaml").read_text(encoding="utf-8") == TINY_MODEL  # no --write, no change


def test_fit_write_rewrites_only_the_anchor_rows(ok, folder):
    result = ok("write")
    before = P5_MODEL.encode("utf-8").splitlines(keepends=True)
    after = (folder / "yolov5s.yaml").read_bytes().splitlines(keepends=True)

    assert len(after) == len(before)
    rows = (7, 8, 9)
    assert [a for i, a in enumerate(after) if i not in rows] == [b for i, b in enumerate(before) if i not in rows]
    for i, comment in zip(rows, (b"  # P3/8\n", b"  # P4/16\n", b"  # P5/32\n")):
        assert after[i].startswith(b"  - [") and after[i].endswith(b"]" + comment)
        assert after[i] != before[i]
    written = yaml.safe_load((folder / "yolov5s.yaml").read_text(encoding="utf-8"))["anchors"]
    assert written == yaml.safe_load(result.stdout)["anchors"]  # what was printed is what was written
    assert "rewrote" in result.stderr


def test_fit_write_expands_anchors_count(ok, folder):
    result = ok("write_count")
    before = P6_COUNT_MODEL.encode("utf-8").splitlines(keepends=True)
    after = (folder / "yolov5-p6.yaml").read_bytes().splitlines(keepends=True)

    assert after[:2] == before[:2] and after[7:] == before[3:]  # `anchors: 3` (line 2) became 5 lines
    config = yaml.safe_load((folder / "yolov5-p6.yaml").read_text(encoding="utf-8"))
    check_levels(config["anchors"], 4, 3)
    assert config["head"] == yaml.safe_load(P6_COUNT_MODEL)["head"]
    assert "anchors: 3" in result.stderr  # it says what it did


# -- check ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["check_name", "check_string", "check_model"])
def test_check_prints_the_figures_of_the_yolov5_defaults(ok, coco_wh, name):
    stats = anchor_stats(coco_wh, anchors_by_name("yolov5-p5").reshape(-1, 2), thr=4.0)
    expected = (
        f"BPR {stats.bpr:.4f}  anchors/target {stats.aat:.2f}  fitness {stats.fitness:.4f}  Avg IoU {stats.avg_iou:.4f}"
    )
    output = ok(name).stdout
    assert expected in output
    assert "these anchors fit the data" in output  # coco128 BPR with the yolov5 defaults is above 0.98


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_errors_are_one_line_exit_2(runs, name):
    code, stdout, stderr = runs[name]
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("autoanchor"), lines[0]
    assert ": error: " in lines[0]
    assert ERRORS[name][1] in lines[0]
    assert stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "--anchors", "10,13, 16,x"], "'x' is not a number"),
        (["check", "--anchors", "10,13, -16,30"], "positive numbers"),
        (["check"], "one of the arguments --model --anchors is required"),
        (["fit", "--model", "nope.yaml"], "nope.yaml' does not exist"),
        (["fit", "--thr", "0.5"], "greater than 1"),
        (["fit", "--n", "0"], "positive integer"),
        (["fit", "--device", "tpu9"], "--device 'tpu9'"),
        (["fit", "--out", "no/such/folder/out.txt"], "does not exist"),
        (["fit", "--model", "tiny.yaml", "--levels", "3"], "--levels 3 disagrees"),
        (["fit", "--write"], "--write needs --model"),
        (["check", "--model", "count.yaml"], "holds no anchors to check"),
    ],
)
def test_more_errors_in_process(folder, capsys, monkeypatch, args, message):
    monkeypatch.chdir(folder)
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1, captured.err
    assert message in captured.err


def test_plot_without_matplotlib_says_how_to_install(folder, capsys, monkeypatch):
    monkeypatch.chdir(folder)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert main(["fit", "--plot", "never.png"]) == 2  # refused before any work is done
    assert 'pip install "autoanchor[plot]"' in capsys.readouterr().err
    assert not (folder / "never.png").exists()


def test_help_and_version_exit_0(capsys):
    assert main(["--version"]) == 0
    assert main(["fit", "--help"]) == 0
    assert "--format {text,yaml,json,darknet}" in capsys.readouterr().out
