"""Read a darknet ``.cfg``: input size, ``[yolo]`` sections, masks, anchors and strides.

The syntax is darknet's: ``[section]`` headers, ``key = value`` lines with optional spaces,
whole-line ``#`` and ``;`` comments, blank lines, any line endings. A ``#`` after a value
starts a comment, as AlexeyAB's darknet reads ``anchors``. Sections repeat freely.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from ..modelyaml import read_text_file

__all__ = ["DarknetConfig", "YoloSection", "parse_cfg", "read_cfg", "read_cfg_text"]

YOLO_SECTIONS = ("yolo", "Gaussian_yolo")
NET_SECTIONS = ("net", "network")
# The keys of each section kind that this reader uses.
_READ_KEYS = {
    **{kind: ("width", "height", "letter_box") for kind in NET_SECTIONS},
    **{kind: ("anchors", "mask", "num") for kind in YOLO_SECTIONS},
}
# Layers whose output has the spatial size of their input.
_SAME_SIZE = frozenset(
    "shortcut dropout batchnorm activation scale_channels sam yolo Gaussian_yolo softmax cost".split()
)


@dataclass(frozen=True)
class YoloSection:
    """One ``[yolo]`` section of a cfg, as written.

    Attributes:
        line: 1-based line of the section's ``[yolo]`` header.
        layer: darknet's index of the layer (0 for the first section after ``[net]``).
        mask: indices into the ``anchors =`` line of the anchors this layer uses.
        num: the section's ``num``, the number of anchors on its ``anchors =`` line.
        anchors: Tensor[num, 2] float32, the (width, height) of the line's anchors in
            pixels of the network input, in the order written.
        anchors_line: 1-based line of ``anchors =``.
        mask_line: 1-based line of ``mask =``; ``None`` when absent (darknet then uses
            anchors ``0 .. num-1``).
        num_line: 1-based line of ``num =``.
        stride: the layer's stride in input pixels, ``None`` if the layers before it
            include a kind this reader does not follow.
    """

    line: int
    layer: int
    mask: tuple[int, ...]
    num: int
    anchors: Tensor
    anchors_line: int
    mask_line: int | None
    num_line: int
    stride: int | None


@dataclass(frozen=True)
class DarknetConfig:
    """What a darknet cfg says about its input and its anchors.

    Attributes:
        width: ``[net] width``, network input width in pixels.
        height: ``[net] height``, network input height in pixels.
        letter_box: ``[net] letter_box=1``: images are letterboxed to ``width x height``
            instead of stretched.
        sections: the ``[yolo]`` sections in file order.
        order: index into :attr:`sections` of each level, finest level first.
        strides: stride in input pixels of each level, finest first.
        strides_inferred: True when some stride could not be followed through the
            layers and the strides were instead assigned by anchor area (the level with
            the largest anchors gets 32, each finer one half of the next).
        notes: readable descriptions of quirks the cfg has (unused or shared anchors,
            masks not ordered by area, sections with different anchors), for the caller
            to log or warn about.
        source: the file (or ``"<string>"``) it was read from.
    """

    width: int
    height: int
    letter_box: bool
    sections: tuple[YoloSection, ...]
    order: tuple[int, ...]
    strides: tuple[int, ...]
    strides_inferred: bool
    notes: tuple[str, ...]
    source: str = "<string>"

    @property
    def n_levels(self) -> int:
        return len(self.sections)

    @property
    def n_per_level(self) -> int:
        """Anchors per level: the length of every mask."""
        return len(self.sections[0].mask)

    @property
    def num(self) -> int:
        """Anchors on the ``anchors =`` line."""
        return self.sections[0].num

    @property
    def anchors(self) -> Tensor:
        """Tensor[num, 2]: the first section's ``anchors =`` line, in pixels."""
        return self.sections[0].anchors

    @property
    def masks(self) -> tuple[tuple[int, ...], ...]:
        """The mask of each level, finest first."""
        return tuple(self.sections[i].mask for i in self.order)

    @property
    def used(self) -> tuple[int, ...]:
        """The indices into the ``anchors =`` line that some mask uses, ascending.

        All of ``0 .. num-1`` in yolov3 and yolov4; yolov4-tiny's masks ``3,4,5`` and
        ``1,2,3`` use five of its six anchors.
        """
        return tuple(sorted({i for section in self.sections for i in section.mask}))

    @property
    def masks_ordered(self) -> bool:
        """True when anchors sorted by area give no finer level larger anchors than a coarser one."""
        return _masks_ordered(self.masks)

    def check_rewritable(self) -> None:
        """Refuse a cfg whose masks would give a finer level larger anchors than a coarser one.

        Raises:
            ValueError: naming the file, the strides and the masks, finest level first.
        """
        if not self.masks_ordered:
            levels = [self.sections[i] for i in self.order]
            where = [f"{list(s.mask)} (line {s.mask_line or s.line})" for s in levels]
            raise ValueError(
                f"{self.source}: not rewritten: the masks, from the finest level (stride {self.strides[0]}) to "
                f"the coarsest, are {', '.join(where)}; anchors sorted by area would give a finer "
                "level larger anchors. Order the masks so that finer levels use smaller indices."
            )

    def level_anchors(self, anchors: Tensor | None = None) -> Tensor:
        """Anchors of each level, finest first, as darknet picks them with the masks.

        Args:
            anchors: Tensor[num, 2], an ``anchors =`` line in pixels; by default each
                section's own line.

        Returns:
            Tensor[levels, per_level, 2] float32, anchor (width, height) in pixels.
        """
        if anchors is None:
            return torch.stack([self.sections[i].anchors[list(self.sections[i].mask)] for i in self.order])
        anchors = torch.as_tensor(anchors, dtype=torch.float32)
        if anchors.shape != (self.num, 2):
            raise ValueError(f"{self.source} has {self.num} anchors, got anchors of shape {list(anchors.shape)}")
        return torch.stack([anchors[list(mask)] for mask in self.masks])


