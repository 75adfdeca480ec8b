"""The one randomness policy of autoanchor.

Every function that draws random numbers takes a ``generator`` (a
``torch.Generator`` on the device it works on) or, at the public entry points of
the search, a ``seed``. Given neither, it draws from a fresh generator seeded with
:data:`DEFAULT_SEED`: results repeat from call to call, and the global random
states of torch, numpy and :mod:`random` are never read or advanced.
"""

from __future__ import annotations

import torch

from .defaults import DEFAULT_SEED
from .validate import check_seed

__all__ = ["DEFAULT_SEED", "resolve_generator"]



def resolve_generator(
    generator: torch.Generator | None, device: torch.device | str | None = None, *, seed: int = DEFAULT_SEED
) -> torch.Generator:
    """``generator`` itself, or a fresh one on ``device`` seeded with ``seed`` (:data:`DEFAULT_SEED`).

    Args:
        generator: the caller's generator, returned unchanged (not re-seeded).
        device: where a new generator draws (the CPU when omitted).
        seed: the seed of a new generator, an integer from 0 to ``2**64 - 1``.

    Returns:
        A ``torch.Generator``.

    Example:
        >>> a = torch.rand(2, generator=resolve_generator(None))
        >>> b = torch.rand(2, generator=resolve_generator(None))
        >>> torch.equal(a, b)
        True
    """
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        return generator
    seed = check_seed("seed", seed)
    return torch.Generator(device=torch.device(device) if device is not None else "cpu").manual_seed(seed)
