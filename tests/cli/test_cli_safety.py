"""Outputs never clobber inputs; files are replaced only where this user may; links followed; streams written.

Every refusal here must come before any work: the runs name a DATA file that does not
exist, so a command that loaded or searched first would fail on the data instead.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autoanchor.cli import main

ROOT = Path(__file__).resolve().parents[2]
MISSING_DATA = "/nonexistent/autoanchor-data.npz"

MODEL_YAML = """\
# a P5 model with a comment
nc: 80
anchors:
  - [10,13, 16,30, 33,23]  # P3/8
  - [30,61, 62,45, 59,119]  # P4/16
  - [116,90, 156,198, 373,326]  # P5/32
head:
  [[[17, 20, 23], 1, Detect, [nc, anchors]]]
"""

_CONV = "[convolutional]\nfilters=32\nsize=3\nstride={stride}\npad=1\nactivation=leaky\n\n"
MODEL_CFG = (
    "[net]\nwidth=320\nheight=320\n\n" + _CONV.format(stride=2) * 5
    + "[yolo]\nmask = 0,1,2\nanchors = 10,13,  16,30,  33,23\nclasses=80\nnum=3\n"
)


@pytest.fixture
def tiny_npz(tmp_path) -> str:
    """40 boxes in 4 images of 640x480: a dataset that fits in well under a second."""
    from helpers import write_npz

    wh = [[0.02 + 0.015 * i, 0.03 + 0.02 * (i % 7)] for i in range(40)]
    return str(write_npz(tmp_path / "tiny.npz", [[640, 480]] * 4, wh, [i % 4 for i in range(40)]))


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name, text", [("m.yaml", MODEL_YAML), ("m.cfg", MODEL_CFG)])
@pytest.mark.parametrize("option", ["--out", "--plot"])
def test_output_naming_the_model_is_refused_before_any_work(tmp_path, capsys, name, text, option):
    model = tmp_path / name
    model.write_text(text)
    code, err = _run(capsys, "fit", MISSING_DATA, "--model", str(model), option, str(model), "-q")
    assert code == 2
    assert "--model input" in err and option in err
    assert model.read_text() == text


def test_out_naming_the_model_with_write_keeps_the_model(tmp_path, capsys):
    model = tmp_path / "m.cfg"
    model.write_text(MODEL_CFG)
    code, err = _run(capsys, "fit", "--model", str(model), "--format", "darknet", "--out", str(model), "--write", "-q")
    assert code == 2 and "--model input" in err
    assert model.read_text() == MODEL_CFG


def test_output_reaching_an_input_through_a_link_or_another_spelling_is_refused(tmp_path, capsys):
    model = tmp_path / "m.yaml"
    model.write_text(MODEL_YAML)
    (tmp_path / "link.txt").symlink_to(model)
    os.link(model, tmp_path / "hard.txt")
    for out in (tmp_path / "link.txt", tmp_path / "hard.txt", tmp_path / "sub" / ".." / "m.yaml"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        code, err = _run(capsys, "fit", MISSING_DATA, "--model", str(model), "--out", str(out), "-q")
        assert code == 2 and "--model input" in err, out
    assert model.read_text() == MODEL_YAML


def test_output_naming_the_data_is_refused(tmp_path, capsys):
    data = tmp_path / "boxes.npz"
    data.write_bytes(b"not really an npz")
    for option in ("--out", "--plot"):
        code, err = _run(capsys, "fit", str(data), option, str(data), "-q")
        assert code == 2 and "DATA input" in err
    assert data.read_bytes() == b"not really an npz"
    # The grid path too.
    code, err = _run(capsys, "fit", str(data), "--generator", "retinanet", "--out", str(data), "-q")
    assert code == 2 and "DATA input" in err


def test_out_and_plot_naming_one_file_are_refused(tmp_path, capsys):
    code, err = _run(capsys, "fit", MISSING_DATA, "--out", str(tmp_path / "a.png"), "--plot", str(tmp_path / "a.png"))
    assert code == 2 and "same file" in err


def test_out_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path, tiny_npz):
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert main(["fit", tiny_npz, "--gen", "0", "-q", "--out", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "anchors for " in target.read_text()


@pytest.mark.slow
def test_plot_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path, tiny_npz):
    pytest.importorskip("matplotlib")
    target = tmp_path / "real.png"
    target.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(target)
    assert main(["fit", tiny_npz, "--gen", "0", "-q", "--plot", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes().startswith(b"\x89PNG")


def test_write_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path, tiny_npz):
    target = tmp_path / "real.yaml"
    target.write_text(MODEL_YAML)
    link = tmp_path / "link.yaml"
    link.symlink_to(target)
    assert main(["fit", tiny_npz, "--gen", "0", "-q", "--model", str(link), "--write"]) == 0
    assert link.is_symlink() and target.read_text() != MODEL_YAML
    assert "# a P5 model with a comment" in target.read_text()


def test_out_to_stdout_dash_and_a_fifo_are_written(tmp_path, capfd, tiny_npz):
    assert main(["fit", tiny_npz, "--gen", "0", "-q", "--out", "-"]) == 0
    assert "anchors for " in capfd.readouterr().out
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    try:
        assert main(["fit", tiny_npz, "--gen", "0", "-q", "--out", str(fifo)]) == 0
    finally:
        out, _ = reader.communicate(timeout=60)
    assert b"anchors for " in out
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.slow
def test_out_dev_stdout_in_a_subprocess():
    done = subprocess.run(
        [sys.executable, "-m", "autoanchor", "fit", "--gen", "0", "-q", "--out", "/dev/stdout"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "anchors for built-in coco128" in done.stdout


# -- permissions: run as `nobody` -----------------------------------------------------------------


def _as_nobody(*argv: str) -> tuple[int, str]:
    """Run ``autoanchor ARGV`` in a forked child that has become ``nobody``: ``(exit code, stderr)``."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")
    import pwd

    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    with tempfile.TemporaryFile("w+") as errors:
        pid = os.fork()
        if pid == 0:  # the child: drop to nobody, run, exit without returning into pytest
            code = 99
            try:
                sys.stderr = errors
                os.setgroups([])
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
                code = main(list(argv))
            finally:
                errors.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        errors.seek(0)
        return os.waitstatus_to_exitcode(status), errors.read()