# -- reading ----------------------------------------------------------------------------------------


@dataclass
class _Entry:
    value: str
    line: int
    start: int  # offset of the value in the file's text
    end: int


@dataclass
class _Section:
    name: str
    line: int
    entries: dict[str, _Entry]


def _lines(text: str) -> Iterator[tuple[int, int, str]]:
    """``(line number, offset, content)`` per line; content without its line ending (``\\n``,
    ``\\r\\n`` or an old Mac's lone ``\\r``)."""
    for number, match in enumerate(_LINE.finditer(text), start=1):
        if match.start() == len(text) and number > 1:
            return
        yield number, match.start(), match.group(1)


_LINE = re.compile(r"([^\r\n]*)(?:\r\n|\n|\r|$)")
# C's atoi and atof, which darknet reads every number with: the longest leading number, the rest ignored.
_ATOI = re.compile(r"[+-]?\d+")
_ATOF = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)", re.IGNORECASE)


def _sections(text: str, source: str) -> list[_Section]:
    sections: list[_Section] = []
    for number, offset, content in _lines(text):
        if number == 1 and content.startswith("\ufeff"):
            content, offset = content[1:], offset + 1
        stripped = content.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            name, closed, rest = stripped[1:].partition("]")
            if not closed or (rest.strip() and rest.strip()[0] not in "#;"):
                raise ValueError(f"{source}, line {number}: malformed section header {stripped!r}")
            sections.append(_Section(name.strip(), number, {}))
            continue
        key, equals, value = content.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"{source}, line {number}: expected `key = value`, got {stripped!r}")
        if not sections:
            raise ValueError(f"{source}, line {number}: {key.strip()!r} comes before the first [section]")
        # The value runs from its first character to the last before an inline `#` comment.
        value_text = value.split("#", 1)[0].rstrip()
        start = offset + len(key) + 1 + (len(value_text) - len(value_text.lstrip()))
        entry = _Entry(value_text.strip(), number, start, start + len(value_text.strip()))
        section = sections[-1]
        name = key.strip()
        # darknet takes the first of repeated keys; for the keys read here a repeat is refused as ambiguous.
        if name in section.entries and name in _READ_KEYS.get(section.name, ()):
            raise ValueError(
                f"{source}, line {number}: {name!r} repeats line {section.entries[name].line} "
                f"in the [{section.name}] section of line {section.line}"
            )
        section.entries.setdefault(name, entry)
    return sections


