"""Darknet cfgs: reading the [yolo] anchors and masks, darknet's resize, rewriting, darknet and mmyolo text."""

from __future__ import annotations

import ast
import os
import stat

import numpy as np
import pytest
import torch

from autoanchor import BoxSizes, anchor_stats, load_boxes, search_anchors
from autoanchor.io._atomic import ReadOnlyFileError
from autoanchor.io.darknet import (
    darknet_lines,
    darknet_pixel_wh,
    parse_cfg,
    read_cfg,
    rewrite_cfg_anchors,
    write_cfg_anchors,
)
from autoanchor.io.mmyolo import mmyolo_snippet

Y3_ANCHORS = "10,13,  16,30,  33,23,  30,61,  62,45,  59,119,  116,90,  156,198,  373,326"
Y4_ANCHORS = "12, 16, 19, 36, 40, 28, 36, 75, 76, 55, 72, 146, 142, 110, 192, 243, 459, 401"
TINY_ANCHORS = "10,14,  23,27,  37,58,  81,82,  135,169,  344,319"


def yolo(mask: str, anchors: str, num: int = 9) -> str:
    return f"[yolo]\nmask = {mask}\nanchors = {anchors}\nclasses=80\nnum={num}\njitter=.3\n"


# The layouts of the real cfgs, cut to the layers that set the strides. yolov3: five stride-2 convolutions
# (stride 32), the stride-32 [yolo] first; routes and upsamples reach stride 16 and then 8.
YOLOV3 = (
    "[net]\n# Testing\nbatch=1\nwidth=416\nheight=416\nchannels=3\n\n"
    + "[convolutional]\nsize=3\nstride=2\npad=1\n\n" * 5
    + yolo("6,7,8", Y3_ANCHORS)  # layer 5, stride 32
    + "\n[route]\nlayers = -2\n\n[upsample]\nstride=2\n\n[route]\nlayers = -1, 3\n\n"  # 6-8: stride 16
    + yolo("3,4,5", Y3_ANCHORS)  # layer 9
    + "\n[route]\nlayers = -2\n\n[upsample]\nstride=2\n\n[route]\nlayers = -1, 2\n\n"  # 10-12: stride 8
    + yolo("0,1,2", Y3_ANCHORS)  # layer 13
)
# The [yolo] headers, 1-based: 7 [net] lines + 5 * 5 convolution lines, then 6 [yolo] + 10 route lines apart.
YOLOV3_YOLO_LINES = (33, 49, 65)

# yolov4: the stride-8 [yolo] first; an SPP maxpool of stride 1 on the way; stride-2 convolutions go down.
YOLOV4 = (
    "[net]\r\nwidth=608\r\nheight=608\r\n\r\n"
    + "[convolutional]\r\nstride=2\r\n" * 3
    + "[maxpool]\r\nstride=1\r\nsize=5\r\n"
    + yolo("0,1,2", Y4_ANCHORS).replace("\n", "\r\n")  # layer 4, stride 8
    + "[route]\r\nlayers = -2\r\n[convolutional]\r\nstride=2\r\n"  # stride 16
    + yolo("3,4,5", Y4_ANCHORS).replace("\n", "\r\n")
    + "[route]\r\nlayers = -2\r\n[convolutional]\r\nstride=2\r\n"  # stride 32
    + yolo("6,7,8", Y4_ANCHORS).replace("\n", "\r\n")
)

# yolov4-tiny: maxpools of stride 2 to stride 32, the stride-32 [yolo] with mask 3,4,5, then stride 16 with
# mask 1,2,3: anchor 0 is in no mask and anchor 3 is in both.
YOLOV4_TINY = (
    "[net]\nwidth=416\nheight=416\n"
    + "[convolutional]\nstride=2\n[maxpool]\nsize=2\nstride=2\n" * 2  # layers 0-3: stride 16
    + "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n"  # 4
    + "[maxpool]\nsize=2\nstride=2\n"  # 5: stride 32
    + yolo("3,4,5", TINY_ANCHORS, num=6)  # 6
    + "[route]\nlayers = -2\n[upsample]\nstride=2\n[route]\nlayers = -1, 3\n"  # 7: layer 5, 8-9: stride 16
    + yolo("1,2,3", TINY_ANCHORS, num=6)  # 10
)


