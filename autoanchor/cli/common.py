"""What the subcommands share once they run: the device, the data, output files, the box counts.

This module imports torch; the subcommand modules import it only inside ``run``, so
that ``autoanchor --help`` and usage errors never load torch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..io._atomic import is_stream, writable_problem, write_atomic
from ..core.boxes import MIN_BOX_PX
from ..core.validate import check_device
from .options import CommandLineError

__all__ = [
    "BoxCounts",
    "FIGURES_FOR_PRINTED",
    "MIN_BOX_PX",
    "check_distinct_outputs",
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


def check_output_path(
    option: str, path: Path | None, *, inputs: tuple[tuple[str, Any], ...] = (), stream: bool = False
) -> None:
    """Fail before the search, not after it, when an output cannot or must not be written.

    Args:
        option: the option naming the output (``--out``), for messages.
        path: the output file; None when not given.
        inputs: ``(option, path)`` of each file the command reads (``--model``, ``DATA``): an
            output that is the same file (also through a link) would destroy it.
        stream: the output may be ``-`` (stdout), a FIFO or a device such as ``/dev/stdout``,
            written straight through.

    Raises:
        CommandLineError: ``path`` is one of the inputs, a folder, in a folder that does
            not exist or that this user may not create files in, or a file this user may not
            replace (read-only, not writable by this user, or another user's).
    """
    if path is None or (stream and _is_stdout(path)):
        return
    for input_option, source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise CommandLineError(
                f"{option} {str(path)!r} is the {input_option} input {str(source)!r}; writing it would destroy "
                "the input: give another file"
            )
    if stream and is_stream(path):
        if not os.access(path, os.W_OK):
            raise CommandLineError(f"{option} {str(path)!r}: not writable by this user")
        return
    problem = writable_problem(path)
    if problem is not None:
        raise CommandLineError(f"{option} {problem}")


def check_distinct_outputs(*outputs: tuple[str, Path | None]) -> None:
    """Refuse two outputs that name the same file (the second would replace the first)."""
    seen: dict[str, str] = {}
    for option, path in outputs:
        if path is None or _is_stdout(path) or is_stream(path):
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise CommandLineError(f"{option} and {seen[key]} are the same file {str(path)!r}; give two files")
        seen[key] = option


def _is_stdout(path: Path) -> bool:
    return str(path) == "-"


def _same_file(output: Path, source: Path) -> bool:
    """Whether writing ``output`` would write the file ``source`` (same path, a link to it, a hard link)."""
    if os.path.realpath(output) == os.path.realpath(source):
        return True
    try:
        return os.path.samefile(output, source)
    except OSError:  # one of them does not exist
        return False


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
    """Print ``text`` to stdout (``out`` None or ``-``), write it through to a FIFO or device
    (``/dev/stdout``), or replace the file ``out`` with it atomically (a link: its target)."""
    if out is None or _is_stdout(out):
        sys.stdout.write(text)
        sys.stdout.flush()
    elif is_stream(out):
        with open(out, "w", encoding="utf-8") as stream:
            stream.write(text)
        logger.info("wrote %s", out)
    else:
        write_atomic(out, text)
        logger.info("wrote %s", out)