def _leading(text: str, kind: type, notes: list[str] | None, where: str) -> int | float | None:
    """``text`` read as darknet reads a number (C ``atoi`` / ``atof`` after removing every space):
    the longest leading number; None when there is none. Trailing characters are noted."""
    compact = "".join(text.split())
    match = (_ATOI if kind is int else _ATOF).match(compact)
    if match is None:
        return None
    if match.end() != len(compact) and notes is not None:
        notes.append(f"{where}: {text.strip()!r} read as {match.group(0)}, as darknet reads it (the rest is ignored)")
    return int(match.group(0)) if kind is int else float(match.group(0))


def _int(
    section: _Section, key: str, source: str, default: int | None = None, notes: list[str] | None = None
) -> int:
    entry = section.entries.get(key)
    if entry is None:
        if default is None:
            raise ValueError(f"{source}: the [{section.name}] section of line {section.line} has no {key!r}")
        return default
    value = _leading(entry.value, int, notes, f"{source}, line {entry.line}: {key}")
    if value is None:
        raise ValueError(f"{source}, line {entry.line}: {key} must be an integer, got {entry.value!r}")
    return int(value)


def _numbers(entry: _Entry, key: str, source: str, kind: type, notes: list[str] | None = None) -> list:
    values = []
    for token in entry.value.split(","):
        if not token.strip():
            continue
        value = _leading(token, kind, notes, f"{source}, line {entry.line}: {key}")
        if value is None:
            raise ValueError(f"{source}, line {entry.line}: {key} must be comma-separated numbers, got {entry.value!r}")
        values.append(value)
    return values


def _yolo_section(section: _Section, layer: int, stride: int | None, source: str, notes: list[str]) -> YoloSection:
    num = _int(section, "num", source, notes=notes)
    if num < 1:
        raise ValueError(
            f"{source}, line {section.entries['num'].line}: num must be a positive number of anchors, got {num}"
        )
    entry = section.entries.get("anchors")
    if entry is None:
        raise ValueError(f"{source}: the [{section.name}] section of line {section.line} has no 'anchors'")
    values = _numbers(entry, "anchors", source, float, notes)
    if len(values) > 2 * num:
        notes.append(
            f"{source}, line {entry.line}: {len(values)} anchor values for num={num} (line "
            f"{section.entries['num'].line}); darknet reads the first {2 * num} and ignores the rest, and so does "
            "autoanchor (a rewrite leaves the extra values as they are)"
        )
        values = values[: 2 * num]
    if len(values) != 2 * num:
        raise ValueError(
            f"{source}, line {entry.line}: {len(values)} anchor values for num={num} "
            f"(line {section.entries['num'].line}); expected {2 * num} (a width and a height per anchor)"
        )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{source}, line {entry.line}: anchors must be positive pixel sizes, got {entry.value!r}")
    mask_entry = section.entries.get("mask")
    mask = tuple(range(num)) if mask_entry is None else tuple(_numbers(mask_entry, "mask", source, int, notes))
    if not mask:
        raise ValueError(f"{source}, line {mask_entry.line}: mask is empty")  # type: ignore[union-attr]
    bad = [i for i in mask if not 0 <= i < num]
    if bad:
        raise ValueError(
            f"{source}, line {mask_entry.line}: mask index {bad[0]} is out of range "  # type: ignore[union-attr]
            f"for num={num} anchors (0..{num - 1})"
        )
    return YoloSection(
        line=section.line,
        layer=layer,
        mask=mask,
        num=num,
        anchors=torch.tensor(values, dtype=torch.float32).view(num, 2),
        anchors_line=entry.line,
        mask_line=None if mask_entry is None else mask_entry.line,
        num_line=section.entries["num"].line,
        stride=stride,
    )


