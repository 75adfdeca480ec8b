"""The command line, run as users run it: ``python -m autoanchor ...`` in a subprocess.

Each run pays for a fresh interpreter and torch import, so all runs are started up
front by one fixture, as many at a time as there are cores, each with
``OMP_NUM_THREADS=1`` (the search works on small tensors; several torch thread
pools on few cores only slow each other down), and fits use ``--gen 30``. The tests
then check the recorded outputs and files. Extra error paths, interrupted and refused
writes, and the two registries (subcommands, output formats) are checked in-process
through :func:`autoanchor.cli.main`, and so are darknet ``.cfg`` models (fit, write, check,
formats); start-up imports (no torch for ``--help``) in small subprocesses.
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
from autoanchor.io.configs import anchors_by_name
from autoanchor.io.darknet import darknet_pixel_wh, parse_cfg, read_cfg
from autoanchor.io.datasets import load_boxes
from autoanchor.core.metrics import anchor_stats

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


# Three 640x480 images, twelve boxes from 20x30 to 31x52 px.
TINY_COCO = json.dumps({
    "images": [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in range(3)],
    "annotations": [
        {"id": j, "image_id": j % 3, "bbox": [0, 0, 20 + j, 30 + 2 * j], "category_id": 1, "iscrowd": 0, "area": 1}
        for j in range(12)
    ],
    "categories": [{"id": 1, "name": "thing"}],
})

# Darknet cfgs in the layouts of the real files: a [net] block, stride-2 convolutions down to the coarsest
# stride, routes and upsamples back up, a 1x1 convolution before each [yolo].
Y3_LINE = "10,13,  16,30,  33,23,  30,61,  62,45,  59,119,  116,90,  156,198,  373,326"
Y4_LINE = "12, 16, 19, 36, 40, 28, 36, 75, 76, 55, 72, 146, 142, 110, 192, 243, 459, 401"
TINY_LINE = "10,14,  23,27,  37,58,  81,82,  135,169,  344,319"


def net_block(width: int, height: int, letter_box: int = 0) -> str:
    return (
        f"[net]\n# Testing\n#batch=1\n# Training\nbatch=64\nsubdivisions=16\nwidth={width}\nheight={height}\n"
        f"channels=3\nmomentum=0.949\ndecay=0.0005\nletter_box={letter_box}\nlearning_rate=0.0013\n"
        "max_batches = 500500\npolicy=steps\nsteps=400000,450000\nscales=.1,.1\n\n"
    )


DOWN = "[convolutional]\nbatch_normalize=1\nfilters=64\nsize=3\nstride=2\npad=1\nactivation=leaky\n\n"
HEAD = "[convolutional]\nsize=1\nstride=1\npad=1\nfilters=255\nactivation=linear\n\n"


def yolo_block(mask: str, line: str, num: int = 9) -> str:
    return (
        f"[yolo]\nmask = {mask}\nanchors = {line}\nclasses=80\nnum={num}\njitter=.3\nignore_thresh = .7\n"
        "truth_thresh = 1\nrandom=1\n\n"
    )


# yolov3: layers 0-4 go down to stride 32; the stride-32 [yolo] (6) comes first, then 16 (11), then 8 (16).
YOLOV3_CFG = (
    net_block(416, 416) + DOWN * 5 + HEAD + yolo_block("6,7,8", Y3_LINE)
    + "[route]\nlayers = -3\n\n[upsample]\nstride=2\n\n[route]\nlayers = -1, 3\n\n" + HEAD  # 7-10: 16
    + yolo_block("3,4,5", Y3_LINE)
    + "[route]\nlayers = -3\n\n[upsample]\nstride=2\n\n[route]\nlayers = -1, 2\n\n" + HEAD  # 12-15: 8
    + yolo_block("0,1,2", Y3_LINE)
)


def yolov4_cfg(width: int = 608, height: int = 608, letter_box: int = 0) -> str:
    """yolov4's layout with CRLF line endings: stride 8 (an SPP maxpool on the way) first, then 16, 32."""
    text = (
        net_block(width, height, letter_box) + DOWN * 3 + "[maxpool]\nstride=1\nsize=5\n\n" + HEAD
        + yolo_block("0,1,2", Y4_LINE)  # layer 5
        + "[route]\nlayers = -3\n\n" + DOWN + HEAD + yolo_block("3,4,5", Y4_LINE)  # 6-9: stride 16
        + "[route]\nlayers = -3\n\n" + DOWN + HEAD + yolo_block("6,7,8", Y4_LINE)  # 10-13: stride 32
    )
    return text.replace("\n", "\r\n")


