"""Options that would exhaust the machine or overflow are refused, naming the option, before any work."""

from __future__ import annotations

import pytest

from autoanchor.cli import main

MISSING = "/nonexistent/autoanchor-data.npz"


@pytest.mark.parametrize("argv, words", [
    (["--generator", "retinanet", "--ratios", "1e-9,1e9"], "--ratios"),
    (["--generator", "retinanet", "--min-size", "1e6", "--max-size", "1e6"], "--min-size"),
    (["--generator", "retinanet", "--min-size", "800", "--max-size", "1e9"], "--max-size"),
    (["--generator", "retinanet", "--min-size", "1e9", "--max-size", "1e9"], "--min-size"),
    (["--generator", "retinanet", "--min-size", "inf", "--max-size", "inf"], "--min-size"),
    (["--generator", "retinanet", "--min-size", "nan", "--max-size", "1333"], "--min-size"),
    (["--generator", "retinanet", "--sizes", "1e30;64;128;256;512"], "--sizes"),
    (["--generator", "retinanet", "--strides", "99999999999999999999,16,32,64,128"], "--strides"),
    (["--generator", "retinanet", "--device", "cuda"], "--device"),
    (["--generator", "retinanet", "--device", "xpu"], "--device"),
    (["--device", "xpu"], "--device='xpu': the xpu device is not available"),
    (["--device", "xla:0"], "--device"),
])
@pytest.mark.parametrize("command", ["fit", "check"])
def test_absurd_values_are_refused_naming_the_option(capsys, argv, words, command):
    if command == "check" and "--generator" not in argv:
        argv = ["--anchors", "10,13, 16,30", *argv]
    assert main([command, MISSING, *argv, "-q"]) == 2
    err = capsys.readouterr().err
    assert words in err
    assert "internal error" not in err and "nonexistent" not in err  # refused before reading the data


@pytest.mark.parametrize("value", ["99999999999999999999", "1e19", "100000", "0", "-5"])
@pytest.mark.parametrize("command", ["fit", "check", "advise"])
def test_img_is_bounded(capsys, value, command):
    extra = ["--anchors", "10,13"] if command == "check" else []
    assert main([command, MISSING, *extra, "--img", value, "-q"]) == 2
    err = capsys.readouterr().err
    assert "--img" in err and "internal error" not in err


@pytest.fixture
def mostly_tiny(tmp_path) -> str:
    """100 boxes at img 640: 80 of 0.5 px (left out, under 2 px) and 20 of distinct sizes."""
    from helpers import write_npz

    wh = [[0.5 / 640, 0.5 / 640]] * 80 + [[0.02 + 0.01 * i, 0.03 + 0.012 * i] for i in range(20)]
    return str(write_npz(tmp_path / "tiny.npz", [[640, 640]] * 10, wh, [i % 10 for i in range(100)]))


def test_advise_says_how_many_boxes_its_figures_are_on(mostly_tiny, capsys):
    import json

    assert main(["advise", mostly_tiny, "--counts", "3,6", "--sweep-gen", "0", "--gen", "0", "-q"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "(20 of 100 boxes; 80 under 2 px left out;" in header
    assert main(["advise", mostly_tiny, "--counts", "3", "--sweep-gen", "0", "--gen", "0", "-q", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["n_boxes"], document["n_boxes_all"], document["n_boxes_left_out"]) == (20, 100, 80)


@pytest.mark.parametrize("argv", [
    ["advise", "--counts", "3-30"],
    ["fit", "--n", "30", "--levels", "3"],
    ["fit", "--n", "5000", "--levels", "1"],
])
def test_more_anchors_than_distinct_sizes_are_refused_quickly(mostly_tiny, capsys, argv):
    import time

    start = time.perf_counter()
    assert main([argv[0], mostly_tiny, *argv[1:], "-q"]) == 2
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert "only 20 distinct sizes" in err and "internal error" not in err


def test_model_yaml_with_a_huge_anchor_count_is_refused(mostly_tiny, tmp_path, capsys):
    model = tmp_path / "m.yaml"
    model.write_text(
        "anchors: 100000\nbackbone:\n  - [-1, 1, Conv, [64, 3, 8]]\n  - [-1, 1, Conv, [64, 3, 2]]\n"
        "head:\n  - [[0, 1], 1, Detect, [nc, anchors]]\n"
    )
    assert main(["fit", mostly_tiny, "--model", str(model), "-q"]) == 2
    assert "distinct sizes" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["100000", "3-1000000000000"])
def test_advise_counts_are_bounded_when_parsed(capsys, value):
    assert main(["advise", MISSING, "--counts", value, "-q"]) == 2
    assert "--counts" in capsys.readouterr().err
