"""The one validation module: each rule, its edges, and the errors naming the option and value."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from autoanchor.core.defaults import MAX_SEED
from autoanchor.core.rng import resolve_generator
from autoanchor.core.validate import (
    OptionTypeError,
    check_choice,
    check_device,
    check_float,
    check_int,
    check_not_meta,
    check_scale,
    check_seed,
    check_stride_units,
    check_thr,
)

# -- integers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 7, np.int64(7), np.int32(7), np.uint8(7), np.uint64(7)])
def test_check_int_takes_python_and_numpy_integers_and_returns_a_python_int(value):
    got = check_int("gen", value, low=0)
    assert got == int(value) and type(got) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 1.0, np.float64(1), "1", None, [1]])
def test_check_int_refuses_other_types_naming_the_option(value):
    with pytest.raises(OptionTypeError, match="^" + re.escape(f"gen must be an integer of at least 0, got {value!r}") + "$"):
        check_int("gen", value, low=0)


def test_option_type_error_is_both_a_type_error_and_a_value_error():
    # Callers written for the older checks caught ValueError for a bool; they still do.
    for kind in (TypeError, ValueError):
        with pytest.raises(kind):
            check_int("tries", True, low=1)


def test_check_int_bounds_are_inclusive():
    assert check_int("k", 1, low=1, high=3) == 1 and check_int("k", 3, low=1, high=3) == 3
    for bad in (0, 4):
        with pytest.raises(ValueError, match=rf"^k must be an integer from 1 to 3, got {bad}$"):
            check_int("k", bad, low=1, high=3)
    with pytest.raises(ValueError, match=r"^tries must be an integer of at most 2, got 3$"):
        check_int("tries", 3, high=2)


def test_optional_lets_none_through_only_when_asked():
    assert check_int("chains", None, low=1, optional=True) is None
    assert check_float("scale", None, optional=True) is None
    with pytest.raises(OptionTypeError, match="chains"):
        check_int("chains", None, low=1)


# -- floats --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.5, np.float32(0.5), np.float16(0.5), np.float64(0.5)])
def test_check_float_takes_numpy_floats_exactly(value):
    got = check_float("bpr_threshold", value, low=0, high=1)
    assert got == 0.5 and type(got) is float


def test_check_float_takes_integers_as_floats():
    assert check_float("imgsz", np.int64(640), low=0, low_open=True) == 640.0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan")])
def test_check_float_refuses_non_finite_numbers(value):
    with pytest.raises(ValueError, match=r"^margin must be a finite number"):
        check_float("margin", value)


@pytest.mark.parametrize("value", [True, np.bool_(False), "0.5", None, torch.tensor(0.5)])
def test_check_float_refuses_other_types(value):
    with pytest.raises(OptionTypeError, match=r"^margin must be a finite number in \[0, 1\)"):
        check_float("margin", value, low=0, high=1, high_open=True)


@pytest.mark.parametrize(
    ("bounds", "inside", "outside", "wording"),
    [
        ({"low": 0, "high": 1}, [0, 1], [-1e-9, 1 + 1e-9], "in [0, 1]"),
        ({"low": 0, "high": 1, "high_open": True}, [0, 0.999999], [1], "in [0, 1)"),
        ({"low": 0, "low_open": True}, [1e-300], [0, -1], "greater than 0"),
        ({"low": 2}, [2], [1.999], "of at least 2"),
    ],
)
def test_check_float_bounds_open_and_closed(bounds, inside, outside, wording):
    for value in inside:
        assert check_float("x", value, **bounds) == value
    for value in outside:
        with pytest.raises(ValueError, match=re.escape(f"x must be a finite number {wording}, got {value!r}")):
            check_float("x", value, **bounds)


# -- the named rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 5, np.int64(5), np.uint64(MAX_SEED), MAX_SEED, 2**63])
def test_seeds_cover_torch_generators_whole_range(value):
    assert check_seed("seed", value) == int(value)
    # The largest seeds really seed a generator (torch takes 64 unsigned bits), and repeat.
    a = torch.rand(3, generator=resolve_generator(None, seed=value))
    b = torch.rand(3, generator=torch.Generator().manual_seed(int(value)))
    assert torch.equal(a, b)


@pytest.mark.parametrize("value", [-1, 2**64, 2**70])
def test_seeds_out_of_range_are_refused_naming_the_option_and_value(value):
    wanted = f"my_seed must be an integer from 0 to 2**64 - 1 ({MAX_SEED}), got {value}"
    with pytest.raises(ValueError, match=re.escape(wanted)):
        check_seed("my_seed", value)


@pytest.mark.parametrize("value", [True, 5.0, np.float64(5), "5"])
def test_seeds_are_integers(value):
    with pytest.raises(OptionTypeError, match="seed must be an integer"):
        check_seed("seed", value)


def test_the_seed_bound_is_torchs():
    torch.Generator().manual_seed(MAX_SEED)  # accepted
    with pytest.raises((RuntimeError, ValueError), match="Overflow"):
        torch.Generator().manual_seed(MAX_SEED + 1)


def test_thr_is_a_ratio_above_one():
    assert check_thr(np.float32(4.0)) == 4.0 and check_thr(1.0001) == 1.0001
    for bad in (1, 0.5, math.inf):
        with pytest.raises(ValueError, match=rf"^thr must be a finite number greater than 1 .*got {bad!r}$"):
            check_thr(bad)
    with pytest.raises(ValueError, match=r"^--thr must be"):
        check_thr(1, "--thr")


def test_scale_is_in_zero_to_one_open():
    assert check_scale(0) == 0.0 and check_scale(np.float32(0.5)) == 0.5
    for bad in (1, 1.5, -0.1):
        wanted = f"scale must be a finite number in [0, 1) (yolov5's hyp['scale']), got {bad!r}"
        with pytest.raises(ValueError, match="^" + re.escape(wanted) + "$"):
            check_scale(bad)
    assert check_scale(None, optional=True) is None


def test_stride_units_positive_and_ordered():
    assert check_stride_units(None, None) == (None, None)
    assert check_stride_units(np.float32(0.5), 4) == (0.5, 4.0)
    assert check_stride_units(2, 2) == (2.0, 2.0)  # one size per level is feasible
    with pytest.raises(ValueError, match=r"^min_stride_units \(3\) exceeds max_stride_units \(2\)"):
        check_stride_units(3, 2)
    with pytest.raises(ValueError, match=r"^max_stride_units must be a finite number greater than 0"):
        check_stride_units(None, 0)
    with pytest.raises(ValueError, match=r"^--min-stride-units \(3\) exceeds --max-stride-units \(2\)"):
        check_stride_units(3, 2, names=("--min-stride-units", "--max-stride-units"))


def test_check_choice_lists_the_choices():
    assert check_choice("method", "de", ("ga", "de")) == "de"
    with pytest.raises(ValueError, match=r"method must be one of \('ga', 'de'\), got 'pso'"):
        check_choice("method", "pso", ("ga", "de"))


# -- devices -------------------------------------------------------------------------------------


def test_devices_that_exist_pass():
    assert check_device(None) is None
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")


def test_the_meta_device_is_refused():
    with pytest.raises(ValueError, match=r"^device='meta': the meta device holds no values"):
        check_device("meta")
    with pytest.raises(ValueError, match=r"^wh is on the meta device"):
        check_not_meta(torch.empty(3, 2, device="meta"), "wh")
    check_not_meta(torch.empty(3, 2), "wh")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("value", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_cuda_without_a_gpu_is_a_clear_error(value):
    # torch itself would fail later with "AssertionError: Torch not compiled with CUDA enabled".
    with pytest.raises(ValueError, match=r"CUDA is not available on this machine"):
        check_device(value)


@pytest.mark.skipif(hasattr(torch, "xpu") and torch.xpu.is_available(), reason="this machine has an XPU")
def test_a_device_type_this_machine_lacks_is_named():
    with pytest.raises(ValueError, match=r"^device='xpu': the xpu device is not available on this machine"):
        check_device("xpu")


@pytest.mark.parametrize("value", ["tpu9", "", "cpu:x"])
def test_a_string_that_names_no_device(value):
    wanted = f"device must name a torch device ('cpu', 'cuda', 'cuda:0', ...), got {value!r}"
    with pytest.raises(ValueError, match=re.escape(wanted)):
        check_device(value)


@pytest.mark.parametrize("value", [3.5, True, ["cpu"]])
def test_a_device_of_the_wrong_type(value):
    with pytest.raises(OptionTypeError, match="device must be a torch device"):
        check_device(value)
