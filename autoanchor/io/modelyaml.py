"""Read and rewrite the anchors of a yolov5-style model yaml, touching nothing else.

A yolov5 model yaml gives its anchors at the top level in one of two forms::

    anchors:
      - [10,13, 16,30, 33,23]  # P3/8
      - [30,61, 62,45, 59,119]  # P4/16
      - [116,90, 156,198, 373,326]  # P5/32

or ``anchors: 3`` (3 anchors per level, evolved by AutoAnchor at train time), in
which case the number of levels is the number of inputs of the Detect (or Segment)
layer at the end of ``head``.

:func:`write_model_anchors` replaces only the text of the anchor rows (located
with the yaml parser's own positions), so every other character of the file, its
comments, blank lines, line endings and the rows' indentation and trailing comments
stay exactly as they were. With ``anchors: N`` there are no rows to replace: that
one line becomes an ``anchors:`` block. Anchors are written as integers in pixels
of the training image, levels from the smallest stride to the largest.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import Tensor

from ..core.levels import level_name
from ._atomic import write_atomic
from .modelstrides import detect_strides

__all__ = [
    "ModelAnchors",
    "read_model_anchors",
    "parse_model_anchors",
    "rewrite_anchors",
    "write_model_anchors",
    "anchor_rows_tensor",
    "anchors_yaml_block",
    "default_strides",
    "round_anchors",
]

logger = logging.getLogger(__name__)

DETECT_MODULES = ("Detect", "Segment")


@dataclass(frozen=True)
class ModelAnchors:
    """The anchors a model yaml declares.

    Attributes:
        n_levels: output levels (``nl``), small stride to large.
        n_per_level: anchors per level (``na``).
        anchors: Tensor[nl, na, 2] float32, anchor (width, height) in pixels of the
            training image; ``None`` when the yaml gives only a count (``anchors: 3``).
        source: the file (or ``"<string>"``) it was read from.
        strides: the stride in input pixels of each level, read from the layers feeding the
            Detect layer as yolov5 builds them (``(4, 8, 16, 32)`` for a P2 model); empty
            when they cannot be followed (see :attr:`level_strides`).
    """

    n_levels: int
    n_per_level: int
    anchors: Tensor | None
    source: str = "<string>"
    strides: tuple[int, ...] = ()

    @property
    def level_strides(self) -> list[int]:
        """Each level's stride: :attr:`strides`, or 8, 16, 32, ... when the layers could not be followed."""
        return list(self.strides) if self.strides else default_strides(self.n_levels)

    @property
    def n_anchors(self) -> int:
        """All anchors of the model: ``n_levels * n_per_level``."""
        return self.n_levels * self.n_per_level


def default_strides(n_levels: int) -> list[int]:
    """Strides of ``n_levels`` levels starting at P3/8, as in every yolov5 model: 8, 16, 32, ..."""
    return [8 * 2**level for level in range(n_levels)]


def round_anchors(anchors: Tensor | Sequence) -> list[list[list[int]]]:
    """Anchors ``[nl, na, 2]`` in pixels as nested lists of integers (at least 1 px).

    Raises:
        ValueError: if the shape is not ``[nl, na, 2]`` or a value is not finite and positive.
    """
    values = torch.as_tensor(anchors, dtype=torch.float64).cpu()
    if values.ndim != 3 or values.shape[-1] != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"anchors must have shape [levels, anchors per level, 2], got {list(values.shape)}")
    if not bool(torch.isfinite(values).all()) or bool((values <= 0).any()):
        raise ValueError(f"anchors must be finite and positive pixel sizes, got {values.tolist()}")
    return values.round().clamp(min=1).long().tolist()


def _row_text(level: list[list[int]], *, padded: bool = False, pair_sep: str = ", ") -> str:
    """``[w1,h1, w2,h2, ...]`` for one level; ``padded`` gives ``[ w1,h1, ... ]``."""
    body = pair_sep.join(f"{w},{h}" for w, h in level)
    return f"[ {body} ]" if padded else f"[{body}]"


