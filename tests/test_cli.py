"""The command line, run as users run it: ``python -m autoanchor ...`` in a subprocess.

Each run pays for a fresh interpreter and torch import, so all runs are started up
front by one fixture, as many at a time as there are cores, each with
``OMP_NUM_THREADS=1`` (the search works on small tensors; several torch thread
pools on few cores only slow each other down), and fits use ``--gen 30``. The tests
then check the recorded outputs and files. Extra error paths, interrupted and refused
writes, and the two registries (subcommands, output formats) are checked in-process
through :func:`autoanchor.cli.main`; start-up imports (no torch for ``--help``) in
small subprocesses.
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


# Three 640x480 images, twelve boxes from 20x30 to 31x52 px.
TINY_COCO = json.dumps({
    "images": [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in range(3)],
    "annotations": [
        {"id": j, "image_id": j % 3, "bbox": [0, 0, 20 + j, 30 + 2 * j], "category_id": 1, "iscrowd": 0, "area": 1}
        for j in range(12)
    ],
    "categories": [{"id": 1, "name": "thing"}],
})

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
    output = ok(name).stdout  # exit code 0: the anchors fit
    assert expected in output
    assert "these anchors fit the data" in output  # coco128 BPR with the yolov5 defaults is above 0.98
    assert "928 of 929 boxes; 1 under 2 px left out" in output


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


def test_no_cache_reads_and_writes_no_cache_file(runs, folder):
    for name in ("check_no_cache", "check_cache"):
        assert runs[name].code == 0, runs[name].stderr
        assert runs[name].stderr == ""  # -q
    # Without --no-cache the loader leaves its hidden cache file beside the annotations.
    assert [p.name for p in folder.iterdir() if "coco-cached.json" in p.name and p.name != "coco-cached.json"]
    assert not [p.name for p in folder.iterdir() if "coco.json" in p.name and p.name != "coco.json"]


def test_seed_takes_the_whole_generator_range(ok):
    line = ok("seed_max").stdout.strip()
    assert line.startswith("anchors = ") and len(pairs(line)) == 9


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
        (["check", "--anchors", "yolov5-p5", "--bpr-threshold", "1.5"], "--bpr-threshold: expected a number from 0"),
        (["fit", "--seed", "99999999999999999999"], "--seed: expected an integer from 0 to 2**64 - 1"),
        (["fit", "--seed", "-1"], "--seed"),
        (["fit", "--device", "meta"], "the meta device holds no values"),
        (["fit", "--plot", "x.foo"], "cannot plot to 'x.foo': suffix '.foo'; use one of"),
        (["fit", "--plot", "x"], "cannot plot to 'x': no suffix"),
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
    import autoanchor._atomic

    monkeypatch.chdir(tmp_path)
    model = tmp_path / "yolov5s.yaml"
    model.write_bytes(P5_MODEL.encode("utf-8"))
    model.chmod(0o640)

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(autoanchor._atomic.os, "fsync", fail)  # after the temporary file is written
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


def test_a_registered_format_becomes_a_choice_and_unknown_names_list_the_known(monkeypatch, capsys):
    from autoanchor.cli import registry

    with pytest.raises(ValueError, match=r"unknown output format 'xml' for 'fit'; known: text, yaml, json, darknet"):
        registry.get_format("fit", "xml")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_format("json", command="fit", help="again")(lambda result: "")

    monkeypatch.setitem(registry._FORMATS, "fit", dict(registry._FORMATS["fit"]))  # undone after the test
    registry.register_format("pairs", command="fit", help="w x h per line")(
        lambda result: "".join(f"{w}x{h}\n" for level in result.rows for w, h in level)
    )
    assert main(["fit", "--gen", "0", "--n", "2", "--levels", "1", "--format", "pairs", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(re.fullmatch(r"\d+x\d+", line) for line in lines)
    assert "pairs" not in registry.format_names("check")


def test_a_registered_subcommand_runs_with_the_shared_options(monkeypatch, capsys):
    from autoanchor.cli import registry

    monkeypatch.setattr(registry, "_COMMANDS", dict(registry._COMMANDS))  # undone after the test
    seen = {}

    def add_arguments(parser):
        parser.add_argument("--levels", type=int, default=3)

    @registry.register_command("explain", help="explain", description="Explain.", add_arguments=add_arguments)
    def run(args):
        seen.update(levels=args.levels, img=args.img, data=args.data, cache=args.cache)
        return 0

    assert main(["explain", "data.yaml", "--levels", "4", "--no-cache"]) == 0
    assert seen == {"levels": 4, "img": 640, "data": "data.yaml", "cache": False}
    with pytest.raises(ValueError, match="unknown subcommand 'nope'; known: fit, check, advise, explain"):
        registry.get_command("nope")
    with pytest.raises(ValueError, match="'fit' is already registered"):
        registry.register_command("fit", help="", description="", add_arguments=add_arguments)(run)


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