# yolov4-tiny: stride 32 with mask 3,4,5, then stride 16 with mask 1,2,3 (anchor 0 unused, anchor 3 shared).
TINY_CFG = (
    net_block(416, 416) + DOWN * 5 + HEAD + yolo_block("3,4,5", TINY_LINE, num=6)  # 6: stride 32
    + "[route]\nlayers = -3\n\n[upsample]\nstride=2\n\n[route]\nlayers = -1, 3\n\n" + HEAD
    + yolo_block("1,2,3", TINY_LINE, num=6)  # 11: stride 16
)
TINY_MASK_LINE = TINY_CFG.splitlines().index("mask = 1,2,3") + 1  # 1-based, as messages count
CFG_FILES = {
    "yolov3.cfg": YOLOV3_CFG,
    "yolov4.cfg": yolov4_cfg(),
    "tiny.cfg": TINY_CFG,
    "no-yolo.cfg": net_block(416, 416) + DOWN * 5,
    "bad-mask.cfg": TINY_CFG.replace("mask = 1,2,3", "mask = 1,2,6"),
    "swapped.cfg": YOLOV3_CFG.replace("mask = 0,1,2", "mask = X").replace("mask = 6,7,8", "mask = 0,1,2").replace(
        "mask = X", "mask = 6,7,8"
    ),
}

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
    # coco128's BPR with the yolov5 anchors is 0.99...: not above a threshold of 1.
    "check_strict": ["check", "--anchors", "yolov5-p5", "--bpr-threshold", "1"],
    "check_tiny_json": ["check", "--anchors", "5,5, 6,6", "--format", "json"],
    "check_no_cache": ["check", "coco.json", "--anchors", "yolov5-p5", "--no-cache", "-q"],
    "check_cache": ["check", "coco-cached.json", "--anchors", "yolov5-p5", "-q"],
    "seed_max": ["fit", "--gen", "1", "--seed", str(2**64 - 1), "--format", "darknet", "-q"],
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
    "coco.json": TINY_COCO,
    "coco-cached.json": TINY_COCO,
    **CFG_FILES,
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
    # The package of this checkout, not an installed copy (the runs' cwd is a temporary folder).
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH")))))
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


@pytest.mark.slow
def test_fit_yaml_is_a_model_yaml_anchors_block(ok):
    result = ok("yaml")
    config = yaml.safe_load(result.stdout)
    assert list(config) == ["anchors"]
    check_levels(config["anchors"], 3, 3)
    areas = [w * h for row in config["anchors"] for w, h in zip(row[::2], row[1::2])]
    assert areas == sorted(areas)  # sorted by area overall, split into levels small to large
    assert "anchors:\n  - [" in result.stdout and "]  # P3/8\n" in result.stdout