def anchors_yaml_block(
    anchors: Tensor | Sequence, *, strides: Sequence[int] | None = None, indent: str = "", newline: str = "\n"
) -> str:
    """A yolov5 model-yaml ``anchors:`` block, one flat integer row per level.

    Args:
        anchors: Tensor[nl, na, 2], anchor (width, height) in pixels, levels small to large.
        strides: the stride of each level, for the ``# P3/8`` comments; defaults to
            :func:`default_strides`.
        indent: prefix of the ``anchors:`` line; rows get two more spaces.
        newline: line ending.

    Returns:
        The block without a trailing newline, e.g.::

            anchors:
              - [10,13, 16,30, 33,23]  # P3/8
              - [30,61, 62,45, 59,119]  # P4/16
              - [116,90, 156,198, 373,326]  # P5/32
    """
    rows = round_anchors(anchors)
    strides = list(strides) if strides is not None else default_strides(len(rows))
    if len(strides) != len(rows):
        raise ValueError(f"got {len(strides)} strides for {len(rows)} levels")
    lines = [f"{indent}anchors:"]
    lines += [f"{indent}  - {_row_text(row)}  # {level_name(s, with_stride=True)}" for row, s in zip(rows, strides)]
    return newline.join(lines)


# -- reading ----------------------------------------------------------------------------------------


def _compose(text: str, source: str) -> yaml.MappingNode:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise ValueError(f"{source} is not valid yaml: {detail}") from error
    if not isinstance(root, yaml.MappingNode):
        raise ValueError(f"{source} is not a yolov5 model yaml (expected a mapping at the top level)")
    return root


def _top_level(root: yaml.MappingNode, key: str, source: str = "<string>") -> tuple[yaml.Node, yaml.Node] | None:
    found = [
        (key_node, value_node) for key_node, value_node in root.value
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key
    ]
    if len(found) > 1:
        lines = " and ".join(str(key_node.start_mark.line + 1) for key_node, _ in found)
        raise ValueError(
            f"{source}: the top-level key `{key}:` appears {len(found)} times (lines {lines}); yaml readers "
            "disagree on which counts: keep one"
        )
    return found[0] if found else None


def _check_no_aliases(key_node: yaml.Node, value_node: yaml.Node, source: str) -> None:
    """Refuse anchor rows given through yaml aliases (``- *p3``): their text is elsewhere, or shared."""
    nodes = [value_node, *(value_node.value if isinstance(value_node, yaml.SequenceNode) else [])]
    seen: set[int] = set()
    for node in nodes:
        outside = node.start_mark.index < key_node.end_mark.index or (
            node is not value_node and not value_node.start_mark.index <= node.start_mark.index < value_node.end_mark.index
        )
        if outside or id(node) in seen:
            raise ValueError(
                f"{source}: the anchors (line {key_node.start_mark.line + 1}) use a yaml alias (*name) for a row "
                "or for the list; their text is elsewhere or shared, so they cannot be rewritten in place: write "
                "each row's numbers out"
            )
        seen.add(id(node))


def _detect_levels(config: dict, source: str) -> int:
    """Inputs of the last Detect/Segment layer of ``head``: the number of output levels."""
    head = config.get("head")
    layers = head if isinstance(head, list) else []
    for layer in reversed(layers):
        if isinstance(layer, list) and len(layer) >= 3 and layer[2] in DETECT_MODULES:
            inputs = layer[0]
            if isinstance(inputs, int) and not isinstance(inputs, bool):
                return 1
            if isinstance(inputs, list) and inputs:
                return len(inputs)
            raise ValueError(f"{source}: the {layer[2]} layer's inputs must be a layer index or a list, got {inputs!r}")
    raise ValueError(
        f"{source} says `anchors: N` but its head has no {' or '.join(DETECT_MODULES)} layer to count the levels from"
    )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def parse_model_anchors(text: str, *, source: str = "<string>") -> ModelAnchors:
    """Read the anchors of a model yaml given as text (see :func:`read_model_anchors`)."""
    root = _compose(text, source)
    found = _top_level(root, "anchors", source)
    if found is None:
        raise ValueError(f"{source} has no top-level `anchors:` entry")
    config = yaml.safe_load(text)
    value = config["anchors"]
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{source}: `anchors: {value}` must be a positive number of anchors per level")
        n_levels = _detect_levels(config, source)
        return ModelAnchors(n_levels, value, None, source, _strides(config, n_levels))
    anchors = anchor_rows_tensor(value, source=source)
    return ModelAnchors(anchors.shape[0], anchors.shape[1], anchors, source, _strides(config, anchors.shape[0]))


