"""Dataset adapters: every loader against the .npz route on the same numbers, bad inputs, the cache."""

from __future__ import annotations

import json
import logging
import os
import warnings
import xml.parsers.expat as expat
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageFile, features

from autoanchor.core.boxes import BoxSizes
from autoanchor.io.datasets import (
    IMG_EXTS,
    LoadSummary,
    builtin_path,
    image_size,
    label_path,
    load_boxes,
    load_boxes_with_report,
)

from helpers import (
    COCO_ANNOTATIONS,
    COCO_IMAGES,
    YOLO_IMAGES,
    VOC_FILES,
    assert_same_boxes,
    reference_npz,
    shared_npz,
    voc_xml,
    write_coco,
    write_image,
    write_labels,
    write_npz,
    write_voc,
    write_yolo,
)


# ----------------------------------------------------------------------------------------
# Image headers and the label rule


@pytest.mark.parametrize("orientation", range(1, 9))
def test_image_size_applies_exif_orientation(tmp_path, orientation):
    path = write_image(tmp_path / "a.jpg", 64, 48, orientation=orientation)
    # Orientations 5-8 turn the picture by 90 or 270 degrees: displayed width = stored height.
    assert image_size(path) == ((48, 64) if orientation >= 5 else (64, 48))


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tiff", ".bmp"])
def test_image_size_reads_headers_only(tmp_path, monkeypatch, suffix):
    if suffix == ".webp" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    rotated = write_image(tmp_path / f"rotated{suffix}", 64, 48, orientation=None if suffix == ".bmp" else 6)
    plain = write_image(tmp_path / f"plain{suffix}", 64, 48)

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert image_size(plain) == (64, 48)
    assert image_size(rotated) == ((64, 48) if suffix == ".bmp" else (48, 64))


def test_label_path_follows_yolov5_rule():
    sep = os.sep
    assert label_path(f"{sep}d{sep}images{sep}train{sep}0001.jpg") == f"{sep}d{sep}labels{sep}train{sep}0001.txt"
    # only the last /images/ changes; only the last extension
    assert label_path(f"{sep}images{sep}x{sep}images{sep}a.b.png") == f"{sep}images{sep}x{sep}labels{sep}a.b.txt"
    # no images folder: beside the image
    assert label_path(f"{sep}d{sep}pics{sep}a.JPG") == f"{sep}d{sep}pics{sep}a.txt"
    assert label_path(Path(f"{sep}d{sep}imagesX{sep}a.jpg")) == f"{sep}d{sep}imagesX{sep}a.txt"


# ----------------------------------------------------------------------------------------
# YOLO routes: each gives the .npz route's boxes


def test_data_yaml_with_folder(yolo_root, reference):
    (yolo_root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [a, b, c, d]\n")
    boxes, summary = load_boxes_with_report(yolo_root / "data.yaml")
    assert_same_boxes(boxes, reference)
    folder = yolo_root.resolve() / "images" / "train"
    assert boxes.image_names == [str(folder / f"{name}{suffix}") for name, _, suffix, _, _ in YOLO_IMAGES]
    assert (summary.format, summary.n_images, summary.n_boxes) == ("yolo", 5, 6)
    assert summary.missing_labels == 1 and summary.skipped_images == 0 and summary.skipped_boxes == 0


def test_data_yaml_with_list_of_folders(tmp_path, reference):
    root = tmp_path / "ds"
    write_yolo(root, folder_of=lambda i: "part1" if i < 3 else "part2")
    (root / "data.yaml").write_text("path: .\ntrain: [images/part1, images/part2]\n")
    assert_same_boxes(load_boxes(root / "data.yaml"), reference)


def test_data_yaml_with_image_list(yolo_root, reference):
    images = sorted((yolo_root / "images" / "train").iterdir())
    lines = [f"./images/train/{images[0].name}", str(images[1])] + [f"images/train/{p.name}" for p in images[2:]]
    (yolo_root / "train.txt").write_text("\n".join(lines) + "\n\n")
    (yolo_root / "data.yaml").write_text(f"path: {yolo_root}\ntrain: train.txt\n")
    assert_same_boxes(load_boxes(yolo_root / "data.yaml"), reference)


def test_data_yaml_path_relative_to_yaml_folder_or_cwd(yolo_root, tmp_path, reference, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "data.yaml").write_text("path: ../ds\ntrain: images/train\n")
    assert_same_boxes(load_boxes(configs / "data.yaml"), reference)
    # yolov5's stock yamls name the dataset relative to where yolov5 runs
    elsewhere = tmp_path / "yolov5" / "data"
    elsewhere.mkdir(parents=True)
    (elsewhere / "data.yaml").write_text("path: ds\ntrain: images/train\n")
    monkeypatch.chdir(tmp_path)
    assert_same_boxes(load_boxes(elsewhere / "data.yaml"), reference)
    # ... from yolov5's checkout, the parent of the yaml's folder
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "stock.yaml").write_text("path: ds\ntrain: images/train\n")
    monkeypatch.chdir(configs)
    assert_same_boxes(load_boxes(tmp_path / "data" / "stock.yaml"), reference)
    # no path: relative to the yaml's folder
    (yolo_root / "nopath.yaml").write_text("train: images/train\n")
    assert_same_boxes(load_boxes(yolo_root / "nopath.yaml"), reference)


