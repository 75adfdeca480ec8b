"""PyTorch dataset objects give the boxes of their annotation files (torchvision CI environment)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torchvision = pytest.importorskip("torchvision")
pytest.importorskip("pycocotools")
from PIL import Image  # noqa: E402
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset  # noqa: E402
from torchvision import tv_tensors  # noqa: E402
from torchvision.datasets import CocoDetection, VOCDetection, wrap_dataset_for_transforms_v2  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from autoanchor import BoxSizes  # noqa: E402
from autoanchor.io.datasets import load_boxes, load_boxes_with_report  # noqa: E402
from annotation_files import write_detection_files  # noqa: E402
from helpers import assert_same_boxes  # noqa: E402


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_detection_files(tmp_path_factory.mktemp("det"))


@pytest.fixture(scope="module")
def reference(written):
    return load_boxes(written.coco_json, cache=False)


def select(boxes: BoxSizes, images: list[int]) -> BoxSizes:
    """The boxes of ``images`` (in that order), as a plain loop would gather them."""
    wh, xy, index = [], [], []
    for row, image in enumerate(images):
        for j in np.flatnonzero(boxes.image_index == image):
            wh.append(boxes.wh[j])
            xy.append(boxes.xy[j])
            index.append(row)
    return BoxSizes(boxes.shapes[images], np.reshape(wh, (-1, 2)), np.asarray(index, dtype=np.int64),
                    xy=np.reshape(xy, (-1, 2)))


def same(actual: BoxSizes, expected: BoxSizes) -> None:
    assert_same_boxes(actual, expected)
    np.testing.assert_array_equal(actual.xy, expected.xy)


class Pairs(Dataset):
    """A user's dataset in torchvision's convention: (image tensor [3, H, W], {"boxes": xyxy, "labels"})."""

    def __init__(self, written, kind="xyxy"):
        self.written, self.kind = written, kind

    def __len__(self):
        return len(self.written.names)

    def __getitem__(self, i):
        image = Image.open(self.written.image_dir / self.written.names[i]).convert("RGB")
        corners = torch.as_tensor(self.written.boxes[i], dtype=torch.float32).reshape(-1, 4)
        height, width = image.height, image.width
        if self.kind == "xyxy":
            target = {"boxes": corners, "labels": torch.ones(len(corners), dtype=torch.int64)}
            return torchvision.transforms.functional.pil_to_tensor(image), target, self.written.names[i]
        boxes = tv_tensors.BoundingBoxes(corners, format="XYXY", canvas_size=(height, width))
        boxes = v2.ConvertBoundingBoxFormat(self.kind.upper())(boxes)
        return image, {"boxes": boxes, "labels": torch.ones(len(corners), dtype=torch.int64)}  # a PIL image


def test_coco_detection_its_v2_wrapper_and_its_dict_read_the_index(written, reference):
    dataset = CocoDetection(str(written.image_dir), str(written.coco_json))
    boxes, summary = load_boxes_with_report(dataset)
    assert summary.format == "torch-dataset"
    same(boxes, reference)
    same(load_boxes(wrap_dataset_for_transforms_v2(dataset)), reference)
    coco_dict, summary = load_boxes_with_report(dataset.coco.dataset)
    assert summary.format == "coco-dict"
    same(coco_dict, reference)
    same(load_boxes(DataLoader(dataset, batch_size=2, collate_fn=lambda batch: batch)), reference)


def test_voc_detection_reads_its_xml_files(written, reference):
    dataset = VOCDetection(str(written.voc_root), year="2012", image_set="train")
    same(load_boxes(dataset), load_boxes(written.voc_folder, cache=False))
    same(load_boxes(dataset), reference)


def test_subset_and_nested_concat_take_only_their_images_in_order(written, reference):
    coco = CocoDetection(str(written.image_dir), str(written.coco_json))
    voc = VOCDetection(str(written.voc_root), year="2012", image_set="train")
    same(load_boxes(Subset(coco, [5, 0, 3])), select(reference, [5, 0, 3]))
    nested = ConcatDataset([Subset(coco, [1, 2]), ConcatDataset([voc, Subset(Pairs(written), [7, 4])])])
    n = len(written.names)
    same(load_boxes(nested), select(reference, [1, 2, *range(n), 7, 4]))
    # a Subset reaching across the members of a ConcatDataset
    across = Subset(ConcatDataset([coco, voc]), [n + 1, 0, n - 1, n])
    same(load_boxes(DataLoader(across)), select(reference, [1, 0, n - 1, 0]))


@pytest.mark.parametrize("kind", ["xyxy", "xywh", "cxcywh"])
def test_a_custom_dataset_is_iterated_once(written, reference, kind):
    dataset = Pairs(written, kind)
    calls = []
    original = Pairs.__getitem__
    Pairs.__getitem__ = lambda self, i: calls.append(i) or original(self, i)
    try:
        boxes = load_boxes(dataset)
    finally:
        Pairs.__getitem__ = original
    assert calls == list(range(len(written.names)))
    np.testing.assert_array_equal(boxes.shapes, reference.shapes)
    np.testing.assert_array_equal(boxes.image_index, reference.image_index)
    if kind == "xyxy":  # the same numbers; other formats round through their conversion
        same(boxes, reference)
    else:
        np.testing.assert_allclose(boxes.wh, reference.wh, rtol=1e-6)


def test_a_resizing_transform_is_what_is_measured(written, reference):
    boxes = load_boxes(_Resized(written))
    assert (boxes.shapes == [200, 100]).all()  # (width, height) of the transform's output
    np.testing.assert_allclose(boxes.wh, reference.wh, rtol=1e-5)  # boxes scale with their image


class _Resized(Dataset):
    """PIL images and BoundingBoxes through v2.Resize to 100 x 200 (height, width)."""

    def __init__(self, written):
        self.written = written
        self.transform = v2.Resize((100, 200))

    def __len__(self):
        return len(self.written.names)

    def __getitem__(self, i):
        image = Image.open(self.written.image_dir / self.written.names[i]).convert("RGB")
        boxes = tv_tensors.BoundingBoxes(
            torch.as_tensor(self.written.boxes[i]).reshape(-1, 4), format="XYXY",
            canvas_size=(image.height, image.width),
        )
        return self.transform(image, {"boxes": boxes})


def test_from_xyxy_takes_the_boxes_a_user_holds(written, reference):
    sizes_hw = [(h, w) for w, h in written.sizes]
    same(BoxSizes.from_xyxy([torch.as_tensor(b) for b in written.boxes], sizes_hw), reference)
    same(BoxSizes.from_xyxy(written.boxes, written.sizes, order="wh"), reference)
    with pytest.raises(ValueError, match="image 1 .*x1 >= x0"):
        BoxSizes.from_xyxy([np.zeros((0, 4)), np.array([[5.0, 0, 1, 1]])], [(10, 10), (10, 10)])


def test_objects_nothing_reads_say_what_to_pass(written):
    class NotDetection(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.zeros(3, 8, 8), 1  # a classification item

    with pytest.raises(TypeError, match=r"NotDetection\[0\]: .*no 'boxes'.*target\['boxes'\] \[N, 4\]"):
        load_boxes(NotDetection())
    with pytest.raises(TypeError, match="got object .*BoxSizes.from_xyxy"):
        load_boxes(object())


def test_a_deepforest_dataset_reads_its_frame(written, reference):
    training = pytest.importorskip("deepforest.datasets.training")
    dataset = training.BoxDataset(csv_file=str(written.deepforest_csv), root_dir=str(written.image_dir),
                                  label_dict={"Tree": 0})
    boxes, summary = load_boxes_with_report(dataset)
    assert summary.format == "torch-dataset" and boxes.image_names == written.names
    same(boxes, reference)
    same(load_boxes(Subset(dataset, [4, 1])), select(reference, [4, 1]))
