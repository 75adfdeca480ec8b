"""One randomness policy: every drawing function takes a generator; without one it repeats and
leaves the global random states of torch, numpy and ``random`` alone."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from autoanchor.core.boxes import BoxSizes
from autoanchor.core.differential import differential_evolution
from autoanchor.core.evolve import evolve, mutate, mutation_factors
from autoanchor.core.kmeans import kmeans, kmeans_starts
from autoanchor.core.objectives import make_objective
from autoanchor.core.polish import polish
from autoanchor.core.rng import DEFAULT_SEED, resolve_generator
from autoanchor.core.search import search_anchors

# 60 box sizes in three loose clusters (pixels), drawn once from a local generator.
_G = torch.Generator().manual_seed(7)
WH = torch.cat(
    [base * (torch.randn(20, 2, generator=_G) * 0.15).exp() for base in (torch.tensor([12.0, 20.0]),
                                                                        torch.tensor([60.0, 40.0]),
                                                                        torch.tensor([200.0, 260.0]))]
)
START = torch.tensor([[10.0, 10.0], [50.0, 50.0], [150.0, 150.0]])
SIZES = BoxSizes(np.array([[640, 480], [320, 640]]), np.array([[0.5, 0.25], [0.1, 0.3]]), np.array([0, 1]))

# Each public function that draws, called with generator=None; each returns a tensor or a tuple of them.
DRAWING = {
    "mutation_factors": lambda: mutation_factors((5, 3, 2)),
    "mutate": lambda: mutate(START, 6),
    "evolve": lambda: evolve(make_objective("ratio", WH), START, gen=20, population=3),
    "differential_evolution": lambda: differential_evolution(make_objective("iou", WH), START, gen=10),
    "polish_with_relocations": lambda: polish(make_objective("ratio", WH), START * 3, relocations=4, hops=6),
    "pixel_wh_scale_jitter": lambda: SIZES.pixel_wh(640, scale_jitter=(0.9, 1.1)),
    "kmeans": lambda: kmeans(WH, 3),
    "kmeans_starts": lambda: kmeans_starts(WH, 3, restarts=4),
    "search_anchors": lambda: search_anchors(WH, 3, gen=10).anchors,
}


def _tensors(result) -> list[torch.Tensor]:
    return list(result) if isinstance(result, tuple) else [result]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DRAWING))
def test_no_generator_repeats_and_leaves_global_states_alone(name):
    torch.manual_seed(321)
    np.random.seed(321)
    random.seed(321)
    torch_state, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    first, second = DRAWING[name](), DRAWING[name]()
    for a, b in zip(_tensors(first), _tensors(second)):
        assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
    assert random.getstate() == python_state


@pytest.mark.parametrize("name", ["mutation_factors", "kmeans", "pixel_wh_scale_jitter"])
def test_no_generator_is_the_default_seed(name):
    # generator=None draws exactly what a generator seeded with DEFAULT_SEED draws
    seeded = torch.Generator().manual_seed(DEFAULT_SEED)
    explicit = {
        "mutation_factors": lambda: mutation_factors((5, 3, 2), generator=seeded),
        "kmeans": lambda: kmeans(WH, 3, generator=seeded),
        "pixel_wh_scale_jitter": lambda: SIZES.pixel_wh(640, scale_jitter=(0.9, 1.1), generator=seeded),
    }[name]()
    assert torch.equal(DRAWING[name](), explicit)


def test_a_given_generator_is_used_not_reseeded():
    generator = torch.Generator().manual_seed(99)
    assert resolve_generator(generator) is generator
    a = mutation_factors((4, 3, 2), generator=generator)
    b = mutation_factors((4, 3, 2), generator=generator)  # the stream moved on
    assert not torch.equal(a, b)


def test_resolve_generator_refuses_other_things():
    with pytest.raises(TypeError, match="int"):
        resolve_generator(5)  # a seed is not a generator
