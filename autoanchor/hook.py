"""The training hook: check a detector's anchors against the data and replace them in place.

This is the only layer that touches an ``nn.Module``. :func:`check_anchors` is a
drop-in for yolov5's ``utils.autoanchor.check_anchors``, called once before the
first epoch; :func:`check_anchor_order` keeps the anchor levels in the order of
the strides.

A YOLO detection head (yolov5's ``Detect``, yolov7's ``IDetect``, ...) holds:

* ``anchors``: a buffer ``[nl, na, 2]``, anchor (width, height) **in stride
  units** (pixels divided by the level's stride);
* ``stride``: ``[nl]``, the stride of each level in pixels;
* optionally caches derived from the anchors: yolov5 v6+ builds ``grid`` and
  ``anchor_grid`` lazily as lists of tensors (one per level); yolov5 v5.0 and
  yolov7 register ``anchor_grid`` as a buffer ``[nl, 1, na, 1, 1, 2]`` **in
  pixels**.

Replacement is atomic: everything is computed first, and the model is written
last, so an error at any point leaves it bit for bit as it was.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .boxes import BoxSizes
from .datasets import load_boxes
from .distributed import DistributedReducer, is_distributed
from .metrics import AnchorStats, anchor_stats, check_thr
from .parallel import Reducer

__all__ = ["AnchorReport", "check_anchors", "check_anchor_order", "find_detect"]

logger = logging.getLogger(__name__)

SCALE_JITTER = (0.9, 1.1)
"""Per-image scale factor range of the check, as yolov5's check_anchors draws it."""


@dataclass(frozen=True, eq=False)
class AnchorReport:
    """What :func:`check_anchors` found and did.

    ``*_before`` describe the anchors the model had, ``*_after`` the anchors it has
    now (the same values when nothing was replaced). All figures are measured on
    the dataset's letterboxed box sizes with the seeded per-image scale jitter
    U(0.9, 1.1).

    Attributes:
        replaced: whether the model's anchors were replaced.
        bpr_before: best possible recall of the original anchors, in [0, 1].
        bpr_after: best possible recall of the final anchors.
        aat_before: anchors above threshold (mean number of anchors per box that
            pass ``1/thr``) of the original anchors.
        aat_after: the same for the final anchors.
        fitness_before: yolov5 fitness ``mean(best * (best > 1/thr))`` of the
            original anchors.
        fitness_after: the same for the final anchors.
        anchors_before: ``Tensor[nl, na, 2]`` float32 on the CPU, the original
            anchors in pixels (anchors × stride).
        anchors_after: ``Tensor[nl, na, 2]`` float32 on the CPU, the final anchors
            in pixels, exactly as stored in the model (after rounding to its dtype).
        searched: whether new anchors were searched (the original ones did not pass
            the BPR threshold); ``searched and not replaced`` means the search
            found nothing better.
    """

    replaced: bool
    bpr_before: float
    bpr_after: float
    aat_before: float
    aat_after: float
    fitness_before: float
    fitness_after: float
    anchors_before: Tensor
    anchors_after: Tensor
    searched: bool = False

    def __str__(self) -> str:
        if self.replaced:
            return (
                f"autoanchor: anchors replaced, BPR {self.bpr_before:.4f} -> {self.bpr_after:.4f}, "
                f"anchors/target {self.aat_before:.2f} -> {self.aat_after:.2f}, "
                f"fitness {self.fitness_before:.4f} -> {self.fitness_after:.4f}"
            )
        verdict = "no better anchors found, kept the current ones" if self.searched else "current anchors fit, kept"
        return (
            f"autoanchor: BPR {self.bpr_before:.4f}, anchors/target {self.aat_before:.2f}, "
            f"fitness {self.fitness_before:.4f}: {verdict}"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AnchorReport):
            return NotImplemented
        return (
            self.replaced == other.replaced
            and self.searched == other.searched
            and self.bpr_before == other.bpr_before
            and self.bpr_after == other.bpr_after
            and self.aat_before == other.aat_before
            and self.aat_after == other.aat_after
            and self.fitness_before == other.fitness_before
            and self.fitness_after == other.fitness_after
            and torch.equal(self.anchors_before, other.anchors_before)
            and torch.equal(self.anchors_after, other.anchors_after)
        )

    __hash__ = None  # type: ignore[assignment]  # holds tensors


