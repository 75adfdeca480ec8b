"""Option types, the shared options and the exit codes of the command line (no torch here)."""

from __future__ import annotations

import argparse
import math
from typing import Callable, NoReturn

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
    "image_px",
    "non_negative_int",
    "positive_int",
    "probability",
    "ratio",
    "scale_fraction",
    "seed",
    "stride_units",
]

EXIT_OK = 0
# `check`: the anchors' BPR is not above --bpr-threshold (the hook would search new anchors).
EXIT_BELOW_THRESHOLD = 1
# Any error: bad options or data, a file that cannot be read or written, or a bug.
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
# torch.Generator.manual_seed takes any integer that fits in 64 unsigned bits.
MAX_SEED = 2**64 - 1


class CommandLineError(ValueError):
    """A bad combination of command-line options (reported like any other error)."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_in_range(minimum: int, maximum: int | None, wording: str) -> Callable[[str], int]:
    """An argparse ``type`` for integers in ``[minimum, maximum]`` (no upper bound if None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wording}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {wording}, got {text!r}")
        return value

    return parse


# The largest image side, resize, anchor size or stride the command line takes, in pixels: far past any
# detector's input, and a bound on the work (grid points per axis grow with size over stride).
MAX_IMAGE_PX = 20000
# Aspect ratios (height / width) of grid anchors: from 1:1000 to 1000:1.
MAX_ASPECT_RATIO = 1000.0

positive_int = _int_in_range(1, None, "a positive integer")
image_px = _int_in_range(1, MAX_IMAGE_PX, f"an image size in pixels from 1 to {MAX_IMAGE_PX}")
non_negative_int = _int_in_range(0, None, "an integer >= 0")
seed = _int_in_range(0, MAX_SEED, f"an integer from 0 to 2**64 - 1 = {MAX_SEED}")


def ratio(text: str) -> float:
    """An argparse ``type`` for a finite number greater than 1 (``--thr``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number greater than 1, got {text!r}") from None
    if not math.isfinite(value) or value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number greater than 1, got {text!r}")
    return value


def probability(text: str) -> float:
    """An argparse ``type`` for a number in [0, 1] (``--bpr-threshold``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


class _StoreImg(argparse.Action):
    """``--img``: store the size and note that it was given (a darknet cfg has its own size otherwise)."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        namespace.img = values
        namespace.img_given = True
def scale_fraction(text: str) -> float:
    """An argparse ``type`` for yolov5's ``hyp['scale']``: a number in [0, 1) (``--scale``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a number from 0 up to, not including, 1 (yolov5's hyp['scale'], 0.5 in its default "
            f"hyper-parameters: factors from U(1 - scale, 1 + scale)), got {text!r}"
        )
    return value


def add_scale_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--scale S``: work on the box sizes under yolov5's training-time scale augmentation."""
    parser.add_argument(
        "--scale", type=scale_fraction, default=None, metavar="S",
        help=f"yolov5's training scale hyp['scale'] (0.5 in its default hyper-parameters): {what} the boxes "
        "under 8 seeded draws per image of a factor from U(1 - S, 1 + S), pooled, as the detector trains on "
        "them; default: the plain sizes",
    )


def stride_units(text: str) -> float:
    """An argparse ``type`` for a size in strides: a finite number greater than 0 (``--min-stride-units``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of strides (1 = one grid cell), got {text!r}")
    return value


def add_stride_bounds_options(parser: argparse.ArgumentParser, strides: str) -> None:
    """``--min-stride-units M`` and ``--max-stride-units M``: bound the searched anchors by their level's stride."""
    parser.add_argument(
        "--min-stride-units", type=stride_units, default=None, metavar="M",
        help=f"keep every searched anchor at least M strides of its level (sqrt(w*h) >= M * stride; strides: "
        f"{strides}), enforced inside the search; default: unbounded, as yolov5",
    )
    parser.add_argument(
        "--max-stride-units", type=stride_units, default=None, metavar="M",
        help="keep every searched anchor at most M strides of its level; default: unbounded",
    )


def check_stride_bounds(args: argparse.Namespace) -> None:
    """Refuse ``--min-stride-units`` above ``--max-stride-units`` before any work."""
    low, high = args.min_stride_units, args.max_stride_units
    if low is not None and high is not None and low > high:
        raise CommandLineError(f"--min-stride-units {low:g} exceeds --max-stride-units {high:g}")


def add_common_options(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """The options every subcommand takes: DATA, ``-q``, ``--no-cache``, ``--img``, ``--thr``, ``--device``.

    Args:
        parser: the subcommand's parser.
        defaults: the shipped ``search`` config (``img_size``, ``anchor_t``).
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
        "--img", type=image_px, default=defaults["img_size"], metavar="PX", action=_StoreImg,
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