@pytest.fixture
def open_folder():
    """A folder anyone may write in (as /tmp), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="autoanchor-perm-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder)


@pytest.mark.parametrize("name, text", [("m.cfg", MODEL_CFG), ("m.yaml", MODEL_YAML)])
def test_write_refuses_a_root_file_not_writable_by_the_user(open_folder, name, text):
    model = open_folder / name
    model.write_text(text)
    model.chmod(0o644)  # root's, with write bits set: but not for nobody
    code, err = _as_nobody("fit", MISSING_DATA, "--model", str(model), "--write", "-q")
    assert code == 2, err
    assert "not writable by this user" in err
    assert model.read_text() == text and model.stat().st_uid == 0


def test_write_refuses_another_users_file_even_when_writable(open_folder):
    model = open_folder / "m.yaml"
    model.write_text(MODEL_YAML)
    model.chmod(0o666)
    code, err = _as_nobody("fit", MISSING_DATA, "--model", str(model), "--write", "-q")
    assert code == 2, err
    assert "would change its owner" in err
    assert model.read_text() == MODEL_YAML and model.stat().st_uid == 0


@pytest.mark.parametrize("option", ["--write", "--out", "--plot"])
def test_outputs_into_a_folder_the_user_may_not_write_are_refused_before_the_search(open_folder, option):
    import pwd

    locked = open_folder / "locked"
    locked.mkdir(mode=0o755)  # root's: nobody cannot create the temporary file here
    model = locked / "m.yaml"
    model.write_text(MODEL_YAML)
    model.chmod(0o666)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.chown(model, pwd.getpwnam("nobody").pw_uid, -1)  # nobody's own file
    target = {"--write": [], "--out": [str(locked / "out.txt")], "--plot": [str(locked / "out.png")]}[option]
    code, err = _as_nobody("fit", MISSING_DATA, "--model", str(model), option, *target, "-q")
    assert code == 2, err
    assert "may not create files" in err
    assert model.read_text() == MODEL_YAML


def test_a_long_file_name_is_written_and_errors_name_the_target(tmp_path, tiny_npz, capsys):
    from autoanchor.io._atomic import write_atomic

    out = tmp_path / ("a" * 247)  # the name's own length is allowed; a temporary built from it would not be
    assert main(["fit", tiny_npz, "--gen", "0", "-q", "--out", str(out)]) == 0
    assert "anchors for " in out.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    too_long = tmp_path / ("b" * 300)
    with pytest.raises(OSError) as caught:
        write_atomic(too_long, "x")
    assert str(too_long) in str(caught.value) and ".tmp" not in str(caught.value)