def test_folder_list_and_mapping_sources(yolo_root, reference):
    folder = yolo_root / "images" / "train"
    assert_same_boxes(load_boxes(folder), reference)
    (yolo_root / "list.txt").write_text("\n".join(str(p) for p in sorted(folder.iterdir())))
    assert_same_boxes(load_boxes(yolo_root / "list.txt"), reference)
    assert_same_boxes(load_boxes({"path": str(yolo_root), "train": "images/train"}), reference)
    assert_same_boxes(load_boxes(yolo_root / "images" / "train", format="yolo"), reference)


def test_val_split(yolo_root, reference):
    (yolo_root / "data.yaml").write_text("path: .\ntrain: images/missing\nval: images/train\n")
    assert_same_boxes(load_boxes(yolo_root / "data.yaml", split="val"), reference)


def test_img_exts_filters_images(yolo_root):
    boxes = load_boxes(yolo_root / "images" / "train", img_exts=[".PNG"])
    np.testing.assert_array_equal(boxes.shapes, [[80, 60], [32, 40]])
    assert boxes.n_boxes == 3


def test_polygon_rows_become_their_extent(tmp_path):
    root = tmp_path / "ds"
    write_image(root / "images" / "a.jpg", 64, 48)
    # class 0, triangle (0.1,0.2) (0.5,0.3) (0.3,0.7): extent 0.4 x 0.5
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.1 0.2 0.5 0.3 0.3 0.7\n1 0.5 0.5 0.25 0.25\n")
    boxes = load_boxes(root / "images")
    np.testing.assert_allclose(boxes.wh, [[0.4, 0.5], [0.25, 0.25]], rtol=0, atol=1e-12)


def test_yolov5_style_object_and_boxsizes_pass_through(reference):
    class Dataset:
        shapes = np.array([[64, 48], [48, 64]])
        labels = [np.array([[0, 0.5, 0.5, 0.25, 0.5]]), np.zeros((0, 5))]
        im_files = ["a.jpg", "b.jpg"]

    boxes, summary = load_boxes_with_report(Dataset())
    np.testing.assert_array_equal(boxes.wh, [[0.25, 0.5]])
    assert summary.format == "object" and summary.n_images == 2
    assert load_boxes(reference) is reference


def test_progress_bar(yolo_root, capsys):
    load_boxes(yolo_root / "images" / "train", progress=True, cache=False)
    assert "Reading images" in capsys.readouterr().err
    load_boxes(yolo_root / "images" / "train", progress=False, cache=False)
    assert capsys.readouterr().err == ""


def test_summary_is_logged(yolo_root, caplog):
    with caplog.at_level(logging.INFO, logger="autoanchor.io.datasets"):
        _, summary = load_boxes_with_report(yolo_root / "images" / "train")
    assert str(summary) in caplog.text
    assert "5 images, 6 boxes" in str(summary) and "1 images without a label file" in str(summary)


# ----------------------------------------------------------------------------------------
# COCO