def flat(anchors: str) -> torch.Tensor:
    return torch.tensor([float(v) for v in anchors.split(",")]).view(-1, 2)


# -- reading ------------------------------------------------------------------------------------------


def test_yolov3_layout_gives_the_finest_level_the_first_anchors():
    config = parse_cfg(YOLOV3, source="yolov3.cfg")
    assert (config.width, config.height, config.letter_box) == (416, 416, False)
    assert [s.line for s in config.sections] == list(YOLOV3_YOLO_LINES)
    assert [s.mask for s in config.sections] == [(6, 7, 8), (3, 4, 5), (0, 1, 2)]
    assert [s.layer for s in config.sections] == [5, 9, 13]
    assert [s.num for s in config.sections] == [9, 9, 9]
    assert [s.anchors_line for s in config.sections] == [line + 2 for line in YOLOV3_YOLO_LINES]
    # File order is stride 32, 16, 8; levels run finest first, so section 2 is level 0.
    assert config.order == (2, 1, 0)
    assert config.strides == (8, 16, 32) and not config.strides_inferred
    assert torch.equal(config.anchors, flat(Y3_ANCHORS))
    assert torch.equal(config.level_anchors(), flat(Y3_ANCHORS).view(3, 3, 2))
    assert config.notes == ()


def test_yolov4_layout_with_crlf_gives_the_same_levels_in_the_other_file_order():
    config = parse_cfg(YOLOV4)
    assert (config.width, config.height) == (608, 608)
    assert config.order == (0, 1, 2)
    assert config.strides == (8, 16, 32)
    assert config.masks == ((0, 1, 2), (3, 4, 5), (6, 7, 8))
    assert torch.equal(config.level_anchors(), flat(Y4_ANCHORS).view(3, 3, 2))
    areas = config.level_anchors().prod(-1)
    assert bool((areas[0].max() < areas[1].min()) & (areas[1].max() < areas[2].min()))
    assert config.notes == ()


def test_yolov4_tiny_strides_are_16_and_32_and_its_mask_quirks_are_reported_not_changed():
    config = parse_cfg(YOLOV4_TINY, source="yolov4-tiny.cfg")
    assert config.strides == (16, 32)
    assert config.order == (1, 0)  # the second section (mask 1,2,3) is the finer level
    assert config.masks == ((1, 2, 3), (3, 4, 5))
    anchors = flat(TINY_ANCHORS)
    assert torch.equal(config.level_anchors(), torch.stack([anchors[[1, 2, 3]], anchors[[3, 4, 5]]]))
    assert len(config.notes) == 2
    unused, shared = config.notes
    assert "yolov4-tiny.cfg" in unused and "anchor 0 (10x14)" in unused and "no mask" in unused
    assert "anchor 3 (81x82)" in shared and "lines 21, 33" in shared


def test_syntax_spaces_comments_and_repeated_sections():
    text = (
        "\ufeff; made by hand\n[net]\n  width = 320 \nheight=256\nletter_box=1\n\n# a comment\n"
        "[convolutional]\nstride=2\n[convolutional]\nstride = 2\n"
        "[yolo]  # head\n  mask=  0 ,1\n"
        "anchors=5,6,7,8  # mine\n;classes=3\nnum =2\n"
    )
    config = parse_cfg(text)
    assert (config.width, config.height, config.letter_box) == (320, 256, True)
    assert config.strides == (4,)  # two stride-2 convolutions
    assert config.masks == ((0, 1),)
    assert config.sections[0].line == 12
    assert torch.equal(config.anchors, torch.tensor([[5.0, 6.0], [7.0, 8.0]]))


def test_repeated_keys_that_are_not_read_are_left_to_darknet():
    config = parse_cfg(YOLOV3.replace("classes=80", "classes=80\nclasses=3", 1))
    assert config.masks == ((0, 1, 2), (3, 4, 5), (6, 7, 8))


def test_a_missing_mask_means_every_anchor_as_in_darknet():
    text = "[net]\nwidth=64\nheight=64\n[convolutional]\nstride=2\n[yolo]\nanchors=1,2,3,4\nnum=2\n"
    config = parse_cfg(text)
    assert config.masks == ((0, 1),)
    assert config.sections[0].mask_line is None


