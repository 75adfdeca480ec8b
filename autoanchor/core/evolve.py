"""yolov5's anchor evolution, batched: mutate and keep if fitter.

* :func:`mutation_factors` draws yolov5's multiplicative mutation factors;
* :func:`mutate` applies them to a parent;
* :func:`evolve` is yolov5's mutate-and-keep-if-fitter search generalised to
  ``population`` mutants per generation (``population=1`` is yolov5's scheme).
  The loop never reads a value back to the host, so on a GPU it runs without
  synchronisation.

The other searches over an :class:`~autoanchor.core.objectives.Objective` live in
:mod:`autoanchor.core.differential` (differential evolution) and :mod:`autoanchor.core.polish`
(pattern search with relocation hops). Randomness follows :mod:`autoanchor.core.rng`:
an explicit ``torch.Generator``, or a fresh one seeded with ``DEFAULT_SEED``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .boxes import MIN_ANCHOR_PX
from .objectives import Objective
from .rng import resolve_generator

__all__ = ["Progress", "Projection", "mutation_factors", "mutate", "evolve"]

Progress = Callable[[int, Tensor], None]
"""Called as ``progress(generation, best_fitness)``; the fitness stays a device tensor."""

Projection = Callable[[Tensor], Tensor]
"""Maps anchor sets ``[..., K, 2]`` in pixels onto feasible ones of the same shape."""

def mutation_factors(
    shape: tuple[int, ...],
    *,
    mutation_prob: float = 0.9,
    sigma: float = 0.1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Factors of yolov5's anchor mutation: ``Tensor[*shape]`` with ``shape = (..., count, K, 2)``.

    Each coordinate is mutated with probability ``mutation_prob`` by a factor
    ``1 + step · N(0, 1) · sigma``, with one ``step ~ U(0, 1)`` per mutant (per
    ``[K, 2]`` block), clipped to [0.3, 3.0]; the others keep a factor of 1.
    yolov5 draws again while a mutant would change nothing; here the mask of
    mutated coordinates is drawn directly from its law given that it is not
    empty (the first mutated coordinate from a truncated geometric law, the rest
    independently): the same law, without a loop or a host sync.

    The factors do not depend on the anchors, so a whole run's worth can be
    drawn at once.

    Args:
        shape: ``(..., count, K, 2)``.
        mutation_prob: chance that a coordinate is mutated, in (0, 1].
        sigma: scale of the mutation.
        generator: source of randomness (on ``device``); a fresh one seeded with
            :data:`~autoanchor.core.rng.DEFAULT_SEED` when omitted.
        device: where the factors live; the CPU when omitted.

    Returns:
        Tensor[*shape] float32 factors in [0.3, 3.0].
    """
    if not 0 < mutation_prob <= 1:
        raise ValueError(f"mutation_prob must be in (0, 1], got {mutation_prob}")
    generator = resolve_generator(generator, device)
    *batch, k, two = shape
    size = k * two
    mask = torch.rand(*batch, size, generator=generator, device=device) < mutation_prob  # [...,2K]
    if mutation_prob < 1:
        # P(first mutated index = j | not empty) ∝ (1 - p)^j p, for j < 2K.
        keep = 1 - mutation_prob
        u = torch.rand(*batch, 1, generator=generator, device=device)
        first = torch.floor(torch.log1p(-u * (1 - keep**size)) / math.log(keep)).clamp_(0, size - 1)
        index = torch.arange(size, device=device)
        fresh = (torch.rand(*batch, size, generator=generator, device=device) < mutation_prob) & (index > first)
        fresh |= index == first
        mask = torch.where(mask.any(-1, keepdim=True), mask, fresh)
    step = torch.rand(*batch, 1, generator=generator, device=device)
    noise = torch.randn(*batch, size, generator=generator, device=device)
    return (1 + mask * step * noise * sigma).clamp_(0.3, 3.0).view(shape)


