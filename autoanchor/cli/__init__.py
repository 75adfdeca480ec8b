"""The ``autoanchor`` command line: fit anchors to a dataset, or check how well given anchors fit.

::

    autoanchor fit [DATA] [--n 9] [--img 640] [--thr 4.0] [--gen 1000] [--seed 0] [--metric ratio|iou|...]
                   [--levels 3] [--scale S] [--format text|yaml|json|darknet|mmyolo] [--out FILE] [--plot PNG]
                   [--device cpu|cuda] [--no-cache] [-q] [--model MODEL.yaml|MODEL.cfg [--write]]
    autoanchor check [DATA] (--model MODEL.yaml|MODEL.cfg | --anchors "10,13, 16,30, ..." | --anchors yolov5-p5)
                     [--img 640] [--thr 4.0] [--bpr-threshold 0.98] [--scale S [--seed 0]] [--format text|json]
    autoanchor fit [DATA] --generator retinanet|fasterrcnn|fasterrcnn-mobilenet [--sizes ... --ratios ... --strides ...
                   --min-size PX --max-size PX --iou IOU] [--format text|python|detectron2|mmdet] [--seed 0]
    autoanchor check [DATA] --generator PRESET [--sizes ... ...] [--bpr-threshold 0.98]
    autoanchor advise [DATA] [--img 640] [--thr 4.0] [--margin 0.1] [--seed 0] [--scale S]
                      [--counts 3-15] [--sweep-gen 100] [--gen 1000] [--format text|json]

Without DATA both use the built-in coco128 statistics. A darknet ``.cfg`` as ``--model``
gives the levels, strides and masks, and the boxes are resized as darknet resizes them
(:mod:`.darknetcfg`). Results go to stdout (or
``--out``); progress bars, log messages and warnings to stderr (``-q``: errors
only). Exit codes: 0 on success; ``check`` gives 1 when the anchors' BPR is not
above ``--bpr-threshold``; any error is one line ``autoanchor: error: ...`` on
stderr and exit code 2; 130 when interrupted. On the CPU the command runs torch
on one thread unless ``OMP_NUM_THREADS`` says otherwise (the search's tensors
are small; more threads only add overhead).

Layout: :mod:`.registry` holds the two plug points (subcommands, output writers),
:mod:`.options` the option types and shared options, one module per subcommand
(:mod:`.fit`, :mod:`.check`, :mod:`.advise`), :mod:`.formats` the writers, :mod:`.common` and
:mod:`.levels` what running commands share. torch is imported only when a command runs, so ``--help``,
``--version`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from .. import __version__
from .options import EXIT_ERROR, EXIT_INTERRUPTED, CommandLineError, Parser, add_common_options, search_defaults
from .registry import commands, get_command, register_command, register_writer

# Output formats, then one line per subcommand: importing a module registers what it defines.
from . import formats  # noqa: F401  isort: skip
from . import fit  # noqa: F401  isort: skip
from . import check  # noqa: F401  isort: skip
from . import advise  # noqa: F401  isort: skip

__all__ = ["CommandLineError", "build_parser", "main", "register_command", "register_writer"]

logger = logging.getLogger(__name__)

TRACEBACK_ENV = "AUTOANCHOR_TRACEBACK"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``autoanchor`` command, one subparser per registered subcommand.

    Defaults come from :mod:`autoanchor.core.defaults` (:func:`~autoanchor.cli.options.search_defaults`).
    """
    defaults = search_defaults()
    common = argparse.ArgumentParser(add_help=False)
    add_common_options(common, defaults)

    parser = Parser(
        prog="autoanchor",
        description="Fit anchor boxes for YOLO detectors to a dataset, or check how well anchors fit.",
        epilog="Exit codes: 0 success; 1 'check' found BPR not above --bpr-threshold; 2 any error; "
        "130 interrupted. Examples: 'autoanchor fit --format yaml', "
        "'autoanchor fit data.yaml --model yolov5s.yaml --write', "
        "'autoanchor fit data.yaml --model yolov4.cfg --write', "
        "'autoanchor check data.yaml --anchors yolov5-p5' (data.yaml and yolov5s.yaml are your files, "
        "e.g. from a yolov5 checkout; yolov4.cfg a darknet cfg).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only on stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for command in commands():
        sub = subparsers.add_parser(
            command.name, parents=[common], help=command.help, description=command.description
        )
        command.add_arguments(sub)
    return parser


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # "...:" introduces the lines after it; joined, the colon already separates them.
    text = "".join(line + ("" if i == len(lines) - 1 else " " if line.endswith(":") else "; ") for i, line in enumerate(lines))
    return text or type(error).__name__


class _Formatter(logging.Formatter):
    """Messages as they are; warnings and errors prefixed like the command's error lines."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"autoanchor: {record.levelname.lower()}: {message}"
        return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``autoanchor`` command with ``argv`` (default ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success; 1 from ``check`` when BPR is not above
        ``--bpr-threshold``; 2 on any error (reported as one line on stderr); 130
        when interrupted.
    """
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_ERROR
    args.quiet = getattr(args, "quiet", False)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    package_logger = logging.getLogger("autoanchor")
    saved_level, saved_propagate = package_logger.level, package_logger.propagate
    package_logger.addHandler(handler)
    # -q: errors only. Warnings reach the log as WARNING records (below), so they go too.
    package_logger.setLevel(logging.ERROR if args.quiet else logging.INFO)
    package_logger.propagate = False

    def show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        package_logger.warning("%s", _one_line(message))

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return get_command(args.command).run(args)
    except KeyboardInterrupt:
        sys.stderr.write("autoanchor: interrupted\n")
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, OSError, ImportError, RuntimeError) as error:
        if os.environ.get(TRACEBACK_ENV):
            raise
        sys.stderr.write(f"autoanchor: error: {_one_line(error)}\n")
        return EXIT_ERROR
    except Exception as error:  # a bug: still one line, but say so and how to see more
        if os.environ.get(TRACEBACK_ENV):
            raise
        sys.stderr.write(
            f"autoanchor: internal error: {type(error).__name__}: {_one_line(error)} "
            f"(set {TRACEBACK_ENV}=1 to see the traceback, and please report it)\n"
        )
        return EXIT_ERROR
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(saved_level)
        package_logger.propagate = saved_propagate
        common = sys.modules.get(f"{__name__}.common")
        if common is not None:  # a command ran and may have set torch's thread count
            common.restore_threads()
