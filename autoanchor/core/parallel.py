"""How the search combines partial results when the boxes are split across processes.

The numerical core never imports :mod:`torch.distributed`. It takes a
:class:`Reducer`, which says how to add up partial sums and how to gather pieces
from every process; :class:`LocalReducer` (one process) is the default, and
:mod:`autoanchor.training.distributed` implements it on a ``torch.distributed`` group.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["Reducer", "LocalReducer"]


@runtime_checkable
class Reducer(Protocol):
    """Collective operations the search needs; every process calls them in the same order."""

    rank: int
    """This process's index in ``range(world_size)``."""
    world_size: int
    """How many processes share the work."""

    def sum(self, tensor: Tensor) -> Tensor:
        """Element-wise sum of ``tensor`` over all processes (same shape on each)."""
        ...

    def gather(self, tensor: Tensor) -> Tensor:
        """Every process's ``tensor`` concatenated along dim 0, in rank order.

        The tensors may differ in their first dimension, not in the others.
        """
        ...


class LocalReducer:
    """The reducer of a single process: sums and gathers are the identity."""

    rank = 0
    world_size = 1

    def sum(self, tensor: Tensor) -> Tensor:
        return tensor

    def gather(self, tensor: Tensor) -> Tensor:
        return tensor
