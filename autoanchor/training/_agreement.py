"""How the ranks of a distributed check agree: one handshake, then rank 0's figures and decision.

Every rank measures and searches; rank 0's results are broadcast, so that every rank
writes bit-identical anchors. A rank whose data, head or settings differ is refused by
name before anything is measured.
"""

from __future__ import annotations

import zlib

import torch
from torch import Tensor

from ..core.boxes import BoxSizes
from .options import CheckOptions
from .distributed import DistributedReducer, is_distributed
from .heads import HeadFamily, HeadState, Measure

__all__ = ["decision_from_rank0", "group_reducer", "handshake", "measure_from_rank0"]


def _crc32(*parts: bytes) -> int:
    """CRC-32 over ``parts`` in order: a cheap equality check between ranks (not a cache key)."""
    value = 0
    for part in parts:
        value = zlib.crc32(part, value)
    return value


def _as_int64(seed: int) -> int:
    """A seed in [0, 2**64) as the int64 of the same 64 bits (undone by ``% 2**64``)."""
    return seed - 2**64 if seed >= 2**63 else seed


def handshake(
    reducer: DistributedReducer, options: CheckOptions, sizes: BoxSizes, family: HeadFamily, state: HeadState
) -> int:
    """Check that every rank has the same data, anchors and settings; return rank 0's seed."""
    data = _crc32(sizes.shapes.tobytes(), sizes.wh.tobytes(), sizes.image_index.tobytes())
    model = _crc32(family.name.encode(), family.identity(state))
    row = torch.tensor(
        [[_as_int64(options.seed), sizes.n_images, sizes.n_boxes, data, state.params.numel(), model,
          _crc32(options.settings_key())]],
        dtype=torch.int64,
    )
    table = reducer.gather(row)  # [W,7]
    for rank in range(1, table.shape[0]):
        if not torch.equal(table[rank, 1:4], table[0, 1:4]):
            raise ValueError(
                f"check_anchors needs the same dataset on every rank: rank {rank} has "
                f"{int(table[rank, 1])} images and {int(table[rank, 2])} boxes, rank 0 has "
                f"{int(table[0, 1])} images and {int(table[0, 2])} boxes"
                + (" (same counts, different sizes)" if torch.equal(table[rank, 1:3], table[0, 1:3]) else "")
            )
        if not torch.equal(table[rank, 4:6], table[0, 4:6]):
            raise ValueError(
                f"check_anchors needs the same head, anchors and strides on every rank: rank {rank} has "
                f"{int(table[rank, 4])} anchor values, rank 0 has {int(table[0, 4])}"
                + (", with different values" if table[rank, 4] == table[0, 4] else "")
            )
        if table[rank, 6] != table[0, 6]:
            raise ValueError(
                f"check_anchors needs the same thr, imgsz, gen, bpr_threshold, scale and stride bounds on every rank; "
                f"rank {rank}'s differ from rank 0's"
            )
    return int(table[0, 0]) % 2**64  # back from int64 (seeds go up to 2**64 - 1)


def measure_from_rank0(reducer: DistributedReducer, measure: Measure) -> Measure:
    values = reducer.broadcast(torch.tensor([measure.score, *measure.figures.values()], dtype=torch.float64), src=0)
    return Measure(float(values[0]), dict(zip(measure.figures, values[1:].tolist())))


def decision_from_rank0(
    reducer: DistributedReducer, after: Measure, params: Tensor | None, shape: torch.Size
) -> tuple[Measure, Tensor | None]:
    """Rank 0's decision, figures and anchors on every rank (the same payload length
    everywhere, whatever each rank decided). float64 holds any float16/bfloat16/float32
    anchor exactly, so every rank stores bit-identical values."""
    flat = torch.zeros(shape.numel(), dtype=torch.float64) if params is None else params.flatten()
    local = torch.cat([torch.tensor([float(params is not None), after.score, *after.figures.values()],
                                    dtype=torch.float64), flat])
    payload = reducer.broadcast(local, src=0)
    k = len(after.figures)
    decided = Measure(float(payload[1]), dict(zip(after.figures, payload[2 : 2 + k].tolist())))
    return decided, (payload[2 + k :].reshape(shape) if payload[0] else None)


def group_reducer(distributed: bool | None) -> DistributedReducer | None:
    if distributed is None:
        distributed = is_distributed()
    elif distributed and not is_distributed():
        raise ValueError("distributed=True, but no torch.distributed process group is initialised")
    if not distributed:
        return None
    reducer = DistributedReducer()
    return reducer if reducer.world_size > 1 else None