def test_strides_of_unknown_layers_are_assigned_by_anchor_area_and_said_so():
    # `[custom]` is no layer this reader follows: the two levels are ordered by the area of their anchors.
    text = (
        "[net]\nwidth=64\nheight=64\n[custom]\n"
        + yolo("2,3", "2,2, 3,3, 40,40, 50,50", num=4)
        + "[route]\nlayers=-2\n"
        + yolo("0,1", "2,2, 3,3, 40,40, 50,50", num=4)
    )
    config = parse_cfg(text, source="odd.cfg")
    assert config.strides_inferred
    assert config.strides == (16, 32)
    assert config.order == (1, 0)
    assert any("could not be followed; [16, 32] assigned by area" in note for note in config.notes)


def test_masks_giving_the_finest_level_the_largest_anchors_are_reported_and_not_rewritten():
    # darknet #3860: yolov3's layout with the masks of the stride-32 and stride-8 sections swapped.
    swapped = YOLOV3.replace("mask = 6,7,8", "mask = X").replace("mask = 0,1,2", "mask = 6,7,8")
    swapped = swapped.replace("mask = X", "mask = 0,1,2")
    config = parse_cfg(swapped, source="swapped.cfg")
    assert config.masks == ((6, 7, 8), (3, 4, 5), (0, 1, 2))  # reported as written
    assert torch.equal(config.level_anchors()[0], flat(Y3_ANCHORS)[6:])
    assert any("go back to smaller indices" in note for note in config.notes)
    # The masks sit one line under the [yolo] headers (33, 49, 65); the finest level is the last section.
    masks = r"\[6, 7, 8\] \(line 66\), \[3, 4, 5\] \(line 50\), \[0, 1, 2\] \(line 34\);"
    with pytest.raises(ValueError, match=r"swapped.cfg: not rewritten.*\(stride 8\).*" + masks):
        rewrite_cfg_anchors(swapped, flat(Y3_ANCHORS), source="swapped.cfg")


def test_different_anchors_lines_and_unsorted_anchors_are_noted():
    text = YOLOV3.replace(Y3_ANCHORS, "373,326,  " + Y3_ANCHORS.rsplit(",  ", 1)[0], 1)
    notes = parse_cfg(text, source="mixed.cfg").notes
    assert any("line 51 differ from those of line 35" in note for note in notes)
    assert any("line 35 are not sorted by area" in note for note in notes)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[net]\nwidth=416\nheight=416\n[convolutional]\nstride=2\n", r"bad.cfg has no \[yolo\] section"),
        (YOLOV3.replace("mask = 0,1,2", "mask = 0,1,9"), r"bad.cfg, line 66: mask index 9 is out of range"),
        # Fewer values than num asks for (darknet would use 0.5 px for the missing ones); more are ignored, as
        # darknet does (test_darknet_lenient.py).
        (YOLOV3.replace("num=9", "num=10", 1), r"bad.cfg, line 35: 18 anchor values for num=10 \(line 37\)"),
        (YOLOV3.replace("mask = 6,7,8", "mask = 6,7"), r"as many anchors, got 2 in the \[yolo\] of line 33, 3 in"),
        (
            YOLOV3.replace(f"{Y3_ANCHORS}\nclasses=80\nnum=9", f"{Y3_ANCHORS},  400,400\nclasses=80\nnum=10", 1),
            r"the same num, got num=10 at line 37, num=9 at line 53, num=9 at line 69",
        ),
        (YOLOV3.replace("classes=80", "classes 80", 1), r"bad.cfg, line 36: expected `key = value`"),
        (YOLOV3.replace("classes=80", "anchors=1,1", 1), r"bad.cfg, line 36: 'anchors' repeats line 35"),
        (YOLOV3.replace("anchors = 10,13", "anchors = 10,x", 1), r"line 35: anchors must be comma-separated"),
        (YOLOV3.replace("anchors = 10,13", "anchors = 0,13", 1), r"line 35: anchors must be positive"),
        (YOLOV3.replace("width=416\n", ""), r"bad.cfg: the \[net\] section of line 1 has no 'width'"),
        (YOLOV3.replace("[net]", "[convolutional]"), r"the first section must be \[net\].*line 1 is"),
        ("width=416\n" + YOLOV3, r"bad.cfg, line 1: 'width' comes before the first \[section\]"),
        (YOLOV3.replace("[yolo]", "[yolo", 1), r"bad.cfg, line 33: malformed section header"),
        (YOLOV3.replace("layers = -1, 3", "layers = 40"), r"line 47: route to a layer that does not precede it"),
    ],
)
def test_malformed_cfgs_are_refused_naming_file_and_line(text, message):
    with pytest.raises(ValueError, match=message):
        parse_cfg(text, source="bad.cfg")