def coco_reference(tmp_path: Path, include_crowd: bool) -> BoxSizes:
    rows = {image["id"]: i for i, image in enumerate(COCO_IMAGES)}
    kept = [a for a in COCO_ANNOTATIONS if include_crowd or not a.get("iscrowd")]
    kept.sort(key=lambda a: rows[a["image_id"]])  # stable: each image's boxes in file order
    shapes = [(image["width"], image["height"]) for image in COCO_IMAGES]
    wh = []
    for a in kept:
        width, height = shapes[rows[a["image_id"]]]
        wh.append((a["bbox"][2] / width, a["bbox"][3] / height))
    index = [rows[a["image_id"]] for a in kept]
    return load_boxes(write_npz(tmp_path / f"coco_{include_crowd}.npz", shapes, wh, index))


@pytest.mark.parametrize("include_crowd", [False, True])
def test_coco_json(tmp_path, include_crowd):
    path = write_coco(tmp_path / "instances.json", COCO_IMAGES, COCO_ANNOTATIONS)
    boxes, summary = load_boxes_with_report(path, include_crowd=include_crowd)
    assert_same_boxes(boxes, coco_reference(tmp_path, include_crowd))
    assert boxes.image_names == ["a.jpg", "b.jpg", "c.jpg"]
    assert summary.n_images == 3  # the image without annotations counts
    assert summary.excluded_boxes == (0 if include_crowd else 1)
    assert summary.format == "coco" and not summary.messages


def test_coco_bad_annotations_are_skipped(tmp_path):
    images = COCO_IMAGES + [{"id": 12, "file_name": "bad.jpg", "width": 0, "height": 100}]
    annotations = COCO_ANNOTATIONS + [
        {"id": 90, "image_id": 7, "bbox": [5, 5, 0, 10]},  # zero width
        {"id": 91, "image_id": 999, "bbox": [5, 5, 10, 10]},  # unknown image
        {"id": 92, "image_id": 3, "bbox": [5, 5, "x", 10]},  # not numbers
        {"id": 93, "image_id": 12, "bbox": [5, 5, 10, 10]},  # image skipped for its size
    ]
    path = write_coco(tmp_path / "instances.json", images, annotations)
    with pytest.warns(UserWarning, match="instances.json") as record:
        boxes, summary = load_boxes_with_report(path)
    assert len(record) == 1
    assert_same_boxes(boxes, coco_reference(tmp_path, include_crowd=False))
    assert summary.skipped_images == 1 and summary.skipped_boxes == 4
    text = "\n".join(summary.messages)
    assert "bad.jpg" in text and "annotation id 90" in text and "999" in text and "annotation id 92" in text


# ----------------------------------------------------------------------------------------
# PASCAL VOC


def voc_reference(tmp_path: Path, drop_difficult: bool) -> BoxSizes:
    shapes, wh, index = [], [], []
    for i, (width, height, objects) in enumerate(VOC_FILES.values()):
        shapes.append((width, height))
        for _, difficult, (x0, y0, x1, y1) in objects:
            if not (drop_difficult and difficult):
                wh.append(((x1 - x0) / width, (y1 - y0) / height))  # the shared data README's conversion
                index.append(i)
    return load_boxes(write_npz(tmp_path / f"voc_{drop_difficult}.npz", shapes, wh, index))


@pytest.mark.parametrize("drop_difficult", [False, True])
def test_voc_folder(tmp_path, drop_difficult):
    folder = write_voc(tmp_path / "VOC" / "Annotations")
    boxes, summary = load_boxes_with_report(folder, drop_difficult=drop_difficult)
    assert_same_boxes(boxes, voc_reference(tmp_path, drop_difficult))
    assert summary.format == "voc" and summary.n_images == 3
    assert summary.excluded_boxes == int(drop_difficult)
    # the VOC root (holding Annotations/ beside JPEGImages/) and format= give the same
    write_image(tmp_path / "VOC" / "JPEGImages" / "000001.jpg", 353, 500)
    assert_same_boxes(load_boxes(tmp_path / "VOC", drop_difficult=drop_difficult), boxes)
    assert_same_boxes(load_boxes(folder, format="voc", drop_difficult=drop_difficult, cache=False), boxes)