def _strides(config: dict, n_levels: int) -> tuple[int, ...]:
    """The Detect inputs' strides when they can be followed and there is one per level, else ``()``."""
    strides = detect_strides(config)
    return strides if strides is not None and len(strides) == n_levels else ()


def anchor_rows_tensor(rows: object, *, source: str = "<string>") -> Tensor:
    """Check anchor rows as a yolov5 yaml writes them and return them as a tensor.

    The one validation of ``anchors:`` rows, for model yamls and the shipped anchor sets.

    Args:
        rows: one flat ``[w1,h1, w2,h2, ...]`` list per level, in pixels.
        source: what the rows were read from, for messages (a file name, ``config 'yolov3'``).

    Returns:
        Tensor[nl, na, 2] float32, anchor (width, height) in pixels.

    Raises:
        ValueError: if ``rows`` is not a non-empty list of equally long flat lists of
            positive finite w,h pairs; the message names ``source`` and the row.
    """
    if not isinstance(rows, list) or not rows:
        raise ValueError(
            f"{source}: `anchors` must be a list of rows [w1,h1, w2,h2, ...] or a number per level, got {rows!r}"
        )
    for level, row in enumerate(rows):
        if not isinstance(row, list) or not row or len(row) % 2 or not all(_is_number(v) for v in row):
            raise ValueError(
                f"{source}: anchor row {level} must be a flat list of positive w,h pairs in pixels, got {row!r}"
            )
    if len({len(row) for row in rows}) != 1:
        raise ValueError(f"{source}: every anchor row must have the same length, got {[len(r) for r in rows]}")
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), -1, 2)


def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of a config file; a ``ValueError`` naming ``what`` and the path otherwise.

    Shared by the model-yaml and darknet-cfg readers (``what``: ``"model yaml"``, ``"darknet cfg"``).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {str(path)!r} is a directory, not a file") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {str(path)!r} is not UTF-8 text: {error}") from error


def read_model_anchors(path: str | os.PathLike) -> ModelAnchors:
    """Read the anchors a yolov5-style model yaml declares.

    Args:
        path: the model yaml (``yolov5s.yaml``, say).

    Returns:
        :class:`ModelAnchors`: levels, anchors per level and, unless the file says
        ``anchors: N``, the anchors ``[nl, na, 2]`` in pixels.

    Raises:
        ValueError: if the file is missing, not yaml, has no top-level ``anchors``,
            or its anchors are malformed; the message names the file.
    """
    path = Path(path)
    return parse_model_anchors(read_text_file(path, "model yaml"), source=str(path))


# -- rewriting --------------------------------------------------------------------------------------


