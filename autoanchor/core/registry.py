"""One :class:`Registry` for every plug point: a name maps to an object.

Head families (:mod:`autoanchor.training.heads`), objectives
(:mod:`autoanchor.core.objectives`), dataset formats (:mod:`autoanchor.io.datasets`),
subcommands and output writers (:mod:`autoanchor.cli`) each keep one ``Registry`` and
follow the same rules, after detectron2's (fvcore's) ``Registry``:

* ``register`` is a decorator (``@REG.register()`` or ``@REG.register``) and a plain
  call (``REG.register(obj)``); the name is ``name=``, else the object's ``name``
  attribute, else its ``__name__``; it returns the object;
* a name is registered once: registering the same object again changes nothing,
  another object under a taken name raises ``ValueError`` unless ``replace=True``;
* :meth:`Registry.get` of an unknown name raises ``ValueError`` listing the known names;
* iteration (names, :meth:`Registry.values`, :meth:`Registry.items`) is in registration
  order; :meth:`Registry.unregister` removes a name.

A name can also be *declared* before its module is imported (:meth:`Registry.declare`,
``"module:attribute"``): it is listed at once and its module is imported on first
:meth:`Registry.get`. This keeps ``autoanchor fit --help`` (which lists the metrics)
from importing torch. Nothing here imports torch.

Example:
    >>> COLOURS = Registry("colour")
    >>> @COLOURS.register
    ... class Red:
    ...     name = "red"
    >>> COLOURS.get("red") is Red, list(COLOURS)
    (True, ['red'])
    >>> COLOURS.get("blue")
    Traceback (most recent call last):
    ...
    ValueError: unknown colour 'blue'; known: red
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, overload

__all__ = ["OBJECTIVES", "Registry"]

T = TypeVar("T")


class _Declared(str):
    """A declared entry's ``"module:attribute"``, held in its place until imported."""


def _name_of(obj: Any) -> str:
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) else getattr(obj, "__name__", "")


class Registry(Generic[T]):
    """Names mapped to objects, in registration order.

    Args:
        kind: what the registry holds, for messages (``"head family"``, ``"objective"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}  # name -> object, or a _Declared target not imported yet

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self) or 'empty'})"

    # -- registering ------------------------------------------------------------------

    @overload
    def register(self, obj: None = None, *, name: str | None = None, replace: bool = False) -> Callable[[T], T]: ...

    @overload
    def register(self, obj: T, *, name: str | None = None, replace: bool = False) -> T: ...

    def register(self, obj: Any = None, *, name: str | None = None, replace: bool = False) -> Any:
        """Register ``obj`` under ``name`` (default: its ``name`` attribute or ``__name__``).

        Without ``obj`` it returns a decorator. Returns ``obj``.

        Raises:
            ValueError: if the name is empty, or taken by another object and not ``replace``.
        """
        if obj is None:
            return lambda target: self.register(target, name=name, replace=replace)
        key = _name_of(obj) if name is None else name
        if not isinstance(key, str) or not key:
            raise ValueError(f"a {self.kind} needs a non-empty name (a name= or a 'name' attribute), got {key!r} for {obj!r}")
        current = self._entries.get(key, obj)
        if isinstance(current, _Declared):
            if not replace and current != f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}":
                raise ValueError(f"the {self.kind} {key!r} is declared as {current}, not {obj!r}; pass replace=True")
        elif current is not obj and not replace:
            raise ValueError(
                f"the {self.kind} {key!r} is already registered ({current!r}); pass replace=True to replace it"
            )
        self._entries[key] = obj  # a declared name keeps its place
        return obj

    def declare(self, name: str, target: str) -> None:
        """List ``name`` now; import ``target`` (``"package.module:attribute"``) on first :meth:`get`.

        The module is expected to register the object under ``name`` when imported
        (as a decorated class does); if it does not, ``attribute`` is registered.

        Raises:
            ValueError: if the name is taken or ``target`` is not ``"module:attribute"``.
        """
        if name in self._entries:
            raise ValueError(f"the {self.kind} {name!r} is already registered")
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if target.count(":") != 1 or not all(target.split(":")):
            raise ValueError(f"target must be 'package.module:attribute', got {target!r}")
        self._entries[name] = _Declared(target)

    def unregister(self, name: str) -> T:
        """Remove ``name``; returns what was registered under it (a declared name is not imported).

        Raises:
            ValueError: for an unknown name; the message lists the known ones.
        """
        if name not in self:
            self.get(name)  # raises, listing the known names
        return self._entries.pop(name)

    # -- looking up -------------------------------------------------------------------

    def get(self, name: str) -> T:
        """The object registered as ``name`` (importing a declared one's module).

        Raises:
            ValueError: for an unknown name; the message lists the known ones.
        """
        try:
            value = self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self) or 'none'}") from None
        if isinstance(value, _Declared):
            module, attribute = value.split(":")
            loaded = getattr(importlib.import_module(module), attribute)
            if isinstance(self._entries.get(name), _Declared):  # the module did not register it itself
                self.register(loaded, name=name)
            value = self._entries[name]
        return value

    def names(self) -> tuple[str, ...]:
        """The registered (and declared) names, in registration order."""
        return tuple(self)

    def values(self) -> list[T]:
        """The registered objects, in registration order (declared ones imported)."""
        return [self.get(name) for name in self.names()]

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs, in registration order (declared ones imported)."""
        return [(name, self.get(name)) for name in self.names()]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._entries
        except TypeError:  # unhashable
            return False

    def __len__(self) -> int:
        return len(self._entries)


OBJECTIVES: Registry = Registry("objective")
"""What ``metric=`` names: :class:`~autoanchor.core.objectives.Objective` subclasses, registered
with :func:`~autoanchor.core.objectives.register_objective`. It lives here, beside no torch
import, so that the command line lists the metrics (``autoanchor fit --help``) without
importing torch; the built-in objectives are declared for that and import on first use."""
OBJECTIVES.declare("ratio", "autoanchor.core.objectives:RatioObjective")
OBJECTIVES.declare("iou", "autoanchor.core.objectives:IoUObjective")