# ---------------------------------------------------------------------------------
# Finding and reading the detection head
# ---------------------------------------------------------------------------------


class _Head(NamedTuple):
    """A validated detection head and what was read from it."""

    module: Any
    anchors: Tensor  # the live buffer [nl,na,2], stride units
    stride: Tensor  # float64 [nl] on the CPU, pixels
    anchor_grid: Tensor | None  # a registered anchor_grid tensor (pixels), if any
    lazy_caches: tuple[str, ...]  # names of list/tuple caches to invalidate


def _describe(obj: object) -> str:
    if isinstance(obj, Tensor):
        return f"a tensor of shape {list(obj.shape)} and dtype {obj.dtype}"
    return f"a {type(obj).__name__}"


def find_detect(model: Any, detect: Any = None) -> Any:
    """Find the YOLO detection head of ``model``.

    Args:
        model: the detector; wrappers with a ``.module`` (``nn.DataParallel``,
            ``DistributedDataParallel``) are unwrapped, then ``model.model[-1]`` is
            taken, as in yolov5 and yolov7.
        detect: the head itself; when given, ``model`` is not searched.

    Returns:
        The head module (it has ``anchors`` and ``stride``).

    Raises:
        TypeError: if no head is found where it was looked for, or it lacks
            ``anchors`` or ``stride``; the message says what was found instead.
    """
    if detect is not None:
        head, where = detect, "detect"
    else:
        if model is None:
            raise TypeError("model is None; pass the detector (or its detection head as detect=)")
        unwrapped, where = model, "model"
        while isinstance(getattr(unwrapped, "module", None), nn.Module):
            unwrapped, where = unwrapped.module, where + ".module"
        layers = getattr(unwrapped, "model", None)
        if layers is None:
            raise TypeError(
                f"could not find the detection head: looked for {where}.model[-1] (yolov5/yolov7 layout), "
                f"but {type(unwrapped).__name__} has no attribute 'model'; pass the head as detect="
            )
        try:
            head = layers[-1]
        except (TypeError, IndexError, KeyError) as error:
            raise TypeError(
                f"could not find the detection head: {where}.model is {_describe(layers)}, "
                f"which cannot be indexed with [-1] ({error}); pass the head as detect="
            ) from error
        where += ".model[-1]"
    missing = [name for name in ("anchors", "stride") if getattr(head, name, None) is None]
    if missing:
        raise TypeError(
            f"the detection head must have 'anchors' [nl, na, 2] (stride units) and 'stride' [nl]; "
            f"{where} is {_describe(head)} without {' or '.join(repr(m) for m in missing)}"
        )
    return head


def _read_head(model: Any, detect: Any) -> _Head:
    """Find the head and validate its anchors, strides and caches (no changes made)."""
    head = find_detect(model, detect)
    name = type(head).__name__
    anchors = head.anchors
    if not isinstance(anchors, Tensor) or not anchors.is_floating_point():
        raise TypeError(f"{name}.anchors must be a floating-point tensor [nl, na, 2], got {_describe(anchors)}")
    if anchors.ndim != 3 or anchors.shape[-1] != 2 or anchors.shape[0] == 0 or anchors.shape[1] == 0:
        raise ValueError(
            f"{name}.anchors must have shape [nl, na, 2] (levels, anchors per level, width/height), "
            f"got {list(anchors.shape)}"
        )
    nl, na = anchors.shape[0], anchors.shape[1]
    try:
        stride = torch.as_tensor(head.stride.detach() if isinstance(head.stride, Tensor) else head.stride)
        stride = stride.to("cpu", torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name}.stride must be [nl] numbers (pixels), got {_describe(head.stride)}") from error
    if stride.shape != (nl,):
        raise ValueError(f"{name}.stride must have one entry per level ({nl}), got shape {list(stride.shape)}")
    if not (torch.isfinite(stride).all() and (stride > 0).all()):
        raise ValueError(f"{name}.stride must be finite and positive, got {stride.tolist()}")
    anchor_grid = getattr(head, "anchor_grid", None)
    lazy = []
    if isinstance(anchor_grid, Tensor):
        if anchor_grid.numel() != nl * na * 2 or anchor_grid.shape[-1] != 2:
            raise ValueError(
                f"{name}.anchor_grid is a tensor of shape {list(anchor_grid.shape)}; expected "
                f"{nl * na * 2} values [nl, 1, na, 1, 1, 2] = [{nl}, 1, {na}, 1, 1, 2] (anchors in pixels)"
            )
        if not anchor_grid.is_floating_point():
            raise TypeError(f"{name}.anchor_grid must be a floating-point tensor, got {anchor_grid.dtype}")
    else:
        anchor_grid = None
    for cache in ("grid", "anchor_grid"):
        value = getattr(head, cache, None)
        if isinstance(value, (list, tuple)):
            lazy.append(cache)
    return _Head(head, anchors, stride, anchor_grid, tuple(lazy))


