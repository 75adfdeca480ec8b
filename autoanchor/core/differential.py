"""Batched, seeded differential evolution over log anchor sizes."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .boxes import MIN_ANCHOR_PX, sort_by_area
from .evolve import Progress, Projection
from .objectives import Objective
from .rng import resolve_generator

__all__ = ["differential_evolution"]

def differential_evolution(
    objective: Objective,
    anchors: Tensor,
    *,
    gen: int = 1000,
    population: int = 16,
    differential_weight: float = 0.6,
    crossover: float = 0.8,
    init_spread: float = 0.2,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
    project: Projection | None = None,
) -> tuple[Tensor, Tensor]:
    """Batched differential evolution (DE/current-to-best/1/bin) over log anchor sizes.

    The population starts at ``anchors`` and log-normal perturbations of it
    (``init_spread`` in log units); the start itself is a member, so the result
    is never worse than it. Each generation builds one trial per member from the
    best member and two random others, evaluates all trials in one pass and
    keeps each trial that beats its member. Anchors inside each set are kept
    sorted by area so that crossover mixes like with like.

    Args:
        objective: scores anchor sets.
        anchors (Tensor[K, 2]): the start, in pixels.
        gen: generations.
        population: members (at least 4).
        differential_weight: DE's ``F``.
        crossover: DE's ``CR``, the chance that a coordinate comes from the mutant.
        init_spread: standard deviation of the initial log-size perturbations.
        generator: source of randomness (on the objective's device); a fresh one
            seeded with :data:`~autoanchor.core.rng.DEFAULT_SEED` when omitted.
        progress: as for :func:`evolve`.
        project: as for :func:`evolve`: the initial members and every trial are
            projected before they are scored.

    Returns:
        ``(anchors [K, 2], fitness [])``, the best found.
    """
    if gen < 0:
        raise ValueError(f"gen must be at least 0, got {gen}")
    if population < 4:
        raise ValueError(f"differential evolution needs a population of at least 4, got {population}")
    device = objective.device
    generator = resolve_generator(generator, device)
    start = anchors.to(device, torch.float32)
    noise = torch.randn((population - 1, *start.shape), generator=generator, device=device) * init_spread
    members = torch.cat([start[None], start[None] * noise.exp()]).clamp_(min=MIN_ANCHOR_PX).log()  # [P,K,2]
    members = sort_by_area(members.exp() if project is None else project(members.exp())).log()
    fitness = objective(members.exp())
    floor = math.log(MIN_ANCHOR_PX)
    for generation in range(gen):
        best = members[fitness.argmax()]
        # Two distinct partners per member, neither the member itself.
        picks = torch.rand(population, population, generator=generator, device=device)
        picks.fill_diagonal_(-1.0)
        partners = picks.topk(2, dim=1).indices  # [P,2]
        donor = members + differential_weight * (best - members) + differential_weight * (
            members[partners[:, 0]] - members[partners[:, 1]]
        )
        cross = torch.rand(members.shape, generator=generator, device=device) < crossover
        forced = torch.randint(0, members[0].numel(), (population,), generator=generator, device=device)
        cross.view(population, -1).scatter_(1, forced[:, None], True)  # at least one coordinate crosses
        trial = torch.where(cross, donor, members).clamp(min=floor).exp()
        trial = sort_by_area(trial if project is None else project(trial)).log()
        trial_fitness = objective(trial.exp())
        better = trial_fitness > fitness
        members = torch.where(better[:, None, None], trial, members)
        fitness = torch.where(better, trial_fitness, fitness)
        if progress is not None:
            progress(generation, fitness.max())
    top = fitness.argmax()
    return members[top].exp(), fitness[top]
