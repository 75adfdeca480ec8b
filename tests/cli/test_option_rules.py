"""One rule per option at every public entry point, and one place for every default.

Each entry point (``search_anchors``, ``SearchSettings``, ``kmean_anchors``, ``check_anchors``,
``CheckOptions``, ``advise`` and ``autoanchor fit``) gets the same edge values and must give the
same verdict: seeds from 0 to 2**64 - 1 accepted, -1 and 2**64 refused naming the option; numpy
scalars accepted and meaning exactly what the Python number means; bools refused.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

import numpy as np
import pytest
import torch
from torch import nn

from autoanchor.cli import main
from autoanchor.cli.options import search_defaults
from autoanchor.core import defaults
from autoanchor.core.advise import advise, format_advice
from autoanchor.core.boxes import BoxSizes
from autoanchor.core.search import search_anchors
from autoanchor.core.settings import SearchSettings
from autoanchor.io.configs import load_config
from autoanchor.training._agreement import _as_int64
from autoanchor.training.dropins import kmean_anchors
from autoanchor.training.hook import check_anchors
from autoanchor.training.options import CheckOptions

MAX_SEED = 2**64 - 1
GEN = 3  # the verdicts are about the options, not the search: a few generations suffice


def toy_sizes() -> BoxSizes:
    """40 boxes on 8 images of 640x480 and 480x640, seeded."""
    g = torch.Generator().manual_seed(3)
    shapes = np.array([[640, 480], [480, 640]] * 4, dtype=np.float64)
    wh = (0.02 + 0.5 * torch.rand(40, 2, generator=g, dtype=torch.float64)).numpy()
    return BoxSizes(shapes, wh, np.arange(40) % 8)


class Detect(nn.Module):
    """A yolov5 v6+ Detect as the hook sees it: ``anchors`` in stride units, ``stride``, lazy grid lists."""

    def __init__(self) -> None:
        super().__init__()
        strides = torch.tensor([8.0, 16.0, 32.0])
        anchors = torch.tensor([[3, 3, 4, 4], [6, 6, 7, 7], [9, 9, 10, 10]], dtype=torch.float32).view(3, 2, 2)
        self.nl, self.na = 3, 2
        self.register_buffer("anchors", anchors / strides.view(-1, 1, 1))
        self.stride = strides
        self.grid = [torch.empty(0) for _ in range(3)]
        self.anchor_grid = [torch.empty(0) for _ in range(3)]


def run_search(**options):
    wh = toy_sizes().pixel_wh(640)
    return search_anchors(wh, 6, gen=GEN, **options).anchors


def run_settings(**options):
    return SearchSettings(**options)


def run_kmean(imgsz=640, **options):
    return torch.from_numpy(kmean_anchors(toy_sizes(), 6, img_size=imgsz, gen=GEN, verbose=False, **options))


def run_check(imgsz=640, **options):
    head = Detect()
    check_anchors(toy_sizes(), None, imgsz=imgsz, detect=head, gen=GEN, verbose=False, distributed=False, **options)
    return head.anchors.clone()


def run_options(**options):
    return CheckOptions(**options)


def run_advise(imgsz=640, **options):
    advice = advise(
        toy_sizes(), img_size=imgsz, counts=(3, 6), level_sets={"P3-P5": (8, 16, 32)}, sweep_gen=GEN, gen=GEN,
        **options,
    )
    return "\n".join(format_advice(advice))


ENTRY_POINTS = {
    "search_anchors": (run_search, {"seed", "thr", "scale"}),
    "SearchSettings": (run_settings, {"seed", "thr", "scale"}),
    "kmean_anchors": (run_kmean, {"seed", "thr", "scale", "imgsz"}),
    "check_anchors": (run_check, {"seed", "thr", "scale", "imgsz"}),
    "CheckOptions": (run_options, {"seed", "thr", "scale", "imgsz"}),
    "advise": (run_advise, {"seed", "thr", "scale", "imgsz"}),
}

# (option, value, the same value as a Python number, or None when refused)
ACCEPTED = [
    ("seed", MAX_SEED, MAX_SEED),
    ("seed", np.uint64(MAX_SEED), MAX_SEED),
    ("seed", np.int64(5), 5),
    ("thr", np.float32(4.0), 4.0),
    ("imgsz", np.int64(640), 640),
    ("scale", np.float32(0.5), 0.5),
]
REFUSED = [("seed", 2**64), ("seed", -1), ("seed", True), ("seed", 5.0), ("thr", True), ("imgsz", True), ("scale", 1.0)]


# Each of these runs a search twice (the numpy value, then the Python one): seconds on a busy machine.
SEARCHING = {"search_anchors", "kmean_anchors", "check_anchors", "advise"}


def cases(rows, *, slow=()):
    return [
        pytest.param(name, row, id=f"{name}-{row[0]}={row[1]!r}", marks=[pytest.mark.slow] if name in slow else [])
        for name, (_, options) in ENTRY_POINTS.items()
        for row in rows
        if row[0] in options
    ]


@pytest.mark.parametrize(("entry", "row"), cases(ACCEPTED, slow=SEARCHING))
def test_every_entry_point_accepts_the_edges_and_numpy_scalars_mean_the_same(entry, row):
    option, value, python = row
    run, _ = ENTRY_POINTS[entry]
    got = run(**{option: value})
    want = run(**{option: python})
    if isinstance(got, torch.Tensor):
        assert torch.equal(got, want)
    else:
        assert got == want
    if dataclasses.is_dataclass(got):  # stored as the Python number
        stored = getattr(got, option)
        assert type(stored) is type(python) and stored == python


@pytest.mark.parametrize(("entry", "row"), cases(REFUSED))
def test_every_entry_point_refuses_the_same_values_naming_the_option(entry, row):
    option, value = row
    run, _ = ENTRY_POINTS[entry]
    name = {"imgsz": "img_size"}.get(option, option) if entry in ("kmean_anchors", "advise") else option
    with pytest.raises(ValueError, match=rf"^{name} must be .*got {re.escape(repr(value))}$"):
        run(**{option: value})


@pytest.mark.parametrize(
    ("value", "accepted"), [(str(MAX_SEED), True), (str(2**64), False), ("-1", False), ("5.0", False)]
)
def test_the_command_line_gives_the_same_verdict_on_seeds(capsys, value, accepted):
    code = main(["fit", "--gen", str(GEN), "--seed", value, "--format", "darknet", "-q"])
    captured = capsys.readouterr()
    if accepted:
        assert code == 0 and captured.err == "" and captured.out.strip()
    else:
        assert code == 2 and captured.out == ""
        assert "argument --seed: --seed must be an integer" in captured.err and value in captured.err


def test_search_seed_past_torchs_range_is_a_clear_error_not_an_overflow():
    # Before: "Overflow when unpacking long long" from inside torch.
    with pytest.raises(ValueError, match=r"^seed must be an integer from 0 to 2\*\*64 - 1"):
        search_anchors(toy_sizes().pixel_wh(640), 9, seed=2**64 + 5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize(
    "call",
    [
        lambda: kmean_anchors(toy_sizes(), 6, gen=GEN, verbose=False, device="cuda"),
        lambda: check_anchors(toy_sizes(), None, detect=Detect(), verbose=False, distributed=False, device="cuda"),
        lambda: toy_sizes().pixel_wh(640, device="cuda"),
        lambda: CheckOptions(device="cuda:0"),
    ],
    ids=["kmean_anchors", "check_anchors", "pixel_wh", "CheckOptions"],
)
def test_cuda_without_a_gpu_is_the_same_clear_error_everywhere(call):
    with pytest.raises(ValueError, match=r"device='cuda(:0)?': CUDA is not available on this machine"):
        call()


def test_unknown_or_meta_devices_are_refused_everywhere():
    for call in (lambda d: CheckOptions(device=d), lambda d: toy_sizes().pixel_wh(640, device=d)):
        with pytest.raises(ValueError, match="meta device holds no values"):
            call("meta")
    with pytest.raises(ValueError, match="device='xpu': the xpu device is not available"):
        kmean_anchors(toy_sizes(), 6, verbose=False, device="xpu")
    with pytest.raises(ValueError, match="^wh is on the meta device"):
        search_anchors(torch.empty(10, 2, device="meta"), 3)


def test_a_large_seed_survives_the_distributed_handshake_encoding():
    for seed in (0, 5, 2**63 - 1, 2**63, MAX_SEED):
        encoded = _as_int64(seed)
        assert -(2**63) <= encoded < 2**63
        assert int(torch.tensor([encoded], dtype=torch.int64)[0]) % 2**64 == seed


# -- defaults written once -----------------------------------------------------------------------


def test_the_dataclasses_hold_the_shared_defaults():
    search, check = SearchSettings(), CheckOptions()
    assert (search.thr, search.gen, search.seed, search.metric, search.method) == (
        defaults.DEFAULT_THR, defaults.DEFAULT_GEN, defaults.DEFAULT_SEED, defaults.DEFAULT_METRIC,
        defaults.DEFAULT_METHOD,
    )
    assert (check.thr, check.imgsz, check.gen, check.seed, check.bpr_threshold) == (
        defaults.DEFAULT_THR, defaults.DEFAULT_IMGSZ, defaults.DEFAULT_GEN, defaults.DEFAULT_SEED, None,
    )  # bpr_threshold None: each family's own keep_threshold (0.98 for YOLO, 0.5 for torchvision)


@pytest.mark.parametrize("function", [search_anchors, kmean_anchors, check_anchors, advise])
def test_the_public_functions_default_to_the_same_values(function):
    by_name = {
        "thr": defaults.DEFAULT_THR, "gen": defaults.DEFAULT_GEN, "seed": defaults.DEFAULT_SEED,
        "n": defaults.DEFAULT_N, "img_size": defaults.DEFAULT_IMGSZ, "imgsz": defaults.DEFAULT_IMGSZ,
        "metric": defaults.DEFAULT_METRIC, "method": defaults.DEFAULT_METHOD,
        "bpr_threshold": None,  # the family's own (HeadFamily.keep_threshold)
    }
    parameters = inspect.signature(function).parameters
    shared = {name: parameters[name].default for name in by_name if name in parameters}
    assert shared and shared == {name: by_name[name] for name in shared}


def test_the_shipped_search_config_equals_the_defaults_the_command_line_uses():
    config = load_config("search")
    config.pop("name")
    assert config == search_defaults()


def test_the_command_line_shows_the_library_defaults(capsys):
    assert main(["fit", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"default {defaults.DEFAULT_THR}" in text and f"default {defaults.DEFAULT_GEN}" in text