def mutate(
    parent: Tensor,
    count: int,
    *,
    mutation_prob: float = 0.9,
    sigma: float = 0.1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """yolov5's anchor mutation, ``count`` times at once (see :func:`mutation_factors`).

    Args:
        parent (Tensor[K, 2]): anchors in pixels.
        count: how many mutants.
        mutation_prob: chance that a coordinate is mutated, in (0, 1].
        sigma: scale of the mutation.
        generator: source of randomness (on ``parent.device``); a fresh one seeded
            with :data:`~autoanchor.core.rng.DEFAULT_SEED` when omitted.

    Returns:
        Tensor[count, K, 2] of mutated anchors in pixels, each side at least 2 px.
    """
    factors = mutation_factors(
        (count, *parent.shape), mutation_prob=mutation_prob, sigma=sigma, generator=generator, device=parent.device
    )
    return (parent[None] * factors.to(parent.dtype)).clamp_(min=MIN_ANCHOR_PX)


def evolve(
    objective: Objective,
    anchors: Tensor,
    *,
    gen: int = 1000,
    population: int = 1,
    mutation_prob: float = 0.9,
    sigma: float = 0.1,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
    project: Projection | None = None,
) -> tuple[Tensor, Tensor]:
    """Mutate and keep if fitter, ``population`` mutants per generation.

    Every generation makes ``population`` mutants of the current anchors
    (:func:`mutate`) and keeps the fittest of them if it beats the current ones.
    ``population=1`` is yolov5's (1+1) scheme; larger populations use each
    generation's pass over the boxes for several candidates at once. The
    mutation factors of all generations are drawn up front; the loop itself
    reads nothing back from the device. The fitness never decreases.

    Args:
        objective: scores anchor sets.
        anchors (Tensor[K, 2]): the start, in pixels.
        gen: generations.
        population: mutants per generation (λ).
        mutation_prob, sigma: see :func:`mutation_factors`.
        generator: source of randomness (on the objective's device); a fresh one
            seeded with :data:`~autoanchor.core.rng.DEFAULT_SEED` when omitted.
        progress: called after every generation with the best fitness so far (a
            device tensor: reading it forces a sync, so a caller on a GPU should
            do so only now and then).
        project: maps a population ``[P, K, 2]`` (pixels) onto the feasible
            anchor sets, e.g. :func:`~autoanchor.core.levels.clamp_to_strides`; every
            mutant is projected before it is scored, so with a feasible start
            the result is feasible. ``None``: no constraint.

    Returns:
        ``(anchors [K, 2], fitness [])``, the best found, on the objective's device.
    """
    if gen < 0:
        raise ValueError(f"gen must be at least 0, got {gen}")
    if population < 1:
        raise ValueError(f"population must be at least 1, got {population}")
    generator = resolve_generator(generator, objective.device)
    start = anchors.to(objective.device, torch.float32)
    start_fitness = objective(start)
    # Mutate in log space: the factors become steps, and the ratio metric needs log sizes anyway.
    log_steps = mutation_factors(
        (gen, population, *start.shape),
        mutation_prob=mutation_prob,
        sigma=sigma,
        generator=generator,
        device=objective.device,
    ).log_()
    # The parent rides along as candidate 0, so one argmax picks the next parent; argmax takes
    # the first of equals, so a mutant must be strictly fitter. Sums are compared undivided.
    log_best, log_floor = start.log()[None], math.log(MIN_ANCHOR_PX)  # [1,K,2]
    best_sum = start_sum = objective.log_sums(log_best)  # [1]
    for generation in range(gen):
        log_mutants = (log_best + log_steps[generation]).clamp_(min=log_floor)  # [λ,K,2]
        if project is not None:
            log_mutants = project(log_mutants.exp()).log()
        sums = torch.cat([best_sum, objective.log_sums(log_mutants)])  # [1+λ]
        top = sums.argmax(0, keepdim=True)  # [1]
        best_sum, log_best = sums[top], torch.cat([log_best, log_mutants])[top]
        if progress is not None:
            progress(generation, best_sum[0] / objective.total_weight)
    # Unless a mutant was accepted, return the start itself, not exp(log(start)) a few ulps off.
    improved = best_sum[0] > start_sum[0]
    return (
        torch.where(improved, log_best[0].exp(), start),
        torch.where(improved, best_sum[0] / objective.total_weight, start_fitness),
    )
