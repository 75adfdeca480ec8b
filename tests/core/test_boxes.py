"""BoxSizes: validation errors that name the image, letterboxed pixel sizes, scale jitter."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from autoanchor.core.boxes import MIN_BOX_PX, BoxSizes, searchable_boxes, searchable_mask, sort_by_area


SHAPES = np.array([[640.0, 480.0], [500.0, 1000.0], [1280.0, 720.0]])
NAMES = ["a.jpg", "b.jpg", "c.jpg"]




def sizes(wh, image_index, shapes=SHAPES, names=NAMES, source="") -> BoxSizes:
    return BoxSizes(np.asarray(shapes), np.asarray(wh, dtype=np.float64), np.asarray(image_index),
                    image_names=names, source=source)


# ---- validation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_box,shown",
    [([0.1, -0.2], "-0.2"), ([float("nan"), 0.3], "nan"), ([0.3, float("inf")], "inf"), ([-1.0, 0.5], "-1.0")],
)
@pytest.mark.parametrize("named", [True, False])
def test_bad_box_names_the_image(bad_box, shown, named):
    wh = [[0.5, 0.25], [0.1, 0.1], bad_box, [0.2, 0.2]]
    with pytest.raises(ValueError, match=re.escape(shown)) as error:
        sizes(wh, [0, 0, 1, 2], names=NAMES if named else None)
    message = str(error.value)
    assert "image 1" in message
    assert ("b.jpg" in message) == named


@pytest.mark.parametrize(
    "bad_shape,shown",
    [([0.0, 480.0], "0.0"), ([640.0, -1.0], "-1.0"), ([float("nan"), 10.0], "nan"), ([float("inf"), 10.0], "inf")],
)
def test_bad_image_size_names_the_image(bad_shape, shown):
    shapes = SHAPES.copy()
    shapes[2] = bad_shape
    with pytest.raises(ValueError, match=re.escape(shown)) as error:
        sizes([[0.5, 0.25]], [0], shapes=shapes)
    assert "image 2 (c.jpg)" in str(error.value)


@pytest.mark.parametrize("index", [3, 7, -1])
def test_image_index_out_of_range(index):
    with pytest.raises(ValueError, match=rf"box 1 refers to image {index}\b.*3 images"):
        sizes([[0.5, 0.25], [0.1, 0.1]], [0, index])


def test_image_index_must_be_integers():
    with pytest.raises(ValueError, match="float64"):
        sizes([[0.5, 0.25]], np.array([0.0]))


@pytest.mark.parametrize(
    "shapes,wh,index,match",
    [
        (np.ones((3, 3)), [[0.5, 0.5]], [0], re.escape("(3, 3)")),
        (SHAPES, [[0.5, 0.5, 0.5]], [0], re.escape("(1, 3)")),
        (SHAPES, [0.5, 0.5], [0], re.escape("(2,)")),
        (SHAPES, [[0.5, 0.5]], [0, 1], re.escape("(2,)")),
    ],
)
def test_wrong_shapes(shapes, wh, index, match):
    with pytest.raises(ValueError, match=match):
        BoxSizes(shapes, np.asarray(wh), np.asarray(index))


def test_image_names_length():
    with pytest.raises(ValueError, match="2 entries for 3 images"):
        sizes([[0.5, 0.5]], [0], names=["a.jpg", "b.jpg"])


def test_empty_dataset_names_the_source():
    with pytest.raises(ValueError, match=r"no boxes in my/data\.yaml \(3 images\)"):
        sizes(np.zeros((0, 2)), np.zeros(0, dtype=np.int64), source="my/data.yaml")
    with pytest.raises(ValueError, match="no boxes"):
        BoxSizes.from_labels(SHAPES, [np.zeros((0, 5))] * 3)


@pytest.mark.parametrize("bad_labels,shown", [(np.ones((2, 4)), "(2, 4)"), (np.ones((2, 6)), "(2, 6)"),
                                              (np.ones(5), "(5,)"), (np.ones((1, 2, 5)), "(1, 2, 5)")])
def test_from_labels_wrong_label_shape_names_the_image(bad_labels, shown):
    labels = [np.array([[0, 0.5, 0.5, 0.2, 0.3]]), bad_labels, np.zeros((0, 5))]
    with pytest.raises(ValueError, match=re.escape(shown)) as error:
        BoxSizes.from_labels(SHAPES, labels, image_names=NAMES)
    assert "image 1 (b.jpg)" in str(error.value)


@pytest.mark.parametrize(
    "bad_labels",
    [
        [[0, 0.5, 0.5, 0.2, 0.3], [1, 0.5, 0.5]],  # ragged rows: the second has 3 values
        [["0", "x", "0.5", "0.2", "0.3"]],  # text where a number belongs
    ],
    ids=["ragged", "text"],
)
def test_from_labels_unreadable_labels_name_the_image(bad_labels):
    labels = [np.array([[0, 0.5, 0.5, 0.2, 0.3]]), bad_labels, np.zeros((0, 5))]
    with pytest.raises(ValueError) as error:
        BoxSizes.from_labels(SHAPES, labels, image_names=NAMES)
    assert "image 1 (b.jpg)" in str(error.value)


def test_from_labels_count_mismatch():
    with pytest.raises(ValueError, match="2 label arrays for 3 images"):
        BoxSizes.from_labels(SHAPES, [np.zeros((0, 5))] * 2)


def test_from_labels_bad_values_name_the_image():
    labels = [np.zeros((0, 5)), np.zeros((0, 5)), np.array([[1, 0.5, 0.5, 0.2, -0.1]])]
    with pytest.raises(ValueError, match=r"image 2 \(c\.jpg\).*-0\.1"):
        BoxSizes.from_labels(SHAPES, labels, image_names=NAMES)


def test_from_labels_equals_constructor():
    labels = [
        np.array([[0, 0.5, 0.5, 0.5, 0.25], [3, 0.1, 0.2, 0.1, 0.05]]),
        np.zeros((0, 5)),
        [[7, 0.3, 0.3, 0.25, 0.5]],  # a plain list works too
    ]
    built = BoxSizes.from_labels(SHAPES, labels, image_names=NAMES, source="src")
    assert built.n_images == 3 and built.n_boxes == 3
    np.testing.assert_array_equal(built.wh, [[0.5, 0.25], [0.1, 0.05], [0.25, 0.5]])
    np.testing.assert_array_equal(built.image_index, [0, 0, 2])
    assert built.image_index.dtype == np.int64 and built.wh.dtype == np.float64
    assert built.source == "src" and list(built.image_names) == NAMES
    torch.testing.assert_close(built.pixel_wh(640), sizes(built.wh, [0, 0, 2]).pixel_wh(640))


def test_overhanging_and_zero_boxes_are_allowed():
    # YOLO labels may overhang the image (> 1) and zero-size boxes are the adapters' business.
    # image 0 640x480 at scale 1: 1.2*640 = 768, 0.5*480 = 240; image 1 -> 320x640: 0, 0.3*640 = 192
    result = sizes([[1.2, 0.5], [0.0, 0.3]], [0, 1])
    torch.testing.assert_close(result.pixel_wh(640), torch.tensor([[768.0, 240.0], [0.0, 192.0]]))


# ---- letterboxed pixel sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,box,img_size,expected",
    [
        # 640x480: long side already 640, scale 1 -> 0.5*640 = 320, 0.25*480 = 120
        ([640, 480], [0.5, 0.25], 640, [320.0, 120.0]),
        # 500x1000: scale 640/1000 = 0.64 -> image 320x640; box 0.5*320 = 160, 0.25*640 = 160
        ([500, 1000], [0.5, 0.25], 640, [160.0, 160.0]),
        # 1280x720 at 320: scale 0.25 -> image 320x180; box 0.1*320 = 32, 0.2*180 = 36
        ([1280, 720], [0.1, 0.2], 320, [32.0, 36.0]),
        # 100x50 is scaled up: 6.4 -> 640x320; box 0.5*640 = 320, 0.5*320 = 160
        ([100, 50], [0.5, 0.5], 640, [320.0, 160.0]),
        # square 333x333 at 1280: box 0.3 of 1280 = 384 on both sides
        ([333, 333], [0.3, 0.3], 1280, [384.0, 384.0]),
    ],
)
def test_pixel_wh_by_hand(device, shape, box, img_size, expected):
    result = BoxSizes(np.array([shape]), np.array([box]), np.array([0])).pixel_wh(img_size, device=device)
    assert result.dtype == torch.float32 and result.device.type == device.type
    torch.testing.assert_close(result.cpu(), torch.tensor([expected]))


def test_pixel_wh_against_loop():
    rng = np.random.default_rng(0)
    shapes = rng.integers(20, 2000, size=(30, 2)).astype(np.float64)
    index = rng.integers(0, 30, size=200)
    wh = rng.uniform(0.001, 1.0, size=(200, 2))
    boxes = BoxSizes(shapes, wh, index)
    for img_size in (320, 640, 1333):
        expected = []
        for (bw, bh), i in zip(wh.tolist(), index.tolist()):
            w, h = shapes[i]
            scale = img_size / max(w, h)
            expected.append([bw * w * scale, bh * h * scale])
        torch.testing.assert_close(boxes.pixel_wh(img_size), torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("img_size", [0, -640, float("nan"), float("inf")])
def test_bad_img_size(img_size):
    with pytest.raises(ValueError, match=re.escape(repr(img_size))):
        sizes([[0.5, 0.25]], [0]).pixel_wh(img_size)


# ---- scale jitter ---------------------------------------------------------------------------------------------


@pytest.fixture
def many() -> BoxSizes:
    rng = np.random.default_rng(1)
    shapes = rng.integers(100, 1500, size=(200, 2)).astype(np.float64)
    index = np.repeat(np.arange(200), 3)
    return BoxSizes(shapes, rng.uniform(0.01, 0.9, size=(600, 2)), index)


def test_jitter_reproducible(device, many):
    def jittered(seed):
        g = torch.Generator(device=device).manual_seed(seed)
        return many.pixel_wh(640, scale_jitter=(0.9, 1.1), generator=g, device=device)

    assert torch.equal(jittered(3), jittered(3))
    assert not torch.equal(jittered(3), jittered(4))
    assert jittered(3).device.type == device.type


def test_jitter_within_bounds_per_image(many):
    plain = many.pixel_wh(640).double()
    jittered = many.pixel_wh(640, scale_jitter=(0.9, 1.1), generator=torch.Generator().manual_seed(5)).double()
    factor = jittered / plain  # [N,2]
    assert bool(((factor >= 0.9 - 1e-6) & (factor <= 1.1 + 1e-6)).all())
    # one factor per image: the same for width and height and for every box of the image
    torch.testing.assert_close(factor[:, 0], factor[:, 1], rtol=1e-6, atol=0)
    per_image = factor[:, 0].view(200, 3)
    torch.testing.assert_close(per_image, per_image[:, :1].expand(-1, 3), rtol=1e-6, atol=0)
    # and the factors spread over the range (200 images)
    assert per_image.min() < 0.91 and per_image.max() > 1.09


def test_no_jitter_is_the_plain_letterbox(many):
    assert torch.equal(many.pixel_wh(640, scale_jitter=None, generator=torch.Generator().manual_seed(0)),
                       many.pixel_wh(640))


def test_pixel_wh_does_not_touch_global_rng(many):
    torch.manual_seed(0)
    state = torch.get_rng_state()
    many.pixel_wh(640, scale_jitter=(0.9, 1.1), generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)


# ---- the shared facts: which boxes are searched, anchor order -------------------------------------------------


def test_searchable_mask_against_a_loop():
    gen = torch.Generator().manual_seed(4)
    wh = torch.rand(500, 2, generator=gen) * 5  # many sizes around the 2 px limit, some zero
    wh[::7, 0] = 0.0
    wh[::11] = 2.0  # exactly the limit on both sides: kept
    expected = [max(w, h) >= MIN_BOX_PX and min(w, h) > 0 for w, h in wh.tolist()]
    assert searchable_mask(wh).tolist() == expected
    assert torch.equal(searchable_boxes(wh), wh[torch.tensor(expected)])
    assert MIN_BOX_PX == 2.0  # yolov5's rule


def test_sort_by_area_against_sorted():
    gen = torch.Generator().manual_seed(5)
    population = torch.rand(6, 5, 2, generator=gen) * 100 + 1
    population[0, 1] = population[0, 3]  # a tie keeps its order
    got = sort_by_area(population)
    for anchors, row in zip(population.tolist(), got.tolist()):
        assert row == sorted(anchors, key=lambda a: torch.tensor(a).prod().item())