def _line_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """Start of the line holding ``start`` and end of the line holding ``end`` (before its line break)."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = len(text)
    for index in range(end, len(text)):
        if text[index] in "\r\n":
            line_end = index
            break
    return line_start, line_end


def _newline_of(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def rewrite_anchors(text: str, anchors: Tensor | Sequence, *, source: str = "<string>") -> tuple[str, bool]:
    """Replace the anchors of a model yaml given as text, leaving every other character as it was.

    Args:
        text: the model yaml.
        anchors: Tensor[nl, na, 2], the new anchor (width, height) in pixels, levels
            small to large; ``nl`` and ``na`` must match what the yaml declares.
            Written rounded to integers.
        source: name of the file, for messages.

    Returns:
        ``(new_text, expanded)``: ``expanded`` is True when the yaml said
        ``anchors: N`` and that line was replaced by an ``anchors:`` block.

    Raises:
        ValueError: if the yaml's anchors cannot be read, their shape differs from
            ``anchors``, or a row is not a flow list ``[...]`` that can be replaced
            in place.
    """
    declared = parse_model_anchors(text, source=source)
    rows = round_anchors(anchors)
    shape = (len(rows), len(rows[0]))
    if shape != (declared.n_levels, declared.n_per_level):
        raise ValueError(
            f"{source} declares {declared.n_levels} levels x {declared.n_per_level} anchors, "
            f"got anchors for {shape[0]} levels x {shape[1]}"
        )
    root = _compose(text, source)
    key_node, value_node = _top_level(root, "anchors", source)  # type: ignore[misc]  # parse_model_anchors found it
    _check_no_aliases(key_node, value_node, source)
    if declared.anchors is None:
        line_start, line_end = _line_bounds(text, key_node.start_mark.index, value_node.end_mark.index)
        before = text[line_start : key_node.start_mark.index]
        after = text[value_node.end_mark.index : line_end].strip()
        if before.strip() or (after and not after.startswith("#")):
            raise ValueError(f"{source}: cannot rewrite `anchors: {declared.n_per_level}` that shares its line")
        block = anchors_yaml_block(rows, strides=declared.level_strides, indent=before, newline=_newline_of(text))
        first_line, _, rest = block.partition(_newline_of(text))
        note = f"  # {declared.n_per_level} per level, written by autoanchor (was `anchors: {declared.n_per_level}`)"
        if after:  # the line's own comment stays, word for word, before autoanchor's note
            note = f"  {after}  (rows written by autoanchor; was `anchors: {declared.n_per_level}`)"
        new_text = text[:line_start] + first_line + note + _newline_of(text) + rest + text[line_end:]
        expanded = True
    else:
        pieces, position = [], 0
        for level, (row_node, row) in enumerate(zip(value_node.value, rows)):
            if not isinstance(row_node, yaml.SequenceNode) or not row_node.flow_style:
                raise ValueError(
                    f"{source}: anchor row {level} (line {row_node.start_mark.line + 1}) is not a flow list "
                    "[w1,h1, ...]; cannot rewrite it in place"
                )
            start, end = row_node.start_mark.index, row_node.end_mark.index
            old = text[start:end]
            if "\n" in old or "\r" in old or "#" in old:
                # A row over several lines, or with comments inside: each number is replaced where it stands.
                for scalar, value in zip(row_node.value, (v for pair in row for v in pair)):
                    pieces += [text[position : scalar.start_mark.index], str(value)]
                    position = scalar.end_mark.index
                continue
            padded = old.startswith("[ ") and old.endswith(" ]")
            pair_sep = ",  " if ",  " in old else ", "
            pieces += [text[position:start], _row_text(row, padded=padded, pair_sep=pair_sep)]
            position = end
        pieces.append(text[position:])
        new_text = "".join(pieces)
        expanded = False
    _check_rewrite(text, new_text, rows, source)
    return new_text, expanded


def _check_rewrite(old_text: str, new_text: str, rows: list, source: str) -> None:
    """The rewritten yaml must parse, hold the new anchors and keep every other top-level key."""
    old, new = yaml.safe_load(old_text), yaml.safe_load(new_text)
    expected = [[v for pair in level for v in pair] for level in rows]
    if not isinstance(new, dict) or new.get("anchors") != expected or set(new) != set(old):
        raise RuntimeError(f"internal error: rewriting the anchors of {source} gave a different yaml structure")


def write_model_anchors(path: str | os.PathLike, anchors: Tensor | Sequence) -> bool:
    """Rewrite the anchors of a yolov5-style model yaml in place.

    Only the anchor rows change (see :func:`rewrite_anchors`); the file is replaced
    atomically (:func:`autoanchor.io._atomic.write_atomic`: a temporary file in the same
    folder, then :func:`os.replace`), so a crash or Ctrl-C never leaves it half written
    nor a temporary file behind. The file keeps its permission bits and, where the
    process may, its owner. A symlink is followed and its target rewritten.

    Args:
        path: the model yaml.
        anchors: Tensor[nl, na, 2], anchor (width, height) in pixels, levels small
            to large, matching the levels and anchors per level the yaml declares.

    Returns:
        True when the yaml said ``anchors: N`` and that line became an ``anchors:``
        block; False when existing rows were replaced.

    Raises:
        ValueError: as :func:`rewrite_anchors`, or if the file cannot be read.
        autoanchor.io._atomic.ReadOnlyFileError: (a ``PermissionError``) if the file has no write permission
            bit; it is refused before anything is written, as editors do.
        OSError: if the file cannot be written; the message names the file.
    """
    path = Path(os.path.realpath(path))
    text = read_text_file(path, "model yaml")
    new_text, expanded = rewrite_anchors(text, anchors, source=str(path))
    write_atomic(path, new_text.encode("utf-8"))
    logger.debug("%s the anchors of %s", "expanded" if expanded else "rewrote", path)
    return expanded