def test_read_cfg_names_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="nowhere.cfg' does not exist"):
        read_cfg(tmp_path / "nowhere.cfg")


# -- darknet's resize ---------------------------------------------------------------------------------


def test_stretch_and_letter_box_known_values():
    boxes = BoxSizes(np.array([[640, 480]]), np.array([[0.5, 0.25]]), np.array([0]))
    # Stretched to 416x416 a box keeps its fractions: 0.5 * 416 = 208, 0.25 * 416 = 104.
    assert darknet_pixel_wh(boxes, 416, 416).tolist() == [[208.0, 104.0]]
    # letter_box=1 scales both sides by min(416/640, 416/480) = 0.65: 320 * 0.65 = 208, 120 * 0.65 = 78.
    assert darknet_pixel_wh(boxes, 416, 416, letter_box=True).tolist() == [[208.0, 78.0]]
    # A 608x416 network: min(608/640, 416/480) = 0.8667, 320 * 0.8667 = 277.33, 120 * 0.8667 = 104.
    assert darknet_pixel_wh(boxes, 608, 416, letter_box=True)[0].tolist() == pytest.approx([277.333, 104.0], abs=1e-3)


@pytest.mark.parametrize("letter_box", [False, True])
@pytest.mark.parametrize("size", [(416, 416), (608, 320)])
def test_darknet_resize_matches_a_plain_loop(letter_box, size):
    rng = np.random.default_rng(0)
    shapes = rng.integers(100, 1500, size=(20, 2)).astype(float)
    wh = rng.uniform(0.01, 1.0, size=(200, 2))
    index = rng.integers(0, 20, size=200)
    result = darknet_pixel_wh(BoxSizes(shapes, wh, index), *size, letter_box=letter_box)
    width, height = size
    expected = []
    for (bw, bh), i in zip(wh, index):
        image_w, image_h = shapes[i]
        if letter_box:
            scale = min(width / image_w, height / image_h)
            expected.append([bw * image_w * scale, bh * image_h * scale])
        else:
            expected.append([bw * width, bh * height])
    assert result.dtype == torch.float32 and result.shape == (200, 2)
    assert torch.allclose(result, torch.tensor(expected, dtype=torch.float32), rtol=1e-6)


@pytest.mark.parametrize("bad", [0, -416, float("nan"), True, "416"])
def test_darknet_resize_refuses_a_bad_size(bad):
    boxes = BoxSizes(np.array([[640, 480]]), np.array([[0.5, 0.25]]), np.array([0]))
    with pytest.raises(ValueError, match=r"width must be a finite number greater than 0 \(pixels\)"):
        darknet_pixel_wh(boxes, bad, 416)


# -- rewriting ----------------------------------------------------------------------------------------

NEW = torch.tensor([[400, 300.4], [8, 9], [20, 22], [33, 30], [40, 61], [70, 52], [66, 130], [130, 99], [170, 210]])
NEW_SORTED = sorted(NEW.round().long().tolist(), key=lambda wh: wh[0] * wh[1])


def changed_lines(old: str, new: str) -> list[int]:
    old_lines, new_lines = old.split("\n"), new.split("\n")
    assert len(old_lines) == len(new_lines)
    return [number for number, (a, b) in enumerate(zip(old_lines, new_lines), start=1) if a != b]


