"""The two plug points of the command line: subcommands and output formats.

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
every subcommand. An output format is one function that turns a command's result into
text, registered for that command::

    @register_format("mmyolo", command="fit", help="an mmyolo prior_generator base_sizes list")
    def mmyolo(result: FitOutput) -> str:
        return ...

Its name becomes a ``--format`` choice of that command, in registration order. Like
detectron2's ``Registry``, a name is registered once, and asking for an unknown name
raises an error that lists the known ones.

Nothing here imports torch: the parser, ``--help`` and usage errors never need it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Command",
    "OutputFormat",
    "commands",
    "format_help",
    "format_names",
    "get_command",
    "get_format",
    "register_command",
    "register_format",
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
class OutputFormat:
    """A registered ``--format`` of one command.

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


_COMMANDS: dict[str, Command] = {}
_FORMATS: dict[str, dict[str, OutputFormat]] = {}


def register_command(
    name: str, *, help: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None]
) -> Callable[[Run], Run]:
    """Decorator: register ``run`` as the subcommand ``name`` (see the module docstring).

    Raises:
        ValueError: if a subcommand of that name is already registered.
    """

    def decorate(run: Run) -> Run:
        if name in _COMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        _COMMANDS[name] = Command(name, help, description, add_arguments, run)
        return run

    return decorate


def commands() -> list[Command]:
    """Every registered subcommand, in registration order."""
    return list(_COMMANDS.values())


def get_command(name: str) -> Command:
    """The subcommand ``name``.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    if name not in _COMMANDS:
        raise ValueError(f"unknown subcommand {name!r}; known: {', '.join(_COMMANDS) or 'none'}")
    return _COMMANDS[name]


def register_format(name: str, *, command: str, help: str) -> Callable[[Writer], Writer]:
    """Decorator: register ``write`` as ``--format name`` of the subcommand ``command``.

    Raises:
        ValueError: if ``command`` already has a format of that name.
    """

    def decorate(write: Writer) -> Writer:
        formats = _FORMATS.setdefault(command, {})
        if name in formats:
            raise ValueError(f"format {name!r} of {command!r} is already registered")
        formats[name] = OutputFormat(name, command, help, write)
        return write

    return decorate


def format_names(command: str) -> list[str]:
    """The ``--format`` names of ``command``, in registration order (empty if none)."""
    return list(_FORMATS.get(command, {}))


def get_format(command: str, name: str) -> OutputFormat:
    """The output format ``name`` of ``command``.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    formats = _FORMATS.get(command, {})
    if name not in formats:
        raise ValueError(
            f"unknown output format {name!r} for {command!r}; known: {', '.join(formats) or 'none'}"
        )
    return formats[name]


def format_help(command: str) -> str:
    """``name (help), ...`` of the formats of ``command``, for its ``--format`` help text."""
    return ", ".join(f"{f.name} ({f.help})" for f in _FORMATS.get(command, {}).values())
