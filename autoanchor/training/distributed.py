"""A :class:`~autoanchor.core.parallel.Reducer` on a ``torch.distributed`` process group.

The numerical core only knows the :class:`~autoanchor.core.parallel.Reducer` protocol
(``sum`` and ``gather``). :class:`DistributedReducer` implements it with
``all_reduce`` and ``all_gather`` on a process group, so that every process can
search on its own share of the boxes and still end with the same answer.

Failures. A collective blocks until every process of the group has entered it, so
a process that raises between two collectives would leave the others waiting
forever (or until the backend's timeout). To prevent that, every collective of a
:class:`DistributedReducer` is preceded by a tiny status exchange, and
:meth:`DistributedReducer.guard` wraps a block of work::

    reducer = DistributedReducer()
    with reducer.guard():
        ...  # local work and reducer.sum / reducer.gather calls

If the block raises on one process, that process joins the next status exchange
the others are waiting in, flagged as failed, and raises its own error; every
other process raises :class:`PeerFailure` (a ``RuntimeError`` naming the failed
ranks) from that exchange. The guard ends with a last exchange, so a failure after
the final collective is seen everywhere too. Afterwards no collective is left
pending and the process group stays usable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["DistributedReducer", "PeerFailure", "is_distributed"]


def is_distributed() -> bool:
    """Whether a default ``torch.distributed`` process group is initialised."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class PeerFailure(RuntimeError):
    """Raised on the processes that did not fail when another one did.

    Attributes:
        failed_ranks: the ranks (in the reducer's group) that failed; each of them
            raises its own error.
        rank: the rank that raised this exception.
    """

    def __init__(self, failed_ranks: Sequence[int], rank: int, *, source: object = None) -> None:
        self.failed_ranks = tuple(int(r) for r in failed_ranks)
        self.rank = int(rank)
        self.source = source
        which = ", ".join(str(r) for r in self.failed_ranks)
        plural = "s" if len(self.failed_ranks) > 1 else ""
        super().__init__(
            f"rank{plural} {which} of the process group failed (see the error raised there); "
            f"stopping rank {self.rank} as well"
        )

    def __reduce__(self):  # noqa: ANN204  (picklable across processes; the source stays behind)
        return (type(self), (self.failed_ranks, self.rank))


