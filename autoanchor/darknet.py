"""Read and rewrite the anchors of a darknet ``.cfg``; darknet's resize of the boxes.

A darknet cfg lists its layers as ``[section]`` blocks of ``key = value`` lines. Every
``[yolo]`` section repeats the same ``anchors =`` line (all anchors of the model, in
pixels of the network input) and picks its own with ``mask =`` (indices into that
line); ``num`` counts the anchors of the line. The yolo layers do not state their
strides, so :func:`parse_cfg` follows the layers (convolution and pooling strides,
upsampling, routes) to find the stride of each one.

Levels are the ``[yolo]`` sections ordered from the finest stride to the coarsest,
whatever their order in the file: yolov3 lists the stride-32 section first
(``mask = 6,7,8``), yolov4 the stride-8 one (``mask = 0,1,2``); both give the finest
level the first, smallest anchors of the line. :func:`rewrite_cfg_anchors` writes the
new anchors sorted by area into every section's ``anchors =`` line and changes no other
byte; the masks stay as they are, so the smallest anchors land on the finest level as
long as the masks, read from the finest level to the coarsest, never go back to a
smaller index. A cfg whose masks do (darknet issue #3860) is refused rather than
silently "fixed".

Quirks that darknet accepts (anchors in no mask, anchors in two masks as in
yolov4-tiny, sections whose ``anchors =`` lines differ) are kept and described in
:attr:`DarknetConfig.notes` for the caller to log or warn about.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ._atomic import write_atomic
from .boxes import BoxSizes
from .modelyaml import level_label, round_anchors

__all__ = [
    "DarknetConfig",
    "YoloSection",
    "darknet_lines",
    "darknet_pixel_wh",
    "mmyolo_snippet",
    "parse_cfg",
    "read_cfg",
    "rewrite_cfg_anchors",
    "write_cfg_anchors",
]

logger = logging.getLogger(__name__)

YOLO_SECTIONS = ("yolo", "Gaussian_yolo")
NET_SECTIONS = ("net", "network")
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


def _lines(text: str):
    """``(line number, offset, content)`` per line; content without its line ending."""
    offset = 0
    for number, piece in enumerate(text.split("\n"), start=1):
        content = piece[:-1] if piece.endswith("\r") else piece
        yield number, offset, content
        offset += len(piece) + 1


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
        if name in section.entries and section.name in YOLO_SECTIONS + NET_SECTIONS:
            raise ValueError(
                f"{source}, line {number}: {name!r} repeats line {section.entries[name].line} "
                f"in the [{section.name}] section of line {section.line}"
            )
        section.entries.setdefault(name, entry)
    return sections


def _int(section: _Section, key: str, source: str, default: int | None = None) -> int:
    entry = section.entries.get(key)
    if entry is None:
        if default is None:
            raise ValueError(f"{source}: the [{section.name}] section of line {section.line} has no {key!r}")
        return default
    try:
        return int(entry.value)
    except ValueError:
        raise ValueError(f"{source}, line {entry.line}: {key} must be an integer, got {entry.value!r}") from None


def _numbers(entry: _Entry, key: str, source: str, kind: type) -> list:
    try:
        return [kind(token) for token in entry.value.split(",") if token.strip()]
    except ValueError:
        raise ValueError(
            f"{source}, line {entry.line}: {key} must be comma-separated numbers, got {entry.value!r}"
        ) from None


def _yolo_section(section: _Section, layer: int, stride: int | None, source: str) -> YoloSection:
    num = _int(section, "num", source)
    entry = section.entries.get("anchors")
    if entry is None:
        raise ValueError(f"{source}: the [{section.name}] section of line {section.line} has no 'anchors'")
    values = _numbers(entry, "anchors", source, float)
    if len(values) != 2 * num:
        raise ValueError(
            f"{source}, line {entry.line}: {len(values)} anchor values for num={num} "
            f"(line {section.entries['num'].line}); expected {2 * num} (a width and a height per anchor)"
        )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{source}, line {entry.line}: anchors must be positive pixel sizes, got {entry.value!r}")
    mask_entry = section.entries.get("mask")
    mask = tuple(range(num)) if mask_entry is None else tuple(_numbers(mask_entry, "mask", source, int))
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
        lines = ", ".join(f"stride {s.stride} at line {s.mask_line}: {list(s.mask)}" for s in map(sections.__getitem__, order))
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
    width, height = _int(net, "width", source), _int(net, "height", source)
    if width <= 0 or height <= 0:
        raise ValueError(f"{source}: [net] width and height must be positive, got {width}x{height}")
    letter_box = _int(net, "letter_box", source, 0) != 0
    layer_strides = _layer_strides(layers, source)
    yolo = [
        _yolo_section(layer, index, _integral(layer_strides[index]), source)
        for index, layer in enumerate(layers)
        if layer.name in YOLO_SECTIONS
    ]
    if not yolo:
        raise ValueError(f"{source} has no [yolo] section; only darknet cfgs of YOLOv3 and later have anchors per level")
    if len({len(s.mask) for s in yolo}) != 1:
        lengths = ", ".join(f"line {s.mask_line}: {len(s.mask)}" for s in yolo)
        raise ValueError(f"{source}: every [yolo] mask must hold as many anchors, got {lengths}")
    if len({s.num for s in yolo}) != 1:
        raise ValueError(f"{source}: the [yolo] sections give different num: {[s.num for s in yolo]}")
    found = [s.stride for s in yolo]
    inferred = None in found or len(set(found)) != len(found)
    if inferred:
        # By area: the level whose anchors are largest is the coarsest; levels halve below 32.
        mean_log_area = [float(s.anchors[list(s.mask)].prod(1).log().mean()) for s in yolo]
        order = sorted(range(len(yolo)), key=lambda i: (mean_log_area[i], i))
        strides = [32 // 2 ** (len(yolo) - 1 - level) or 1 for level in range(len(yolo))]
        notes = [f"{source}: the strides of the [yolo] layers could not be followed; assigned {strides} by anchor area"]
    else:
        order = sorted(range(len(yolo)), key=lambda i: found[i])  # type: ignore[arg-type, return-value]
        strides = [found[i] for i in order]  # type: ignore[misc]
        notes = []
    notes += _quirk_notes(yolo, order, source)
    return DarknetConfig(width, height, letter_box, tuple(yolo), tuple(order), tuple(strides), inferred, tuple(notes), source)


def _integral(stride: float | None) -> int | None:
    if stride is None or stride < 1 or not float(stride).is_integer():
        return None
    return int(stride)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"darknet cfg {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"darknet cfg {str(path)!r} is a directory, not a file") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"darknet cfg {str(path)!r} is not UTF-8 text: {error}") from error


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
    return parse_cfg(_read_text(path), source=str(path))


# -- darknet's resize -------------------------------------------------------------------------------


def darknet_pixel_wh(
    boxes: BoxSizes, width: int, height: int, *, letter_box: bool = False, device: torch.device | str | None = None
) -> Tensor:
    """Box sizes in pixels of darknet's ``width x height`` network input.

    Darknet stretches every image to ``width x height`` (so a box keeps its fraction
    of the image on each side, whatever the image's shape); with ``letter_box=1`` it
    pads the image to the network's aspect ratio first, which scales both sides by
    ``min(width / image width, height / image height)``. Neither is yolov5's
    letterbox (:meth:`BoxSizes.pixel_wh`), which scales the long side to one size.

    Args:
        boxes: the dataset's image sizes and normalised box sizes.
        width: network input width in pixels (``[net] width``).
        height: network input height in pixels.
        letter_box: darknet's ``letter_box=1``.
        device: where the result lives; defaults to the CPU.

    Returns:
        Tensor[N, 2] float32, box (width, height) in pixels of the network input.
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a positive number of pixels, got {value!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    wh = torch.as_tensor(boxes.wh, dtype=torch.float64, device=device)
    network = torch.tensor([width, height], dtype=torch.float64, device=device)
    if not letter_box:
        return (wh * network).float()
    shapes = torch.as_tensor(boxes.shapes, dtype=torch.float64, device=device)
    scale = (network / shapes).amin(1, keepdim=True)  # [I,1]
    index = torch.as_tensor(boxes.image_index, device=device)
    return (wh * (shapes * scale)[index]).float()


# -- rewriting --------------------------------------------------------------------------------------


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
    if not _masks_ordered(config.masks):
        raise ValueError(
            f"{source}: not rewritten: the masks, from the finest level (stride {config.strides[0]}) to the "
            f"coarsest, are {[list(m) for m in config.masks]}; anchors sorted by area would give a finer level "
            "larger anchors. Order the masks so that finer levels use smaller indices."
        )
    rows = _sorted_rows(anchors, config.num, source)
    entries = [s.entries["anchors"] for s in _sections(text, source) if s.name in YOLO_SECTIONS]
    pieces, position = [], 0
    for entry in entries:
        pieces += [text[position : entry.start], _anchors_text(rows, entry.value)]
        position = entry.end
    pieces.append(text[position:])
    new_text = "".join(pieces)
    rewritten = parse_cfg(new_text, source=source)
    expected = torch.tensor(rows, dtype=torch.float32)
    if not all(torch.equal(s.anchors, expected) for s in rewritten.sections):
        raise RuntimeError(f"internal error: rewriting the anchors of {source} did not give the new anchors")
    return new_text


def write_cfg_anchors(path: str | os.PathLike, anchors: Tensor | Sequence) -> DarknetConfig:
    """Rewrite the anchors of a darknet cfg in place (see :func:`rewrite_cfg_anchors`).

    The file is replaced atomically (:func:`autoanchor._atomic.write_atomic`): it keeps
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
    new_text = rewrite_cfg_anchors(_read_text(path), anchors, source=str(path))
    write_atomic(path, new_text.encode("utf-8"))
    logger.debug("rewrote the anchors of %s", path)
    return parse_cfg(new_text, source=str(path))


# -- printing ---------------------------------------------------------------------------------------


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
            lines.append(f"# {level_label(strides[level])}")
        lines.append("mask = " + ",".join(str(i) for i in mask))
    return "\n".join(lines) + "\n"


def mmyolo_snippet(anchors: Tensor | Sequence, strides: Sequence[int]) -> str:
    """An mmyolo ``prior_generator=dict(...)`` argument holding the anchors.

    Args:
        anchors: Tensor[levels, per_level, 2], anchors in pixels, finest level first.
        strides: the stride of each level in pixels.

    Returns:
        Python text ending with a newline, to paste into the ``bbox_head`` of an mmyolo
        config, e.g.::

            prior_generator=dict(
                type='mmdet.YOLOAnchorGenerator',
                base_sizes=[
                    [(10, 13), (16, 30), (33, 23)],  # P3/8
                    ...
                ],
                strides=[8, 16, 32]),
    """
    levels = round_anchors(anchors)
    strides = [int(s) for s in strides]
    if len(strides) != len(levels):
        raise ValueError(f"got {len(strides)} strides for {len(levels)} levels")
    lines = ["prior_generator=dict(", "    type='mmdet.YOLOAnchorGenerator',", "    base_sizes=["]
    for level, stride in zip(levels, strides):
        pairs = ", ".join(f"({w}, {h})" for w, h in level)
        lines.append(f"        [{pairs}],  # {level_label(stride)}")
    lines += ["    ],", f"    strides={strides}),"]
    return "\n".join(lines) + "\n"
