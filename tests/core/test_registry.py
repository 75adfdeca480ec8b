"""The one Registry of every plug point: its rules, and that each plug point keeps one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autoanchor.core.registry import OBJECTIVES, Registry


class Red:
    name = "red"


class Blue:
    name = "blue"


def test_register_as_decorator_or_call_in_registration_order():
    colours = Registry("colour")
    assert colours.register(Red) is Red  # a call returns the object

    @colours.register(name="green")  # a decorator with a name
    def green():
        return "g"

    @colours.register  # a bare decorator: the name is the object's name attribute
    class Blue2:
        name = "blue"

    assert list(colours) == ["red", "green", "blue"] == list(colours.names())
    assert colours.values() == [Red, green, Blue2] and colours.items()[1] == ("green", green)
    assert colours.get("green") is green and "green" in colours and len(colours) == 3
    assert "yellow" not in colours and ["unhashable"] not in colours


def test_unknown_names_list_the_known_ones():
    colours = Registry("colour")
    with pytest.raises(ValueError, match="unknown colour 'red'; known: none$"):
        colours.get("red")
    colours.register(Red)
    colours.register(Blue)
    with pytest.raises(ValueError, match="unknown colour 'green'; known: red, blue$"):
        colours.get("green")
    with pytest.raises(ValueError, match=r"unknown colour \['red'\]; known: red, blue$"):
        colours.get(["red"])


def test_a_name_is_taken_once_unless_replaced():
    colours = Registry("colour")
    colours.register(Red)
    colours.register(Red)  # the same object again changes nothing
    assert list(colours) == ["red"]
    other = type("Other", (), {"name": "red"})
    with pytest.raises(ValueError, match="the colour 'red' is already registered .*replace=True"):
        colours.register(other)
    assert colours.get("red") is Red
    colours.register(Blue)
    assert colours.register(other, replace=True) is other
    assert colours.get("red") is other and list(colours) == ["red", "blue"]  # replaced in its place
    with pytest.raises(ValueError, match="needs a non-empty name"):
        colours.register(type("Nameless", (), {"name": ""}))
    with pytest.raises(ValueError, match="needs a non-empty name"):
        colours.register(object())  # no name attribute, no __name__


def test_unregister_removes_and_returns():
    colours = Registry("colour")
    colours.register(Red)
    colours.register(Blue)
    assert colours.unregister("red") is Red
    assert list(colours) == ["blue"]
    with pytest.raises(ValueError, match="unknown colour 'red'; known: blue"):
        colours.unregister("red")
    colours.register(Red)  # free again, now last
    assert list(colours) == ["blue", "red"]


def test_a_declared_name_is_listed_before_its_module_is_imported():
    colours = Registry("colour")
    colours.declare("odict", "collections:OrderedDict")
    colours.register(Red)
    assert list(colours) == ["odict", "red"]
    import collections

    assert colours.get("odict") is collections.OrderedDict  # imported and registered on first use
    assert colours.values() == [collections.OrderedDict, Red]
    with pytest.raises(ValueError, match="already registered"):
        colours.declare("red", "collections:OrderedDict")
    with pytest.raises(ValueError, match="'package.module:attribute'"):
        colours.declare("deque", "collections.deque")
    colours.declare("deque", "collections:deque")
    with pytest.raises(ValueError, match="declared as collections:deque"):
        colours.register(Blue, name="deque")


def test_the_metrics_are_listed_without_torch_and_load_on_use():
    probe = (
        "import sys\n"
        "from autoanchor.core.registry import OBJECTIVES\n"
        "print(list(OBJECTIVES), 'torch' in sys.modules)\n"
        "print(OBJECTIVES.get('iou').__name__, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines() == ["['ratio', 'iou'] False", "IoUObjective True"], done.stderr


def test_every_plug_point_keeps_a_registry():
    from autoanchor.cli import registry as cli
    from autoanchor.core.objectives import IoUObjective, RatioObjective
    from autoanchor.io.datasets import DATASET_FORMATS, formats
    from autoanchor.training.heads import FAMILIES, family_names
    from autoanchor.training.heads.yolov5 import Yolov5Detect

    assert OBJECTIVES.get("ratio") is RatioObjective and OBJECTIVES.get("iou") is IoUObjective
    assert FAMILIES.get("yolov5") is Yolov5Detect and list(FAMILIES) == family_names()
    assert isinstance(DATASET_FORMATS, Registry) and {f.name for f in formats()} == set(DATASET_FORMATS)
    assert {"yolo", "coco", "voc", "npz"} <= set(DATASET_FORMATS)
    assert isinstance(cli.COMMANDS, Registry) and list(cli.COMMANDS)[:3] == ["fit", "check", "advise"]
    assert isinstance(cli.writers("fit"), Registry) and cli.writer_names("check") == ["text", "json"]
