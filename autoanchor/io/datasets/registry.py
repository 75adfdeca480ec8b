"""The registry of dataset formats: how each recognises a source and reads it.

A format is one module that calls :func:`register_format` with a name, an ``accept``
test and a ``read`` function (Pillow's image-plugin pattern); the formats are kept in
:data:`DATASET_FORMATS`, a :class:`~autoanchor.core.registry.Registry`. :func:`find_format` asks
every registered format, in order of ``priority``, whether it recognises the source; the
loader never names a format. Both functions take a :class:`Request`: the source, the
load's options, cheap probes (suffix, first bytes, the files of a folder) and the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from ...core.registry import Registry
from .cache import cached
from .files import PathLike, extension, walk
from .summary import Loaded

__all__ = [
    "DATASET_FORMATS", "DatasetFormat", "Request", "find_format", "formats", "register_format", "unregister_format",
]


@dataclass
class Request:
    """One load: the source, its options, probes for recognising it, and side results.

    Attributes:
        source: the source as the caller gave it.
        path: for a path source, the path made absolute without resolving links; else None.
        name: the source for messages (the path as given, or the kind of object).
        split, img_exts, drop_difficult, include_crowd, cache, progress: ``load_boxes``'s options
            (``img_exts`` lower case without dots).
        notices: warnings about the load itself (not about the data), given after it.
        cache_file, from_cache: the cache file used, and whether the result came from it.
    """

    source: Any
    path: Optional[Path]
    name: str
    split: str = "train"
    img_exts: tuple[str, ...] = ()
    drop_difficult: bool = False
    include_crowd: bool = False
    cache: Union[bool, PathLike, None] = True
    progress: bool = False
    notices: list[str] = field(default_factory=list)
    cache_file: Optional[str] = None
    from_cache: bool = False
    _head: Optional[bytes] = field(default=None, repr=False)
    _files: Optional[list[str]] = field(default=None, repr=False)

    @property
    def suffix(self) -> str:
        """The path's extension, lower case with its dot (``".json"``); ``""`` for none."""
        return self.path.suffix.lower() if self.path is not None else ""

    def is_file(self) -> bool:
        return self.path is not None and self.path.is_file()

    def is_dir(self) -> bool:
        return self.path is not None and self.path.is_dir()

    def head(self, size: int = 64) -> bytes:
        """The first ``size`` bytes (at most 64) of a file source; ``b""`` for anything else."""
        if self._head is None:
            self._head = b""
            if self.is_file():
                try:
                    with open(self.path, "rb") as file:  # type: ignore[arg-type]
                        self._head = file.read(64)
                except OSError:
                    pass  # unreadable: no format recognises it by content; the reader names the error
        return self._head[:size]

    def files(self) -> list[str]:
        """Every non-hidden file under a folder source, recursively; ``[]`` for anything else."""
        if self._files is None:
            self._files = walk(self.path) if self.is_dir() else []  # type: ignore[arg-type]
        return self._files

    def extensions(self) -> set[str]:
        """The extensions (lower case, no dot) of :meth:`files`."""
        return {extension(file) for file in self.files()}

    def is_mapping(self) -> bool:
        return isinstance(self.source, Mapping)

    def cached(
        self, files: list[str], options: str, default_cache: Optional[Path], build: Callable[[], Loaded]
    ) -> Loaded:
        """``build()``, or its cached result keyed by ``files`` (path, size, mtime) and ``options``."""
        loaded, self.cache_file, self.from_cache, problem = cached(self.cache, files, options, default_cache, build)
        if problem is not None:
            self.notices.append(problem)
        return loaded


