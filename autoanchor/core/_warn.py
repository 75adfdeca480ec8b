"""Warnings that point at the user's code, not at autoanchor's own frames."""

from __future__ import annotations

import os
import sys
import warnings

# The autoanchor package (this file is in autoanchor/core): frames in any of its layers are skipped.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the ``stacklevel`` of the first caller outside this package.

    The same warning can come through several public entry points (``kmean_anchors``,
    ``check_anchors``, ``search_anchors``, the loaders); pointing at the line that called
    into autoanchor is what lets a user find and silence it.
    """
    level, frame = 2, sys._getframe(1)  # stacklevel 2: the function that called warn()
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
