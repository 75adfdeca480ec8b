"""Fitted torchvision anchors that survive ``state_dict()``: save, load and rebuild.

torchvision's ``AnchorGenerator`` keeps its anchors in plain attributes (``sizes``,
``aspect_ratios`` and the list ``cell_anchors``), none of them in ``state_dict()``. A
model whose anchors :func:`~autoanchor.training.hook.check_anchors` replaced would
therefore be saved without them, and a model built the usual way would load that
state with the default anchors, silently. So when autoanchor writes a generator it
also makes the generator's state carry the fitted anchors:

* :func:`persist_anchors` registers, on that generator only, a state-dict hook that
  adds one entry, ``<prefix>`` + :data:`STATE_KEY`: a ``float64`` vector with every
  level's sizes and aspect ratios (:func:`encode` / :func:`decode`), and a
  load pre-hook that writes the entry's anchors back when that state is loaded again
  (a resumed run, the same model object).
* A model built the usual way has no such hook: ``load_state_dict(state)`` (strict,
  torch's default) fails with ``Unexpected key(s) in state_dict:
  "anchor_generator.autoanchor_fitted_anchors__see_autoanchor_restore_anchors"``:
  the key's name says what to do. ``strict=False`` ignores unexpected keys by
  torch's design; they are listed in its return value (``unexpected_keys``).
* :func:`restore_anchors` writes the anchors of such a state into a freshly built
  model (and registers the hooks, so that the strict load then succeeds);
  :func:`anchor_generator` builds a new torchvision ``AnchorGenerator`` with the
  fitted sizes and ratios, to pass to the model's builder.

torchvision is imported only inside :func:`anchor_generator`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import Tensor, nn

from ..grid.anchors import cell_anchors

__all__ = [
    "STATE_KEY",
    "anchor_generator",
    "decode",
    "encode",
    "fitted_entries",
    "is_grid_generator",
    "persist_anchors",
    "restore_anchors",
]

logger = logging.getLogger(__name__)

STATE_KEY = "autoanchor_fitted_anchors__see_autoanchor_restore_anchors"
"""The state-dict entry (after the generator's prefix) holding the fitted anchors; its
name is what torch prints for a strict load into a model without the hooks."""

_FORMAT_VERSION = 1.0
_MARK = "_autoanchor_persists"  # set on a generator once its hooks are registered

Levels = tuple[tuple[float, ...], ...]


def encode(sizes: Any, aspect_ratios: Any) -> Tensor:
    """Sizes and aspect ratios per level as one ``float64`` vector.

    Layout: ``[version, L, n_sizes_0 .. n_sizes_{L-1}, n_ratios_0 .. n_ratios_{L-1},
    sizes of every level, ratios of every level]``; sizes in input pixels, ratios
    height / width.

    Example:
        >>> encode(((32, 40),), ((0.5, 1.0),)).tolist()
        [1.0, 1.0, 2.0, 2.0, 32.0, 40.0, 0.5, 1.0]
    """
    sizes = [[float(v) for v in level] for level in sizes]
    ratios = [[float(v) for v in level] for level in aspect_ratios]
    if len(sizes) != len(ratios):
        raise ValueError(f"{len(sizes)} levels of sizes but {len(ratios)} of aspect ratios")
    values = [_FORMAT_VERSION, float(len(sizes))]
    values += [float(len(level)) for level in sizes] + [float(len(level)) for level in ratios]
    values += [v for level in sizes for v in level] + [v for level in ratios for v in level]
    return torch.tensor(values, dtype=torch.float64)


def decode(value: Any, *, where: str = "the state") -> tuple[Levels, Levels]:
    """The inverse of :func:`encode`: ``(sizes, aspect_ratios)`` per level.

    Raises:
        ValueError: if ``value`` is not such a vector (naming ``where``).
    """
    if not isinstance(value, Tensor) or value.ndim != 1 or value.numel() < 2:
        raise ValueError(f"{where} is not autoanchor's fitted-anchors vector, got {value!r}")
    values = value.detach().to("cpu", torch.float64).tolist()
    if values[0] != _FORMAT_VERSION:
        raise ValueError(f"{where} was written by a newer autoanchor (format {values[0]}); upgrade autoanchor")
    levels = int(values[1])
    counts = values[2 : 2 + 2 * levels]
    if levels < 1 or len(counts) != 2 * levels or any(c < 1 or c != int(c) for c in counts):
        raise ValueError(f"{where} has a malformed header {values[: 2 + 2 * levels]}")
    position, out = 2 + 2 * levels, []
    for count in counts:
        out.append(tuple(values[position : position + int(count)]))
        position += int(count)
    if position != len(values):
        raise ValueError(f"{where} holds {len(values)} values; its header describes {position}")
    return tuple(out[:levels]), tuple(out[levels:])


def is_grid_generator(module: object) -> bool:
    """A torchvision-style ``AnchorGenerator``, by its attributes: ``sizes``, ``aspect_ratios`` and
    a ``cell_anchors`` list."""
    return (
        isinstance(module, nn.Module)
        and hasattr(module, "sizes")
        and hasattr(module, "aspect_ratios")
        and isinstance(getattr(module, "cell_anchors", None), (list, tuple))
    )


def _new_cells(module: nn.Module, sizes: Levels, ratios: Levels, where: str) -> list[Tensor]:
    """The cell anchors of ``sizes`` and ``ratios`` in the dtype and device of ``module``'s; changes nothing.

    Raises:
        ValueError: if the levels or the anchors per location differ from the module's.
    """
    cells = module.cell_anchors
    if len(sizes) != len(cells) or len(ratios) != len(cells):
        raise ValueError(
            f"{where}: the saved fitted anchors have {len(sizes)} levels, this generator {len(cells)}; "
            "build the model with the same backbone and levels as the one saved"
        )
    new_cells = []
    for level, (cell, level_sizes, level_ratios) in enumerate(zip(cells, sizes, ratios)):
        new = cell_anchors(level_sizes, level_ratios, dtype=cell.dtype, device=cell.device)
        if new.shape != cell.shape:
            raise ValueError(
                f"{where}: level {level} of the saved fitted anchors has {len(level_sizes)} sizes and "
                f"{len(level_ratios)} ratios ({new.shape[0]} anchors), this generator {cell.shape[0]} anchors per "
                "location: the head would not fit; build the model with the saved anchor counts"
            )
        new_cells.append(new)
    return new_cells


def _write(module: nn.Module, sizes: Levels, ratios: Levels, new_cells: list[Tensor]) -> None:
    """Set a generator's sizes, ratios and cell anchors (in place: storage, dtype and device kept)."""
    with torch.no_grad():
        for cell, new in zip(module.cell_anchors, new_cells):
            cell.copy_(new)
    module.sizes = tuple(tuple(int(v) if float(v).is_integer() else v for v in level) for level in sizes)
    module.aspect_ratios = tuple(tuple(level) for level in ratios)


def _save_hook(module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any) -> None:
    state_dict[prefix + STATE_KEY] = encode(module.sizes, module.aspect_ratios)


def _load_pre_hook(
    module: nn.Module, state_dict: dict, prefix: str, local_metadata: Any, strict: bool,
    missing_keys: list, unexpected_keys: list, error_msgs: list,
) -> None:
    key = prefix + STATE_KEY
    if key not in state_dict:
        return  # a state saved before the fit: the generator keeps what it has
    value = state_dict.pop(key)
    try:
        sizes, ratios = decode(value, where=key)
        _write(module, sizes, ratios, _new_cells(module, sizes, ratios, prefix.rstrip(".") or "the generator"))
    except ValueError as error:
        error_msgs.append(str(error))


def persist_anchors(generator: nn.Module) -> nn.Module:
    """Make ``generator``'s ``state_dict()`` carry its sizes and ratios, and its load restore them.

    Idempotent. The hooks are registered on this module object only (pickled with it
    by ``torch.save(model)``); see the module docstring for what a model without them
    does with such a state.

    Args:
        generator: a torchvision-style ``AnchorGenerator`` (``sizes``,
            ``aspect_ratios``, ``cell_anchors``).

    Returns:
        ``generator``.

    Raises:
        TypeError: if it is not such a generator.
    """
    if not is_grid_generator(generator):
        raise TypeError(f"persist_anchors takes a torchvision-style AnchorGenerator, got {type(generator).__name__}")
    if not getattr(generator, _MARK, False):
        generator._register_state_dict_hook(_save_hook)
        generator._register_load_state_dict_pre_hook(_load_pre_hook, with_module=True)
        object.__setattr__(generator, _MARK, True)
    return generator


StateLike = Union[str, "os.PathLike[str]", Mapping]


def _state_dict(state: Any, *, weights_only: bool) -> Mapping:
    """The model weights of a state dict, a checkpoint dict or a checkpoint file."""
    if isinstance(state, (str, os.PathLike)):
        path = os.fspath(state)
        if not os.path.isfile(path):
            raise ValueError(f"no checkpoint file {path!r}")
        state = torch.load(path, map_location="cpu", weights_only=weights_only)
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a state dict, a checkpoint dict or a path, got {type(state).__name__}")
    for nested in ("state_dict", "model", "model_state_dict"):  # Lightning; torchvision references; common
        if isinstance(state.get(nested), Mapping) and not any(isinstance(v, Tensor) for v in state.values()):
            return state[nested]
    return state


def fitted_entries(state: Mapping) -> dict[str, tuple[Levels, Levels]]:
    """The fitted anchors in a state dict, by the generator's prefix (``"model.anchor_generator"``)."""
    suffix = "." + STATE_KEY
    found = {}
    for key, value in state.items():
        if isinstance(key, str) and (key == STATE_KEY or key.endswith(suffix)):
            found[key[: -len(STATE_KEY)].rstrip(".")] = decode(value, where=key)
    return found


def _matches(saved: str, path: str) -> bool:
    """Whether a saved prefix and a generator's path name the same module: equal, or
    one ends with the other on a dot (a checkpoint of a wrapper such as a
    LightningModule's ``model.`` or DDP's ``module.``)."""
    return saved == path or saved.endswith("." + path) or path.endswith("." + saved) or not saved or not path


def restore_anchors(model: nn.Module, state: StateLike, *, weights_only: bool = True) -> Mapping:
    """Write the fitted anchors of a saved state into a model built the usual way.

    Use it before ``model.load_state_dict(state)`` when the state was saved from a
    model whose anchors autoanchor replaced; it also registers the hooks of
    :func:`persist_anchors`, so that strict load then succeeds, and a later save keeps
    the anchors.

    Args:
        model: the model, or any module holding it (a ``LightningModule``, a DDP
            wrapper); every torchvision-style generator inside it is matched with the
            saved ones by its attribute path (a checkpoint's extra leading
            ``model.`` or ``module.`` is allowed on either side).
        state: a state dict, a checkpoint dict holding one under ``"state_dict"``
            (Lightning), ``"model"`` (torchvision's reference scripts) or
            ``"model_state_dict"``, or the path of a checkpoint file.
        weights_only: passed to ``torch.load`` for a path; keep True unless the file
            is trusted and holds objects other than tensors and containers.

    Returns:
        The state dict of the model's weights (the one to pass to ``load_state_dict``).

    Raises:
        ValueError: if the state holds no fitted anchors (it was not saved from a model
            autoanchor fitted), a fitted generator has no counterpart in ``model``, or
            the levels or anchor counts differ (the head would not fit).
        TypeError: for a ``state`` or ``model`` of the wrong kind.

    Example:
        >>> model = torchvision.models.detection.retinanet_resnet50_fpn(weights=None)  # doctest: +SKIP
        >>> state = restore_anchors(model, "checkpoint.pt")  # doctest: +SKIP
        >>> model.load_state_dict(state)  # doctest: +SKIP
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    weights = _state_dict(state, weights_only=weights_only)
    entries = fitted_entries(weights)
    if not entries:
        raise ValueError(
            "the state holds no fitted anchors (no '*." + STATE_KEY + "' entry): it was saved from a model whose "
            "anchors autoanchor did not replace, so the model's own anchors are the right ones"
        )
    generators = {name: module for name, module in model.named_modules() if is_grid_generator(module)}
    plan = []
    for saved, (sizes, ratios) in entries.items():
        candidates = [name for name in generators if _matches(saved, name)]
        if len(candidates) != 1:
            found = ", ".join(repr(name) for name in generators) or "none"
            raise ValueError(
                f"the saved fitted anchors of {saved!r} match {len(candidates)} anchor generators of "
                f"{type(model).__name__} (its generators: {found})"
            )
        name = candidates[0]
        plan.append((name, sizes, ratios, _new_cells(generators[name], sizes, ratios, name or "the generator")))
    for name, sizes, ratios, cells in plan:  # everything checked: now write
        _write(generators[name], sizes, ratios, cells)
        persist_anchors(generators[name])
        logger.info(
            "restored the fitted anchors of %s: sizes %s, aspect ratios %s", name or "the generator", sizes, ratios
        )
    return weights


def anchor_generator(sizes: Any, aspect_ratios: Any) -> nn.Module:
    """A new torchvision ``AnchorGenerator`` with these sizes and ratios, made persistent.

    Pass it to the model's builder (``anchor_generator=`` for RetinaNet,
    ``rpn_anchor_generator=`` for Faster / Mask / Keypoint R-CNN); its cell anchors
    equal those of the fitted model bit for bit.

    Raises:
        ImportError: if torchvision is not installed.
    """
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    sizes = tuple(tuple(int(v) if float(v).is_integer() else float(v) for v in level) for level in sizes)
    ratios = tuple(tuple(float(v) for v in level) for level in aspect_ratios)
    return persist_anchors(AnchorGenerator(sizes=sizes, aspect_ratios=ratios))
