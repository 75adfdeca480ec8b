"""One validation for every public entry point: a seed, a scale or a bound means the same everywhere.

Each function checks one option and returns it normalised (a Python ``int`` or
``float``, a ``torch.device``), or raises an error that names the option and the
bad value. The rules, the same for the search, the drop-ins, the training hook,
the advisor, the grid fit and the command line (which passes the flag, e.g.
``"--seed"``, as the name):

* numbers: Python or numpy scalars (``np.int64``, ``np.float32``, ...), never a
  ``bool``; an integer option takes no float (``5.0`` is refused); a float option
  is finite;
* seeds: integers from 0 to :data:`~autoanchor.core.defaults.MAX_SEED` (``2**64 - 1``,
  all that ``torch.Generator.manual_seed`` takes);
* devices: a torch device that exists on this machine; the meta device (shapes
  only, no values) is refused.

A value of the wrong type raises :class:`OptionTypeError`, which is both a
``TypeError`` and a ``ValueError`` (``except ValueError`` written for the older
checks keeps working); a value out of range raises ``ValueError``.

This module imports torch only inside :func:`check_device` and
:func:`check_not_meta`, so the command line can use it before torch is loaded.

Example:
    >>> import numpy as np
    >>> check_seed("seed", np.int64(5)), check_float("imgsz", np.float32(0.5), low=0, low_open=True)
    (5, 0.5)
    >>> check_seed("seed", 2**64)
    Traceback (most recent call last):
    ...
    ValueError: seed must be an integer from 0 to 2**64 - 1 (18446744073709551615), got 18446744073709551616
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, Optional

from .defaults import MAX_SEED

if TYPE_CHECKING:
    import torch

__all__ = [
    "OptionTypeError",
    "check_choice",
    "check_device",
    "check_float",
    "check_int",
    "check_not_meta",
    "check_scale",
    "check_seed",
    "check_stride_units",
    "check_thr",
    "is_integer",
    "is_number",
]


class OptionTypeError(TypeError, ValueError):
    """An option of the wrong type (a ``bool`` or a string where a number belongs, a float for an integer).

    Both a ``TypeError`` and a ``ValueError``: the checks that came before this module raised
    ``ValueError`` for these, and callers catching that keep working.
    """


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer option: a Python or numpy integer, not a ``bool``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number option: a Python or numpy int or float, not a ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" greater than {low:g}" if low_open else f" of at least {low:g}"
    if high is not None:
        return f" less than {high:g}" if high_open else f" of at most {high:g}"
    return ""


def check_int(
    name: str, value: Any, *, low: int | None = None, high: int | None = None, optional: bool = False
) -> Optional[int]:
    """``value`` as an ``int`` in ``[low, high]`` (an open side when ``None``).

    Args:
        name: the option's name, used in the message (a flag such as ``"--gen"`` on the command line).
        value: a Python or numpy integer (not a ``bool``), or ``None`` when ``optional``.
        low, high: the smallest and largest allowed value.
        optional: let ``None`` through (returned as ``None``).

    Raises:
        OptionTypeError: for anything but an integer (a ``TypeError`` and a ``ValueError``).
        ValueError: for an integer out of range.

    Example:
        >>> check_int("gen", 0, low=0)
        0
        >>> check_int("tries", 0, low=1)
        Traceback (most recent call last):
        ...
        ValueError: tries must be an integer of at least 1, got 0
    """
    if value is None and optional:
        return None
    if low is not None and high is not None:
        wanted = f"an integer from {low} to {high}"
    else:
        wanted = "an integer" + _range_text(low, high, False, False)
    if not is_integer(value):
        raise OptionTypeError(f"{name} must be {wanted}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    what: str = "",
    optional: bool = False,
) -> Optional[float]:
    """``value`` as a finite ``float`` within the bounds.

    Args:
        name: the option's name, used in the message.
        value: a Python or numpy int or float (not a ``bool``), or ``None`` when ``optional``.
        low, high: the bounds (an open side when ``None``).
        low_open, high_open: exclude the bound itself (``low < value`` rather than ``<=``).
        what: what the number means, added to the message (e.g. ``"(a width/height ratio)"``).
        optional: let ``None`` through (returned as ``None``).

    Raises:
        OptionTypeError: for anything but a real number.
        ValueError: for a number that is not finite or out of range.

    Example:
        >>> check_float("bpr_threshold", 0.98, low=0, high=1)
        0.98
        >>> check_float("imgsz", -1, low=0, low_open=True, what="(pixels)")
        Traceback (most recent call last):
        ...
        ValueError: imgsz must be a finite number greater than 0 (pixels), got -1
    """
    if value is None and optional:
        return None
    wanted = "a finite number" + _range_text(low, high, low_open, high_open) + (f" {what}" if what else "")
    if not is_number(value):
        raise OptionTypeError(f"{name} must be {wanted}, got {value!r}")
    number = float(value)
    if (
        not math.isfinite(number)
        or (low is not None and (number <= low if low_open else number < low))
        or (high is not None and (number >= high if high_open else number > high))
    ):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return number


def check_seed(name: str, value: Any) -> int:
    """A seed: an integer from 0 to ``2**64 - 1``, all that ``torch.Generator.manual_seed`` takes.

    Raises:
        OptionTypeError: for anything but an integer.
        ValueError: below 0 or above ``2**64 - 1``.
    """
    wanted = f"an integer from 0 to 2**64 - 1 ({MAX_SEED})"
    if not is_integer(value):
        raise OptionTypeError(f"{name} must be {wanted}, got {value!r}")
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return int(value)


def check_thr(value: Any, name: str = "thr") -> float:
    """``thr`` (yolov5's ``anchor_t``), the largest allowed width or height ratio: a finite number above 1."""
    return check_float(name, value, low=1, low_open=True, what="(a width/height ratio, yolov5's anchor_t)")


def check_scale(value: Any, name: str = "scale", *, optional: bool = False) -> Optional[float]:
    """yolov5's ``hyp['scale']``: a number in [0, 1) (factors from U(1 - scale, 1 + scale) must stay positive)."""
    return check_float(
        name, value, low=0, high=1, high_open=True, what="(yolov5's hyp['scale'])", optional=optional
    )


def check_stride_units(
    low: Any, high: Any, *, names: tuple[str, str] = ("min_stride_units", "max_stride_units")
) -> tuple[Optional[float], Optional[float]]:
    """The bounds on an anchor's size ``sqrt(w * h)`` in strides of its level: each positive or ``None``, low <= high.

    Both bounds scale with the same stride, so a level is feasible exactly when ``low <= high``.

    Raises:
        OptionTypeError, ValueError: naming the bound (``names``) and its value.
    """
    low_name, high_name = names
    low = check_float(low_name, low, low=0, low_open=True, what="(strides of its level)", optional=True)
    high = check_float(high_name, high, low=0, low_open=True, what="(strides of its level)", optional=True)
    if low is not None and high is not None and low > high:
        raise ValueError(f"{low_name} ({low:g}) exceeds {high_name} ({high:g}): no anchor size fits a level")
    return low, high


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of ``choices``; the message lists them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


_META = (
    "the meta device holds no values (only shapes), so nothing can be measured or searched there; "
    "use 'cpu' or 'cuda'"
)


def check_device(value: Any, name: str = "device", *, optional: bool = True) -> Optional[torch.device]:
    """A torch device that can hold the data on this machine (``None`` passes through when ``optional``).

    Raises:
        OptionTypeError: for a value that is not a device, a string or an index.
        ValueError: for a string that names no device, the meta device, or a device this
            machine lacks (``"cuda"`` without a GPU, an index past the last GPU, ``"xpu"``, ...).

    Example:
        >>> check_device("cpu")
        device(type='cpu')
    """
    import torch

    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, torch.device, int)):
        raise OptionTypeError(f"{name} must be a torch device, a name such as 'cpu' or 'cuda:0', got {value!r}")
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name} must name a torch device ('cpu', 'cuda', 'cuda:0', ...), got {value!r}") from None
    if device.type == "cpu":
        return device
    if device.type == "meta":
        raise ValueError(f"{name}={value!r}: {_META}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={value!r}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name}={value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return device
    backend = getattr(torch, device.type, None)
    is_available = getattr(backend, "is_available", None)
    if not callable(is_available) or not is_available():
        raise ValueError(f"{name}={value!r}: the {device.type} device is not available on this machine (try 'cpu')")
    return device


def check_not_meta(tensor: torch.Tensor, name: str) -> None:
    """Refuse a tensor on the meta device, whose values do not exist."""
    if tensor.device.type == "meta":
        raise ValueError(f"{name} is on the meta device: {_META}")