@dataclass(frozen=True)
class DatasetFormat:
    """A registered format.

    Attributes:
        name: the ``format=`` name and the summary's ``format``.
        description: what the format reads, for the error listing the known formats.
        accept: ``accept(request) -> bool``: whether the source is this format's. Cheap:
            a suffix, the first bytes, a folder's layout.
        read: ``read(request) -> Loaded | BoxSizes``: a :class:`~.summary.Loaded`
            (from a :class:`~.summary.Collector`) is validated and summarised by the
            loader; a :class:`~autoanchor.core.boxes.BoxSizes` is taken as it is.
        priority: lower is asked first (a folder of ``.xml`` and images is VOC before YOLO).
    """

    name: str
    description: str
    accept: Callable[[Request], bool]
    read: Callable[[Request], Any]
    priority: int = 50


DATASET_FORMATS: Registry[DatasetFormat] = Registry("dataset format")
"""The registered formats by name (:class:`~autoanchor.core.registry.Registry`); they are
asked in the order of :func:`formats` (priority, then name)."""


def register_format(
    name: str, *, accept: Callable[[Request], bool], read: Callable[[Request], Any], description: str,
    priority: int = 50, replace: bool = False,
) -> DatasetFormat:
    """Add a dataset format; the loader asks it about every source from then on.

    The rules are :class:`~autoanchor.core.registry.Registry`'s: ``replace=True`` to take a
    taken name.

    Raises:
        ValueError: if ``name`` is empty or already registered.
        TypeError: if ``accept`` or ``read`` is not callable.
    """
    if not callable(accept) or not callable(read):
        raise TypeError(f"accept and read of format {name!r} must be callable")
    return DATASET_FORMATS.register(DatasetFormat(name, description, accept, read, priority), replace=replace)


def unregister_format(name: str) -> DatasetFormat:
    """Remove a registered format (for tests and plug-ins that replace one); returns it.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    return DATASET_FORMATS.unregister(name)


def formats() -> list[DatasetFormat]:
    """The registered formats, in the order they are asked (priority, then name)."""
    return sorted(DATASET_FORMATS.values(), key=lambda entry: (entry.priority, entry.name))


def known_formats() -> str:
    """``"name (description), ..."`` for messages."""
    return "; ".join(f"{entry.name} ({entry.description})" for entry in formats())


def find_format(request: Request, name: Optional[str] = None) -> DatasetFormat:
    """The format named ``name``, or the first that accepts the source.

    Raises:
        ValueError: an unknown ``name``; a path that does not exist; a source no format
            recognises (the message lists the known formats).
        TypeError: a source that is neither a path nor an object any format accepts.
    """
    if name is not None:
        if name not in DATASET_FORMATS:
            raise ValueError(f"format must be one of {sorted(DATASET_FORMATS)} or None, got {name!r}")
        entry = DATASET_FORMATS.get(name)
        if request.path is None and not entry.accept(request):
            raise TypeError(f"format {name!r} does not read a {type(request.source).__name__}")
        if request.path is not None and not request.path.exists():
            raise ValueError(f"dataset {request.name!r} does not exist")
        return entry
    for entry in formats():
        if entry.accept(request):
            return entry
    if request.path is None:
        source = request.source
        looked = ", ".join(
            f"{attribute} {'present' if hasattr(source, attribute) else 'absent'}"
            for attribute in ("__getitem__", "__len__", "dataset", "shapes", "labels")
        )
        raise TypeError(
            f"dataset must be a path or an object a format reads, got {type(source).__name__} ({looked}). "
            "Pass the annotation files (a COCO .json, a VOC folder, a CSV, a yolov5 data .yaml), a map-style dataset "
            "whose ds[i] is (image, {'boxes': [N, 4] x0, y0, x1, y1 px, ...}), or the boxes you hold as "
            f"BoxSizes.from_xyxy(boxes_per_image, image_sizes); known formats: {known_formats()}"
        )
    if not request.path.exists():
        raise ValueError(f"dataset {request.name!r} does not exist")
    kind = "folder" if request.is_dir() else "file"
    raise ValueError(
        f"no known format recognises the dataset {kind} {request.name!r}; known formats: {known_formats()}"
    )

