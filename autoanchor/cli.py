"""The ``autoanchor`` command line: fit anchors to a dataset, or check how well given anchors fit.

::

    autoanchor fit [DATA] [--n 9] [--img 640] [--thr 4.0] [--gen 1000] [--seed 0] [--metric ratio|iou]
                   [--levels 3] [--format text|yaml|json|darknet] [--out FILE] [--plot PNG]
                   [--device cpu|cuda] [--model MODEL.yaml [--write]]
    autoanchor check [DATA] (--model MODEL.yaml | --anchors "10,13, 16,30, ..." | --anchors yolov5-p5)
                     [--img 640] [--thr 4.0]

Without DATA both use the built-in coco128 statistics. Results go to stdout (or
``--out``); progress bars, log messages and warnings to stderr. Any error is one
line ``autoanchor: error: ...`` on stderr and exit code 2. On the CPU the command
runs torch on one thread unless ``OMP_NUM_THREADS`` says otherwise (the search's
tensors are small; more threads only add overhead).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, NoReturn

import torch
from torch import Tensor

from . import __version__
from .boxes import MIN_BOX_PX, searchable_boxes
from .configs import anchor_config_names, anchors_by_name, load_config
from .metrics import AnchorStats, anchor_stats
from .objectives import objective_class
from .modelyaml import (
    ModelAnchors,
    anchors_yaml_block,
    default_strides,
    level_label,
    read_model_anchors,
    round_anchors,
)

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)

FORMATS = ("text", "yaml", "json", "darknet")
EXIT_ERROR = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130
TRACEBACK_ENV = "AUTOANCHOR_TRACEBACK"
THREADS_ENV = "OMP_NUM_THREADS"


class CommandLineError(ValueError):
    """A bad combination of command-line options (reported like any other error)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(minimum: int, wording: str) -> Callable[[str], int]:
    """An argparse ``type`` for integers of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {wording}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number greater than 1, got {text!r}") from None
    if not math.isfinite(value) or value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number greater than 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``autoanchor`` command, defaults from the shipped ``search`` config."""
    defaults = load_config("search")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
        help="no progress bars or log messages on stderr (warnings and errors still show)",
    )
    common.add_argument(
        "data", nargs="?", default=None, metavar="DATA",
        help="the dataset: a yolov5 data yaml, a COCO json, a VOC folder or an .npz "
        "(default: the built-in coco128 statistics)",
    )
    common.add_argument(
        "--img", type=_positive_int, default=defaults["img_size"], metavar="PX",
        help="training image size in pixels (long side); default %(default)s",
    )
    common.add_argument(
        "--thr", type=_ratio, default=defaults["anchor_t"],
        help="ratio threshold (yolov5 anchor_t): a box matches an anchor when its width and height are "
        "both within this factor of the anchor's; default %(default)s",
    )
    common.add_argument(
        "--device", default="cpu", help="where to compute: cpu, cuda or cuda:N; default %(default)s"
    )

    parser = _Parser(
        prog="autoanchor",
        description="Fit anchor boxes for YOLO detectors to a dataset, or check how well anchors fit.",
        epilog="Examples: 'autoanchor fit --format yaml', 'autoanchor fit data.yaml --model yolov5s.yaml --write', "
        "'autoanchor check data.yaml --anchors yolov5-p5'.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    fit = commands.add_parser(
        "fit", parents=[common], help="find anchors for a dataset",
        description="Find anchors for a dataset (k-means, then evolution) and print them, "
        "write them into a model yaml, or plot them.",
    )
    fit.add_argument(
        "--n", type=_positive_int, default=None,
        help=f"number of anchors (default {defaults['n']}; with --model, the model's count)",
    )
    fit.add_argument(
        "--levels", type=_positive_int, default=None,
        help=f"output levels the anchors are split into, small to large (default {defaults['levels']}; "
        "with --model, the model's levels); --n must be a multiple",
    )
    fit.add_argument(
        "--gen", type=_non_negative_int, default=defaults["gen"],
        help="generations of evolution after k-means; default %(default)s",
    )
    fit.add_argument(
        "--seed", type=_non_negative_int, default=defaults["seed"],
        help="random seed: the same data and seed give the same anchors; default %(default)s",
    )
    fit.add_argument(
        "--metric", choices=("ratio", "iou"), default=defaults["metric"],
        help="what to maximise: ratio (yolov5 fitness) or iou (Avg IoU); default %(default)s",
    )
    fit.add_argument(
        "--format", choices=FORMATS, default="text",
        help="text (readable), yaml (a model-yaml anchors: block), json, or darknet (an anchors= line); "
        "default %(default)s",
    )
    fit.add_argument("--out", type=Path, metavar="FILE", help="write the result to FILE instead of stdout")
    fit.add_argument("--plot", type=Path, metavar="PNG", help="draw box sizes and anchors into this image file")
    fit.add_argument(
        "--model", type=Path, metavar="MODEL.yaml",
        help="a yolov5 model yaml: fit as many levels and anchors per level as it has",
    )
    fit.add_argument(
        "--write", action="store_true",
        help="with --model: rewrite the model yaml's anchor rows in place (nothing else in the file changes)",
    )

    check = commands.add_parser(
        "check", parents=[common], help="measure how well given anchors fit a dataset",
        description="Print BPR, anchors per target, fitness and Avg IoU of given anchors on a dataset.",
    )
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, metavar="MODEL.yaml", help="the anchors of a yolov5 model yaml")
    source.add_argument(
        "--anchors", metavar="ANCHORS",
        help="anchors as 'w1,h1, w2,h2, ...' in pixels, or the name of a shipped set: "
        + ", ".join(anchor_config_names()),
    )
    check.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (readable) or json; default %(default)s"
    )
    return parser


