"""The shipped configuration files (``configs/`` in the source tree), loadable by name.

This package holds the yaml files and the functions that read them (a module
``autoanchor/configs.py`` would clash with this package of the same name). Two
kinds of file are shipped:

* anchor sets (``yolov5-p5``, ``yolov5-p6``, ``yolov5-p7``, ``yolov3``,
  ``yolov3-tiny``): ``strides`` (pixels per grid cell of each output level) and
  ``anchors``, one flat ``[w1,h1, w2,h2, ...]`` row per level, small to large,
  in pixels of the letterboxed training image, exactly as in a yolov5 model yaml;
* ``search``: the default settings of the anchor search (yolov5's AutoAnchor
  hyper-parameters), a readable copy of :mod:`autoanchor.core.defaults` (which the
  library and the command line use; a test keeps the two equal).

Example:
    >>> anchors_by_name("yolov5-p5").shape
    torch.Size([3, 3, 2])
    >>> load_config("search")["anchor_t"]
    4.0
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["list_configs", "load_config", "anchors_by_name", "strides_by_name", "anchor_config_names"]

_PACKAGE = "autoanchor.io.configs"
_SUFFIX = ".yaml"


def _config_files() -> dict[str, Any]:
    """Shipped config files by name (file stem)."""
    files = {}
    for entry in resources.files(_PACKAGE).iterdir():
        if entry.name.endswith(_SUFFIX) and entry.is_file():
            files[entry.name[: -len(_SUFFIX)]] = entry
    return files


def list_configs() -> list[str]:
    """Names of every shipped config, sorted (anchor sets and ``search``)."""
    return sorted(_config_files())


def _normalise_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a config name must be a string, got {type(name).__name__}")
    stem = name.strip()
    return stem[: -len(_SUFFIX)] if stem.endswith(_SUFFIX) else stem


def load_config(name: str) -> dict[str, Any]:
    """Read a shipped config by name.

    Args:
        name: a name from :func:`list_configs`, with or without ``.yaml``.

    Returns:
        The parsed yaml mapping (a fresh dict on every call; changing it changes
        nothing shipped).

    Raises:
        ValueError: if no config has that name; the message lists the valid names.
        TypeError: if ``name`` is not a string.
    """
    files = _config_files()
    stem = _normalise_name(name)
    if stem not in files:
        raise ValueError(f"unknown config {name!r}; valid names: {', '.join(sorted(files))}")
    config = yaml.safe_load(files[stem].read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"config {stem!r} is not a yaml mapping")
    return config


def anchor_config_names() -> list[str]:
    """Names of the shipped configs that hold an anchor set, sorted."""
    return sorted(name for name in list_configs() if "anchors" in load_config(name))


def _anchor_config(name: str) -> tuple[str, dict[str, Any]]:
    stem = _normalise_name(name)
    valid = anchor_config_names()
    if stem not in valid:
        raise ValueError(f"unknown anchor set {name!r}; valid names: {', '.join(valid)}")
    return stem, load_config(stem)


def anchors_by_name(name: str) -> Tensor:
    """A shipped anchor set as a tensor.

    Args:
        name: one of :func:`anchor_config_names`, e.g. ``"yolov5-p5"``, ``"yolov5-p6"``,
            ``"yolov5-p7"``, ``"yolov3"``, ``"yolov3-tiny"``.

    Returns:
        Tensor[nl, na, 2] float32: anchor (width, height) in pixels of the
        letterboxed training image, levels from the smallest stride to the largest.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or a
            malformed anchor set.

    Example:
        >>> anchors_by_name("yolov3-tiny")[0, 0]
        tensor([10., 14.])
    """
    # One validation of anchor rows for model yamls and shipped sets; torch only when asked for.
    from ..modelyaml import anchor_rows_tensor

    stem, config = _anchor_config(name)
    return anchor_rows_tensor(config["anchors"], source=f"config {stem!r}")


def strides_by_name(name: str) -> list[int]:
    """Strides (pixels per grid cell) of the levels of a shipped anchor set, small to large.

    Raises:
        ValueError: for an unknown name or if the strides do not match the levels.
    """
    stem, config = _anchor_config(name)
    strides = config.get("strides")
    n_levels = len(config["anchors"])
    if (
        not isinstance(strides, list)
        or len(strides) != n_levels
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in strides)
    ):
        raise ValueError(f"config {stem!r}: strides must be {n_levels} positive integers, got {strides!r}")
    return list(strides)