def _to_pixels(anchors: Tensor, stride: Tensor) -> Tensor:
    """Stride-unit anchors ``[nl, na, 2]`` -> pixels, float64 on the CPU."""
    return anchors.detach().to("cpu", torch.float64) * stride[:, None, None]


def _levels_reversed(area_px: Tensor, stride: Tensor) -> bool:
    """Whether mean anchor area per level runs against the strides (yolov5's end-to-end test)."""
    d_area = float(area_px[-1] - area_px[0])
    d_stride = float(stride[-1] - stride[0])
    return d_area != 0 and d_stride != 0 and math.copysign(1, d_area) != math.copysign(1, d_stride)


class _Write(NamedTuple):
    """Everything to store into a head, prepared in advance (dtype and device final)."""

    anchors: Tensor  # stride units, anchors' dtype and device
    anchor_grid: Tensor | None  # pixels, anchor_grid's shape, dtype and device


def _prepare_write(head: _Head, anchors_su: Tensor) -> _Write:
    """Cast new stride-unit anchors (float64, CPU) for storage and derive the buffer cache."""
    live = head.anchors
    stored = anchors_su.to(live.dtype).to(live.device)
    grid = None
    if head.anchor_grid is not None:
        # The buffer cache holds what a head would compute: stored anchors × stride.
        pixels = stored.to("cpu", torch.float64) * head.stride[:, None, None]
        grid = pixels.reshape(head.anchor_grid.shape).to(head.anchor_grid.dtype).to(head.anchor_grid.device)
    return _Write(stored, grid)


def _apply_write(head: _Head, write: _Write) -> None:
    """Store prepared values in place (storage, dtype and device kept); invalidate lazy caches."""
    with torch.no_grad():
        head.anchors.copy_(write.anchors)
        if write.anchor_grid is not None and head.anchor_grid is not None:
            head.anchor_grid.copy_(write.anchor_grid)
    for name in head.lazy_caches:
        cache = getattr(head.module, name)
        # An empty tensor has no spatial shape, so yolov5's forward sees a mismatch
        # with its feature map and rebuilds this level's grid from the new anchors.
        empty = [
            torch.empty(0, dtype=t.dtype, device=t.device) if isinstance(t, Tensor) else torch.empty(0)
            for t in cache
        ]
        if isinstance(cache, list):
            cache[:] = empty
        else:
            setattr(head.module, name, type(cache)(empty))


def check_anchor_order(m: Any) -> bool:
    """Make the anchor levels follow the strides: small anchors on the fine levels.

    The mean anchor area per level is compared in pixels (anchors × stride). If it
    changes from the first level to the last in the opposite direction of the
    strides, the levels are flipped: the pixel anchors of the last level move to
    the first and so on, then are stored back in stride units, in place. Nothing
    changes when all levels have the same area or all strides are equal. A
    registered ``anchor_grid`` buffer is rewritten and lazy ``grid`` /
    ``anchor_grid`` lists are invalidated.

    Args:
        m: the detection head (``anchors`` ``[nl, na, 2]`` in stride units,
            ``stride`` ``[nl]``), or a model to find it in (see :func:`find_detect`).

    Returns:
        True if the levels were flipped.

    Raises:
        TypeError, ValueError: if no valid head is found.

    Example:
        >>> flipped = check_anchor_order(model.model[-1])  # doctest: +SKIP
    """
    if getattr(m, "anchors", None) is not None:
        head = _read_head(None, m)
    else:
        head = _read_head(m, None)
    pixels = _to_pixels(head.anchors, head.stride)  # [nl,na,2]
    area = pixels.prod(-1).mean(-1)  # [nl]
    if not _levels_reversed(area, head.stride):
        return False
    flipped = pixels.flip(0) / head.stride[:, None, None]
    write = _prepare_write(head, flipped)
    _apply_write(head, write)
    logger.info("reversed the anchor order to follow the strides %s", head.stride.tolist())
    return True


