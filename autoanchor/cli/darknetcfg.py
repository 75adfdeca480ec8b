"""``--model x.cfg``: what ``fit`` and ``check`` do differently for a darknet cfg.

The network input size and resize come from ``[net]``; levels, strides and masks from
the ``[yolo]`` sections (:func:`autoanchor.io.darknet.read_cfg`). ``fit`` searches as many
anchors as the masks use (all of them in yolov3 and yolov4, five of yolov4-tiny's six)
and puts them on an ``anchors =`` line in the masks' order (:func:`fitted_line`).

Imported only when a command runs (it imports torch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..core._warn import warn
from ..io.darknet import DarknetConfig, read_cfg

__all__ = [
    "NetworkSize", "describe_unused", "fitted_line", "is_cfg", "level_tensor", "network_size", "read_model_cfg"
]

logger = logging.getLogger(__name__)


def is_cfg(path: Path | None) -> bool:
    """True when ``--model`` names a darknet cfg (suffix ``.cfg``, any case)."""
    return path is not None and path.suffix.lower() == ".cfg"


def read_model_cfg(path: Path) -> DarknetConfig:
    """Read ``--model x.cfg`` and warn about each quirk it has (unused or shared anchors, ...)."""
    cfg = read_cfg(path)
    for note in cfg.notes:
        warn(note)
    return cfg


@dataclass(frozen=True)
class NetworkSize:
    """The network input the boxes are resized to, as darknet resizes them.

    Attributes:
        width: input width in pixels.
        height: input height in pixels.
        letter_box: darknet's ``letter_box=1`` (pad to the aspect ratio) instead of stretching.
        source: where the size comes from, for the output header.
    """

    width: int
    height: int
    letter_box: bool
    source: str

    @property
    def long_side(self) -> int:
        """The longer side in pixels, reported as ``img``."""
        return max(self.width, self.height)

    def json_fields(self) -> dict:
        """``{"network": {...}}`` for the run's ``info``; the writers' headers show it (``formats.size_text``)."""
        return {
            "network": {
                "width": self.width, "height": self.height, "letter_box": self.letter_box, "size_from": self.source
            }
        }


def network_size(cfg: DarknetConfig, img: int | None) -> NetworkSize:
    """The cfg's ``width x height``, or with ``--img`` that long side at the cfg's aspect ratio.

    Args:
        cfg: the cfg.
        img: an explicit ``--img`` in pixels, or None.

    Returns:
        :class:`NetworkSize`. With ``--img 416`` a 608 x 352 cfg gives 416 x 241 (the long
        side is ``--img``, as for yolov5; the other side scaled and rounded to a pixel).
    """
    if img is None:
        return NetworkSize(cfg.width, cfg.height, cfg.letter_box, "the cfg's size")
    scale = img / max(cfg.width, cfg.height)
    width, height = max(1, round(cfg.width * scale)), max(1, round(cfg.height * scale))
    return NetworkSize(width, height, cfg.letter_box, f"--img {img} at the cfg's aspect ratio")


def fitted_line(cfg: DarknetConfig, anchors: Tensor) -> list[list[int]]:
    """An ``anchors =`` line of ``cfg.num`` whole-pixel anchors holding the fitted ones where the masks look.

    The fitted anchors, rounded and sorted by area, go to the indices some mask uses
    (:attr:`DarknetConfig.used`), in ascending order. An index no mask uses (yolov4-tiny's
    anchor 0) keeps the cfg's anchor when that keeps the line sorted by area, else it
    repeats its used neighbour; either way darknet never reads it. The line is sorted
    by area, so :func:`autoanchor.io.darknet.write_cfg_anchors` writes it as it is.

    Args:
        cfg: the cfg.
        anchors: Tensor[len(cfg.used), 2], fitted anchors in pixels of the network input.

    Returns:
        ``[[w, h], ...]``, ``cfg.num`` integer pairs in pixels.
    """
    used = cfg.used
    if anchors.shape != (len(used), 2):
        raise ValueError(f"{cfg.source}: its masks use {len(used)} anchors, got {list(anchors.shape)}")
    rounded = anchors.detach().double().cpu().round().clamp(min=1).long().tolist()
    fitted = iter(sorted(rounded, key=lambda wh: wh[0] * wh[1]))
    line: list[list[int] | None] = [next(fitted) if i in used else None for i in range(cfg.num)]
    old = cfg.anchors.double().round().clamp(min=1).long().tolist()
    for i in range(cfg.num):
        if line[i] is not None:
            continue
        before = line[i - 1] if i else None
        after = next((line[j] for j in range(i + 1, cfg.num) if j in used), None)
        area = old[i][0] * old[i][1]
        if (before is None or before[0] * before[1] <= area) and (after is None or area <= after[0] * after[1]):
            line[i] = old[i]
        else:
            line[i] = list(before if before is not None else after)  # type: ignore[arg-type]
    return line  # type: ignore[return-value]


def describe_unused(cfg: DarknetConfig, line: list[list[int]]) -> str | None:
    """A log line on the anchors no mask uses and what they were set to, or None if the masks use all."""
    unused = [i for i in range(cfg.num) if i not in cfg.used]
    if not unused:
        return None
    old = cfg.anchors.double().round().clamp(min=1).long().tolist()
    kept = [i for i in unused if line[i] == old[i]]
    what = ", ".join(
        f"anchor {i} {'kept as it was' if i in kept else 'set to its neighbour'} ({line[i][0]}x{line[i][1]})"
        for i in unused
    )
    return (
        f"{cfg.source}: its masks use {len(cfg.used)} of its {cfg.num} anchors, so {len(cfg.used)} were fitted; "
        f"{what}; darknet never reads an anchor that is in no mask"
    )


def level_tensor(cfg: DarknetConfig, line: list[list[int]], device: torch.device) -> Tensor:
    """Tensor[levels, per_level, 2] float32: the anchors of each level, finest first, as the masks pick them."""
    return cfg.level_anchors(torch.tensor(line, dtype=torch.float32)).to(device)