def _layer_strides(layers: list[_Section], source: str) -> list[float | None]:
    """Each layer's output stride in input pixels; ``None`` where a layer is not followed."""
    strides: list[float | None] = []
    for index, layer in enumerate(layers):
        previous = strides[-1] if strides else 1.0
        kind = layer.name
        if kind in ("convolutional", "maxpool", "local_avgpool", "reorg", "upsample"):
            step = _int(layer, "stride", source, 2 if kind == "upsample" else 1)
            step_x = _int(layer, "stride_x", source, step)
            step_y = _int(layer, "stride_y", source, step)
            if step_x != step_y or step == 0 or previous is None:
                strides.append(None)
            elif kind == "upsample":  # a negative upsample stride shrinks
                strides.append(previous / step if step > 0 else previous * -step)
            else:
                strides.append(previous * step)
        elif kind == "route":
            entry = layer.entries.get("layers")
            if entry is None:
                raise ValueError(f"{source}: the [route] section of line {layer.line} has no 'layers'")
            sources = [i if i >= 0 else index + i for i in _numbers(entry, "layers", source, int)]
            if not all(0 <= i < index for i in sources):
                raise ValueError(f"{source}, line {entry.line}: route to a layer that does not precede it")
            found = {strides[i] for i in sources}
            strides.append(found.pop() if len(found) == 1 else None)
        elif kind in _SAME_SIZE:
            strides.append(previous)
        else:
            strides.append(None)
    return strides


def _quirk_notes(sections: list[YoloSection], order: list[int], source: str) -> list[str]:
    notes = []
    num = sections[0].num
    used: dict[int, list[int]] = {}
    for section in sections:
        for i in section.mask:
            used.setdefault(i, []).append(section.line)
    first = sections[0].anchors
    for i in range(num):
        w, h = (int(v) if float(v).is_integer() else v for v in first[i].tolist())
        if i not in used:
            notes.append(f"{source}: anchor {i} ({w}x{h}) is in no mask; darknet never uses it")
        elif len(used[i]) > 1:
            lines = ", ".join(str(line) for line in used[i])
            notes.append(f"{source}: anchor {i} ({w}x{h}) is in the masks of the [yolo] sections of lines {lines}")
    for section in sections[1:]:
        if section.num != num or not torch.equal(section.anchors, first):
            notes.append(
                f"{source}: the anchors of line {section.anchors_line} differ from those of line "
                f"{sections[0].anchors_line}; each [yolo] section uses its own"
            )
    if not _masks_ordered([sections[i].mask for i in order]):
        levels = [sections[i] for i in order]
        lines = ", ".join(f"stride {s.stride} at line {s.mask_line}: {list(s.mask)}" for s in levels)
        notes.append(
            f"{source}: the masks, from the finest level to the coarsest ({lines}), go back to smaller "
            "indices, so anchors sorted by area would not give the finest level the smallest ones"
        )
    areas = first.prod(1)
    if bool((areas[1:] < areas[:-1]).any()):
        notes.append(f"{source}: the anchors of line {sections[0].anchors_line} are not sorted by area")
    return notes


def _masks_ordered(masks: Sequence[Sequence[int]]) -> bool:
    """True when no level's mask holds an index below the largest of a finer level's."""
    return all(max(finer) <= min(coarser) for finer, coarser in zip(masks, masks[1:]))


