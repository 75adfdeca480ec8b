"""Option types, the shared options and the exit codes of the command line (no torch here)."""

from __future__ import annotations

import argparse
from typing import Any, Callable, NoReturn

from ..core.defaults import DEFAULT_BPR_THRESHOLD, DEFAULT_GEN, DEFAULT_IMGSZ, DEFAULT_LEVELS, DEFAULT_METRIC
from ..core.defaults import DEFAULT_N, DEFAULT_SEED, DEFAULT_THR, MAX_SEED
from ..core.validate import check_float, check_int, check_scale, check_seed, check_stride_units, check_thr

__all__ = [
    "CommandLineError",
    "EXIT_BELOW_THRESHOLD",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "MAX_ASPECT_RATIO",
    "MAX_IMAGE_PX",
    "MAX_SEED",
    "Parser",
    "add_common_options",
    "add_scale_option",
    "add_stride_bounds_options",
    "check_stride_bounds",
    "count",
    "option_type",
    "image_px",
    "probability",
    "ratio",
    "scale_fraction",
    "search_defaults",
    "seed",
]

EXIT_OK = 0
# `check`: the anchors' BPR is not above --bpr-threshold (the hook would search new anchors).
EXIT_BELOW_THRESHOLD = 1
# Any error: bad options or data, a file that cannot be read or written, or a bug.
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def keep_threshold(args: argparse.Namespace, default: float) -> float:
    """``--bpr-threshold`` as given, else the family's ``default`` (as ``check_anchors`` takes it)."""
    value = getattr(args, "bpr_threshold", None)
    return default if value is None else value


class CommandLineError(ValueError):
    """A bad combination of command-line options (reported like any other error)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def option_type(
    parse: Callable[[str], Any], check: Callable[..., Any], flag: str, **bounds: Any
) -> Callable[[str], Any]:
    """An argparse ``type``: ``parse`` the text, then the library's own check (:mod:`autoanchor.core.validate`).

    The check's error, naming ``flag`` and the value, becomes argparse's error for the option.
    """
    kind = "an integer" if parse is int else "a number"

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be {kind}, got {text!r}") from None
        try:
            return check(flag, value, **bounds)
        except ValueError as error:  # OptionTypeError is a ValueError too
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = flag.lstrip("-").replace("-", "_")  # argparse names the type in some messages
    return convert


def count(flag: str, low: int = 1) -> Callable[[str], int]:
    """An argparse ``type`` for an integer option of at least ``low`` (``--n``, ``--gen``, ...)."""
    return option_type(int, check_int, flag, low=low)


# The largest image side, resize, anchor size or stride the command line takes, in pixels: far past any
# detector's input, and a bound on the work (grid points per axis grow with size over stride).
MAX_IMAGE_PX = 20000
# Aspect ratios (height / width) of grid anchors: from 1:1000 to 1000:1.
MAX_ASPECT_RATIO = 1000.0


def image_px(flag: str) -> Callable[[str], int]:
    """An argparse ``type`` for an image size in pixels, from 1 to :data:`MAX_IMAGE_PX` (``--img``)."""
    return option_type(int, check_int, flag, low=1, high=MAX_IMAGE_PX)


seed = option_type(int, check_seed, "--seed")
ratio = option_type(float, lambda flag, value: check_thr(value, flag), "--thr")
probability = option_type(float, check_float, "--bpr-threshold", low=0, high=1)
scale_fraction = option_type(float, lambda flag, value: check_scale(value, flag), "--scale")


class _StoreImg(argparse.Action):
    """``--img``: store the size and note that it was given (a darknet cfg has its own size otherwise)."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        namespace.img = values
        namespace.img_given = True


def add_scale_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--scale S``: work on the box sizes under yolov5's training-time scale augmentation."""
    parser.add_argument(
        "--scale", type=scale_fraction, default=None, metavar="S",
        help=f"yolov5's training scale hyp['scale'] (0.5 in its default hyper-parameters): {what} the boxes "
        "under 8 seeded draws per image of a factor from U(1 - S, 1 + S), pooled, as the detector trains on "
        "them; default: the plain sizes",
    )


def _stride_units(flag: str) -> Callable[[str], float]:
    """An argparse ``type`` for a size in strides of the level: a positive finite number."""
    return option_type(float, check_float, flag, low=0, low_open=True, what="(strides of its level)")


def add_stride_bounds_options(parser: argparse.ArgumentParser, strides: str) -> None:
    """``--min-stride-units M`` and ``--max-stride-units M``: bound the searched anchors by their level's stride."""
    parser.add_argument(
        "--min-stride-units", type=_stride_units("--min-stride-units"), default=None, metavar="M",
        help=f"keep every searched anchor at least M strides of its level (sqrt(w*h) >= M * stride; strides: "
        f"{strides}), enforced inside the search; default: unbounded, as yolov5",
    )
    parser.add_argument(
        "--max-stride-units", type=_stride_units("--max-stride-units"), default=None, metavar="M",
        help="keep every searched anchor at most M strides of its level; default: unbounded",
    )


def check_stride_bounds(args: argparse.Namespace) -> None:
    """Refuse ``--min-stride-units`` above ``--max-stride-units`` before any work."""
    try:
        check_stride_units(
            args.min_stride_units, args.max_stride_units, names=("--min-stride-units", "--max-stride-units")
        )
    except ValueError as error:
        raise CommandLineError(str(error)) from None


def search_defaults() -> dict[str, Any]:
    """The command line's defaults, from :mod:`autoanchor.core.defaults` (the dataclasses' defaults),
    under the keys of the shipped ``search`` config (a test keeps that file equal to them)."""
    return {
        "anchor_t": DEFAULT_THR, "img_size": DEFAULT_IMGSZ, "n": DEFAULT_N, "levels": DEFAULT_LEVELS,
        "gen": DEFAULT_GEN, "bpr_threshold": DEFAULT_BPR_THRESHOLD, "metric": DEFAULT_METRIC, "seed": DEFAULT_SEED,
    }


def add_common_options(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """The options every subcommand takes: DATA, ``-q``, ``--no-cache``, ``--img``, ``--thr``, ``--device``.

    Args:
        parser: the subcommand's parser.
        defaults: :func:`search_defaults` (``img_size``, ``anchor_t``).
    """
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
        help="errors only: no progress bars, log messages or warnings on stderr",
    )
    parser.add_argument(
        "data", nargs="?", default=None, metavar="DATA",
        help="the dataset: a yolov5 data yaml, a COCO json, a VOC folder or an .npz "
        "(default: the built-in coco128 statistics)",
    )
    parser.add_argument(
        "--no-cache", dest="cache", action="store_false",
        help="read every label file and neither read nor write the dataset's box cache",
    )
    parser.add_argument(
        "--img", type=image_px("--img"), default=defaults["img_size"], metavar="PX", action=_StoreImg,
        help="training image size in pixels (long side); default %(default)s, or with a darknet "
        "--model x.cfg its [net] width x height",
    )
    parser.set_defaults(img_given=False)
    parser.add_argument(
        "--thr", type=ratio, default=defaults["anchor_t"],
        help="ratio threshold (yolov5 anchor_t): a box matches an anchor when its width and height are "
        "both within this factor of the anchor's; default %(default)s",
    )
    parser.add_argument(
        "--device", default="cpu", help="where to compute: cpu, cuda or cuda:N; default %(default)s"
    )