@pytest.mark.parametrize("text, anchors", [(YOLOV3, Y3_ANCHORS), (YOLOV4, Y4_ANCHORS)])
def test_rewrite_changes_only_the_anchors_lines_identically(text, anchors):
    new_text = rewrite_cfg_anchors(text, NEW)
    lines = [s.anchors_line for s in parse_cfg(text).sections]
    assert changed_lines(text, new_text) == lines
    rows = {line for number, line in enumerate(new_text.split("\n"), start=1) if number in lines}
    assert len(rows) == 1  # the same line in every section
    # Only the value changed: the text around it (key, spacing, CR) is the old line's.
    old_row = next(line for number, line in enumerate(text.split("\n"), start=1) if number == lines[0])
    assert rows.pop() == old_row.replace(anchors, _written(NEW_SORTED, anchors))
    config = parse_cfg(new_text)
    assert torch.equal(config.anchors, torch.tensor(NEW_SORTED, dtype=torch.float32))
    # Sorted by area and masks unchanged: the finest level holds the three smallest anchors.
    assert torch.equal(config.level_anchors()[0], torch.tensor(NEW_SORTED[:3], dtype=torch.float32))
    assert config.masks == parse_cfg(text).masks


def _written(rows: list[list[int]], style: str) -> str:
    if ", " in style.split(",  ")[0]:  # yolov4 writes `12, 16, 19, 36`
        return ", ".join(f"{w}, {h}" for w, h in rows)
    return ",  ".join(f"{w},{h}" for w, h in rows)  # darknet's `10,13,  16,30`


def test_rewrite_keeps_crlf_an_inline_comment_and_the_key_spacing():
    text = YOLOV4.replace(f"anchors = {Y4_ANCHORS}\r\n", f"anchors   =  {Y4_ANCHORS}   # kmeans 608\r\n", 1)
    new_text = rewrite_cfg_anchors(text, NEW)
    first = new_text.split("\n")[parse_cfg(text).sections[0].anchors_line - 1]
    assert first == "anchors   =  " + _written(NEW_SORTED, Y4_ANCHORS) + "   # kmeans 608\r"
    assert new_text.count("\r\n") == text.count("\r\n") and new_text.count("\n") == text.count("\n")


def test_rewrite_of_yolov4_tiny_keeps_its_masks():
    new = torch.tensor([[5, 6], [9, 9], [20, 20], [40, 40], [80, 80], [300, 300]])
    new_text = rewrite_cfg_anchors(YOLOV4_TINY, new)
    assert changed_lines(YOLOV4_TINY, new_text) == [s.anchors_line for s in parse_cfg(YOLOV4_TINY).sections]
    config = parse_cfg(new_text)
    assert config.masks == ((1, 2, 3), (3, 4, 5))
    assert config.level_anchors()[:, :, 0].tolist() == [[9, 20, 40], [40, 80, 300]]


def test_rewrite_refuses_the_wrong_number_of_anchors_and_bad_values():
    with pytest.raises(ValueError, match=r"yolov3.cfg has num=9 anchors, got anchors of shape \[6, 2\]"):
        rewrite_cfg_anchors(YOLOV3, NEW[:6], source="yolov3.cfg")
    with pytest.raises(ValueError, match="finite and positive"):
        rewrite_cfg_anchors(YOLOV3, NEW * -1)


def test_rewrite_takes_anchors_per_level():
    assert rewrite_cfg_anchors(YOLOV3, NEW.view(3, 3, 2)) == rewrite_cfg_anchors(YOLOV3, NEW)