# -- helpers ----------------------------------------------------------------------------------------


def _device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise CommandLineError(f"--device {text!r} is not a device (try cpu or cuda): {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandLineError(f"--device {text}: CUDA is not available on this machine")
    if device.type == "cpu" and THREADS_ENV not in os.environ:
        # The search works on a few thousand pooled sizes: torch's thread pool costs more than it
        # saves there (a 1000-generation fit of coco128 took 0.6-0.9 s on one thread, 3-7.5 s on
        # two, on a busy 2-core machine). OMP_NUM_THREADS, when set, is left to decide.
        torch.set_num_threads(1)
    return device


def _check_output_path(option: str, path: Path | None) -> None:
    """Fail before the search, not after it, when an output cannot be written."""
    if path is None:
        return
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CommandLineError(f"{option} {str(path)!r} is a directory; give a file name")
    if not folder.is_dir():
        raise CommandLineError(f"{option} {str(path)!r}: the folder {str(folder)!r} does not exist")


def _load(data: str | None, img: int, device: torch.device, *, progress: bool) -> tuple[Any, Tensor, str]:
    from .datasets import load_boxes

    start = time.perf_counter()
    sizes = load_boxes(data, progress=progress)
    name = "built-in coco128" if data is None else str(data)
    logger.debug(
        "loaded %d boxes in %d images from %s in %.2f s", sizes.n_boxes, sizes.n_images, name,
        time.perf_counter() - start,
    )
    wh = sizes.pixel_wh(img, device=device)
    return sizes, wh, name


def _parse_anchor_text(text: str) -> tuple[Tensor, str | None]:
    """``--anchors``: a shipped set's name or ``w1,h1, w2,h2, ...`` -> ``(Tensor[nl, na, 2], name or None)``."""
    stripped = text.strip()
    if re.fullmatch(r"[A-Za-z][\w.-]*", stripped):
        return anchors_by_name(stripped), stripped
    tokens = [token for token in re.split(r"[\s,;]+", stripped) if token]
    values = []
    for token in tokens:
        try:
            values.append(float(token))
        except ValueError:
            raise CommandLineError(
                f"--anchors {text!r}: {token!r} is not a number; give 'w1,h1, w2,h2, ...' in pixels "
                f"or a shipped set ({', '.join(anchor_config_names())})"
            ) from None
    if not values or len(values) % 2:
        raise CommandLineError(
            f"--anchors {text!r}: expected w,h pairs (an even count of numbers), got {len(values)} numbers"
        )
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise CommandLineError(f"--anchors {text!r}: anchor sizes must be positive numbers of pixels")
    return torch.tensor(values, dtype=torch.float32).reshape(1, -1, 2), None


def _levels_of(args: argparse.Namespace, model: ModelAnchors | None) -> tuple[int, int]:
    """``(n, levels)`` from the options, the model, and the shipped defaults; checked."""
    if model is not None:
        for option, given, expected in (("--n", args.n, model.n_anchors), ("--levels", args.levels, model.n_levels)):
            if given is not None and given != expected:
                raise CommandLineError(
                    f"{option} {given} disagrees with {model.source} ({model.n_levels} levels x "
                    f"{model.n_per_level} anchors); leave {option} out with --model"
                )
        return model.n_anchors, model.n_levels
    defaults = load_config("search")
    n = args.n if args.n is not None else defaults["n"]
    levels = args.levels if args.levels is not None else defaults["levels"]
    if n % levels:
        raise CommandLineError(f"--n {n} anchors cannot be split evenly into --levels {levels}")
    return n, levels


def _stats_line(stats: AnchorStats) -> str:
    return (
        f"fitness {stats.fitness:.4f}  BPR {stats.bpr:.4f}  anchors/target {stats.aat:.2f}  "
        f"Avg IoU {stats.avg_iou:.4f}"
    )


def _format_fit(
    fmt: str,
    rows: list[list[list[int]]],
    exact: Tensor,
    strides: Sequence[int],
    stats: AnchorStats,
    info: dict[str, Any],
) -> str:
    """The result of ``fit`` in one of :data:`FORMATS` (ends with a newline)."""
    if fmt == "yaml":
        header = (
            f"# autoanchor {__version__}: {info['n']} anchors for {info['data']} at img {info['img']}, "
            f"thr {info['thr']}: fitness {stats.fitness:.4f}, BPR {stats.bpr:.4f}, "
            f"anchors/target {stats.aat:.2f}, Avg IoU {stats.avg_iou:.4f}"
        )
        return f"{header}\n{anchors_yaml_block(rows, strides=strides)}\n"
    if fmt == "darknet":
        return "anchors = " + ",  ".join(f"{w},{h}" for level in rows for w, h in level) + "\n"
    if fmt == "json":
        document = {
            **info,
            "levels": [
                {"level": index, "stride": stride, "anchors": level}
                for index, (level, stride) in enumerate(zip(rows, strides))
            ],
            "fitness": stats.fitness,
            "bpr": stats.bpr,
            "anchors_per_target": stats.aat,
            "avg_iou": stats.avg_iou,
            "anchors_exact": [[round(w, 3), round(h, 3)] for w, h in exact.tolist()],
        }
        return _json_text(document)
    lines = [
        f"{info['n']} anchors for {info['data']} ({info['n_boxes']} boxes, img {info['img']}, thr {info['thr']}, "
        f"metric {info['metric']}, gen {info['gen']}, seed {info['seed']}), w,h in pixels:"
    ]
    width = max(len(level_label(s)) for s in strides)
    for level, stride in zip(rows, strides):
        pairs = "  ".join(f"{w},{h}".ljust(9) for w, h in level).rstrip()
        lines.append(f"  {level_label(stride).ljust(width)}  {pairs}")
    lines.append(_stats_line(stats))
    return "\n".join(lines) + "\n"


def _json_text(document: dict[str, Any]) -> str:
    """Indented JSON with each innermost list of numbers (an anchor's w, h) kept on one line."""
    text = json.dumps(document, indent=2)
    number = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
    pattern = re.compile(rf"\[\s*({number}(?:,\s*{number})*)\s*\]")
    return pattern.sub(lambda m: "[" + ", ".join(part.strip() for part in m.group(1).split(",")) + "]", text) + "\n"


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        out.write_text(text, encoding="utf-8")
        logger.info("wrote %s", out)


# -- commands ---------------------------------------------------------------------------------------


def _fit(args: argparse.Namespace) -> int:
    from .search import search_anchors

    if args.write and args.model is None:
        raise CommandLineError("--write needs --model MODEL.yaml (the file to rewrite)")
    model = read_model_anchors(args.model) if args.model is not None else None
    n, n_levels = _levels_of(args, model)
    device = _device(args.device)
    _check_output_path("--out", args.out)
    _check_output_path("--plot", args.plot)
    if args.plot is not None:
        from .plot import require_matplotlib

        require_matplotlib()

    sizes, wh, name = _load(args.data, args.img, device, progress=not args.quiet)
    start = time.perf_counter()
    result = search_anchors(
        wh, n, thr=args.thr, gen=args.gen, metric=args.metric, seed=args.seed, progress=not args.quiet
    )
    logger.info("k-means start: %s", _stats_line(result.start_stats))
    logger.info("searched %d boxes in %.2f s", result.n_boxes, time.perf_counter() - start)

    exact = result.anchors.reshape(n_levels, n // n_levels, 2)
    rows = round_anchors(exact)
    rounded = torch.tensor(rows, dtype=torch.float32, device=wh.device)
    kept = searchable_boxes(wh)
    # The figures printed are those of the integer anchors that are printed and written.
    stats = anchor_stats(kept, rounded.reshape(-1, 2), thr=args.thr)
    strides = default_strides(n_levels)
    info = {
        "data": name,
        "n_images": sizes.n_images,
        "n_boxes": result.n_boxes,
        "img": args.img,
        "thr": args.thr,
        "metric": args.metric,
        "gen": args.gen,
        "seed": args.seed,
        "n": n,
    }
    _emit(_format_fit(args.format, rows, result.anchors.cpu(), strides, stats, info), args.out)

    if args.plot is not None:
        from .plot import plot_anchors

        plot_anchors(
            kept, rounded, args.thr, args.plot, strides=strides,
            title=f"Box sizes and anchors: {Path(name).name if args.data else name}, "
            f"{result.n_boxes} boxes at img {args.img}",
            subtitle=f"{n} anchors, thr {args.thr}: {_stats_line(stats)}",
        )
        logger.info("plotted %s", args.plot)

    if args.write:
        _write(args.model, model, rows, kept, stats, thr=args.thr, metric=args.metric)  # type: ignore[arg-type]
    return 0


def _write(
    path: Path, model: ModelAnchors, rows: list[list[list[int]]], kept: Tensor, stats: AnchorStats, *, thr: float,
    metric: str,
) -> None:
    """``fit --write``: put the fitted anchors into the model yaml, saying how they compare."""
    from .modelyaml import write_model_anchors

    if model.anchors is not None:
        before = anchor_stats(kept, model.anchors.to(kept.device).reshape(-1, 2), thr=thr)
        logger.info("anchors in %s before: %s", path, _stats_line(before))
        worse = objective_class(metric).figure(stats) < objective_class(metric).figure(before)
        if worse:
            logger.warning("the fitted anchors fit worse than those in %s; writing them anyway", path)
    if write_model_anchors(path, rows):
        logger.info(
            "%s said `anchors: %d`: replaced that line by an anchors: block of %d levels", path, model.n_per_level,
            len(rows),
        )
    else:
        logger.info("rewrote the %d anchor rows of %s", len(rows), path)


def _check(args: argparse.Namespace) -> int:
    if args.model is not None:
        model = read_model_anchors(args.model)
        if model.anchors is None:
            raise CommandLineError(
                f"{args.model} says `anchors: {model.n_per_level}` and holds no anchors to check; "
                f"fit some with 'autoanchor fit DATA --model {args.model} --write'"
            )
        anchors, label = model.anchors, str(args.model)
    else:
        anchors, label = _parse_anchor_text(args.anchors)
    device = _device(args.device)
    sizes, wh, name = _load(args.data, args.img, device, progress=not args.quiet)
    kept = searchable_boxes(wh)
    if kept.shape[0] == 0:
        raise CommandLineError(f"all {wh.shape[0]} boxes of {name} are under {MIN_BOX_PX:g} px; nothing to check")
    flat = anchors.reshape(-1, 2)
    stats = anchor_stats(kept, flat.to(device), thr=args.thr)
    threshold = load_config("search")["bpr_threshold"]
    if args.format == "json":
        document = {
            "anchors": flat.tolist(),
            "name": label,
            "data": name,
            "n_boxes": kept.shape[0],
            "img": args.img,
            "thr": args.thr,
            "bpr": stats.bpr,
            "anchors_per_target": stats.aat,
            "fitness": stats.fitness,
            "avg_iou": stats.avg_iou,
            "bpr_threshold": threshold,
            "fits": stats.bpr > threshold,
        }
        _emit(_json_text(document), None)
        return 0
    what = f"{flat.shape[0]} anchors" + (f" ({label})" if label else "")
    verdict = (
        f"BPR above {threshold:g}: these anchors fit the data"
        if stats.bpr > threshold
        else f"BPR not above {threshold:g}: consider 'autoanchor fit' for this data"
    )
    lines = [
        f"{what} on {name} ({kept.shape[0]} boxes, img {args.img}, thr {args.thr}): "
        + ",  ".join(f"{w:g},{h:g}" for w, h in flat.tolist()),
        f"BPR {stats.bpr:.4f}  anchors/target {stats.aat:.2f}  fitness {stats.fitness:.4f}  "
        f"Avg IoU {stats.avg_iou:.4f}",
        verdict,
    ]
    _emit("\n".join(lines) + "\n", None)
    return 0


# -- entry point ------------------------------------------------------------------------------------


def _one_line(error: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
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
        The exit code: 0 on success, 2 on a usage or data error (reported as one line
        on stderr), 1 on an internal error, 130 when interrupted.
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
    saved = package_logger.level, package_logger.propagate, torch.get_num_threads()
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    package_logger.propagate = False

    def show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        package_logger.warning("%s", _one_line(message))

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return _fit(args) if args.command == "fit" else _check(args)
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
        return EXIT_INTERNAL
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(saved[0])
        package_logger.propagate = saved[1]
        torch.set_num_threads(saved[2])
