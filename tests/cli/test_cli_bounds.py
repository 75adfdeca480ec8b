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
    (["--device", "xpu"], "--device xpu"),
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