def test_write_keeps_mode_follows_symlinks_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "yolov3.cfg"
    path.write_bytes(YOLOV3.encode())
    os.chmod(path, 0o640)
    link = tmp_path / "link.cfg"
    link.symlink_to(path)
    config = write_cfg_anchors(link, NEW)
    assert link.is_symlink()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.read_bytes() == rewrite_cfg_anchors(YOLOV3, NEW).encode()
    assert torch.equal(config.anchors, torch.tensor(NEW_SORTED, dtype=torch.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.cfg", "yolov3.cfg"]


def test_write_refuses_a_read_only_cfg_and_leaves_it_as_it_was(tmp_path):
    path = tmp_path / "yolov4.cfg"
    path.write_bytes(YOLOV4.encode())
    os.chmod(path, 0o444)
    with pytest.raises(ReadOnlyFileError, match="yolov4.cfg is read-only"):
        write_cfg_anchors(path, NEW)
    assert path.read_bytes() == YOLOV4.encode()
    assert [p.name for p in tmp_path.iterdir()] == ["yolov4.cfg"]


def test_write_refuses_a_malformed_cfg_and_leaves_it_as_it_was(tmp_path):
    path = tmp_path / "bad.cfg"
    bad = YOLOV3.replace("mask = 0,1,2", "mask = 0,1,9").encode()
    path.write_bytes(bad)
    with pytest.raises(ValueError, match=r"bad.cfg, line 66: mask index 9"):
        write_cfg_anchors(path, NEW)
    assert path.read_bytes() == bad


@pytest.mark.filterwarnings("ignore:.*side under 3 px:UserWarning")
def test_fitted_anchors_written_into_the_cfg_fit_darknet_resized_coco128_better():
    boxes = darknet_pixel_wh(load_boxes(None), 416, 416)
    for text in (YOLOV3, YOLOV4):
        config = parse_cfg(text)
        before = anchor_stats(boxes, config.level_anchors().view(-1, 2))
        result = search_anchors(boxes, config.num, gen=50, seed=0)
        after = parse_cfg(rewrite_cfg_anchors(text, result.anchors))
        written = anchor_stats(boxes, after.level_anchors().view(-1, 2))
        assert written.fitness > before.fitness
        # Whole pixels cost little: within 0.002 of the unrounded search result.
        assert written.fitness == pytest.approx(result.stats.fitness, abs=2e-3)


# -- darknet and mmyolo text --------------------------------------------------------------------------


def test_darknet_lines_start_with_the_cli_anchors_line_and_paste_back_into_a_cfg():
    levels = flat(Y3_ANCHORS).view(3, 3, 2) + 0.4  # rounds back to the yolov3 anchors
    text = darknet_lines(levels, strides=[8, 16, 32])
    lines = text.splitlines()
    assert lines[0] == f"anchors = {Y3_ANCHORS}"
    assert lines[1:] == ["# P3/8", "mask = 0,1,2", "# P4/16", "mask = 3,4,5", "# P5/32", "mask = 6,7,8"]
    anchors_line, masks = lines[0], [line for line in lines if line.startswith("mask")]
    cfg = "[net]\nwidth=416\nheight=416\n" + "".join(
        f"[convolutional]\nstride=2\n[yolo]\n{mask}\n{anchors_line}\nnum=9\n" for mask in masks
    )
    config = parse_cfg(cfg)
    assert torch.equal(config.level_anchors(), flat(Y3_ANCHORS).view(3, 3, 2))


def test_darknet_lines_of_a_cfg_line_with_its_masks():
    text = darknet_lines(flat(TINY_ANCHORS), [(1, 2, 3), (3, 4, 5)])
    assert text == f"anchors = {TINY_ANCHORS}\nmask = 1,2,3\nmask = 3,4,5\n"
    with pytest.raises(ValueError, match="index outside the 6 anchors"):
        darknet_lines(flat(TINY_ANCHORS), [(0, 6)])
    with pytest.raises(ValueError, match=r"\[num, 2\] with masks; got shape \[6, 2\]"):
        darknet_lines(flat(TINY_ANCHORS))


def test_mmyolo_snippet_is_python_holding_the_anchors_and_strides():
    levels = flat(Y4_ANCHORS).view(3, 3, 2)
    snippet = mmyolo_snippet(levels, [8, 16, 32])
    # It is one keyword argument of a model config's bbox_head dict, trailing comma included.
    call = ast.parse(f"dict({snippet})", mode="eval").body
    (keyword,) = call.keywords
    assert keyword.arg == "prior_generator"
    fields = {k.arg: ast.literal_eval(k.value) for k in keyword.value.keywords}
    assert fields == {
        "type": "mmdet.YOLOAnchorGenerator",
        "base_sizes": [[tuple(pair) for pair in level] for level in levels.long().tolist()],
        "strides": [8, 16, 32],
    }
    assert "# P3/8" in snippet
    with pytest.raises(ValueError, match="got 2 strides for 3 levels"):
        mmyolo_snippet(levels, [8, 16])
