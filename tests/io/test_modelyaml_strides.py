"""Model yamls: strides read from the layers feeding Detect; rows rewritten keeping every comment; aliases
and repeated keys refused with a clear error.

The fixtures are written here in a compact notation of the layer structures of yolov5's own
model files (``from:Module/stride``, ``Up`` = ``nn.Upsample x2``), expanded to yaml text.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from autoanchor.cli import main
from autoanchor.io.modelyaml import parse_model_anchors, read_model_anchors, rewrite_anchors

V6_P5 = "-1:Conv/2 -1:Conv/2 -1:C3 -1:Conv/2 -1:C3 -1:Conv/2 -1:C3 -1:Conv/2 -1:C3 -1:SPPF"
LAYOUTS = {
    "p2": (
        V6_P5,
        "-1:Conv/1 -1:Up [-1,6]:Concat -1:C3 -1:Conv/1 -1:Up [-1,4]:Concat -1:C3 -1:Conv/1 -1:Up [-1,2]:Concat -1:C3 "
        "-1:Conv/2 [-1,18]:Concat -1:C3 -1:Conv/2 [-1,14]:Concat -1:C3 -1:Conv/2 [-1,10]:Concat -1:C3 "
        "[21,24,27,30]:Detect",
        (4, 8, 16, 32),
    ),
    "p6": (
        V6_P5.replace("-1:SPPF", "-1:Conv/2 -1:C3 -1:SPPF"),
        "-1:Conv/1 -1:Up [-1,8]:Concat -1:C3 -1:Conv/1 -1:Up [-1,6]:Concat -1:C3 -1:Conv/1 -1:Up [-1,4]:Concat -1:C3 "
        "-1:Conv/2 [-1,20]:Concat -1:C3 -1:Conv/2 [-1,16]:Concat -1:C3 -1:Conv/2 [-1,12]:Concat -1:C3 "
        "[23,26,29,32]:Detect",
        (8, 16, 32, 64),
    ),
    "p7": (
        V6_P5.replace("-1:SPPF", "-1:Conv/2 -1:C3 -1:Conv/2 -1:C3 -1:SPPF"),
        "-1:Conv/1 -1:Up [-1,10]:Concat -1:C3 -1:Conv/1 -1:Up [-1,8]:Concat -1:C3 -1:Conv/1 -1:Up [-1,6]:Concat -1:C3 "
        "-1:Conv/1 -1:Up [-1,4]:Concat -1:C3 -1:Conv/2 [-1,26]:Concat -1:C3 -1:Conv/2 [-1,22]:Concat -1:C3 "
        "-1:Conv/2 [-1,18]:Concat -1:C3 -1:Conv/2 [-1,14]:Concat -1:C3 [29,32,35,38,41]:Detect",
        (8, 16, 32, 64, 128),
    ),
    "yolov3-spp": (
        "-1:Conv/1 -1:Conv/2 -1:Bottleneck -1:Conv/2 -1:Bottleneck -1:Conv/2 -1:Bottleneck -1:Conv/2 -1:Bottleneck "
        "-1:Conv/2 -1:Bottleneck",
        "-1:Bottleneck -1:SPP -1:Conv/1 -1:Conv/1 -1:Conv/1 -2:Conv/1 -1:Up [-1,8]:Concat -1:Bottleneck -1:Bottleneck "
        "-1:Conv/1 -1:Conv/1 -2:Conv/1 -1:Up [-1,6]:Concat -1:Bottleneck -1:Bottleneck [27,22,15]:Detect",
        (8, 16, 32),
    ),
    "bifpn": (
        V6_P5,
        "-1:Conv/1 -1:Up [-1,6]:Concat -1:C3 -1:Conv/1 -1:Up [-1,4]:Concat -1:C3 -1:Conv/2 [-1,14,6]:Concat -1:C3 "
        "-1:Conv/2 [-1,10]:Concat -1:C3 [17,20,23]:Detect",
        (8, 16, 32),
    ),
    "yolov3-tiny": (
        "-1:Conv/1 -1:MaxPool/2 -1:Conv/1 -1:MaxPool/2 -1:Conv/1 -1:MaxPool/2 -1:Conv/1 -1:MaxPool/2 -1:Conv/1 "
        "-1:MaxPool/2 -1:Conv/1 -1:ZeroPad -1:MaxPool/1",
        "-1:Conv/1 -1:Conv/1 -1:Conv/1 -2:Conv/1 -1:Up [-1,8]:Concat -1:Conv/1 [19,15]:Detect",
        (16, 32),
    ),
}


def _layer(token: str) -> str:
    source, _, rest = token.rpartition(":")
    module, _, stride = rest.partition("/")
    if module == "Conv":
        return f"[{source}, 1, Conv, [64, 3, {stride}]]"
    if module == "MaxPool":
        return f"[{source}, 1, nn.MaxPool2d, [2, {stride}, 0]]"
    if module == "Up":
        return f"[{source}, 1, nn.Upsample, [None, 2, 'nearest']]"
    if module == "ZeroPad":
        return f"[{source}, 1, nn.ZeroPad2d, [[0, 1, 0, 1]]]"
    if module == "Detect":
        return f"[{source}, 1, Detect, [nc, anchors]]"
    return f"[{source}, 1, {module}, [64]]"


def model_yaml(name: str, anchors: str = "anchors: 3  # evolved at train time") -> str:
    backbone, head, _ = LAYOUTS[name]
    lines = ["nc: 80  # classes", anchors, "backbone:"]
    lines += [f"  - {_layer(token)}" for token in backbone.split()]
    lines += ["head:"] + [f"  - {_layer(token)}" for token in head.split()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_strides_follow_the_layers_feeding_detect(name):
    model = parse_model_anchors(model_yaml(name))
    assert model.level_strides == list(LAYOUTS[name][2])
    assert model.n_levels == len(LAYOUTS[name][2])


def test_p2_write_labels_levels_p2_to_p5():
    text = model_yaml("p2")
    new, expanded = rewrite_anchors(text, torch.arange(1, 25, dtype=torch.float32).reshape(4, 3, 2))
    assert expanded
    assert re.findall(r"# (P\d/\d+)", new) == ["P2/4", "P3/8", "P4/16", "P5/32"]


def test_layers_that_cannot_be_followed_fall_back_to_p3_on():
    text = model_yaml("p6").replace("C3, [64]", "MysteryBlock, [64]", 1)
    assert parse_model_anchors(text).level_strides == [8, 16, 32, 64]
    head_only = "anchors:\n  - [10,14, 23,27, 37,58]\n  - [81,82, 135,169, 344,319]\nhead:\n  - [[19, 15], 1, Detect, [nc]]\n"
    assert parse_model_anchors(head_only).level_strides == [8, 16]


@pytest.fixture
def small_boxes(tmp_path):
    from helpers import write_npz

    # 60 boxes of 3-7 px at img 640 (fractions of 640x640 images), all of distinct sizes, and a few larger ones.
    wh = [[(3 + 0.065 * i) / 640, (3 + 0.06 * ((7 * i) % 60)) / 640] for i in range(60)]
    wh += [[0.1, 0.12], [0.3, 0.2], [0.05, 0.06]]
    return str(write_npz(tmp_path / "small.npz", [[640, 640]] * 3, wh, [i % 3 for i in range(len(wh))]))


def test_check_and_bounded_fit_use_the_p2_strides(tmp_path, small_boxes, capsys):
    model = tmp_path / "p2.yaml"
    model.write_text(model_yaml("p2", "anchors:\n" + "".join(f"  - [{4*k},{4*k}, {5*k},{5*k}, {6*k},{6*k}]\n" for k in (1, 2, 4, 8))))
    assert main(["check", small_boxes, "--model", str(model), "--format", "json", "-q"]) in (0, 1)
    document = json.loads(capsys.readouterr().out)
    assert [level["stride"] for level in document["levels"]] == [4, 8, 16, 32]
    assert main(["fit", small_boxes, "--model", str(model), "--gen", "20", "--min-stride-units", "1", "-q",
                 "--format", "json"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert [level["stride"] for level in fitted["levels"]] == [4, 8, 16, 32]
    first = torch.tensor(fitted["levels"][0]["anchors"], dtype=torch.float64)
    side = first.prod(dim=1).sqrt()
    assert bool((side >= 4).all())  # one P2/4 stride
    assert bool((side < 8).any())  # below a P3/8 stride: only allowed because the finest level is P2/4


def test_multi_line_row_keeps_its_comments_and_layout():
    text = "nc: 1\nanchors:\n  - [10,13,  # small\n     16,30, 33,23]\n  - [30,61, 62,45, 59,119]  # P4/16\nhead: []\n"
    new, _ = rewrite_anchors(text, [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 10], [11, 12]]])
    assert new == "nc: 1\nanchors:\n  - [1,2,  # small\n     3,4, 5,6]\n  - [7,8, 9,10, 11,12]  # P4/16\nhead: []\n"


def test_anchors_count_line_keeps_its_comment():
    text = model_yaml("yolov3-tiny", "anchors: 3  # AutoAnchor evolves 3 anchors per P output layer")
    new, _ = rewrite_anchors(text, torch.ones(2, 3, 2) * 20)
    first = new.splitlines()[1]
    assert "# AutoAnchor evolves 3 anchors per P output layer" in first
    assert re.findall(r"# (P\d/\d+)", new) == ["P4/16", "P5/32"]


@pytest.mark.parametrize("text", [
    "anchors:\n  - &p3 [10,13, 16,30, 33,23]\n  - *p3\nhead: []\n",
    "p3: &p3 [10,13, 16,30, 33,23]\nanchors:\n  - *p3\n  - [30,61, 62,45, 59,119]\nhead: []\n",
    "rows: &rows [[10,13, 16,30, 33,23]]\nanchors: *rows\nhead: []\n",
])
def test_alias_rows_are_refused_with_a_clear_error(text):
    with pytest.raises(ValueError, match="alias"):
        rewrite_anchors(text, torch.ones(parse_model_anchors(text).n_levels, 3, 2))


def test_repeated_anchors_key_is_refused():
    text = "anchors:\n  - [10,13, 16,30, 33,23]\nanchors:\n  - [1,1, 2,2, 3,3]\nhead: []\n"
    with pytest.raises(ValueError, match=r"appears 2 times \(lines 1 and 3\)"):
        parse_model_anchors(text)


def test_fit_write_refuses_alias_rows_before_the_search(tmp_path, capsys):
    model = tmp_path / "m.yaml"
    text = "p3: &p3 [10,13, 16,30, 33,23]\nanchors:\n  - *p3\n  - [30,61, 62,45, 59,119]\nhead: []\n"
    model.write_text(text)
    assert main(["fit", "/nonexistent/data.npz", "--model", str(model), "--write", "-q"]) == 2
    assert "alias" in capsys.readouterr().err
    assert model.read_text() == text