def test_voc_single_file(tmp_path):
    folder = write_voc(tmp_path / "Annotations")
    boxes = load_boxes(folder / "000002.xml")
    np.testing.assert_array_equal(boxes.shapes, [[500, 375]])
    np.testing.assert_array_equal(boxes.wh, [[(207.25 - 139.5) / 500, (301 - 200) / 375]])


def test_voc_bad_objects_are_skipped(tmp_path):
    folder = write_voc(tmp_path / "Annotations")
    (folder / "000004.xml").write_text(
        "<annotation><size><width>100</width><height>100</height></size>"
        "<object><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>5</xmax><ymax>50</ymax></bndbox></object>"
        "<object><name>no box</name></object>"
        "<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>21</xmax><ymax>11</ymax></bndbox></object>"
        "</annotation>"
    )
    with pytest.warns(UserWarning, match="000004.xml"):
        boxes, summary = load_boxes_with_report(folder)
    assert summary.skipped_boxes == 2 and summary.n_images == 4
    np.testing.assert_array_equal(boxes.wh[-1], [0.2, 0.1])


# ----------------------------------------------------------------------------------------
# Bad inputs


def test_missing_source(tmp_path):
    for name in ["nope.yaml", "nope.json", "nope", "nope.npz"]:
        with pytest.raises(ValueError, match=name):
            load_boxes(tmp_path / name)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        load_boxes(tmp_path / "empty")


