"""Anchors as text for log lines: one formatter for the search and the training hook.

It sits below both (it needs nothing but a tensor), so the numerical core and the
hook can import it without an import pointing upwards.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["format_anchors"]


def format_anchors(anchors_px: Tensor) -> str:
    """Anchor (width, height) pairs in pixels, rounded to whole pixels.

    Args:
        anchors_px: ``Tensor[K, 2]`` (one set) or ``Tensor[L, K, 2]`` (``L`` levels
            of ``K`` anchors), in pixels.

    Returns:
        ``"10,13,  16,30,  33,23"`` for ``[K, 2]`` (two spaces between pairs, so the
        pairs stand out from the comma inside each); levels are separated by
        ``" | "``: ``"10,13,  16,30 | 30,61,  62,45"``.

    Raises:
        ValueError: if the last dimension is not 2 or there are not 2 or 3 dimensions.

    Example:
        >>> import torch
        >>> format_anchors(torch.tensor([[[10.0, 13.0]], [[30.0, 61.2]]]))
        '10,13 | 30,61'
    """
    if anchors_px.ndim not in (2, 3) or anchors_px.shape[-1] != 2:
        raise ValueError(f"anchors must be [K, 2] or [L, K, 2] (width, height), got shape {list(anchors_px.shape)}")
    values = anchors_px.detach().cpu()
    levels = values if values.ndim == 3 else values[None]  # [L,K,2]
    return " | ".join(",  ".join(f"{w:.0f},{h:.0f}" for w, h in level.tolist()) for level in levels)