def parse_cfg(text: str, *, source: str = "<string>") -> DarknetConfig:
    """Read a darknet cfg given as text (see :func:`read_cfg`)."""
    sections = _sections(text, source)
    if not sections or sections[0].name not in NET_SECTIONS:
        where = f"line {sections[0].line} is [{sections[0].name}]" if sections else "there are no sections"
        raise ValueError(f"{source}: the first section must be [net] or [network], but {where}")
    net, layers = sections[0], sections[1:]
    lenient: list[str] = []
    if "\r" in text.replace("\r\n", ""):
        lenient.append(
            f"{source}: has lone carriage-return (old Mac) line endings; read line by line here, but darknet's own "
            "reader splits lines at newlines only: convert the file before training with it"
        )
    width, height = _int(net, "width", source, notes=lenient), _int(net, "height", source, notes=lenient)
    if width <= 0 or height <= 0:
        raise ValueError(f"{source}: [net] width and height must be positive, got {width}x{height}")
    letter_box = _int(net, "letter_box", source, 0) != 0
    layer_strides = _layer_strides(layers, source)
    yolo = [
        _yolo_section(layer, index, _integral(layer_strides[index]), source, lenient)
        for index, layer in enumerate(layers)
        if layer.name in YOLO_SECTIONS
    ]
    if not yolo:
        raise ValueError(f"{source} has no [yolo] section; darknet cfgs have anchors per level from YOLOv3 on")
    if len({len(s.mask) for s in yolo}) != 1:
        lengths = ", ".join(f"{len(s.mask)} in the [yolo] of line {s.line}" for s in yolo)
        raise ValueError(f"{source}: every [yolo] mask must hold as many anchors, got {lengths}")
    if len({s.num for s in yolo}) != 1:
        nums = ", ".join(f"num={s.num} at line {s.num_line}" for s in yolo)
        raise ValueError(f"{source}: the [yolo] sections must have the same num, got {nums}")
    found = [s.stride for s in yolo]
    inferred = None in found or len(set(found)) != len(found)
    if inferred:
        # By area: the level whose anchors are largest is the coarsest; levels halve below 32.
        mean_log_area = [float(s.anchors[list(s.mask)].prod(1).log().mean()) for s in yolo]
        order = sorted(range(len(yolo)), key=lambda i: (mean_log_area[i], i))
        strides = [32 // 2 ** (len(yolo) - 1 - level) or 1 for level in range(len(yolo))]
        notes = [f"{source}: the strides of the [yolo] layers could not be followed; {strides} assigned by area"]
    else:
        order = sorted(range(len(yolo)), key=lambda i: found[i])  # type: ignore[arg-type, return-value]
        strides = [found[i] for i in order]  # type: ignore[misc]
        notes = []
    notes = lenient + notes + _quirk_notes(yolo, order, source)
    return DarknetConfig(
        width, height, letter_box, tuple(yolo), tuple(order), tuple(strides), inferred, tuple(notes), source
    )


def _integral(stride: float | None) -> int | None:
    if stride is None or stride < 1 or not float(stride).is_integer():
        return None
    return int(stride)


def read_cfg(path: str | os.PathLike) -> DarknetConfig:
    """Read the input size and the ``[yolo]`` anchors of a darknet cfg.

    Args:
        path: the cfg (``yolov4.cfg``, say).

    Returns:
        :class:`DarknetConfig`.

    Raises:
        ValueError: if the file is missing or malformed: no ``[net]`` first, no
            ``[yolo]`` section, a line that is not ``key = value``, a mask index out of
            range, ``num`` not matching the anchors, masks of different lengths. The
            message names the file and the line.
    """
    path = Path(path)
    text, encoding = read_cfg_text(path)
    config = parse_cfg(text, source=str(path))
    if encoding != "utf-8":
        note = (
            f"{path} is not UTF-8 text; read as Latin-1 (darknet reads bytes, and only ASCII matters to it); "
            "a rewrite keeps every other byte as it was"
        )
        config = replace(config, notes=(note, *config.notes))
    return config


def read_cfg_text(path: Path) -> tuple[str, str]:
    """``(text, encoding)`` of a cfg: UTF-8, or Latin-1 (every byte kept) when it is not UTF-8.

    Raises:
        ValueError: if the file is missing or a folder.
    """
    try:
        return read_text_file(path, "darknet cfg"), "utf-8"
    except ValueError as error:
        if not isinstance(error.__cause__, UnicodeDecodeError):
            raise
    return path.read_bytes().decode("latin-1"), "latin-1"
