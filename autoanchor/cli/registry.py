"""The two plug points of the command line: subcommands and output writers (``--format``).

A subcommand is a module that registers itself once::

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--levels", ...)

    @register_command("advise", help="one line for 'autoanchor --help'",
                      description="a paragraph for 'autoanchor advise --help'",
                      add_arguments=add_arguments)
    def run(args: argparse.Namespace) -> int:
        ...
        return EXIT_OK

plus one import line in :mod:`autoanchor.cli` (``from . import advise``). The shared
options (DATA, ``--img``, ``--thr``, ``--device``, ``-q``, ``--no-cache``) are added to
every subcommand. An output writer is one function that turns a command's result into
text, registered for that command::

    @register_writer("mmyolo", command="fit", help="an mmyolo prior_generator base_sizes list")
    def mmyolo(result: FitOutput) -> str:
        return ...

Its name becomes a ``--format`` choice of that command, in registration order. Both are
kept in a :class:`~autoanchor.core.registry.Registry` (:data:`COMMANDS`, :func:`writers`),
the one used by every plug point: a name is registered once (``replace=True`` to take
it), and asking for an unknown name raises an error that lists the known ones.

Nothing here imports torch: the parser, ``--help`` and usage errors never need it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.registry import Registry

__all__ = [
    "COMMANDS",
    "Command",
    "OutputWriter",
    "commands",
    "get_command",
    "get_writer",
    "register_command",
    "register_writer",
    "writer_help",
    "writer_names",
    "writers",
]

Run = Callable[[argparse.Namespace], int]
Writer = Callable[[Any], str]


@dataclass(frozen=True)
class Command:
    """A registered subcommand.

    Attributes:
        name: what the user types (``fit``).
        help: one line for the command list of ``autoanchor --help``.
        description: the paragraph at the top of ``autoanchor NAME --help``.
        add_arguments: adds the command's own options to its parser.
        run: runs the command; returns the exit code.
    """

    name: str
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Run


@dataclass(frozen=True)
class OutputWriter:
    """A registered ``--format`` of one command: an output writer.

    Attributes:
        name: the ``--format`` value (``json``).
        command: the subcommand it belongs to.
        help: a few words for ``--help``.
        write: turns the command's result object into text ending with a newline.
    """

    name: str
    command: str
    help: str
    write: Writer


COMMANDS: Registry[Command] = Registry("subcommand")
"""The registered subcommands, in registration order (:class:`~autoanchor.core.registry.Registry`)."""

_WRITERS: dict[str, Registry[OutputWriter]] = {}


def writers(command: str) -> Registry[OutputWriter]:
    """The registry of ``command``'s output writers (its ``--format`` choices), in registration order."""
    return _WRITERS.setdefault(command, Registry(f"{command!r} output format"))


def register_command(
    name: str, *, help: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None],
    replace: bool = False,
) -> Callable[[Run], Run]:
    """Decorator: register ``run`` as the subcommand ``name`` (see the module docstring).

    Raises:
        ValueError: if a subcommand of that name is already registered (and not ``replace``).
    """

    def decorate(run: Run) -> Run:
        COMMANDS.register(Command(name, help, description, add_arguments, run), replace=replace)
        return run

    return decorate


def commands() -> list[Command]:
    """Every registered subcommand, in registration order."""
    return COMMANDS.values()


def get_command(name: str) -> Command:
    """The subcommand ``name``.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    return COMMANDS.get(name)


def register_writer(name: str, *, command: str, help: str, replace: bool = False) -> Callable[[Writer], Writer]:
    """Decorator: register ``write`` as ``--format name`` of the subcommand ``command``.

    Raises:
        ValueError: if ``command`` already has a writer of that name (and not ``replace``).
    """

    def decorate(write: Writer) -> Writer:
        writers(command).register(OutputWriter(name, command, help, write), replace=replace)
        return write

    return decorate


def writer_names(command: str) -> list[str]:
    """The ``--format`` names of ``command``, in registration order (empty if none)."""
    return list(writers(command))


def get_writer(command: str, name: str) -> OutputWriter:
    """The output writer ``name`` of ``command``.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    return writers(command).get(name)


def writer_help(command: str) -> str:
    """``name (help), ...`` of the writers of ``command``, for its ``--format`` help text."""
    return ", ".join(f"{w.name} ({w.help})" for w in writers(command).values())
