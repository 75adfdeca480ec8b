"""Reading and rewriting the anchors of yolov5-style model yaml files, byte for byte."""

from __future__ import annotations

import os
import stat

import pytest
import torch
import yaml

from autoanchor.io.modelyaml import (
    anchors_yaml_block,
    default_strides,
    parse_model_anchors,
    read_model_anchors,
    rewrite_anchors,
    round_anchors,
    write_model_anchors,
)

# A yolov5-style model yaml in the layout of yolov5s.yaml: comments everywhere, a non-ASCII character,
# blank lines, rows in two spacing styles. Lines 7-9 (0-based) are the anchor rows.
P5_MODEL = """\
# Tiny test model ✓ (yolov5 layout)

# Parameters
nc: 80  # number of classes
depth_multiple: 0.33  # model depth multiple
width_multiple: 0.50  # layer channel multiple
anchors:
  - [10,13, 16,30, 33,23]  # P3/8
  - [ 30,61,  62,45,  59,119 ]  # P4/16
  - [116,90, 156,198, 373,326]  # P5/32

# backbone
backbone:
  # [from, number, module, args]
  [[-1, 1, Conv, [64, 6, 2, 2]],  # 0-P1/2
   [-1, 1, Conv, [128, 3, 2]],  # 1-P2/4
  ]

head:
  [[-1, 1, Conv, [512, 1, 1]],
   [[17, 20, 23], 1, Detect, [nc, anchors]],  # Detect(P3, P4, P5)
  ]
"""
ROW_LINES = (7, 8, 9)

# The `anchors: 3` form of yolov5's P6 hub models: levels come from the Detect layer's inputs.
P6_COUNT_MODEL = """\
# Parameters
nc: 80 # number of classes
anchors: 3 # AutoAnchor evolves 3 anchors per P output layer

head: [
    [-1, 1, Conv, [768, 1, 1]],
    [[23, 26, 29, 32], 1, Detect, [nc, anchors]], # Detect(P3, P4, P5, P6)
  ]
"""

