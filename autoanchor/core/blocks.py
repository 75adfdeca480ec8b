"""Box sizes made and measured a block at a time: the search's rows without holding them all.

Under scale augmentation (``scale=``) every box is searched at :data:`~autoanchor.core.jitter.DEFAULT_DRAWS`
sizes, eight times as many rows as boxes. Held at once, those rows and the temporaries of pooling them
took eight times the memory of a plain search (1e7 boxes: 8.7 GB against 1.8 GB). :class:`SizeBlocks`
makes the rows one block at a time instead, the same values each time it is iterated (its generator is
seeded afresh per pass), so that counting, pooling and measuring pass over the blocks in turn and hold
one: the peak is that of a plain search of one block.

:func:`pool_blocks` pools the blocks as :func:`pool_sizes` pools one tensor:
sums per cell, merged over the blocks, then one mean per cell. Identical sizes (cell 0) merge exactly;
log-space cells agree with pooling all rows at once up to the order of the float64 sums.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from .metrics import AnchorStats, anchor_stats_batch, check_thr, stat_totals, stats_of_totals
from .parallel import Reducer
from .rng import resolve_generator
from .validate import check_int

__all__ = ["BLOCK_ROWS", "SizeBlocks", "pool_sizes", "pool_blocks", "jitter_index", "stats_over"]

BLOCK_ROWS = 1 << 18
"""Most rows in one block when there are several (262,144: a block's pooling temporaries take about 25 MB)."""

WHOLE_ROWS = 1 << 21
"""Plain sizes up to this many rows (2,097,152) are one block: the search then runs exactly as on one tensor."""


def jitter_index(wh: Tensor, image_index: Tensor | None) -> tuple[Tensor, int]:
    """``(index [N] long, factors per draw)``: which factor scales each box, as :func:`jitter_wh` draws them.

    Raises:
        ValueError: for an ``image_index`` that is not ``[N]`` non-negative integers.
    """
    if image_index is None:
        return torch.arange(wh.shape[0], device=wh.device), wh.shape[0]
    if not isinstance(image_index, Tensor) or image_index.shape != (wh.shape[0],):
        shape = list(image_index.shape) if isinstance(image_index, Tensor) else type(image_index).__name__
        raise ValueError(f"image_index must be a Tensor of shape [{wh.shape[0]}] (one per box), got {shape}")
    if image_index.is_floating_point() or image_index.is_complex() or image_index.dtype == torch.bool:
        raise ValueError(f"image_index must hold integers, got {image_index.dtype}")
    if image_index.numel() and int(image_index.min()) < 0:
        raise ValueError(f"image_index must be non-negative, got {int(image_index.min())}")
    index = image_index.to(device=wh.device, dtype=torch.long)
    return index, int(index.max()) + 1 if index.numel() else 0


class SizeBlocks:
    """The rows ``wh [N, 2]``, or ``draws`` scale-jittered copies of them, as blocks of at most ``rows`` rows.

    With ``scale=None`` the blocks are slices of ``wh``. With a ``scale`` they are, draw after draw,
    ``wh`` times a factor from U(1 - scale, 1 + scale) per box (or per image, with ``image_index``),
    the values :func:`~autoanchor.core.jitter.jitter_wh` stacks: row ``d * N + i`` of its result is
    row ``i`` of draw ``d`` here. ``keep`` filters every block (e.g. the searchable boxes); ``shard``
    keeps rows ``rank::world_size`` of every block (a process's share).

    Args:
        wh (Tensor[N, 2]): validated box sizes in pixels.
        low, high: the factor's range; ``None`` for the plain sizes.
        draws: copies under different factors (1 without a range).
        image_index (Tensor[N], optional): the image of each box; its boxes share a factor per draw.
        seed: seeds the factors' generator, made afresh for every pass.
        rows: most rows per block (:data:`BLOCK_ROWS` when omitted).
        keep, shard: see above.
        device: where the blocks are delivered (made on ``wh``'s device, so that the factors, drawn
            there, are the same wherever the rows are measured).
    """

    def __init__(
        self,
        wh: Tensor,
        *,
        low: float | None = None,
        high: float | None = None,
        draws: int = 1,
        image_index: Tensor | None = None,
        seed: int = 0,
        rows: int | None = None,
        keep: Callable[[Tensor], Tensor] | None = None,
        shard: tuple[int, int] = (0, 1),
        device: torch.device | str | None = None,
    ) -> None:
        self.wh = wh
        self.jittered = low is not None
        self.low, self.high = (low, high) if self.jittered else (1.0, 1.0)
        self.draws = check_int("draws", draws, low=1)
        self.index, self.n_factors = jitter_index(wh, image_index) if self.jittered else (None, 0)
        self.seed, self.rows = seed, check_int("rows", BLOCK_ROWS if rows is None else rows, low=1)
        self.keep, self.shard, self.dtype = keep, shard, None
        self._device = torch.device(device) if device is not None else wh.device

    @property
    def device(self) -> torch.device:
        return self._device

    def where(self, keep: Callable[[Tensor], Tensor], dtype: torch.dtype | None = None) -> SizeBlocks:
        """The same blocks, each filtered by ``keep(block) -> bool [m]`` (then cast to ``dtype``)."""
        return self._with(keep=keep, dtype=dtype)

    def sharded(self, rank: int, world_size: int) -> SizeBlocks:
        """The same blocks, each cut to its rows ``rank::world_size``."""
        return self._with(shard=(rank, world_size))

    def _with(self, **change) -> SizeBlocks:
        copy = object.__new__(SizeBlocks)
        copy.__dict__.update(self.__dict__, **change)
        return copy

    def __iter__(self) -> Iterator[Tensor]:
        n = self.wh.shape[0]
        step = n if self._whole() else self.rows
        generator = resolve_generator(None, self.wh.device, seed=self.seed) if self.jittered else None
        for _ in range(self.draws):
            if generator is not None:  # one draw's factors; on the CPU the same values as one [draws, n] draw
                factor = torch.rand(self.n_factors, generator=generator, device=self.wh.device, dtype=torch.float64)
                factor = self.low + (self.high - self.low) * factor
            for start in range(0, n, max(step, 1)):
                block = self.wh[start : start + step]
                if generator is not None:
                    block = (block.double() * factor[self.index[start : start + step], None]).to(self.wh.dtype)
                rank, world = self.shard
                if world > 1:
                    block = block[rank::world]
                block = block.to(self._device)
                if self.keep is not None:
                    block = block[self.keep(block)]
                yield block if self.dtype is None else block.to(self.dtype)

    def first(self) -> Tensor:
        """The first block (no rows if there is none)."""
        block = next(iter(self), None)
        return block if block is not None else self.wh[:0].to(self._device, self.dtype or self.wh.dtype)

    def single(self) -> Tensor | None:
        """The only block, when there is one (no jitter and at most ``rows`` rows), else ``None``."""
        return self.first() if self._whole() else None

    def _whole(self) -> bool:
        return not self.jittered and self.draws == 1 and self.wh.shape[0] <= WHOLE_ROWS

    def materialise(self) -> Tensor:
        """Every block, concatenated (the memory this class saves: for callers that need one tensor)."""
        return torch.cat(list(self)) if self.wh.shape[0] else self.first()


def pool_sizes(wh: Tensor, weights: Tensor | None = None, *, cell: float = 0.0) -> tuple[Tensor, Tensor]:
    """Pool box sizes: identical sizes, or sizes within one cell of a log-space grid.

    Args:
        wh (Tensor[N, 2]): box (width, height) in pixels, all positive.
        weights (Tensor[N], optional): how many boxes each row stands for.
        cell: grid cell in log units; 0 merges only identical sizes.

    Returns:
        ``(points [M, 2], weights [M])``: each pool's weighted geometric-mean size
        and its total weight, ``M <= N``, ordered by cell.
    """
    if weights is None:
        weights = torch.ones(wh.shape[0], dtype=torch.float64, device=wh.device)
    weights = weights.double()
    if wh.shape[0] == 0:  # a process may hold no boxes of its own
        return wh, weights
    log_wh = wh.double().log()
    if cell > 0:
        key_wh = torch.floor(log_wh / cell).long()  # integer cell coordinates
    else:
        key_wh = wh.float().view(torch.int32).long()  # the exact float bits
    key_wh = key_wh - key_wh.amin(0)  # one tensor: any range of cells fits one key (blocks use _cell_keys)
    key = key_wh[:, 0] * (int(key_wh[:, 1].max()) + 1) + key_wh[:, 1]
    if cell == 0:  # identical sizes: keep them bit-exact rather than round-tripped through log/exp
        _, pooled_weight, first = _group(key, weights[:, None])
        return wh[first], pooled_weight[:, 0].contiguous()
    _, sums, _ = _group(key, torch.cat([log_wh * weights[:, None], weights[:, None]], 1))
    pooled_weight = sums[:, 2].contiguous()
    return (sums[:, :2] / pooled_weight[:, None]).exp().to(wh.dtype), pooled_weight


_OFFSET = 1 << 31  # cell coordinates (or float bits) in [-2**31, 2**31) make one int64 key in lexicographic order


def _cell_keys(coords: Tensor) -> Tensor:
    """One int64 key per row of cell coordinates ``[M, 2]``, ordered as the coordinates lexicographically."""
    if coords.numel() and (int(coords.min()) < -_OFFSET or int(coords.max()) >= _OFFSET):
        raise ValueError(f"cell coordinates {int(coords.min())} ... {int(coords.max())} are out of range; the cell is too fine")
    return coords[:, 0] * (2 * _OFFSET) + (coords[:, 1] + _OFFSET)


def _group(key: Tensor, values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rows with equal ``key [M]`` summed: ``(sorted unique keys [G], values summed [G, C], first row of each [G])``.

    One sort (``torch.unique``'s inverse is several times slower on the CPU); the sums add the rows
    in their order, whatever the sort."""
    sorted_key, order = key.sort(stable=True)
    starts = torch.ones_like(sorted_key, dtype=torch.bool)
    starts[1:] = sorted_key[1:] != sorted_key[:-1]
    inverse = torch.empty_like(order).index_put_((order,), starts.cumsum(0) - 1)
    summed = torch.zeros(int(starts.sum()), values.shape[1], dtype=values.dtype, device=values.device)
    return sorted_key[starts], summed.index_add_(0, inverse, values), order[starts]


def _merge(keys: Tensor, sums: Tensor, new_keys: Tensor, new_sums: Tensor, *, add: slice) -> tuple[Tensor, Tensor]:
    """Sorted unique ``keys`` with their ``sums`` merged with another such set: the columns ``add`` of
    equal keys added (the others kept from the first set), new keys inserted in order."""
    at = torch.searchsorted(keys, new_keys).clamp(max=max(keys.shape[0] - 1, 0))
    known = keys[at] == new_keys if keys.shape[0] else torch.zeros_like(new_keys, dtype=torch.bool)
    sums[:, add].index_add_(0, at[known], new_sums[known][:, add])
    fresh = ~known
    if not bool(fresh.any()):
        return keys, sums
    keys, sums = torch.cat([keys, new_keys[fresh]]), torch.cat([sums, new_sums[fresh]])
    order = keys.argsort(stable=True)
    return keys[order], sums[order]


def pool_blocks(blocks: SizeBlocks, cell: float) -> tuple[Tensor, Tensor]:
    """:func:`pool_sizes` of all the rows of ``blocks``, holding one block at a time.

    Returns ``(points [M, 2] of the rows' dtype, weights [M] float64)``, ordered by cell.
    """
    only = blocks.single()
    if only is not None:
        return pool_sizes(only, cell=cell)
    merged = None  # (sorted cell keys [m], [log-size sums (2) or exact size (2), weight] [m, 3]), so far
    for block in blocks:
        if block.shape[0] == 0:
            continue
        if cell > 0:
            log_wh = block.double().log()
            key = _cell_keys(torch.floor(log_wh / cell).long())
            keys, sums, _ = _group(key, torch.cat([log_wh, log_wh.new_ones(len(block), 1)], 1))
        else:  # identical sizes: the exact float bits are the cell; the size itself is kept, not summed
            keys, counts, first = _group(_cell_keys(block.float().view(torch.int32).long()), block.new_ones(len(block), 1).double())
            sums = torch.cat([block[first].double(), counts], 1)
        # Merge as we go: only the cells so far and one block's are held.
        merged = (keys, sums) if merged is None else _merge(*merged, keys, sums, add=slice(0 if cell > 0 else 2, 3))
    if merged is None:
        empty = blocks.wh[:0]
        return empty, torch.zeros(0, dtype=torch.float64, device=empty.device)
    sums, dtype = merged[1], blocks.dtype or blocks.wh.dtype
    weights = sums[:, 2].contiguous()
    if cell > 0:
        return (sums[:, :2] / weights[:, None]).exp().to(dtype), weights
    return sums[:, :2].to(dtype), weights


def stats_over(rows: Tensor | SizeBlocks, population: Tensor, *, thr: float, reducer: Reducer | None = None) -> list[AnchorStats]:
    """:func:`~autoanchor.core.metrics.anchor_stats_batch` of ``population [P, K, 2]`` on a tensor of
    sizes or on every row of ``rows``, a block at a time (one block: exactly ``anchor_stats_batch``)."""
    only = rows if isinstance(rows, Tensor) else rows.single()
    if only is not None:
        return anchor_stats_batch(only, population, thr=thr, reducer=reducer)
    thr = check_thr(thr)
    return stats_of_totals(sum(stat_totals(block, population, thr=thr) for block in rows), reducer)
