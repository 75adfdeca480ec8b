"""The darknet reader reads what darknet reads (atoi/atof numbers, Latin-1 bytes, extra anchor values,
lone-CR line endings) and says so with a note; what darknet cannot use is refused with a clear error."""

from __future__ import annotations

import pytest
import torch

from autoanchor.io.darknet import parse_cfg, read_cfg, write_cfg_anchors

_CONV = "[convolutional]\nfilters=32\nsize=3\nstride=2\npad=1\nactivation=leaky\n\n"
LINE = "10,13,  16,30,  33,23,  30,61,  62,45,  59,119"


def cfg(*, net: str = "width=320\nheight=320\n", line: str = LINE, num: str = "6", mask2: str = "3,4,5") -> str:
    """[net], down to stride 16, a [yolo] on masks 0-2, down to 32, a [yolo] on ``mask2``."""
    return (
        f"[net]\n{net}\n" + _CONV * 4
        + f"[yolo]\nmask = 0,1,2\nanchors = {line}\nclasses=80\nnum={num}\n\n"
        + _CONV + f"[yolo]\nmask = {mask2}\nanchors = {line}\nclasses=80\nnum={num}\n"
    )


def test_latin1_comment_is_read_and_kept_byte_for_byte_on_rewrite(tmp_path):
    data = ("# r\xe9seau entra\xeen\xe9 \xa9 2020\n" + cfg()).encode("latin-1")
    path = tmp_path / "latin.cfg"
    path.write_bytes(data)
    config = read_cfg(path)
    assert config.num == 6 and config.strides == (16, 32)
    assert any("Latin-1" in note for note in config.notes)
    write_cfg_anchors(path, torch.tensor([[5.0, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]))
    after = path.read_bytes()
    assert after.startswith("# r\xe9seau entra\xeen\xe9 \xa9 2020\n".encode("latin-1"))
    assert after.replace(b"5,6,  7,8,  9,10,  11,12,  13,14,  15,16", LINE.encode()) == data


def test_extra_anchor_values_are_ignored_as_darknet_does_and_kept_on_rewrite(tmp_path):
    # cspx-p7-mish.cfg's case: more values than 2 * num.
    text = cfg(line=LINE + ",  90,90,  120,120")
    config = parse_cfg(text, source="extra.cfg")
    assert config.anchors.shape == (6, 2)
    assert config.anchors[-1].tolist() == [59.0, 119.0]
    assert any("16 anchor values for num=6" in note and "ignores the rest" in note for note in config.notes)
    path = tmp_path / "extra.cfg"
    path.write_text(text)
    write_cfg_anchors(path, torch.arange(1, 13, dtype=torch.float32).reshape(6, 2))
    assert "anchors = 1,2,  3,4,  5,6,  7,8,  9,10,  11,12,  90,90,  120,120\n" in path.read_text()


@pytest.mark.parametrize("value, expected", [("3_44", 3), ("3 # three", 3), ("+3abc", 3), ("6.0", 6)])
def test_integers_are_read_like_atoi(value, expected):
    # darknet: atoi() of the value with spaces removed; `3_44` is 3 (Python's int() would say 344).
    config = parse_cfg(cfg(num=value, line=", ".join(["20"] * (2 * expected)), mask2="0,1,2"))
    assert config.num == expected
    if value not in ("3 # three",):
        assert any("read as" in note for note in config.notes)


def test_mask_and_anchor_values_are_read_like_atoi_and_atof():
    config = parse_cfg(cfg(line="10px,13, 16,30, 33,23, 30,61, 62,45, 59,119", mask2="3,4,5x"))
    assert config.anchors[0].tolist() == [10.0, 13.0]
    assert config.masks == ((0, 1, 2), (3, 4, 5))
    assert sum("read as" in note for note in config.notes) == 3  # 10px on both anchors lines, and 5x


@pytest.mark.parametrize("ending", ["\r", "\r\n", "\n"])
def test_any_line_ending_is_read_and_a_lone_cr_is_noted(ending):
    config = parse_cfg(cfg().replace("\n", ending), source="mac.cfg")
    assert (config.width, config.height, config.num, config.strides) == (320, 320, 6, (16, 32))
    assert any("carriage-return" in note for note in config.notes) == (ending == "\r")


def test_lone_cr_file_is_rewritten_keeping_its_line_endings(tmp_path):
    path = tmp_path / "mac.cfg"
    path.write_bytes(cfg().replace("\n", "\r").encode())
    write_cfg_anchors(path, torch.arange(1, 13, dtype=torch.float32).reshape(6, 2))
    after = path.read_bytes()
    assert b"\n" not in after and b"anchors = 1,2,  3,4,  5,6,  7,8,  9,10,  11,12\r" in after


@pytest.mark.parametrize("num", ["-3", "0"])
def test_non_positive_num_is_a_clear_error(num):
    with pytest.raises(ValueError, match=rf"bad.cfg, line \d+: num must be a positive number of anchors, got {num}"):
        parse_cfg(cfg(num=num), source="bad.cfg")
