"""What the subcommands share once they run: the device, the data, output files, the box counts.

This module imports torch; the subcommand modules import it only inside ``run``, so
that ``autoanchor --help`` and usage errors never load torch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..io._atomic import is_read_only, write_atomic
from ..core.boxes import MIN_BOX_PX
from ..core.validate import check_device
from .options import CommandLineError

__all__ = [
    "BoxCounts",
    "FIGURES_FOR_PRINTED",
    "MIN_BOX_PX",
    "check_output_path",
    "device_of",
    "emit",
    "json_text",
    "load",
    "restore_threads",
]

logger = logging.getLogger(__name__)

THREADS_ENV = "OMP_NUM_THREADS"
# `fit` measures the anchors it prints and writes, not the unrounded ones the search returned.
FIGURES_FOR_PRINTED = "figures for the anchors as printed, rounded to whole pixels"
# torch's thread count before device_of() changed it, for restore_threads().
_threads_before: list[int] = []


def device_of(text: str) -> torch.device:
    """``--device``: a torch device that can hold the data, or a :class:`CommandLineError` saying why not."""
    try:
        device = check_device(text, "--device", optional=False)
    except ValueError as error:
        raise CommandLineError(str(error)) from None
    if device.type == "cpu" and THREADS_ENV not in os.environ:
        # The search works on a few thousand pooled sizes: torch's thread pool costs more than it
        # saves there (a 1000-generation fit of coco128 took 0.6-0.9 s on one thread, 3-7.5 s on
        # two, on a busy 2-core machine). OMP_NUM_THREADS, when set, is left to decide.
        _threads_before.append(torch.get_num_threads())
        torch.set_num_threads(1)
    return device


def restore_threads() -> None:
    """Give torch back the thread count it had before :func:`device_of` set it to one."""
    if _threads_before:
        torch.set_num_threads(_threads_before[0])
        _threads_before.clear()


def check_output_path(option: str, path: Path | None) -> None:
    """Fail before the search, not after it, when an output cannot be written.

    Raises:
        CommandLineError: ``path`` is a folder, its folder does not exist, or it is a
            read-only file (no write permission bit), which is refused as editors do.
    """
    if path is None:
        return
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CommandLineError(f"{option} {str(path)!r} is a directory; give a file name")
    if not folder.is_dir():
        raise CommandLineError(f"{option} {str(path)!r}: the folder {str(folder)!r} does not exist")
    if path.is_file() and is_read_only(path.stat().st_mode):
        mode = stat.filemode(path.stat().st_mode)
        raise CommandLineError(f"{option} {str(path)!r} is read-only (mode {mode}); not written")


class BoxCounts:
    """How many boxes the figures are on, and how many were left out and why.

    Args:
        wh: Tensor[N, 2], every box's (width, height) in pixels.
        kept: Tensor[M, 2], the boxes measured (:func:`autoanchor.core.boxes.searchable_boxes` of ``wh``).
    """

    def __init__(self, wh: Tensor, kept: Tensor) -> None:
        self.all = int(wh.shape[0])
        self.kept = int(kept.shape[0])
        self.left_out = self.all - self.kept
        self.under_min = int((wh < MIN_BOX_PX).all(1).sum())
        self.zero_side = self.left_out - self.under_min

    def text(self) -> str:
        """``928 of 929 boxes; 1 under 2 px left out`` (or ``929 boxes`` when none is)."""
        if not self.left_out:
            return f"{self.all} boxes"
        reasons = []
        if self.under_min:
            reasons.append(f"{self.under_min} under {MIN_BOX_PX:g} px")
        if self.zero_side:
            reasons.append(f"{self.zero_side} with a zero side")
        return f"{self.kept} of {self.all} boxes; {' and '.join(reasons)} left out"

    def json_fields(self) -> dict[str, Any]:
        """The counts for a JSON document: ``n_boxes`` (measured), ``n_boxes_all``, ``n_boxes_left_out``."""
        return {
            "n_boxes": self.kept,
            "n_boxes_all": self.all,
            "n_boxes_left_out": self.left_out,
            "min_box_px": MIN_BOX_PX,
        }


def load(
    data: str | None, img: int, device: torch.device, *, progress: bool, cache: bool, network: Any = None
) -> tuple[Any, Tensor, str]:
    """Read DATA: ``(BoxSizes, Tensor[N, 2] box sizes in pixels at img, the data's name)``.

    With ``network`` (a :class:`~autoanchor.cli.darknetcfg.NetworkSize`) the boxes are
    resized as darknet does, to ``network.width x network.height``, and ``img`` is unused.
    """
    from ..io.datasets import load_boxes

    start = time.perf_counter()
    sizes = load_boxes(data, progress=progress, cache=cache)
    name = "built-in coco128" if data is None else str(data)
    logger.debug(
        "loaded %d boxes in %d images from %s in %.2f s", sizes.n_boxes, sizes.n_images, name,
        time.perf_counter() - start,
    )
    if network is None:
        wh = sizes.pixel_wh(img, device=device)
    else:
        from ..io.darknet import darknet_pixel_wh

        wh = darknet_pixel_wh(sizes, network.width, network.height, letter_box=network.letter_box, device=device)
    return sizes, wh, name


def json_text(document: dict[str, Any]) -> str:
    """Indented JSON with each innermost list of numbers (an anchor's w, h) kept on one line."""
    text = json.dumps(document, indent=2)
    number = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
    pattern = re.compile(rf"\[\s*({number}(?:,\s*{number})*)\s*\]")
    return pattern.sub(lambda m: "[" + ", ".join(part.strip() for part in m.group(1).split(",")) + "]", text) + "\n"


def emit(text: str, out: Path | None) -> None:
    """Print ``text`` to stdout, or replace the file ``out`` with it atomically."""
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(out, text)
        logger.info("wrote %s", out)