# ---------------------------------------------------------------------------------
# check_anchors
# ---------------------------------------------------------------------------------


def _check_options(thr: float, imgsz: float, gen: int, bpr_threshold: float, seed: int) -> float:
    thr = check_thr(thr)
    if isinstance(imgsz, bool) or not isinstance(imgsz, (int, float)) or not math.isfinite(imgsz) or imgsz <= 0:
        raise ValueError(f"imgsz must be a positive number of pixels, got {imgsz!r}")
    if isinstance(gen, bool) or not isinstance(gen, (int, np.integer)) or gen < 0:
        raise ValueError(f"gen must be a non-negative integer (generations), got {gen!r}")
    if (
        isinstance(bpr_threshold, bool)
        or not isinstance(bpr_threshold, (int, float))
        or not 0 <= bpr_threshold <= 1
    ):
        raise ValueError(f"bpr_threshold must be a number in [0, 1], got {bpr_threshold!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return thr


def _format_anchors(pixels: Tensor) -> str:
    """``[nl, na, 2]`` pixels as ``"10,13, 16,30, 33,23 | 30,61, ..."`` (levels split by ``|``)."""
    return " | ".join(
        ", ".join(f"{w:.0f},{h:.0f}" for w, h in level.tolist()) for level in pixels
    )


def _assign_levels(anchors_px: Tensor, stride: Tensor, na: int) -> Tensor:
    """``[nl·na, 2]`` pixel anchors -> ``[nl, na, 2]``: sorted by area, split evenly,
    the smallest ``na`` on the level with the smallest stride and so on."""
    order = torch.argsort(anchors_px.prod(-1), stable=True)
    chunks = anchors_px[order].view(-1, na, 2)  # [nl,na,2], small to large
    levels = torch.empty_like(chunks)
    levels[torch.argsort(stride, stable=True)] = chunks
    return levels


def _fingerprint(*parts: bytes) -> int:
    value = 0
    for part in parts:
        value = zlib.crc32(part, value)
    return value


def _handshake(
    reducer: Reducer, seed: int, sizes: BoxSizes, head: _Head, settings: tuple
) -> int:
    """Check that every rank has the same data, anchors and settings; return rank 0's seed."""
    data = _fingerprint(sizes.shapes.tobytes(), sizes.wh.tobytes(), sizes.image_index.tobytes())
    model = _fingerprint(_to_pixels(head.anchors, head.stride).numpy().tobytes(), head.stride.numpy().tobytes())
    row = torch.tensor(
        [[seed, sizes.n_images, sizes.n_boxes, data, head.anchors.shape[0], head.anchors.shape[1], model,
          _fingerprint(repr(settings).encode())]],
        dtype=torch.int64,
    )
    table = reducer.gather(row)  # [W,8]
    for rank in range(1, table.shape[0]):
        if not torch.equal(table[rank, 1:4], table[0, 1:4]):
            raise ValueError(
                f"check_anchors needs the same dataset on every rank: rank {rank} has "
                f"{int(table[rank, 1])} images and {int(table[rank, 2])} boxes, rank 0 has "
                f"{int(table[0, 1])} images and {int(table[0, 2])} boxes"
                + (" (same counts, different sizes)" if torch.equal(table[rank, 1:3], table[0, 1:3]) else "")
            )
        if not torch.equal(table[rank, 4:7], table[0, 4:7]):
            raise ValueError(
                f"check_anchors needs the same anchors and strides on every rank: rank {rank} has "
                f"[{int(table[rank, 4])}, {int(table[rank, 5])}, 2] anchors, rank 0 has "
                f"[{int(table[0, 4])}, {int(table[0, 5])}, 2]"
                + (", with different values" if torch.equal(table[rank, 4:6], table[0, 4:6]) else "")
            )
        if table[rank, 7] != table[0, 7]:
            raise ValueError(
                f"check_anchors needs the same thr, imgsz, gen and bpr_threshold on every rank; "
                f"rank {rank}'s differ from rank 0's"
            )
    return int(table[0, 0])


class _Plan(NamedTuple):
    report: AnchorReport
    head: _Head
    write: _Write | None


def _stats(wh: Tensor, anchors_px: Tensor, thr: float, reducer: Reducer | None) -> AnchorStats:
    return anchor_stats(wh, anchors_px.reshape(-1, 2).to(wh.device, torch.float32), thr=thr, reducer=reducer)


def _plan(
    dataset: Any,
    model: Any,
    thr: float,
    imgsz: float,
    gen: int,
    bpr_threshold: float,
    seed: int,
    device: torch.device | str | None,
    verbose: bool,
    detect: Any,
    reducer: Reducer | None,
) -> _Plan:
    """Decide on and prepare the anchors; touches nothing in the model."""
    thr = _check_options(thr, imgsz, gen, bpr_threshold, seed)
    gen, seed = int(gen), int(seed)
    # validates: ValueError naming the image
    sizes = load_boxes(dataset, verbose=verbose and (reducer is None or reducer.rank == 0))
    head = _read_head(model, detect)
    nl, na = head.anchors.shape[0], head.anchors.shape[1]
    device = torch.device(device) if device is not None else head.anchors.device
    rank, world_size = (reducer.rank, reducer.world_size) if reducer is not None else (0, 1)
    info = logging.INFO if verbose and rank == 0 else logging.DEBUG

    if reducer is not None:
        logger.log(
            info,
            "working across %d ranks, each on its share of the boxes: every rank must call check_anchors "
            "(pass distributed=False for a call made on one rank only)",
            world_size,
        )
        seed = _handshake(reducer, seed, sizes, head, (thr, float(imgsz), gen, float(bpr_threshold)))
    wh_px = sizes.pixel_wh(imgsz)  # [N,2] what the search fits
    jittered = sizes.pixel_wh(imgsz, scale_jitter=SCALE_JITTER, generator=torch.Generator().manual_seed(seed))
    # Each rank measures and searches its share of the boxes; sums are all-reduced.
    wh_share = wh_px[rank::world_size].to(device)
    check_share = jittered[rank::world_size].to(device)

    before_px = _to_pixels(head.anchors, head.stride)  # [nl,na,2] float64
    before = _stats(check_share, before_px, thr, reducer)
    if reducer is not None:
        # Every rank must take the same branch below (the search runs collectives):
        # all follow rank 0's figures.
        before = AnchorStats(*_from_rank0(reducer, list(before)).tolist())
    logger.log(
        info,
        "%.2f anchors/target, %.4f best possible recall (BPR) of the current anchors on %d boxes "
        "(imgsz %s, thr %s)",
        before.aat, before.bpr, sizes.n_boxes, imgsz, thr,
    )
    searched = before.bpr <= bpr_threshold
    after, after_su = before, None
    if not searched:
        logger.log(info, "current anchors are a good fit to the data (BPR > %s), kept", bpr_threshold)
    else:
        logger.log(
            info, "anchors are a poor fit to the data (BPR <= %s): searching %d new anchors", bpr_threshold, nl * na
        )
        from .search import search_anchors  # looked up at call time (tests may replace it)

        result = search_anchors(
            wh_share, nl * na, thr=thr, gen=gen, seed=seed, reducer=reducer, progress=verbose and rank == 0
        )
        found = result.anchors.detach().to("cpu", torch.float64).reshape(-1, 2)
        if found.shape[0] != nl * na or not torch.isfinite(found).all() or not (found > 0).all():
            raise ValueError(
                f"the search returned anchors of shape {list(found.shape)} with values "
                f"{found.flatten()[:4].tolist()}...; expected {nl * na} finite, positive (width, height) pairs"
            )
        levels_px = _assign_levels(found, head.stride, na)
        # Measure the anchors as they would be stored, rounded to the buffer's dtype.
        candidate_su = (levels_px / head.stride[:, None, None]).to(head.anchors.dtype).double()
        candidate_px = candidate_su * head.stride[:, None, None]
        candidate = _stats(check_share, candidate_px, thr, reducer)
        if candidate.bpr > before.bpr:
            after, after_su = candidate, candidate_su
            logger.log(
                info,
                "new anchors: %.2f anchors/target, %.4f BPR, fitness %.4f; replaced (pixels, per level): %s "
                "(optional: write them into the model yaml to reuse them)",
                candidate.aat, candidate.bpr, candidate.fitness, _format_anchors(candidate_px),
            )
        else:
            logger.log(
                info,
                "new anchors are not better (BPR %.4f <= %.4f): kept the current anchors",
                candidate.bpr, before.bpr,
            )

    figures = [before.bpr, after.bpr, before.aat, after.aat, before.fitness, after.fitness]
    if reducer is not None:
        # Rank 0 decides for everyone: the same report and bit-identical anchors on
        # every rank. float64 holds any float16/bfloat16/float32 anchor exactly.
        # The payload has the same length on every rank, whatever each decided.
        anchors_su = torch.zeros(nl * na * 2, dtype=torch.float64) if after_su is None else after_su.flatten()
        payload = _from_rank0(reducer, [float(after_su is not None)] + figures + anchors_su.tolist())
        figures = payload[1:7].tolist()
        after_su = payload[7:].reshape(nl, na, 2) if payload[0] else None
    if after_su is not None:
        write = _prepare_write(head, after_su)
        after_px = write.anchors.to("cpu", torch.float64) * head.stride[:, None, None]
    else:
        write, after_px = None, before_px
    report = AnchorReport(
        replaced=write is not None,
        bpr_before=figures[0],
        bpr_after=figures[1],
        aat_before=figures[2],
        aat_after=figures[3],
        fitness_before=figures[4],
        fitness_after=figures[5],
        anchors_before=before_px.float(),
        anchors_after=after_px.float(),
        searched=searched,
    )
    if searched and report.bpr_after <= bpr_threshold < 1 and rank == 0:
        warnings.warn(
            f"the anchors still fit the data poorly (BPR {report.bpr_after:.4f} <= {bpr_threshold}); "
            "check the labels and imgsz, or allow more anchors or a larger thr",
            stacklevel=3,
        )
    return _Plan(report, head, write)


def _from_rank0(reducer: Reducer, values: list[float]) -> Tensor:
    """Rank 0's ``values`` on every rank, through the protocol's ``gather``."""
    row = torch.tensor(values, dtype=torch.float64)[None]
    return reducer.gather(row if reducer.rank == 0 else row[:0])[0]


def _group_reducer(distributed: bool | None) -> DistributedReducer | None:
    if distributed is None:
        distributed = is_distributed()
    elif distributed and not is_distributed():
        raise ValueError("distributed=True, but no torch.distributed process group is initialised")
    if not distributed:
        return None
    reducer = DistributedReducer()
    return reducer if reducer.world_size > 1 else None


def check_anchors(
    dataset: Any,
    model: Any,
    thr: float = 4.0,
    imgsz: float = 640,
    *,
    gen: int = 1000,
    bpr_threshold: float = 0.98,
    seed: int = 0,
    device: torch.device | str | None = None,
    verbose: bool = True,
    detect: Any = None,
    distributed: bool | None = None,
) -> AnchorReport:
    """Check the model's anchors against the data; replace them in place if a search finds better.

    A drop-in for yolov5's ``check_anchors(dataset, model=model, thr=hyp["anchor_t"],
    imgsz=imgsz)``, called once before the first epoch:

    1. The box sizes are letterboxed to ``imgsz`` with a seeded per-image scale
       jitter U(0.9, 1.1), as yolov5 does, and the current anchors (anchors ×
       stride, in pixels) are measured on them: best possible recall (BPR),
       anchors per target, fitness.
    2. If BPR > ``bpr_threshold`` the anchors are kept, bit for bit.
    3. Otherwise ``nl · na`` anchors are searched
       (:func:`autoanchor.search.search_anchors` on the unjittered sizes). They
       replace the old ones only if their BPR on the jittered sizes is higher:
       sorted by area, split evenly over the levels with the smallest on the
       finest stride, stored in stride units with ``copy_`` so the ``anchors``
       buffer keeps its storage (``data_ptr()``), dtype (float16 included) and
       device. A registered ``anchor_grid`` buffer (pixels, yolov5 v5.0 and yolov7)
       is rewritten and lazily built ``grid``/``anchor_grid`` lists (yolov5 v6+)
       are emptied so the next forward rebuilds them.

    Nothing in the model changes until everything has been computed: an error
    anywhere leaves it bit-identical.

    Distributed: when a ``torch.distributed`` process group is initialised (and
    ``distributed`` is not False), every rank must call this with the same data and
    settings. Each rank measures and searches its share of the boxes and the sums
    are all-reduced; rank 0's seed is used by all, and rank 0's result is broadcast,
    so every rank ends with bit-identical anchors and the same report. An error on
    any rank is raised on every rank (the others raise
    :class:`~autoanchor.distributed.PeerFailure`), so no rank is left waiting.

    Args:
        dataset: anything :func:`autoanchor.datasets.load_boxes` reads: ``None``
            (the built-in coco128 statistics), a yolov5 dataset (``.shapes``,
            ``.labels``), a :class:`~autoanchor.boxes.BoxSizes`, an ``.npz`` path.
        model: the detector; the head is ``model.model[-1]`` after unwrapping
            ``.module`` (DataParallel/DDP). Ignored when ``detect`` is given.
        thr: largest allowed width or height ratio between box and anchor
            (yolov5's ``hyp["anchor_t"]``).
        imgsz: training image size in pixels (long side).
        gen: generations of the search.
        bpr_threshold: the anchors are kept when their BPR is above this.
        seed: seeds the scale jitter and the search (rank 0's is used by all).
        device: where to measure and search; defaults to the anchors' device.
        verbose: log progress and results at INFO (rank 0 only) and show a
            progress bar; False logs nothing at INFO.
        detect: the detection head, if it is not ``model.model[-1]``.
        distributed: ``None`` (default) to work across the process group when one
            is initialised; ``False`` to work in this process alone (for a call
            made on one rank only, like yolov5's ``train.py`` does: DDP then
            copies rank 0's buffers to the others when it wraps the model);
            ``True`` to require a process group.

    Returns:
        An :class:`AnchorReport`; ``str(report)`` is one line for a training log.

    Raises:
        ValueError: invalid data (no boxes, non-finite or negative sizes, label
            arrays not ``[m, 5]``; the message names the image), options, anchor
            shapes or strides, or (distributed) ranks that disagree on them.
        TypeError: if the detection head cannot be found or lacks ``anchors`` /
            ``stride``; the message says what was found.
        PeerFailure: (distributed) on every rank but the one(s) that failed.

    Warns:
        UserWarning: if, after a search, the anchors still do not pass
            ``bpr_threshold`` (and it is below 1).

    Example:
        >>> report = check_anchors(dataset, model, thr=hyp["anchor_t"], imgsz=640)  # doctest: +SKIP
        >>> print(report)  # doctest: +SKIP
        autoanchor: BPR 0.9935, anchors/target 4.25, fitness 0.6836: current anchors fit, kept
    """
    reducer = _group_reducer(distributed)
    guard = reducer.guard() if reducer is not None else contextlib.nullcontext()
    with guard:
        plan = _plan(dataset, model, thr, imgsz, gen, bpr_threshold, seed, device, verbose, detect, reducer)
    # Every rank has agreed that everything succeeded: now, and only now, write.
    if plan.write is not None:
        _apply_write(plan.head, plan.write)
    rank = reducer.rank if reducer is not None else 0
    logger.log(logging.INFO if verbose and rank == 0 else logging.DEBUG, "%s", plan.report)
    return plan.report