@pytest.mark.slow
def test_fit_text_with_plot_and_out_matches_the_yaml_run(ok, folder):
    assert ok("text").stdout == ""
    text = (folder / "result.txt").read_text(encoding="utf-8")
    for word in ("P3/8", "P4/16", "P5/32", "fitness", "BPR", "anchors/target", "Avg IoU"):
        assert word in text
    level_lines = [line for line in text.splitlines() if line.startswith("  P")]  # the indented anchor rows
    assert len([line for line in text.splitlines() if re.match(r"P\d +\d+ ", line)]) == 3  # the per-level table
    # Same data, same seed: the same anchors as the yaml run, in the same order.
    rows = yaml.safe_load(ok("yaml").stdout)["anchors"]
    assert [pairs(line) for line in level_lines] == [[row[i : i + 2] for i in range(0, len(row), 2)] for row in rows]
    assert (folder / "anchors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The built-in coco128 has 929 boxes at img 640, one of them under 2 px on both sides, which the
    # search and the figures leave out; the figures are those of the rounded anchors printed.
    assert "(928 of 929 boxes; 1 under 2 px left out; img 640" in text.splitlines()[0]
    assert "figures for the anchors as printed, rounded to whole pixels, on 928 of 929 boxes" in text


@pytest.mark.slow
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
    assert document["n_boxes_all"] == load_boxes(None).n_boxes == document["n_boxes"] + document["n_boxes_left_out"]
    assert document["n_boxes_left_out"] == 1  # coco128 at img 640: one box under 2 px on both sides
    assert "rounded to whole pixels" in document["note"] and "928 of 929 boxes" in document["note"]
    # -q means errors only: no progress bar, no log line, and no warning (coco128 has boxes under
    # 3 px, which the search warns about) on stderr.
    assert result.stderr == ""


@pytest.mark.slow
def test_fit_darknet_with_model_takes_its_shape_and_leaves_it_alone(ok, folder):
    line, *masks = ok("darknet").stdout.splitlines()
    assert line.startswith("anchors = ")
    numbers = [int(v) for v in line.removeprefix("anchors = ").split(",")]
    assert len(numbers) == 12  # the model's 2 levels x 3 anchors
    # One mask per level, each under a comment naming the level (the yaml states no strides: 8, 16 assumed).
    assert masks == ["# P3/8", "mask = 0,1,2", "# P4/16", "mask = 3,4,5"]
    assert (folder / "tiny.yaml").read_text(encoding="utf-8") == TINY_MODEL  # no --write, no change


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("name", ["check_name", "check_string", "check_model"])
def test_check_prints_the_figures_of_the_yolov5_defaults(ok, coco_wh, name):
    stats = anchor_stats(coco_wh, anchors_by_name("yolov5-p5").reshape(-1, 2), thr=4.0)
    expected = (
        f"BPR {stats.bpr:.4f}  anchors/target {stats.aat:.2f}  fitness {stats.fitness:.4f}  Avg IoU {stats.avg_iou:.4f}"
    )
    output = ok(name).stdout  # exit code 0: the anchors fit
    assert expected in output
    assert "these anchors fit the data" in output  # coco128 BPR with the yolov5 defaults is above 0.98
    assert "928 of 929 boxes; 1 under 2 px left out" in output


@pytest.mark.slow
def test_check_exits_1_when_bpr_is_not_above_the_threshold(runs, coco_wh):
    strict = runs["check_strict"]
    assert strict.code == 1, strict.stderr
    assert "BPR not above 1: consider 'autoanchor fit'" in strict.stdout

    tiny = runs["check_tiny_json"]  # two tiny anchors: most coco128 boxes are out of their reach
    assert tiny.code == 1, tiny.stderr
    document = json.loads(tiny.stdout)
    expected = anchor_stats(coco_wh, torch.tensor([[5.0, 5.0], [6.0, 6.0]]), thr=4.0)
    assert document["bpr"] == pytest.approx(expected.bpr, abs=1e-12) and expected.bpr <= 0.98
    assert document["fits"] is False and document["bpr_threshold"] == 0.98
    assert document["n_boxes"] == 928 and document["n_boxes_all"] == 929


@pytest.mark.slow
def test_no_cache_reads_and_writes_no_cache_file(runs, folder):
    for name in ("check_no_cache", "check_cache"):
        assert runs[name].code == 0, runs[name].stderr
        assert runs[name].stderr == ""  # -q
    # Without --no-cache the loader leaves its hidden cache file beside the annotations.
    assert [p.name for p in folder.iterdir() if "coco-cached.json" in p.name and p.name != "coco-cached.json"]
    assert not [p.name for p in folder.iterdir() if "coco.json" in p.name and p.name != "coco.json"]


@pytest.mark.slow
def test_seed_takes_the_whole_generator_range(ok):
    line = ok("seed_max").stdout.splitlines()[0]
    assert line.startswith("anchors = ") and len(pairs(line)) == 9


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.slow
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
        (["check"], "give the anchors to check: --model, --anchors, --generator"),
        (["fit", "--model", "nope.yaml"], "nope.yaml' does not exist"),
        (["fit", "--thr", "0.5"], "greater than 1"),
        (["fit", "--n", "0"], "--n must be an integer of at least 1, got 0"),
        (["fit", "--device", "tpu9"], "--device must name a torch device ('cpu', 'cuda', 'cuda:0', ...), got 'tpu9'"),
        (["fit", "--out", "no/such/folder/out.txt"], "does not exist"),
        (["fit", "--model", "tiny.yaml", "--levels", "3"], "--levels 3 disagrees"),
        (["fit", "--write"], "--write needs --model"),
        (["check", "--model", "count.yaml"], "holds no anchors to check"),
        (["check", "--anchors", "yolov5-p5", "--bpr-threshold", "1.5"], "--bpr-threshold must be a finite number in [0, 1], got 1.5"),
        (["fit", "--seed", "99999999999999999999"], "--seed must be an integer from 0 to 2**64 - 1"),
        (["fit", "--seed", "-1"], "--seed"),
        (["fit", "--device", "meta"], "the meta device holds no values"),
        (["fit", "--plot", "x.foo"], "cannot plot to 'x.foo': suffix '.foo'; use one of"),
        (["fit", "--plot", "x"], "cannot plot to 'x': no suffix"),
        (["fit", "--model", "no-yolo.cfg"], "no-yolo.cfg has no [yolo] section"),
        (["check", "--model", "bad-mask.cfg"], f"bad-mask.cfg, line {TINY_MASK_LINE}: mask index 6 is out of range"),
        (["fit", "--model", "swapped.cfg", "--write", "-q"], "swapped.cfg: not rewritten: the masks"),
        (["fit", "--model", "yolov3.cfg", "--levels", "2"], "--levels 2 disagrees with yolov3.cfg"),
        (["fit", "--model", "tiny.cfg", "--n", "5", "-q"], "--n 5 disagrees with tiny.cfg"),
        (["check", "--model", "missing.cfg"], "darknet cfg 'missing.cfg' does not exist"),
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
    assert "--format {text,yaml,json,darknet,mmyolo,python,detectron2,mmdet}" in capsys.readouterr().out


# -- files written: the model yaml and --out ------------------------------------------------------


def test_write_refuses_a_read_only_model_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "yolov5s.yaml"
    model.write_bytes(P5_MODEL.encode("utf-8"))
    model.chmod(0o444)
    assert main(["fit", "--model", "yolov5s.yaml", "--write", "--gen", "1"]) == 2
    error = capsys.readouterr().err
    assert error.splitlines() == [error.strip()]  # one line: refused before loading (which logs)
    assert "--write 'yolov5s.yaml' is read-only (mode -r--r--r--); not written" in error
    assert model.read_bytes() == P5_MODEL.encode("utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolov5s.yaml"]


def test_out_refuses_a_read_only_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out.txt").write_text("keep\n")
    (tmp_path / "out.txt").chmod(0o400)
    assert main(["fit", "--out", "out.txt", "--gen", "1"]) == 2
    assert "--out 'out.txt' is read-only" in capsys.readouterr().err
    assert (tmp_path / "out.txt").read_text() == "keep\n"


@pytest.mark.parametrize(
    ("failure", "code", "message"),
    [
        (KeyboardInterrupt(), 130, "autoanchor: interrupted"),
        (OSError(28, "No space left on device"), 2, "No space left on device"),
    ],
)
def test_write_failing_midway_leaves_the_model_and_no_temporary(tmp_path, capsys, monkeypatch, failure, code, message):
    import autoanchor.io._atomic

    monkeypatch.chdir(tmp_path)
    model = tmp_path / "yolov5s.yaml"
    model.write_bytes(P5_MODEL.encode("utf-8"))
    model.chmod(0o640)

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(autoanchor.io._atomic.os, "fsync", fail)  # after the temporary file is written
    assert main(["fit", "--model", "yolov5s.yaml", "--write", "--gen", "1", "-q"]) == code
    error = capsys.readouterr().err
    assert message in error
    if code == 2:  # the error names the model, never the temporary file
        assert str(model) in error and ".tmp" not in error
    assert model.read_bytes() == P5_MODEL.encode("utf-8")
    assert oct(model.stat().st_mode & 0o777) == oct(0o640)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolov5s.yaml"]


def test_write_keeps_permission_bits(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "yolov5s.yaml"
    model.write_bytes(P5_MODEL.encode("utf-8"))
    model.chmod(0o604)  # an unusual mode, unlike what a new file gets from the umask
    assert main(["fit", "--model", "yolov5s.yaml", "--write", "--gen", "1", "-q"]) == 0
    assert model.read_bytes() != P5_MODEL.encode("utf-8")
    assert oct(model.stat().st_mode & 0o777) == oct(0o604)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolov5s.yaml"]


# -- the plug points ------------------------------------------------------------------------------


def test_a_registered_writer_becomes_a_choice_and_unknown_names_list_the_known(capsys):
    from autoanchor.cli import registry

    known = "text, yaml, json, darknet, mmyolo, python, detectron2, mmdet"
    with pytest.raises(ValueError, match=rf"unknown 'fit' output format 'xml'; known: {known}$"):
        registry.get_writer("fit", "xml")
    with pytest.raises(ValueError, match="'fit' output format 'json' is already registered"):
        registry.register_writer("json", command="fit", help="again")(lambda result: "")

    registry.register_writer("pairs", command="fit", help="w x h per line")(
        lambda result: "".join(f"{w}x{h}\n" for level in result.rows for w, h in level)
    )
    try:
        assert main(["fit", "--gen", "0", "--n", "2", "--levels", "1", "--format", "pairs", "-q"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2 and all(re.fullmatch(r"\d+x\d+", line) for line in lines)
        assert "pairs" not in registry.writer_names("check")
    finally:
        registry.writers("fit").unregister("pairs")
    assert "pairs" not in registry.writer_names("fit")


def test_a_registered_subcommand_runs_with_the_shared_options(capsys):
    from autoanchor.cli import registry

    seen = {}

    def add_arguments(parser):
        parser.add_argument("--levels", type=int, default=3)

    @registry.register_command("explain", help="explain", description="Explain.", add_arguments=add_arguments)
    def run(args):
        seen.update(levels=args.levels, img=args.img, data=args.data, cache=args.cache)
        return 0

    try:
        assert main(["explain", "data.yaml", "--levels", "4", "--no-cache"]) == 0
        assert seen == {"levels": 4, "img": 640, "data": "data.yaml", "cache": False}
        with pytest.raises(ValueError, match="unknown subcommand 'nope'; known: fit, check, advise, explain"):
            registry.get_command("nope")
        with pytest.raises(ValueError, match="'fit' is already registered"):
            registry.register_command("fit", help="", description="", add_arguments=add_arguments)(run)
    finally:
        registry.COMMANDS.unregister("explain")
    assert "explain" not in registry.COMMANDS


def test_a_registered_objective_becomes_a_metric_choice_and_runs(capsys):
    from autoanchor.core.metrics import size_iou, wh_iou
    from autoanchor.core.objectives import IoUObjective, register_objective
    from autoanchor.core.registry import OBJECTIVES

    @register_objective
    class SquaredIoU(IoUObjective):
        """Mean over boxes of the best IoU squared: a metric the command line has never heard of."""

        name = "iou2"
        pairwise = staticmethod(lambda wh, anchors: wh_iou(wh, anchors) ** 2)
        boxes_scored = 0

        def match(self, anchors, rows=slice(None)):
            SquaredIoU.boxes_scored += self.wh[rows].shape[0]
            return size_iou(self.wh[rows][None, :, None, :], anchors[:, None, :, :]) ** 2  # [P,m,K]

    try:
        assert main(["fit", "--help"]) == 0
        assert "--metric {ratio,iou,iou2}" in capsys.readouterr().out
        assert main(["fit", "--metric", "iou2", "--gen", "5", "--n", "3", "--levels", "1", "--format", "json", "-q"]) == 0
        assert json.loads(capsys.readouterr().out)["metric"] == "iou2"
        assert SquaredIoU.boxes_scored > 0  # the search scored anchors with it
    finally:
        OBJECTIVES.unregister("iou2")
    assert main(["fit", "--metric", "iou2", "-q"]) == 2  # no longer a choice
    assert "invalid choice: 'iou2' (choose from" in capsys.readouterr().err


# -- darknet cfgs and mmyolo ----------------------------------------------------------------------


def darknet_boxes(width: int, height: int, *, letter_box: bool = False) -> torch.Tensor:
    """coco128's boxes resized as darknet resizes them, less those the CLI leaves out (under 2 px)."""
    wh = darknet_pixel_wh(load_boxes(None), width, height, letter_box=letter_box)
    return wh[(wh >= 2).any(1) & (wh > 0).all(1)]


def cfg_in(tmp_path, name: str, text: str | None = None):
    path = tmp_path / name
    path.write_bytes((CFG_FILES[name] if text is None else text).encode("utf-8"))
    return path


@pytest.mark.parametrize(("name", "size"), [("yolov3.cfg", 416), ("yolov4.cfg", 608)])
def test_fit_write_cfg_changes_only_its_anchors_lines_to_fitter_anchors(tmp_path, capsys, monkeypatch, name, size):
    monkeypatch.chdir(tmp_path)
    path = cfg_in(tmp_path, name)
    assert main(["fit", "--model", name, "--write", "--format", "darknet", "--gen", GEN]) == 0
    captured = capsys.readouterr()

    before = CFG_FILES[name].encode("utf-8").splitlines(keepends=True)
    after = path.read_bytes().splitlines(keepends=True)
    anchors_lines = [i for i, line in enumerate(before) if line.startswith(b"anchors = ")]
    assert len(anchors_lines) == 3 and len(after) == len(before)
    assert [i for i, (old, new) in enumerate(zip(before, after)) if old != new] == anchors_lines
    assert len({after[i] for i in anchors_lines}) == 1  # every [yolo] section got the same line
    old, new = parse_cfg(CFG_FILES[name]), read_cfg(path)
    assert new.masks == old.masks and new.num == old.num and new.strides == (8, 16, 32)

    # What was printed is what was written: the anchors = line, then each level's mask, finest first.
    line, *masks = captured.out.splitlines()
    assert pairs(line) == new.anchors.long().tolist()
    assert masks == ["# P3/8", "mask = 0,1,2", "# P4/16", "mask = 3,4,5", "# P5/32", "mask = 6,7,8"]
    # Measured on coco128 stretched to the cfg's size, as darknet trains, the new anchors fit better.
    kept = darknet_boxes(size, size)
    was = anchor_stats(kept, old.level_anchors().reshape(-1, 2), thr=4.0)
    now = anchor_stats(kept, new.level_anchors().reshape(-1, 2), thr=4.0)
    assert now.fitness > was.fitness
    assert f"anchors in {name} before: fitness {was.fitness:.4f}" in captured.err
    assert f"rewrote the anchors = line of the 3 [yolo] sections of {name}" in captured.err
    assert "fit worse" not in captured.err


def test_fit_cfg_json_measures_boxes_stretched_to_the_cfg_size(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg_in(tmp_path, "yolov4.cfg")
    assert main(["fit", "--model", "yolov4.cfg", "--format", "json", "--gen", GEN, "-q"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["network"] == {"width": 608, "height": 608, "letter_box": False, "size_from": "the cfg's size"}
    assert document["img"] == 608 and document["n"] == 9
    assert [level["stride"] for level in document["levels"]] == [8, 16, 32]
    assert document["darknet"]["masks"] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    line = document["darknet"]["anchors"]
    assert [level["anchors"] for level in document["levels"]] == [line[0:3], line[3:6], line[6:9]]
    kept = darknet_boxes(608, 608)
    expected = anchor_stats(kept, torch.tensor(line, dtype=torch.float32), thr=4.0)
    assert document["n_boxes"] == kept.shape[0]
    assert document["fitness"] == pytest.approx(expected.fitness, abs=1e-6)
    assert document["bpr"] == pytest.approx(expected.bpr, abs=1e-6)


def test_fit_cfg_text_header_says_which_size_was_used(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg_in(tmp_path, "yolov3.cfg")
    assert main(["fit", "--model", "yolov3.cfg", "--img", "320", "--gen", "0", "-q"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "; 320x320 stretched as darknet, --img 320 at the cfg's aspect ratio, thr 4.0," in header


def test_fit_write_of_yolov4_tiny_fits_the_five_anchors_its_masks_use(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = cfg_in(tmp_path, "tiny.cfg")
    assert main(["fit", "--model", "tiny.cfg", "--write", "--format", "json", "--gen", GEN]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert len(document["anchors_exact"]) == 5  # anchor 0 is in no mask: five anchors were searched
    line = document["darknet"]["anchors"]
    assert document["darknet"]["masks"] == [[1, 2, 3], [3, 4, 5]]  # finest level (stride 16) first
    assert [level["anchors"] for level in document["levels"]] == [line[1:4], line[3:6]]
    assert [level["stride"] for level in document["levels"]] == [16, 32]
    areas = [w * h for w, h in line]
    assert areas == sorted(areas)
    assert line[0] in ([10, 14], line[1])  # the unused anchor: kept, or its neighbour's when 10x14 is too large
    written = read_cfg(path)
    assert written.anchors.long().tolist() == line and written.masks == ((1, 2, 3), (3, 4, 5))
    assert "its masks use 5 of its 6 anchors, so 5 were fitted; anchor 0 " in captured.err
    assert "anchor 0 (10x14) is in no mask" in captured.err  # the cfg's quirks, as warnings
    assert "anchor 3 (81x82) is in the masks of the [yolo] sections of lines" in captured.err
    expected = anchor_stats(darknet_boxes(416, 416), written.level_anchors().reshape(-1, 2), thr=4.0)
    assert document["fitness"] == pytest.approx(expected.fitness, abs=1e-6)


def test_fitted_line_puts_the_fitted_anchors_where_the_masks_look():
    from autoanchor.cli.darknetcfg import fitted_line

    tiny = parse_cfg(TINY_CFG)
    # Given unsorted and fractional; rounded, sorted by area (400, 900, 1600, 2500, 3600) into indices 1-5.
    fitted = torch.tensor([[40.0, 40.0], [19.6, 20.4], [60.0, 60.0], [30.0, 30.0], [50.0, 50.0]])
    # Anchor 0, 10x14 = 140 px^2, is no larger than 20x20 = 400: it stays.
    assert fitted_line(tiny, fitted) == [[10, 14], [20, 20], [30, 30], [40, 40], [50, 50], [60, 60]]
    # Smaller fitted anchors: 10x14 = 140 > 3x3 = 9 would unsort the line, so anchor 0 repeats anchor 1.
    small = torch.tensor([[3.0, 3.0], [5.0, 5.0], [4.0, 4.0], [6.0, 6.0], [7.0, 7.0]])
    assert fitted_line(tiny, small) == [[3, 3], [3, 3], [4, 4], [5, 5], [6, 6], [7, 7]]

    # An unused anchor last (num=5, masks 0,1 and 2,3): kept when no smaller than the one before it.
    last = parse_cfg(TINY_CFG.replace("num=6", "num=5").replace(TINY_LINE, "1,1, 2,2, 3,3, 4,4, 90,90")
                     .replace("mask = 3,4,5", "mask = 2,3").replace("mask = 1,2,3", "mask = 0,1"))
    assert last.used == (0, 1, 2, 3)
    assert fitted_line(last, small[:4]) == [[3, 3], [4, 4], [5, 5], [6, 6], [90, 90]]
    assert fitted_line(last, small[:4] * 20) == [[60, 60], [80, 80], [100, 100], [120, 120], [120, 120]]
    with pytest.raises(ValueError, match=r"its masks use 4 anchors, got \[5, 2\]"):
        fitted_line(last, small)


def test_check_cfg_shows_each_level_as_its_mask_picks_and_its_quirks(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg_in(tmp_path, "tiny.cfg")
    # yolov4-tiny's anchors on coco128 stretched to 416 x 416: BPR 0.91, not above 0.98, so exit 1.
    assert main(["check", "--model", "tiny.cfg"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("6 anchors (tiny.cfg) on built-in coco128 (")
    assert lines[0].endswith("; 416x416 stretched as darknet, the cfg's size, thr 4.0), w,h in pixels:")
    # Finest level first: stride 16 uses anchors 1-3, stride 32 anchors 3-5 (anchor 3 twice, anchor 0 never).
    assert lines[1].split() == ["P4/16", "23,27", "37,58", "81,82"]
    assert lines[2].split() == ["P5/32", "81,82", "135,169", "344,319"]
    anchors = torch.tensor([[23, 27], [37, 58], [81, 82], [81, 82], [135, 169], [344, 319]], dtype=torch.float32)
    expected = anchor_stats(darknet_boxes(416, 416), anchors, thr=4.0)
    assert lines[3] == (
        f"BPR {expected.bpr:.4f}  anchors/target {expected.aat:.2f}  fitness {expected.fitness:.4f}  "
        f"Avg IoU {expected.avg_iou:.4f}"
    )
    # Then the per-level table (P4, P5 rows), then the verdict.
    assert lines[4].split()[:2] == ["level", "stride"]
    assert [line.split()[:2] for line in lines[5:7]] == [["P4", "16"], ["P5", "32"]]
    assert expected.bpr <= 0.98 and "consider 'autoanchor fit'" in lines[-1]
    assert "autoanchor: warning: tiny.cfg: anchor 0 (10x14) is in no mask; darknet never uses it" in captured.err


@pytest.mark.parametrize(("img", "network"), [(None, (608, 352)), ("416", (416, 241))])
def test_check_cfg_json_letter_box_and_img_at_the_cfg_aspect_ratio(tmp_path, capsys, monkeypatch, img, network):
    monkeypatch.chdir(tmp_path)
    cfg_in(tmp_path, "wide.cfg", yolov4_cfg(608, 352, letter_box=1))
    # --img 416 is the long side: 608 x 352 scaled by 416 / 608 is 416 x 240.8, rounded to 241.
    width, height = network
    expected = anchor_stats(darknet_boxes(width, height, letter_box=True), flat_pairs(Y4_LINE), thr=4.0)
    code = main(["check", "--model", "wide.cfg", "--format", "json", *(["--img", img] if img else [])])
    assert code == (0 if expected.bpr > 0.98 else 1)
    document = json.loads(capsys.readouterr().out)
    size_from = "the cfg's size" if img is None else "--img 416 at the cfg's aspect ratio"
    assert document["network"] == {"width": width, "height": height, "letter_box": True, "size_from": size_from}
    assert document["img"] == width and document["strides"] == [8, 16, 32]
    assert document["anchors"] == flat_pairs(Y4_LINE).tolist()
    assert document["bpr"] == pytest.approx(expected.bpr, abs=1e-9)
    assert document["fitness"] == pytest.approx(expected.fitness, abs=1e-6)
    assert document["fits"] == (expected.bpr > 0.98)


def flat_pairs(line: str) -> torch.Tensor:
    return torch.tensor([float(v) for v in line.split(",")]).view(-1, 2)


@pytest.mark.parametrize(("model", "strides"), [(None, [8, 16, 32]), ("tiny.cfg", [16, 32])])
def test_mmyolo_format_is_python_with_the_anchors_of_the_json(tmp_path, capsys, monkeypatch, model, strides):
    monkeypatch.chdir(tmp_path)
    options = ["fit", "--gen", GEN, "-q"] + (["--model", model] if model else [])
    if model:
        cfg_in(tmp_path, model)
    assert main([*options, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert main([*options, "--format", "mmyolo"]) == 0
    snippet = capsys.readouterr().out
    namespace: dict = {}
    exec("bbox_head = dict(\n" + snippet + ")", namespace)  # as it sits in an mmyolo config
    generator = namespace["bbox_head"]["prior_generator"]
    assert generator["type"] == "mmdet.YOLOAnchorGenerator"
    assert generator["strides"] == strides == [level["stride"] for level in document["levels"]]
    assert generator["base_sizes"] == [[tuple(pair) for pair in level["anchors"]] for level in document["levels"]]


def test_write_refuses_a_read_only_cfg_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = cfg_in(tmp_path, "yolov4.cfg")
    path.chmod(0o444)
    assert main(["fit", "--model", "yolov4.cfg", "--write", "--gen", "1"]) == 2
    error = capsys.readouterr().err
    assert error.splitlines() == ["autoanchor: error: --write 'yolov4.cfg' is read-only (mode -r--r--r--); not written"]
    assert path.read_bytes() == CFG_FILES["yolov4.cfg"].encode("utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolov4.cfg"]


def test_write_of_a_cfg_failing_midway_leaves_it_and_its_mode(tmp_path, capsys, monkeypatch):
    import autoanchor.io._atomic

    monkeypatch.chdir(tmp_path)
    path = cfg_in(tmp_path, "yolov3.cfg")
    path.chmod(0o604)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(autoanchor.io._atomic.os, "fsync", fail)  # after the temporary file is written
    assert main(["fit", "--model", "yolov3.cfg", "--write", "--gen", "1", "-q"]) == 2
    error = capsys.readouterr().err
    assert "No space left on device" in error and str(path) in error and ".tmp" not in error
    assert path.read_bytes() == CFG_FILES["yolov3.cfg"].encode("utf-8")
    assert oct(path.stat().st_mode & 0o777) == oct(0o604)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolov3.cfg"]


def test_a_cfg_that_is_written_keeps_its_mode(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = cfg_in(tmp_path, "yolov3.cfg")
    path.chmod(0o640)
    assert main(["fit", "--model", "yolov3.cfg", "--write", "--gen", "1", "-q"]) == 0
    assert path.read_bytes() != CFG_FILES["yolov3.cfg"].encode("utf-8")
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["yolov3.cfg"]


# -- start-up: no torch for --help, --version and usage errors -----------------------------------

# Runs the command as `python -m autoanchor` does, then reports whether torch was imported.
NO_TORCH_PROBE = """\
import runpy, sys
sys.argv = ["autoanchor", *sys.argv[1:]]
try:
    runpy.run_module("autoanchor", run_name="__main__", alter_sys=True)
except SystemExit as exit_:
    code = exit_.code
print("torch imported:", "torch" in sys.modules, "exit", code, file=sys.stderr)
"""


@pytest.mark.parametrize(
    ("args", "code"),
    [(["--help"], 0), (["--version"], 0), (["fit", "--help"], 0), (["fit", "--n", "0"], 2), (["nope"], 2)],
)
def test_help_version_and_usage_errors_do_not_import_torch(args, code):
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH_PROBE, *args], capture_output=True, text=True, timeout=120,
    )
    assert done.stderr.splitlines()[-1] == f"torch imported: False exit {code}", done.stderr


def test_importtime_of_help_lists_no_torch_module():
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "autoanchor", "--help"], capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "fit" in done.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "autoanchor.cli" in imported  # the probe sees the command's own imports
    assert not [name for name in imported if name == "torch" or name.startswith("torch.")]


def test_the_package_exports_its_names_lazily():
    done = subprocess.run(
        [sys.executable, "-c", (
            "import sys, autoanchor\n"
            "before = 'torch' in sys.modules\n"
            "from autoanchor import check_anchors, search_anchors\n"
            "missing = [n for n in autoanchor.__all__ if not hasattr(autoanchor, n)]\n"
            "print(before, 'torch' in sys.modules, missing, set(autoanchor.__all__) <= set(dir(autoanchor)))"
        )],
        capture_output=True, text=True, timeout=120,
    )
    assert done.stdout.strip() == "False True [] True", done.stderr
    import autoanchor

    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        autoanchor.nope  # noqa: B018
    # what users call, about a dozen names; the rest is imported from its subpackage
    assert len(autoanchor.__all__) <= 14 and {"check_anchors", "kmean_anchors", "__version__"} <= set(autoanchor.__all__)
    with pytest.raises(AttributeError, match="no longer exports 'wh_iou': import it from autoanchor.core.metrics"):
        autoanchor.wh_iou  # noqa: B018
    from autoanchor.core.metrics import wh_iou  # noqa: F401
