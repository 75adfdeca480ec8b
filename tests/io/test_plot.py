"""The anchor plot: writes a readable image; says how to install matplotlib when it is missing."""

from __future__ import annotations

import sys

import pytest
import torch

from autoanchor.io.configs import anchors_by_name
from autoanchor.io.datasets import load_boxes
from autoanchor.io.plot import check_plot_path, plot_anchors, require_matplotlib

pytest.importorskip(
    "matplotlib", reason="matplotlib is not installed (it comes with the test extra: pip install -e .[test])"
)


@pytest.fixture(scope="module")
def wh():
    return load_boxes(None).pixel_wh(640)  # [929,2] real coco128 box sizes in pixels


def test_writes_a_png(tmp_path, wh):
    from PIL import Image

    path = plot_anchors(wh, anchors_by_name("yolov5-p5"), 4.0, tmp_path / "anchors.png", strides=[8, 16, 32],
                        subtitle="test")
    assert path == tmp_path / "anchors.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert width >= 800 and height >= 700  # 8.5 x 7.5 in at 150 dpi
        # Not a blank canvas: the density map and anchors put many distinct colours on it.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50


def test_accepts_a_list_of_levels_and_other_formats(tmp_path, wh):
    levels = [torch.tensor([[10.0, 14.0], [23.0, 27.0]]), torch.tensor([[81.0, 82.0], [135.0, 169.0], [344.0, 319.0]])]
    path = plot_anchors(wh, levels, 3.0, tmp_path / "anchors.svg")
    assert path.read_text(encoding="utf-8").lstrip().startswith("<?xml")


def test_zero_size_boxes_are_left_out(tmp_path):
    wh = torch.tensor([[0.0, 5.0], [10.0, 12.0], [30.0, 40.0]])
    assert plot_anchors(wh, anchors_by_name("yolov3-tiny"), 4.0, tmp_path / "a.png").is_file()


def test_leaves_the_pyplot_backend_alone(tmp_path, wh):
    import matplotlib

    backend = matplotlib.rcParams["backend"]
    plot_anchors(wh, anchors_by_name("yolov5-p5"), 4.0, tmp_path / "a.png")
    assert matplotlib.rcParams["backend"] == backend


@pytest.mark.parametrize(
    ("anchors", "kwargs", "message"),
    [
        (torch.ones(3, 3, 3), {}, r"shape \[na, 2\]"),
        (-torch.ones(1, 3, 2), {}, "finite and positive"),
        ([], {}, "empty"),
        (anchors_by_name("yolov5-p5"), {"strides": [8, 16]}, "2 strides for 3 levels"),
    ],
)
def test_bad_input_raises_value_error(tmp_path, wh, anchors, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_anchors(wh, anchors, 4.0, tmp_path / "a.png", **kwargs)
    assert not (tmp_path / "a.png").exists()


def test_missing_matplotlib_says_how_to_install(monkeypatch, tmp_path, wh):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "autoanchor\[plot\]"'):
        require_matplotlib()
    with pytest.raises(ImportError, match=r'pip install "autoanchor\[plot\]"'):
        plot_anchors(wh, anchors_by_name("yolov5-p5"), 4.0, tmp_path / "a.png")


@pytest.mark.parametrize(
    ("name", "message"), [("a.foo", r"suffix '.foo'; use one of .*\.png, .*\.svg"), ("a", "no suffix")]
)
def test_unknown_image_format_is_refused_before_drawing(tmp_path, wh, name, message):
    with pytest.raises(ValueError, match=message):
        check_plot_path(tmp_path / name)
    with pytest.raises(ValueError, match=message):
        plot_anchors(wh, anchors_by_name("yolov5-p5"), 4.0, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
    assert check_plot_path(tmp_path / "a.SVG") == "svg"
