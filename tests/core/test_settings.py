"""Search settings: one frozen object, validated once, errors naming the field and the value."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from autoanchor.core.objectives import IoUObjective, RatioObjective
from autoanchor.core.settings import SearchSettings, cpu_threads


def test_defaults():
    settings = SearchSettings()
    assert (settings.thr, settings.gen, settings.metric, settings.method, settings.seed) == (4.0, 1000, "ratio", "ga", 0)
    assert settings.objective is RatioObjective
    assert settings.population_size == 4 and SearchSettings(method="de").population_size == 16
    # evolve = 2 x coarse; coarse and middle from the objective
    assert settings.cells_for() == (0.24, 0.12, 0.04)
    assert SearchSettings(metric="iou").cells_for() == (0.12, 0.06, 0.02)
    assert SearchSettings(metric=IoUObjective, coarse_cell=0.1).cells_for() == (0.2, 0.1, 0.02)
    assert SearchSettings(evolve_cell=0, middle_cell=0.01).cells_for() == (0.0, 0.12, 0.01)
    assert settings.threads == 1


@pytest.mark.parametrize(
    "field,value",
    [
        ("thr", 1), ("thr", float("nan")), ("gen", -1), ("gen", 1.5), ("gen", True), ("metric", "giou"),
        ("method", "cmaes"), ("seed", -1), ("population", 0), ("starts", 0), ("kmeans_iters", 0),
        ("fine_points", 0), ("relocations", -1), ("tries", 0), ("patience", 0), ("hops", 1.5),
        ("evolve_cell", -0.1), ("coarse_cell", float("inf")), ("middle_cell", "0.02"), ("threads", 0),
    ],
)
def test_bad_values_name_the_field_and_the_value(field, value):
    with pytest.raises(ValueError, match=re.escape(repr(value))) as error:
        SearchSettings(**{field: value})
    assert field in str(error.value)


def test_de_needs_a_population_of_four():
    SearchSettings(method="ga", population=1)
    with pytest.raises(ValueError, match="population must be an integer of at least 4, got 3"):
        SearchSettings(method="de", population=3)


def test_metric_of_the_wrong_kind_is_a_type_error():
    with pytest.raises(TypeError, match="list"):
        SearchSettings(metric=["ratio"])


def test_frozen_and_replace_validates_again():
    settings = SearchSettings(gen=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.gen = 20
    assert dataclasses.replace(settings, gen=20).gen == 20
    with pytest.raises(ValueError, match="gen"):
        dataclasses.replace(settings, gen=-3)


def test_numpy_integers_become_ints():
    np = pytest.importorskip("numpy")
    settings = SearchSettings(gen=np.int64(7), seed=np.int32(2))
    assert type(settings.gen) is int and type(settings.seed) is int and settings == SearchSettings(gen=7, seed=2)


def test_from_options():
    base = SearchSettings(gen=10, seed=3)
    assert SearchSettings.from_options(base) is base
    assert SearchSettings.from_options(base, seed=4) == SearchSettings(gen=10, seed=4)
    assert SearchSettings.from_options(None, hops=0) == SearchSettings(hops=0)
    with pytest.raises(TypeError, match=r"\['hop'\]"):
        SearchSettings.from_options(base, hop=3)
    with pytest.raises(TypeError, match="dict"):
        SearchSettings.from_options({"gen": 3})


def test_cpu_threads_restores_the_count_even_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with cpu_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with cpu_threads(None):
        assert torch.get_num_threads() == before
    with cpu_threads(1, "meta"):  # not the CPU: nothing to pin
        assert torch.get_num_threads() == before
