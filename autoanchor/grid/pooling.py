"""Pooling boxes by log size for the grid fit, with a bounded set of real positions per pool."""

from __future__ import annotations

import torch
from torch import Tensor

from .anchors import lattice_offsets
from .matching import Samples

__all__ = ["pool_samples"]


def pool_samples(
    wh: Tensor,
    xy: Tensor | None,
    cell: int,
    *,
    bins_per_octave: int = 8,
    positions_per_pool: int = 16,
    generator: torch.Generator | None = None,
    extent: Tensor | None = None,
) -> Samples:
    """Pool boxes by log size, keeping a bounded set of positions per pool.

    Args:
        wh: ``[N, 2]`` box (width, height) in input pixels, finite and positive.
        xy: ``[N, 2]`` box centres in input pixels, or None if unknown.
        cell: period of the grid in pixels (positions are taken modulo it, unless
            ``extent`` is given).
        extent: ``[N, 2]`` padded input (width, height) of each box's image, with
            ``xy``: the kept rows keep their real centres and extent, so they match
            on their image's real grid (:func:`level_grid`).
        bins_per_octave: size bins per factor of 2 on each axis.
        positions_per_pool: positions kept per pool (lattice points if unknown).
        generator: draws the subset of positions of large pools (known positions).

    Returns:
        Samples whose weights sum to ``N``; at most
        ``occupied_bins * positions_per_pool`` rows.
    """
    if bins_per_octave < 1 or positions_per_pool < 1:
        raise ValueError(
            f"bins_per_octave and positions_per_pool must be >= 1, got {bins_per_octave} and {positions_per_pool}"
        )
    log_wh = torch.log2(wh.double())
    bins = torch.round(log_wh * bins_per_octave).long()  # [N,2]
    bins = bins - bins.min(dim=0).values
    key = bins[:, 0] * (int(bins[:, 1].max()) + 1) + bins[:, 1]
    unique, pool, counts = torch.unique(key, return_inverse=True, return_counts=True)
    n_pools = unique.shape[0]
    dtype, device = torch.float64, wh.device
    if xy is None:
        mean_log = torch.zeros(n_pools, 2, dtype=dtype, device=device).index_add_(0, pool, log_wh)
        pool_wh = torch.exp2(mean_log / counts[:, None].to(dtype))  # [P,2] geometric means
        points = lattice_offsets(positions_per_pool, dtype=dtype, device=device) * cell  # [M,2]
        return Samples(
            pool_wh.repeat_interleave(positions_per_pool, dim=0),
            points.repeat(n_pools, 1),
            (counts.to(dtype) / positions_per_pool).repeat_interleave(positions_per_pool),
        )
    priority = torch.rand(wh.shape[0], generator=generator, dtype=dtype).to(device)
    order = torch.argsort(pool.to(dtype) + priority * 0.5)  # by pool, random within a pool
    sorted_pool = pool[order]
    first = torch.cumsum(counts, 0) - counts  # [P] first row of each pool in `order`
    rank = torch.arange(wh.shape[0], device=device) - first[sorted_pool]
    keep = order[rank < positions_per_pool]
    kept = torch.clamp(counts, max=positions_per_pool).to(dtype)
    centres = xy[keep].to(dtype) if extent is not None else torch.remainder(xy[keep].to(dtype), cell)
    return Samples(
        wh[keep].to(dtype),
        centres,
        (counts.to(dtype) / kept)[pool[keep]],
        None if extent is None else extent[keep].to(dtype),
    )