NEW_P5 = torch.tensor(
    [[[11.4, 12.6], [20.0, 31.0], [40.0, 25.0]],
     [[35.0, 70.0], [70.0, 50.0], [65.0, 130.0]],
     [[120.0, 95.0], [160.0, 200.0], [380.0, 330.0]]]
)  # [3,3,2]; 11.4 and 12.6 round to 11 and 13


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def test_read_list_form(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(P5_MODEL, encoding="utf-8")
    model = read_model_anchors(path)
    assert (model.n_levels, model.n_per_level, model.n_anchors) == (3, 3, 9)
    assert model.anchors.shape == (3, 3, 2)
    assert model.anchors[1].tolist() == [[30, 61], [62, 45], [59, 119]]
    assert model.source == str(path)


def test_read_count_form_counts_levels_from_detect():
    model = parse_model_anchors(P6_COUNT_MODEL)
    assert (model.n_levels, model.n_per_level, model.anchors) == (4, 3, None)


def test_write_changes_only_the_anchor_rows(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_bytes(P5_MODEL.encode("utf-8"))
    before = _lines(path.read_bytes())

    assert write_model_anchors(path, NEW_P5) is False
    after = _lines(path.read_bytes())

    assert len(after) == len(before)
    for number, (old, new) in enumerate(zip(before, after)):
        if number not in ROW_LINES:
            assert new == old, f"line {number} changed: {old!r} -> {new!r}"
    assert after[7] == b"  - [11,13, 20,31, 40,25]  # P3/8\n"
    assert after[8] == b"  - [ 35,70,  70,50,  65,130 ]  # P4/16\n"  # the row's own spacing style is kept
    assert after[9] == b"  - [120,95, 160,200, 380,330]  # P5/32\n"
    assert torch.equal(read_model_anchors(path).anchors, NEW_P5.round())


def test_write_count_form_replaces_the_line_by_a_block(tmp_path):
    path = tmp_path / "p6.yaml"
    path.write_bytes(P6_COUNT_MODEL.encode("utf-8"))
    before = _lines(path.read_bytes())
    anchors = torch.arange(1, 25, dtype=torch.float32).reshape(4, 3, 2) * 10  # [4,3,2]

    assert write_model_anchors(path, anchors) is True
    after = _lines(path.read_bytes())

    # Line 2 (`anchors: 3 ...`) became 5 lines; everything before and after is untouched.
    assert after[:2] == before[:2]
    assert after[7:] == before[3:]
    # The line's own comment stays word for word, autoanchor's note after it.
    assert after[2].startswith(b"anchors:  " + before[2].split(b"#", 1)[1].join([b"#", b""]).rstrip())
    assert b"was `anchors: 3`" in after[2]
    assert after[3:7] == [
        b"  - [10,20, 30,40, 50,60]  # P3/8\n",
        b"  - [70,80, 90,100, 110,120]  # P4/16\n",
        b"  - [130,140, 150,160, 170,180]  # P5/32\n",
        b"  - [190,200, 210,220, 230,240]  # P6/64\n",
    ]
    model = read_model_anchors(path)
    assert torch.equal(model.anchors, anchors)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert config["head"] == yaml.safe_load(P6_COUNT_MODEL)["head"]


def test_crlf_bom_and_flow_form_survive(tmp_path):
    text = "\ufeff# windows file\r\nanchors: [[10,13, 16,30], [30,61, 62,45]]  # two levels\r\nnc: 2\r\n"
    path = tmp_path / "crlf.yaml"
    path.write_bytes(text.encode("utf-8"))
    write_model_anchors(path, [[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    assert path.read_bytes() == (
        "\ufeff# windows file\r\nanchors: [[1,2, 3,4], [5,6, 7,8]]  # two levels\r\nnc: 2\r\n"
    ).encode("utf-8")


def test_count_form_keeps_crlf(tmp_path):
    path = tmp_path / "count.yaml"
    path.write_bytes(P6_COUNT_MODEL.replace("\n", "\r\n").encode("utf-8"))
    write_model_anchors(path, torch.full((4, 3, 2), 7.0))
    data = path.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n")  # no bare LF introduced
    assert read_model_anchors(path).anchors.shape == (4, 3, 2)


def test_segment_layer_and_single_input():
    segment = "anchors: 2\nhead:\n  [[[1, 2, 3], 1, Segment, [nc, anchors, 32, 256]]]\n"
    assert parse_model_anchors(segment).n_levels == 3
    single = "anchors: 3\nhead:\n  [[-1, 1, Conv, [8]], [4, 1, Detect, [nc, anchors]]]\n"
    assert parse_model_anchors(single).n_levels == 1


def test_write_is_atomic_and_keeps_the_mode(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(P5_MODEL, encoding="utf-8")
    os.chmod(path, 0o640)
    write_model_anchors(path, NEW_P5)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.yaml"]  # no temporary file left


def test_failed_write_leaves_the_file_alone(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(P5_MODEL, encoding="utf-8")
    with pytest.raises(ValueError, match="declares 3 levels x 3 anchors, got anchors for 2 levels x 3"):
        write_model_anchors(path, NEW_P5[:2])
    assert path.read_text(encoding="utf-8") == P5_MODEL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.yaml"]


def test_read_only_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_bytes(P5_MODEL.encode("utf-8"))
    os.chmod(path, 0o444)
    with pytest.raises(PermissionError, match=r"model.yaml is read-only \(mode -r--r--r--\); not written"):
        write_model_anchors(path, NEW_P5)
    assert path.read_bytes() == P5_MODEL.encode("utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.yaml"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root may give a file to another owner")
def test_write_keeps_the_owner(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_bytes(P5_MODEL.encode("utf-8"))
    os.chown(path, 4321, 8765)  # an owner and group other than the writing process's
    write_model_anchors(path, NEW_P5)
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 8765)
    assert read_model_anchors(path).anchors.tolist() == NEW_P5.round().tolist()


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_interrupted_or_failed_write_leaves_no_temporary(tmp_path, monkeypatch, failure):
    import autoanchor.io._atomic

    path = tmp_path / "model.yaml"
    path.write_bytes(P5_MODEL.encode("utf-8"))

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(autoanchor.io._atomic.os, "replace", fail)  # the last step: the temporary is complete
    with pytest.raises(type(failure)) as raised:
        write_model_anchors(path, NEW_P5)
    if isinstance(failure, OSError):  # the message names the model file, not the temporary one
        assert str(path) in str(raised.value) and ".tmp" not in str(raised.value)
    assert path.read_bytes() == P5_MODEL.encode("utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.yaml"]


def test_rewrite_anchors_pure_function_round_trip():
    new_text, expanded = rewrite_anchors(P5_MODEL, NEW_P5)
    assert not expanded
    assert torch.equal(parse_model_anchors(new_text).anchors, NEW_P5.round())
    # Rewriting with the anchors already there gives the very same text.
    same, _ = rewrite_anchors(P5_MODEL, parse_model_anchors(P5_MODEL).anchors)
    assert same == P5_MODEL


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nc: 80\nhead: []\n", "no top-level `anchors:`"),
        ("anchors:\n  - [10,13, 16]\n", "row 0 must be a flat list of positive w,h pairs"),
        ("anchors:\n  - [10,13, 16,30]\n  - [1,2]\n", "same length"),
        ("anchors: 3\nhead: [[-1, 1, Conv, [8]]]\n", "no Detect or Segment layer"),
        ("anchors: 0\n", "positive number of anchors"),
        ("anchors: auto\n", "must be a list of rows"),
        ("- just a list\n", "expected a mapping"),
        ("anchors: [1, 2\n", "not valid yaml"),
    ],
)
def test_malformed_yaml_raises_value_error(text, message):
    with pytest.raises(ValueError, match=message):
        parse_model_anchors(text, source="bad.yaml")


def test_block_style_rows_are_refused():
    text = "anchors:\n  - - 10\n    - 13\n"
    with pytest.raises(ValueError, match="not a flow list"):
        rewrite_anchors(text, [[[1, 2]]])


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ValueError, match="missing.yaml.*does not exist"):
        read_model_anchors(tmp_path / "missing.yaml")


def test_yaml_block_parses_and_rounds():
    block = anchors_yaml_block(NEW_P5)
    assert yaml.safe_load(block) == {"anchors": [[11, 13, 20, 31, 40, 25], [35, 70, 70, 50, 65, 130],
                                                 [120, 95, 160, 200, 380, 330]]}
    assert block.splitlines()[1].endswith("# P3/8")
    assert anchors_yaml_block(NEW_P5[:2], strides=[16, 32]).splitlines()[2].endswith("# P5/32")


def test_round_anchors_validates():
    assert round_anchors(torch.tensor([[[0.2, 2.5]]])) == [[[1, 2]]]  # at least 1 px; halves to even
    with pytest.raises(ValueError, match="shape"):
        round_anchors(torch.ones(3, 2))
    with pytest.raises(ValueError, match="positive"):
        round_anchors(torch.tensor([[[1.0, float("nan")]]]))
    assert default_strides(4) == [8, 16, 32, 64]
