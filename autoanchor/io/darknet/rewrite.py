"""Put new anchors into a darknet cfg, byte for byte; the ``anchors =`` and ``mask =`` lines as text."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from .._atomic import write_atomic
from ...core.levels import level_name
from ..modelyaml import read_text_file, round_anchors
from .cfg import YOLO_SECTIONS, DarknetConfig, _sections, parse_cfg, read_cfg_text

__all__ = ["darknet_lines", "rewrite_cfg_anchors", "write_cfg_anchors"]

logger = logging.getLogger(__name__)


def _sorted_rows(anchors: Tensor | Sequence, num: int, source: str) -> list[list[int]]:
    values = torch.as_tensor(anchors, dtype=torch.float64)
    if values.ndim < 2 or values.shape[-1] != 2 or values.numel() // 2 != num:
        raise ValueError(f"{source} has num={num} anchors, got anchors of shape {list(values.shape)}")
    rows = round_anchors(values.reshape(1, num, 2))[0]
    return sorted(rows, key=lambda wh: wh[0] * wh[1])  # stable: equal areas keep their order


def _anchors_text(rows: list[list[int]], old: str) -> str:
    """``rows`` as an ``anchors =`` value, with the separators ``old`` uses."""
    separators = re.findall(r",\s*", old)
    within = separators[0] if separators else ","
    between = separators[1] if len(separators) > 1 else ",  "
    return between.join(f"{w}{within}{h}" for w, h in rows)


def _end_of_values(value: str, count: int) -> int:
    """Offset in ``value`` just past its ``count``-th comma-separated value (its length when it has no more)."""
    seen = 0
    for match in re.finditer(r"[^,]+", value):
        if match.group().strip():
            seen += 1
            if seen == count:
                return len(value[: match.end()].rstrip())
    return len(value)


def rewrite_cfg_anchors(text: str, anchors: Tensor | Sequence, *, source: str = "<string>") -> str:
    """Put new anchors on the ``anchors =`` line of every ``[yolo]`` section of a cfg.

    Only the value of each ``anchors =`` line changes; the key, its spacing, an inline
    comment, the line endings and every other line stay byte for byte. The anchors are
    written in whole pixels, sorted by area, with the separators the line already uses
    (darknet's ``10,13,  16,30`` or ``12, 16, 19, 36``).

    Args:
        text: the cfg.
        anchors: Tensor[num, 2] (or any shape holding ``num`` (width, height) pairs,
            such as ``[levels, per_level, 2]``), anchors in pixels of the network input.
        source: name of the file, for messages.

    Returns:
        The new text.

    Raises:
        ValueError: if the cfg is malformed (see :func:`read_cfg`), the number of
            anchors is not its ``num``, or its masks would give the finest level larger
            anchors than a coarser one (then fix the masks first).
    """
    config = parse_cfg(text, source=source)
    config.check_rewritable()
    rows = _sorted_rows(anchors, config.num, source)
    entries = [s.entries["anchors"] for s in _sections(text, source) if s.name in YOLO_SECTIONS]
    pieces, position = [], 0
    for entry in entries:
        # Values past num's (darknet ignores them) stay as they are: only the first 2 * num are replaced.
        end = entry.start + _end_of_values(entry.value, 2 * config.num)
        pieces += [text[position : entry.start], _anchors_text(rows, text[entry.start : end])]
        position = end
    pieces.append(text[position:])
    new_text = "".join(pieces)
    rewritten = parse_cfg(new_text, source=source)
    expected = torch.tensor(rows, dtype=torch.float32)
    if not all(torch.equal(s.anchors, expected) for s in rewritten.sections):
        raise RuntimeError(f"internal error: rewriting the anchors of {source} did not give the new anchors")
    return new_text


def write_cfg_anchors(path: str | os.PathLike, anchors: Tensor | Sequence) -> DarknetConfig:
    """Rewrite the anchors of a darknet cfg in place (see :func:`rewrite_cfg_anchors`).

    The file is replaced atomically (:func:`autoanchor.io._atomic.write_atomic`): it keeps
    its mode, a read-only file is refused, and on any failure it is left as it was. A
    symlink is followed and its target rewritten.

    Args:
        path: the cfg.
        anchors: Tensor[num, 2], anchors in pixels of the network input.

    Returns:
        The rewritten cfg as :class:`DarknetConfig`.

    Raises:
        ValueError: as :func:`rewrite_cfg_anchors`, or if the file cannot be read.
        ReadOnlyFileError: if the file is read-only.
        OSError: if the file cannot be written.
    """
    path = Path(os.path.realpath(path))
    text, encoding = read_cfg_text(path)
    new_text = rewrite_cfg_anchors(text, anchors, source=str(path))
    write_atomic(path, new_text.encode(encoding))  # a Latin-1 file stays Latin-1, byte for byte
    logger.debug("rewrote the anchors of %s", path)
    return parse_cfg(new_text, source=str(path))


def darknet_lines(
    anchors: Tensor | Sequence,
    masks: Sequence[Sequence[int]] | None = None,
    *,
    strides: Sequence[int] | None = None,
) -> str:
    """The ``anchors =`` line and each level's ``mask =`` line, ready to paste into a cfg.

    Args:
        anchors: Tensor[levels, per_level, 2], anchors in pixels, finest level first
            (written level after level, masks ``0,1,2``, ``3,4,5``, ...); or
            Tensor[num, 2], an ``anchors =`` line, with ``masks`` to say which each
            level uses.
        masks: indices into the line per level, finest first; needed with ``[num, 2]``.
        strides: stride of each level, for a ``# P3/8`` comment line above its mask.

    Returns:
        Lines ending with a newline, e.g.::

            anchors = 10,13,  16,30,  33,23,  30,61,  62,45,  59,119,  116,90,  156,198,  373,326
            # P3/8
            mask = 0,1,2
            ...
    """
    values = torch.as_tensor(anchors, dtype=torch.float64)
    if values.ndim == 3:
        rows = [pair for level in round_anchors(values) for pair in level]
        if masks is None:
            per_level = values.shape[1]
            masks = [range(level * per_level, (level + 1) * per_level) for level in range(values.shape[0])]
    elif values.ndim == 2 and masks is not None:
        rows = round_anchors(values[None])[0]
    else:
        raise ValueError(
            f"anchors must be [levels, per_level, 2], or [num, 2] with masks; got shape {list(values.shape)}"
        )
    masks = [list(mask) for mask in masks]
    if any(not 0 <= i < len(rows) for mask in masks for i in mask):
        raise ValueError(f"masks {masks} index outside the {len(rows)} anchors")
    if strides is not None and len(strides) != len(masks):
        raise ValueError(f"got {len(strides)} strides for {len(masks)} levels")
    lines = ["anchors = " + ",  ".join(f"{w},{h}" for w, h in rows)]
    for level, mask in enumerate(masks):
        if strides is not None:
            lines.append(f"# {level_name(strides[level], with_stride=True)}")
        lines.append("mask = " + ",".join(str(i) for i in mask))
    return "\n".join(lines) + "\n"
