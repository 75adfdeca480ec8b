"""The shipped configs: every file loads, anchor sets have the right shapes, order and values."""

from __future__ import annotations

import pytest
import torch

from autoanchor.io.configs import anchor_config_names, anchors_by_name, list_configs, load_config, strides_by_name

# name -> (levels, anchors per level, first anchor, last anchor), numbers as published by yolov5 / yolov3.
EXPECTED = {
    "yolov5-p5": (3, 3, [10, 13], [373, 326]),
    "yolov5-p6": (4, 3, [19, 27], [925, 792]),
    "yolov5-p7": (5, 3, [19, 27], [1920, 1280]),
    "yolov3": (3, 3, [10, 13], [373, 326]),
    "yolov3-tiny": (2, 3, [10, 14], [344, 319]),
}


def test_list_configs_names_every_shipped_file():
    assert set(list_configs()) == set(EXPECTED) | {"search"}
    assert list_configs() == sorted(list_configs())
    assert anchor_config_names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED) + ["search"])
def test_every_config_loads_as_a_mapping_named_like_its_file(name):
    config = load_config(name)
    assert isinstance(config, dict)
    assert config["name"] == name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_anchor_sets_shape_dtype_and_known_values(name):
    levels, per_level, first, last = EXPECTED[name]
    anchors = anchors_by_name(name)
    assert anchors.shape == (levels, per_level, 2)
    assert anchors.dtype == torch.float32
    assert anchors[0, 0].tolist() == first
    assert anchors[-1, -1].tolist() == last
    assert bool((anchors > 0).all())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_anchor_areas_increase_from_level_to_level(name):
    # yolov5's check_anchor_order: the mean anchor area of each level must grow with its stride.
    mean_area = anchors_by_name(name).prod(-1).mean(-1)  # [nl]
    assert bool((mean_area[1:] > mean_area[:-1]).all()), mean_area.tolist()
    # Every anchor of a level is smaller than every anchor of the next level, too (areas sorted overall).
    areas = anchors_by_name(name).prod(-1).flatten()
    assert torch.equal(areas, areas.sort().values)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_strides_double_and_match_levels(name):
    strides = strides_by_name(name)
    assert len(strides) == anchors_by_name(name).shape[0]
    assert all(later == 2 * earlier for earlier, later in zip(strides, strides[1:]))
    assert strides[0] == (16 if name == "yolov3-tiny" else 8)


def test_yolov5_p5_reuses_the_yolov3_anchors():
    assert torch.equal(anchors_by_name("yolov5-p5"), anchors_by_name("yolov3"))


def test_p7_extends_p6_by_one_level():
    assert torch.equal(anchors_by_name("yolov5-p7")[:4], anchors_by_name("yolov5-p6"))


def test_search_defaults_are_yolov5s():
    config = load_config("search")
    assert config["anchor_t"] == 4.0
    assert config["gen"] == 1000
    assert config["bpr_threshold"] == 0.98
    assert config["img_size"] == 640
    assert config["n"] == 9
    assert config["n"] % config["levels"] == 0


def test_names_may_carry_the_yaml_suffix_and_spaces():
    assert torch.equal(anchors_by_name(" yolov5-p6.yaml "), anchors_by_name("yolov5-p6"))
    assert load_config("search.yaml") == load_config("search")


def test_load_config_returns_a_fresh_copy():
    load_config("search")["anchor_t"] = 99.0
    assert load_config("search")["anchor_t"] == 4.0


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown anchor set 'yolov9'.*yolov3, yolov3-tiny, yolov5-p5"):
        anchors_by_name("yolov9")
    with pytest.raises(ValueError, match="unknown config 'nope'.*search"):
        load_config("nope")
    with pytest.raises(ValueError, match="unknown anchor set 'search'"):
        anchors_by_name("search")  # a config, but not an anchor set
    with pytest.raises(TypeError, match="must be a string"):
        anchors_by_name(3)  # type: ignore[arg-type]


def test_shipped_anchor_rows_are_checked_like_model_yaml_rows(monkeypatch):
    """One validation of anchor rows (autoanchor.io.modelyaml.anchor_rows_tensor) for both kinds of file."""
    import autoanchor.io.configs as configs

    real = configs.load_config

    def broken(name):
        config = real(name)
        if name == "yolov3":
            config["anchors"] = [[10, 13, 16, 30], [30, 61, 62]]
        return config

    monkeypatch.setattr(configs, "load_config", broken)
    with pytest.raises(ValueError, match=r"config 'yolov3': anchor row 1 must be a flat list of positive w,h pairs"):
        configs.anchors_by_name("yolov3")