def _communication_device(group: object) -> torch.device:
    """Where tensors must live for this group's backend: the current CUDA device for
    NCCL, the CPU for gloo, MPI and anything else."""
    backend = str(torch.distributed.get_backend(group)).lower()
    if "nccl" in backend and "gloo" not in backend:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class DistributedReducer:
    """Sums and gathers over a ``torch.distributed`` process group.

    Every process of the group must make the same calls in the same order, with
    tensors of the same dtype and (for :meth:`sum`) shape. Tensors are moved to the
    backend's device for the collective (the current CUDA device for NCCL, the CPU
    for gloo) and the result is returned on the input's device; inputs are never
    modified.

    Args:
        group: the process group; ``None`` for the default group.
        device: the device collectives run on; by default the current CUDA device
            for an NCCL group and the CPU otherwise.

    Raises:
        RuntimeError: if no process group is initialised.
        ValueError: if this process is not a member of ``group``.

    Example:
        >>> reducer = DistributedReducer()  # doctest: +SKIP
        >>> with reducer.guard():  # doctest: +SKIP
        ...     total = reducer.sum(torch.ones(3))  # == world_size everywhere
    """

    def __init__(self, group: object = None, *, device: torch.device | str | None = None) -> None:
        if not is_distributed():
            raise RuntimeError(
                "DistributedReducer needs an initialised torch.distributed process group "
                "(call torch.distributed.init_process_group first)"
            )
        rank = torch.distributed.get_rank(group)
        if rank < 0:
            raise ValueError("this process is not a member of the process group given to DistributedReducer")
        self.group = group
        self.rank = int(rank)
        self.world_size = int(torch.distributed.get_world_size(group))
        self.device = torch.device(device) if device is not None else _communication_device(group)
        self._broken = False

    def __repr__(self) -> str:
        return f"DistributedReducer(rank={self.rank}, world_size={self.world_size}, device={self.device})"

    # -- the Reducer protocol -------------------------------------------------------

    def sum(self, tensor: Tensor) -> Tensor:
        """Element-wise sum of ``tensor`` over all processes (``all_reduce`` SUM).

        Args:
            tensor: the same shape and dtype on every process.

        Returns:
            A new tensor on ``tensor``'s device.
        """
        _check_tensor(tensor, "sum")
        payload = tensor.detach().to(self.device, copy=True)  # all_reduce works in place
        self._exchange_status(failed=False)
        self._collective(torch.distributed.all_reduce, payload, op=torch.distributed.ReduceOp.SUM, group=self.group)
        return payload.to(tensor.device)

    def gather(self, tensor: Tensor) -> Tensor:
        """Every process's ``tensor`` concatenated along dim 0, in rank order.

        The first dimension may differ between processes (including 0); the other
        dimensions and the dtype may not. Row counts are exchanged first, pieces are
        padded to the longest, gathered, and trimmed.

        Returns:
            ``Tensor[sum of rows, ...]`` on ``tensor``'s device.
        """
        _check_tensor(tensor, "gather")
        if tensor.ndim == 0:
            raise ValueError("gather needs a tensor with at least one dimension, got a 0-d tensor")
        payload = tensor.detach().to(self.device)
        rows = self._exchange_status(failed=False, rows=payload.shape[0])
        longest = max(rows)
        if longest == 0:  # every process knows this from the exchange: no collective
            return tensor.detach().clone()
        padded = payload.new_zeros((longest, *payload.shape[1:]))
        padded[: payload.shape[0]] = payload
        pieces = [torch.empty_like(padded) for _ in range(self.world_size)]
        self._collective(torch.distributed.all_gather, pieces, padded, group=self.group)
        return torch.cat([piece[:n] for piece, n in zip(pieces, rows)]).to(tensor.device)

    # -- beyond the protocol --------------------------------------------------------

    def broadcast(self, tensor: Tensor, *, src: int = 0) -> Tensor:
        """Process ``src``'s ``tensor`` on every process (a copy; inputs untouched).

        Every process passes a tensor of the same trailing shape and dtype; only
        ``src``'s values matter.
        """
        _check_tensor(tensor, "broadcast")
        if not 0 <= src < self.world_size:
            raise ValueError(f"src must be a rank in range({self.world_size}), got {src!r}")
        piece = tensor[None] if self.rank == src else tensor.new_empty((0, *tensor.shape))
        return self.gather(piece)[0]

    @contextlib.contextmanager
    def guard(self) -> Iterator[DistributedReducer]:
        """Run a block so that an error on any process is raised on every process.

        Every process must enter the guard. If the block raises on some processes,
        each of them raises its own error and every other one raises
        :class:`PeerFailure`; nobody is left waiting in a collective. If it
        completes everywhere, the guard ends with one status exchange.
        """
        try:
            yield self
        except PeerFailure as error:
            if error.source is not self:
                # A failure reported by another group: ours has not heard of it.
                self._report_failure()
            raise
        except BaseException:
            self._report_failure()
            raise
        self._exchange_status(failed=False)

    # -- internals ------------------------------------------------------------------

    def _report_failure(self) -> None:
        """Tell the others this process failed (unless the group itself broke)."""
        if not self._broken:
            self._exchange_status(failed=True)

    def _exchange_status(self, *, failed: bool, rows: int = 0) -> list[int]:
        """All-gather ``(failed, rows)`` from every process; return the row counts.

        Raises:
            PeerFailure: if another process reported a failure (and this one did not).
        """
        status = torch.tensor([int(failed), int(rows)], dtype=torch.int64, device=self.device)
        table = [torch.empty_like(status) for _ in range(self.world_size)]
        self._collective(torch.distributed.all_gather, table, status, group=self.group)
        table_cpu = torch.stack(table).cpu()  # [W,2]
        failed_ranks = torch.nonzero(table_cpu[:, 0]).flatten().tolist()
        if failed_ranks and not failed:
            raise PeerFailure(failed_ranks, self.rank, source=self)
        return table_cpu[:, 1].tolist()

    def _collective(self, operation, *args, **kwargs) -> None:  # noqa: ANN001
        if self._broken:
            raise RuntimeError(
                "an earlier collective of this DistributedReducer failed; the process group "
                "may be unusable, so no further collectives are attempted"
            )
        try:
            operation(*args, **kwargs)
        except BaseException:
            # The backend itself failed (timeout, lost peer): another exchange would
            # only wait for the same timeout again.
            self._broken = True
            raise


def _check_tensor(tensor: object, operation: str) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"DistributedReducer.{operation} takes a torch.Tensor, got {type(tensor).__name__}")
