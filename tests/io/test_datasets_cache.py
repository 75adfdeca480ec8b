"""The cache of file-based reads: hits, invalidation, damage, permissions, interrupted writes."""

from __future__ import annotations

import logging
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from autoanchor.io.datasets import load_boxes, load_boxes_with_report
from helpers import (
    COCO_ANNOTATIONS,
    COCO_IMAGES,
    assert_same_boxes,
    write_coco,
    write_image,
    write_labels,
    write_voc,
)


def cache_files(root: Path) -> list[Path]:
    return sorted(root.rglob(".autoanchor-cache*"))


def test_second_load_hits_the_cache(yolo_root, reference, monkeypatch):
    data = yolo_root / "data.yaml"
    data.write_text("path: .\ntrain: images/train\n")
    first, summary = load_boxes_with_report(data)
    assert not summary.from_cache
    assert [Path(summary.cache_file)] == cache_files(yolo_root)
    assert Path(summary.cache_file).parent == yolo_root / "labels"  # beside the labels folder

    def no_image_reads(*args, **kwargs):
        raise AssertionError("an image header was read")

    monkeypatch.setattr(PIL.Image, "open", no_image_reads)
    second, summary = load_boxes_with_report(data)
    assert summary.from_cache
    assert_same_boxes(second, reference)
    assert second.image_names == first.image_names
    assert (summary.n_images, summary.n_boxes, summary.missing_labels) == (5, 6, 1)


def test_changed_files_invalidate_the_cache(yolo_root):
    folder = yolo_root / "images" / "train"
    load_boxes(folder)
    assert load_boxes_with_report(folder)[1].from_cache
    label = yolo_root / "labels" / "train" / "img1.txt"
    label.write_text("2 0.5 0.5 0.5 0.75\n0 0.5 0.5 0.125 0.125\n")
    boxes, summary = load_boxes_with_report(folder)
    assert not summary.from_cache and summary.n_boxes == 7
    np.testing.assert_array_equal(boxes.wh[boxes.image_index == 1], [[0.5, 0.75], [0.125, 0.125]])
    assert load_boxes_with_report(folder)[1].from_cache
    # a replaced image (same name, new size) is seen too
    write_image(folder / "img3.jpeg", 70, 40)
    boxes, summary = load_boxes_with_report(folder)
    assert not summary.from_cache and boxes.shapes[3].tolist() == [70, 40]
    # a label file that appears
    write_labels(yolo_root / "labels" / "train" / "img3.txt", [(0, 0.5, 0.5, 0.5, 0.5)])
    boxes, summary = load_boxes_with_report(folder)
    assert not summary.from_cache and summary.missing_labels == 0 and summary.n_boxes == 8
    assert len(cache_files(yolo_root)) == 1  # rewritten in place


def test_cache_keeps_the_warnings(yolo_root):
    (yolo_root / "labels" / "train" / "img0.txt").write_text("0 0.5\n")
    for from_cache in (False, True):
        with pytest.warns(UserWarning, match="img0.txt"):
            _, summary = load_boxes_with_report(yolo_root / "images" / "train")
        assert summary.from_cache == from_cache and summary.skipped_images == 1


def test_unwritable_cache_is_a_warning(yolo_root, reference):
    target = yolo_root / "no" / "such" / "dir" / "cache.npz"
    with pytest.warns(UserWarning, match="cannot write the dataset cache"):
        boxes, summary = load_boxes_with_report(yolo_root / "images" / "train", cache=target)
    assert_same_boxes(boxes, reference)
    assert summary.cache_file is None and not summary.from_cache


def test_explicit_and_disabled_cache(yolo_root, tmp_path):
    folder = yolo_root / "images" / "train"
    load_boxes(folder, cache=False)
    assert cache_files(yolo_root) == []
    target = tmp_path / "my-cache.npz"
    load_boxes(folder, cache=target)
    assert target.is_file() and load_boxes_with_report(folder, cache=target)[1].from_cache


def test_corrupt_cache_is_rebuilt(yolo_root, reference):
    folder = yolo_root / "images" / "train"
    cache = Path(load_boxes_with_report(folder)[1].cache_file)
    cache.write_bytes(b"garbage")
    boxes, summary = load_boxes_with_report(folder)
    assert not summary.from_cache
    assert_same_boxes(boxes, reference)
    assert load_boxes_with_report(folder)[1].from_cache


def test_voc_and_coco_caches_follow_options(tmp_path):
    folder = write_voc(tmp_path / "Annotations")
    assert not load_boxes_with_report(folder)[1].from_cache
    assert load_boxes_with_report(folder)[1].from_cache
    dropped = load_boxes_with_report(folder, drop_difficult=True)
    assert not dropped[1].from_cache and dropped[0].n_boxes == 2
    path = write_coco(tmp_path / "instances.json", COCO_IMAGES, COCO_ANNOTATIONS)
    assert not load_boxes_with_report(path)[1].from_cache
    assert load_boxes_with_report(path)[1].from_cache
    assert load_boxes_with_report(path)[0].n_boxes == 4
    assert load_boxes_with_report(path, include_crowd=True)[0].n_boxes == 5