def test_unsupported_sources(tmp_path):
    (tmp_path / "a.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="a.csv"):
        load_boxes(tmp_path / "a.csv")
    with pytest.raises(TypeError, match="int"):
        load_boxes(42)
    with pytest.raises(ValueError, match="format"):
        load_boxes(tmp_path / "a.csv", format="darknet")
    with pytest.raises(ValueError, match="img_exts"):
        load_boxes(tmp_path / "a.csv", img_exts=[])


@pytest.mark.parametrize(
    "text, match",
    [
        ("path: .\nval: images/train\n", "no 'train'"),
        ("path: .\ntrain:\n", "no 'train'"),
        ("path: .\ntrain: images/nowhere\n", "nowhere"),
        ("path: ./missing_root\ntrain: images/train\n", "missing_root"),
        ("- just\n- a list\n", "not a mapping"),
        ("train: [unclosed\n", "cannot read"),
        ("path: .\ntrain: 5\n", "must be a path"),
    ],
)
def test_bad_data_yaml(yolo_root, text, match):
    (yolo_root / "bad.yaml").write_text(text)
    with pytest.raises(ValueError, match=match) as error:
        load_boxes(yolo_root / "bad.yaml")
    assert "bad.yaml" in str(error.value)


def test_no_labels_at_all(tmp_path):
    write_image(tmp_path / "images" / "a.jpg", 64, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no labels folder: no cache to write, no warning about it
        with pytest.raises(ValueError, match="no boxes.*a.txt"):
            load_boxes(tmp_path / "images")


def test_only_zero_size_boxes(tmp_path):
    write_image(tmp_path / "images" / "a.jpg", 64, 48)
    write_labels(tmp_path / "labels" / "a.txt", [(0, 0.5, 0.5, 0.0, 0.5)])
    with pytest.raises(ValueError, match="no boxes.*a.txt: zero-size"):
        load_boxes(tmp_path / "images")


@pytest.mark.parametrize(
    "bad_row",
    ["0 0.5 0.5 0.2", "0 0.5 0.5 0.2 abc", "cat 0.5 0.5 0.2 0.2", "0 0.5 0.5 0.2 0.2 0.1", "0 0.5 -0.5 0.2 0.2",
     "0 0.5 0.5 1.5 0.2", "0 0.5 0.5 nan 0.2"],
)
def test_corrupt_label_row_skips_its_image(tmp_path, bad_row, reference):
    root = tmp_path / "ds"
    write_yolo(root)
    bad_label = root / "labels" / "train" / "img5.txt"
    write_image(root / "images" / "train" / "img5.jpg", 64, 48)
    bad_label.write_text(f"0 0.5 0.5 0.1 0.1\n{bad_row}\n")
    with pytest.warns(UserWarning, match="img5.txt") as record:
        boxes, summary = load_boxes_with_report(root / "images" / "train")
    assert len(record) == 1 and "line 2" in str(record[0].message)
    assert_same_boxes(boxes, reference)  # yolov5 drops the whole image
    assert summary.skipped_images == 1 and summary.n_images == 5


def test_missing_unreadable_and_tiny_images_are_skipped(yolo_root, reference):
    folder = yolo_root / "images" / "train"
    (yolo_root / "images" / "train" / "broken.jpg").write_bytes(b"not a jpeg at all")
    write_image(folder / "tiny.png", 8, 8)
    listing = [str(p) for p in sorted(folder.iterdir())] + [str(folder / "gone.jpg")]
    (yolo_root / "list.txt").write_text("\n".join(listing))
    with pytest.warns(UserWarning) as record:
        boxes, summary = load_boxes_with_report(yolo_root / "list.txt")
    assert len(record) == 1
    message = str(record[0].message)
    assert "broken.jpg" in message and "gone.jpg" in message and "tiny.png" in message
    assert summary.skipped_images == 3
    # the list is sorted; the good images are the reference
    assert_same_boxes(boxes, reference)


def test_zero_size_and_duplicate_boxes_are_skipped(tmp_path):
    root = tmp_path / "ds"
    write_image(root / "images" / "a.jpg", 64, 48)
    write_labels(root / "labels" / "a.txt", [(0, 0.5, 0.5, 0.0, 0.2), (1, 0.5, 0.5, 0.3, 0.2),
                                             (1, 0.5, 0.5, 0.3, 0.2), (2, 0.1, 0.1, 0.1, 0.0)])
    with pytest.warns(UserWarning, match="a.txt") as record:
        boxes, summary = load_boxes_with_report(root / "images")
    assert len(record) == 1
    np.testing.assert_array_equal(boxes.wh, [[0.3, 0.2]])
    assert summary.skipped_boxes == 3 and summary.skipped_images == 0
    assert any("zero-size" in m for m in summary.messages) and any("duplicate" in m for m in summary.messages)


def test_many_bad_files_give_one_short_warning(tmp_path):
    root = tmp_path / "ds"
    write_yolo(root, images=[(f"bad{i:02d}", (64, 48), ".jpg", None, [(0, 0.5, 0.5)]) for i in range(12)]
               + [("good", (64, 48), ".jpg", None, [(0, 0.5, 0.5, 0.1, 0.1)])])
    with pytest.warns(UserWarning) as record:
        boxes, summary = load_boxes_with_report(root / "images" / "train")
    assert len(record) == 1
    message = str(record[0].message)
    assert "bad00.txt" in message and "bad04.txt" in message and "bad05.txt" not in message
    assert "and 7 more" in message
    assert summary.skipped_images == 12 and len(summary.messages) == 12 and boxes.n_images == 1


def test_warning_points_at_the_caller(yolo_root):
    (yolo_root / "labels" / "train" / "img0.txt").write_text("0 1 2\n")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load_boxes(yolo_root / "images" / "train")
    assert [Path(w.filename).name for w in record if w.category is UserWarning] == ["test_datasets.py"]


def test_coco_without_images(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match="instances.json.*'images'"):
        load_boxes(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="instances.json"):
        load_boxes(path)
    path.write_text(json.dumps({"images": [{"id": 1, "width": 10, "height": 10}], "annotations": {}}))
    with pytest.raises(ValueError, match="annotations"):
        load_boxes(path)


BAD_VOC_FILES = {  # each unusable on its own; the rest of the folder still loads
    "000009.xml": (voc_xml(0, 0, [("dog", False, (1, 1, 5, 5))], size=False), "no <size>"),
    "000010.xml": (voc_xml(0, 375, [("dog", False, (1, 1, 5, 5))]), "invalid <size>"),
    "000011.xml": ("<annotation><size>", "not well-formed"),
    "000012.xml": ('<!DOCTYPE annotation SYSTEM "voc.dtd"><annotation/>', "DOCTYPE"),
}


def test_bad_voc_files_are_skipped_and_named(tmp_path):
    folder = write_voc(tmp_path / "Annotations")
    for name, (text, _) in BAD_VOC_FILES.items():
        (folder / name).write_text(text)
    with pytest.warns(UserWarning) as record:
        boxes, summary = load_boxes_with_report(folder)
    assert len(record) == 1
    for name, (_, reason) in BAD_VOC_FILES.items():
        assert any(name in line and reason in line for line in summary.messages), name
        assert name in str(record[0].message)
    assert summary.skipped_images == 4 and summary.n_images == 3
    assert_same_boxes(boxes, voc_reference(tmp_path, drop_difficult=False))


@pytest.mark.parametrize("name", sorted(BAD_VOC_FILES))
def test_nothing_usable_in_voc_is_an_error(tmp_path, name):
    text, reason = BAD_VOC_FILES[name]
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=f"{name}.*{reason}"):
        load_boxes(tmp_path / name)
    (tmp_path / "only_bad").mkdir()
    (tmp_path / "only_bad" / name).write_text(text)
    (tmp_path / "only_bad" / "other.xml").write_text("<annotation>")
    with pytest.raises(ValueError, match="no readable images.*2 skipped"):
        load_boxes(tmp_path / "only_bad")


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><size><width>100</width><height>100</height></size>
<object><name>&lol9;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>
</annotation>
"""


@pytest.mark.parametrize(
    "text",
    [
        BILLION_LAUGHS,
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<annotation><size><width>9</width><height>9</height></size><filename>&x;</filename></annotation>",
        '<!DOCTYPE annotation SYSTEM "http://example.invalid/voc.dtd"><annotation/>',
    ],
    ids=["billion-laughs", "external-entity", "external-dtd"],
)
def test_xml_doctype_and_entities_are_refused(tmp_path, monkeypatch, text):
    folder = write_voc(tmp_path / "Annotations")
    (folder / "bomb.xml").write_text(text)
    declared = []
    real_create = expat.ParserCreate

    class SpyingParser:
        """Forwards to a real expat parser, recording every entity declaration it reports."""

        def __init__(self, *args, **kwargs):
            object.__setattr__(self, "real", real_create(*args, **kwargs))

        def __getattr__(self, name):
            return getattr(self.real, name)

        def __setattr__(self, name, value):
            if name == "EntityDeclHandler":
                handler = value

                def value(*args):
                    declared.append(args)
                    return handler(*args)

            setattr(self.real, name, value)

    # The refusal must come before any entity declaration is even read (so nothing can expand).
    monkeypatch.setattr(expat, "ParserCreate", SpyingParser)
    with pytest.raises(ValueError, match="bomb.xml.*DOCTYPE"):
        load_boxes(folder / "bomb.xml")
    # in a folder, the file is refused and skipped; the others load
    with pytest.warns(UserWarning, match="bomb.xml.*DOCTYPE"):
        boxes, summary = load_boxes_with_report(folder, cache=False)
    assert summary.skipped_images == 1 and boxes.n_images == len(VOC_FILES)
    assert declared == []


# ----------------------------------------------------------------------------------------
# The built-in and the real shared data


def test_builtin_coco128():
    boxes, summary = load_boxes_with_report()
    assert (boxes.n_images, boxes.n_boxes) == (128, 929)
    assert summary.format == "builtin"
    assert_same_boxes(load_boxes("coco128"), boxes)
    assert builtin_path().name == "coco128.npz"


def test_real_coco128_npz():
    boxes = load_boxes(shared_npz("coco128"))
    assert (boxes.n_images, boxes.n_boxes) == (128, 929)  # counts from the data's json card
    assert_same_boxes(boxes, load_boxes())
    # median normalised box size from the card: 0.0934 x 0.1267
    np.testing.assert_allclose(np.median(boxes.wh, axis=0), [0.09339059889316559, 0.12674300372600555], rtol=1e-6)


def test_load_summary_str():
    summary = LoadSummary("x", "yolo", 3, 4, skipped_images=1, skipped_boxes=2, excluded_boxes=0, from_cache=True)
    assert str(summary) == "x [yolo] (from cache): 3 images, 4 boxes, 1 images skipped, 2 boxes skipped"
    assert "jpg" in IMG_EXTS and "png" in IMG_EXTS


def test_tiny_yolo_dataset_fixture(tiny_yolo_dataset):
    boxes = load_boxes(tiny_yolo_dataset, cache=False)
    np.testing.assert_array_equal(boxes.shapes, [[64, 48], [48, 64], [80, 60]])  # b is EXIF-rotated
    np.testing.assert_array_equal(boxes.wh, [[0.25, 0.5], [0.1, 0.2], [0.5, 0.5], [0.3, 0.1]])
    np.testing.assert_array_equal(boxes.image_index, [0, 0, 1, 2])


# ----------------------------------------------------------------------------------------
# One policy for boxes outside their image: clipped if partly outside, skipped if entirely


def test_coco_boxes_are_clipped_to_their_image(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}]
    annotations = [
        {"id": 1, "image_id": 1, "bbox": [10, 10, 5000, 80]},  # 4370 px past the right edge
        {"id": 2, "image_id": 1, "bbox": [700, 10, 50, 50]},  # entirely right of the image
        {"id": 3, "image_id": 1, "bbox": [-5, 100, 40, 20]},  # 5 px left of it
        {"id": 4, "image_id": 1, "bbox": [0.2, 0.2, 640.5, 100]},  # 0.7 px over: rounding, clipped silently
        {"id": 5, "image_id": 1, "bbox": [100, 100, 64, 48]},  # inside
    ]
    path = write_coco(tmp_path / "instances.json", images, annotations)
    with pytest.warns(UserWarning) as record:
        boxes, summary = load_boxes_with_report(path)
    assert len(record) == 1
    # x 10..640 -> 630/640; x 0..35 -> 35/640; x 0.2..640 -> 639.8/640; the inside box as given
    expected = [[630 / 640, 80 / 480], [35 / 640, 20 / 480], [639.8 / 640, 100 / 480], [64 / 640, 48 / 480]]
    np.testing.assert_allclose(boxes.wh, expected, rtol=1e-12)
    assert boxes.wh.max() <= 1
    # centres: ((10 + 640) / 2, (10 + 90) / 2) = (325, 50) px; (17.5, 110); (320.1, 50.2); (132, 124)
    np.testing.assert_allclose(
        boxes.xy, np.array([[325 / 640, 50 / 480], [17.5 / 640, 110 / 480], [320.1 / 640, 50.2 / 480],
                            [132 / 640, 124 / 480]]), rtol=1e-6)
    assert (summary.skipped_boxes, summary.clipped_boxes, summary.n_boxes) == (1, 2, 4)
    text = str(record[0].message)
    assert "annotation id 1" in text and "annotation id 2" in text and "annotation id 3" in text
    assert "annotation id 4" not in text and "clipped 2 boxes" in text


def test_voc_boxes_are_clipped_to_their_image(tmp_path):
    objects = [("a", False, (10, 20, 9000, 100)), ("b", False, (600, 10, 700, 50)), ("c", False, (1, 1, 50, 50))]
    (tmp_path / "big.xml").write_text(voc_xml(500, 375, objects))
    with pytest.warns(UserWarning, match="big.xml") as record:
        boxes, summary = load_boxes_with_report(tmp_path / "big.xml")
    # xmax 9000 -> 500: 490 x 80 px; (600..700) lies right of the 500 px image: skipped
    np.testing.assert_array_equal(boxes.wh, [[490 / 500, 80 / 375], [49 / 500, 49 / 375]])
    np.testing.assert_allclose(boxes.xy, [[255 / 500, 60 / 375], [25.5 / 500, 25.5 / 375]], rtol=1e-6)
    assert (summary.skipped_boxes, summary.clipped_boxes) == (1, 1)
    assert "outside the image 500x375" in str(record[0].message)


def test_yolo_boxes_overhanging_their_image_are_clipped(tmp_path):
    write_image(tmp_path / "images" / "a.jpg", 100, 50)
    # x 0.9 +- 0.2 reaches 1.1 (10 px over); x 0.5 +- 0.5 just fits
    write_labels(tmp_path / "labels" / "a.txt", [(0, 0.9, 0.5, 0.4, 0.2), (1, 0.5, 0.5, 1.0, 0.5)])
    with pytest.warns(UserWarning, match="a.txt: 1 box partly outside the image, clipped"):
        boxes, summary = load_boxes_with_report(tmp_path / "images")
    np.testing.assert_allclose(boxes.wh, [[0.3, 0.2], [1.0, 0.5]], rtol=1e-12)
    np.testing.assert_allclose(boxes.xy, [[0.85, 0.5], [0.5, 0.5]], rtol=1e-6)  # (0.7 + 1.0) / 2 = 0.85
    assert summary.clipped_boxes == 1 and summary.skipped_boxes == 0


def test_box_centres_of_every_file_format(tmp_path, yolo_root):
    boxes = load_boxes(yolo_root / "images" / "train")
    rows = [row for _, _, _, _, labels in YOLO_IMAGES for row in labels or []]
    np.testing.assert_array_equal(boxes.xy, np.float32([row[1:3] for row in rows]))
    voc = load_boxes(write_voc(tmp_path / "Annotations"))
    # 000001: (48 + 195) / 2 / 353, (240 + 371) / 2 / 500
    np.testing.assert_allclose(voc.xy[0], [121.5 / 353, 305.5 / 500], rtol=1e-6)
    coco = load_boxes(write_coco(tmp_path / "instances.json", COCO_IMAGES, COCO_ANNOTATIONS))
    # image 7 (640x480): [0, 0, 64, 48] centred at (32, 24) px
    np.testing.assert_allclose(coco.xy[0], [32 / 640, 24 / 480], rtol=1e-6)
    assert load_boxes(reference_npz(tmp_path)).xy is None  # box sizes alone carry no positions


# ----------------------------------------------------------------------------------------
# Files that are not what their name says


def test_text_named_npz_is_named_and_explained(tmp_path):
    (tmp_path / "x.npz").write_text("shapes,wh\n1,2\n")
    with pytest.raises(ValueError, match=r"x.npz is not an autoanchor \.npz.*shapes, wh, image_index") as error:
        load_boxes(tmp_path / "x.npz")
    assert "pickle" not in str(error.value)
    np.savez(tmp_path / "objects.npz", shapes=np.array([[640, 480]], dtype=object), wh=np.ones((1, 2)),
             image_index=np.zeros(1, dtype=np.int64))
    with pytest.raises(ValueError, match=r"objects.npz is not an autoanchor \.npz"):
        load_boxes(tmp_path / "objects.npz")
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(ValueError, match=r"other.npz is not an autoanchor \.npz.*lacks"):
        load_boxes(tmp_path / "other.npz")


# ----------------------------------------------------------------------------------------
# yolov5's stock data yamls, run from a yolov5 checkout


def test_stock_yolov5_yaml_with_symlinked_images(tmp_path, reference, monkeypatch, caplog):
    # lightly-ai's coco128 layout: datasets/coco128/images is a link to the pictures elsewhere
    storage = tmp_path / "storage"
    write_yolo(storage)
    dataset = tmp_path / "datasets" / "coco128"
    dataset.mkdir(parents=True)
    (dataset / "images").symlink_to(storage / "images", target_is_directory=True)
    (storage / "labels").rename(dataset / "labels")
    checkout = tmp_path / "yolov5"
    (checkout / "data").mkdir(parents=True)
    (checkout / "data" / "coco128.yaml").write_text("path: ../datasets/coco128\ntrain: images/train\n")
    monkeypatch.chdir(checkout)  # yolov5 runs from its root; `path` is relative to it
    with caplog.at_level(logging.INFO, logger="autoanchor.io.datasets"):
        boxes, summary = load_boxes_with_report("data/coco128.yaml")
    assert_same_boxes(boxes, reference)
    assert summary.missing_labels == 1  # img3 has none, as in the reference
    assert f"is {dataset}, relative to the working folder" in caplog.text
    # the images keep the path as written; their labels follow yolov5's rule on it
    assert boxes.image_names[0] == str(dataset / "images" / "train" / "img0.jpg")


def test_yaml_path_says_which_folder_it_is_relative_to(yolo_root, caplog):
    (yolo_root / "data.yaml").write_text("path: ../ds\ntrain: images/train\n")
    with caplog.at_level(logging.INFO, logger="autoanchor.io.datasets"):
        load_boxes(yolo_root / "data.yaml")
    assert "relative to the yaml's folder" in caplog.text