def assert_same_load(actual, expected) -> None:
    """Same boxes, centres, names and counts (everything but where the result came from)."""
    (boxes, summary), (boxes_0, summary_0) = actual, expected
    assert_same_boxes(boxes, boxes_0)
    np.testing.assert_array_equal(boxes.xy, boxes_0.xy)
    assert boxes.image_names == boxes_0.image_names
    keep = ("n_images", "n_boxes", "skipped_images", "skipped_boxes", "missing_labels", "clipped_boxes", "messages")
    assert [getattr(summary, k) for k in keep] == [getattr(summary_0, k) for k in keep]


@pytest.mark.slow
def test_damaged_cache_bytes_are_a_missing_cache(yolo_root, tmp_path, caplog):
    folder = yolo_root / "images" / "train"
    (yolo_root / "labels" / "train" / "img0.txt").write_text("0 0.5\n")  # a message for the cache to keep
    cache = tmp_path / "cache.bin"
    with pytest.warns(UserWarning):
        clean = load_boxes_with_report(folder, cache=cache, verbose=False)
    assert clean[0].xy is not None and not clean[1].from_cache
    good = cache.read_bytes()
    step = max(1, len(good) // 300)
    positions = sorted(set(range(min(len(good), 80))) | set(range(0, len(good), step)) | {len(good) - 1})
    assert len(positions) > 250
    for position in positions:
        damaged = bytearray(good)
        damaged[position] ^= 0x01 if position % 2 else 0xFF  # one bit, or every bit of the byte
        cache.write_bytes(bytes(damaged))
        with warnings.catch_warnings(record=True) as record, caplog.at_level(logging.DEBUG, "autoanchor"):
            warnings.simplefilter("always")
            caplog.clear()
            result = load_boxes_with_report(folder, cache=cache, verbose=False)
        assert not result[1].from_cache, position
        assert_same_load(result, clean)
        assert [str(w.message).split(":")[0] for w in record] == [str(folder)]  # the data warning only
        assert all(r.levelno <= logging.DEBUG for r in caplog.records if r.name == "autoanchor.io.datasets.cache")
        assert cache.read_bytes() == good  # rebuilt: the same bytes as the clean run
    for length in (0, 10, len(good) // 2, len(good) - 1):  # a truncated copy
        cache.write_bytes(good[:length])
        with pytest.warns(UserWarning, match="img0.txt"):
            assert_same_load(load_boxes_with_report(folder, cache=cache, verbose=False), clean)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_cache_file_honours_the_umask(yolo_root, umask):
    previous = os.umask(umask)
    try:
        summary = load_boxes_with_report(yolo_root / "images" / "train")[1]
    finally:
        os.umask(previous)
    # a new file gets 0o666 less the umask, as any file the process writes (0o644 for 0o022)
    assert stat.S_IMODE(os.stat(summary.cache_file).st_mode) == 0o666 & ~umask


def test_interrupted_cache_write_leaves_no_file(yolo_root, monkeypatch):
    real_replace = os.replace

    def interrupted(source, target, *args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C between writing the temporary file and renaming it

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_boxes(yolo_root / "images" / "train")
    monkeypatch.setattr(os, "replace", real_replace)
    left = [path.name for path in yolo_root.rglob("*") if path.name.startswith(".")]
    assert left == []  # neither a temporary nor a half-written cache
    assert not load_boxes_with_report(yolo_root / "images" / "train")[1].from_cache


def test_cache_keeps_the_box_centres(yolo_root):
    folder = yolo_root / "images" / "train"
    first = load_boxes(folder)
    boxes, summary = load_boxes_with_report(folder)
    assert summary.from_cache
    # img0's rows: centres (0.5, 0.5) and (0.2, 0.3), as written in its label file
    np.testing.assert_array_equal(boxes.xy[:2], np.float32([[0.5, 0.5], [0.2, 0.3]]))
    np.testing.assert_array_equal(boxes.xy, first.xy)
    assert boxes.xy.dtype == np.float32


def test_the_old_npz_cache_is_replaced(yolo_root):
    folder = yolo_root / "images" / "train"
    cache = Path(load_boxes_with_report(folder, cache=True)[1].cache_file)
    cache.unlink()
    legacy = cache.with_suffix(".npz")  # autoanchor 0.1.0's name for the same cache
    legacy.write_bytes(b"PK old cache")
    assert not load_boxes_with_report(folder)[1].from_cache
    assert cache.is_file() and not legacy.exists()
