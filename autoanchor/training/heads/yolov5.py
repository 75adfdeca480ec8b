"""YOLO heads with anchors in stride units, and the yolov5 v6+ ``Detect`` family.

A YOLO detection head (yolov5's ``Detect``, yolov7's ``IDetect``, ...) sits at
``model.model[-1]`` and holds:

* ``anchors``: a buffer ``[nl, na, 2]``, anchor (width, height) **in stride units**
  (pixels divided by the level's stride);
* ``stride``: ``[nl]``, the stride of each level in pixels (a tensor or a list);
* caches derived from the anchors, which differ between families: yolov5 v6+
  builds ``grid`` and ``anchor_grid`` lazily as lists of tensors (this module);
  yolov5 v5.0 and yolov7 register ``anchor_grid`` as a buffer in pixels
  (:mod:`autoanchor.training.heads.yolov7`).

:class:`YoloHead` holds what the two have in common; a family only says which
heads it recognises and how it refreshes its caches.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ...core._format import format_anchors
from ...core.boxes import BoxSizes
from ...core.blocks import SizeBlocks, stats_over
from ...core.jitter import DEFAULT_DRAWS, jitter_blocks
from ...core.levels import LevelStats, anchors_below_stride, level_stats, split_levels
from ...core.parallel import Reducer
from ...core.search import search_anchors
from ..report import Outcome, YoloReport
from .base import HeadFamily, HeadNotFound, HeadState, Measure, SearchFn, Write, register_family

__all__ = ["SCALE_JITTER", "YoloHead", "Yolov5Detect"]

SCALE_JITTER = (0.9, 1.1)
"""Per-image scale factor range of the check, as yolov5's check_anchors draws it."""


def describe_object(obj: object) -> str:
    """``"a tensor of shape [3] and dtype torch.float32"`` or ``"a Conv2d"``, for errors."""
    if isinstance(obj, Tensor):
        return f"a tensor of shape {list(obj.shape)} and dtype {obj.dtype}"
    return f"a {type(obj).__name__}"


def meta_error(what: str) -> ValueError:
    return ValueError(
        f"{what} is on the meta device, which holds no values (only shapes and dtypes): "
        "there are no anchors to check; load the weights into a real device first "
        "(e.g. model.to_empty(device='cpu') and load_state_dict)"
    )


class _YoloExtra(NamedTuple):
    """What a YOLO family keeps from :meth:`YoloHead.read` for the write."""

    anchors: Tensor  # the live buffer [nl,na,2], stride units
    stride: Tensor  # float64 [nl] on the CPU, pixels


class _YoloData(NamedTuple):
    """This rank's share of the letterboxed box sizes in pixels, on the working device.

    Without a training scale, ``fit`` holds the plain sizes and ``check`` the sizes
    under one draw of yolov5's check jitter U(0.9, 1.1). With ``scale``, both are
    the same ``DEFAULT_DRAWS`` pooled draws of U(1 - scale, 1 + scale) per image, made
    a block at a time (:class:`~autoanchor.core.blocks.SizeBlocks`: never all held at once).
    """

    fit: Tensor | SizeBlocks  # [n,2] what the search fits
    check: Tensor | SizeBlocks  # [n,2] what is measured
    scale: float | None = None  # the training scale the boxes are under, if any


class YoloHead(HeadFamily):
    """Shared behaviour of YOLO heads: ``model.model[-1]``, stride-unit ``anchors``, ``stride``.

    ``state.params`` is ``Tensor[nl, na, 2]`` float64: the stored anchors × stride, in
    pixels. Figures: ``bpr`` (best possible recall, the score), ``aat`` (anchors per
    target above ``1/thr``), ``fitness`` (yolov5's).
    """

    # -- finding -------------------------------------------------------------------

    def locate(self, model: Any) -> tuple[Any, str]:
        unwrapped, where = model, "model"
        while isinstance(getattr(unwrapped, "module", None), nn.Module):  # DataParallel, DDP
            unwrapped, where = unwrapped.module, where + ".module"
        layers = getattr(unwrapped, "model", None)
        if layers is None:
            raise HeadNotFound(
                f"looked for {where}.model[-1] (yolov5/yolov7 layout), "
                f"but {type(unwrapped).__name__} has no attribute 'model'"
            )
        try:
            head = layers[-1]
        except (TypeError, IndexError, KeyError) as error:
            raise HeadNotFound(f"{where}.model is {describe_object(layers)}, which cannot be indexed with [-1] ({error})")
        return head, where + ".model[-1]"

    def recognise(self, head: Any, where: str) -> None:
        missing = [name for name in ("anchors", "stride") if getattr(head, name, None) is None]
        if missing:
            raise HeadNotFound(
                f"a YOLO head has 'anchors' [nl, na, 2] (stride units) and 'stride' [nl]; "
                f"{where} is {describe_object(head)} without {' or '.join(repr(m) for m in missing)}"
            )

    # -- reading -------------------------------------------------------------------

    def read(self, head: Any, where: str) -> HeadState:
        anchors = head.anchors
        if not isinstance(anchors, Tensor) or not anchors.is_floating_point():
            raise TypeError(f"{where}.anchors must be a floating-point tensor [nl, na, 2], got {describe_object(anchors)}")
        if anchors.ndim != 3 or anchors.shape[-1] != 2 or anchors.shape[0] == 0 or anchors.shape[1] == 0:
            raise ValueError(
                f"{where}.anchors must have shape [nl, na, 2] (levels, anchors per level, width/height), "
                f"got {list(anchors.shape)}"
            )
        if anchors.is_meta:
            raise meta_error(f"{where}.anchors")
        stride = self._read_stride(head.stride, where, anchors.shape[0])
        values = anchors.detach().to("cpu", torch.float64)  # [nl,na,2] stride units
        bad = ~(torch.isfinite(values) & (values > 0)).all(-1)  # [nl,na]
        if bad.any():
            level, index = (int(i) for i in bad.nonzero()[0])
            width, height = values[level, index].tolist()
            more = int(bad.sum()) - 1
            raise ValueError(
                f"{where}.anchors must be finite and positive, but level {level}, anchor {index} is "
                f"({width}, {height}) in stride units" + (f" ({more} more such anchors)" if more else "")
                + ": anchors like these match no box and are a bug in the model (check how it was "
                "built or loaded); nothing was changed"
            )
        params = values * stride[:, None, None]  # [nl,na,2] pixels
        return HeadState(head, where, params, self._read_caches(head, where, anchors, stride))

    @staticmethod
    def _read_stride(raw: Any, where: str, nl: int) -> Tensor:
        if isinstance(raw, Tensor) and raw.is_meta:
            raise meta_error(f"{where}.stride")
        try:
            stride = torch.as_tensor(raw.detach() if isinstance(raw, Tensor) else raw)
            stride = stride.to("cpu", torch.float64).flatten()
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"{where}.stride must be [nl] numbers (pixels), got {describe_object(raw)}") from error
        if stride.shape != (nl,):
            raise ValueError(f"{where}.stride must have one entry per level ({nl}), got shape {list(stride.shape)}")
        bad = ~(torch.isfinite(stride) & (stride > 0))
        if bad.any():
            level = int(bad.nonzero()[0])
            raise ValueError(
                f"{where}.stride must be finite and positive, but level {level} has stride {stride[level].item()} "
                f"(strides {stride.tolist()})"
            )
        return stride

    def _read_caches(self, head: Any, where: str, anchors: Tensor, stride: Tensor) -> Any:
        """Validate the family's caches; return what :meth:`write` needs (a ``_YoloExtra``)."""
        return _YoloExtra(anchors, stride)

    def identity(self, state: HeadState) -> bytes:
        return state.params.numpy().tobytes() + state.extra.stride.numpy().tobytes()

    # -- measuring and fitting -----------------------------------------------------

    options = frozenset({"thr", "imgsz", "scale", "min_stride_units", "max_stride_units"})

    def data(
        self,
        state: HeadState,
        sizes: BoxSizes,
        *,
        imgsz: float,
        seed: int,
        device: Any,
        rank: int,
        world_size: int,
        scale: float | None = None,
    ) -> _YoloData:
        device = state.extra.anchors.device if device is None else device
        if scale is not None:
            # The distribution training sees: fitted and measured on the same pooled draws
            # (the same on every rank: the generator is seeded alike, then the rows are shared out).
            # The draws are made on the CPU (the same factors on every device), a block at a time.
            index = torch.as_tensor(sizes.image_index, dtype=torch.long)
            pooled = jitter_blocks(
                sizes.pixel_wh(imgsz), scale=scale, draws=DEFAULT_DRAWS, image_index=index, seed=seed, device=device
            )  # N*draws rows
            share = pooled.sharded(rank, world_size)
            return _YoloData(share, share, scale)
        wh_px = sizes.pixel_wh(imgsz)  # [N,2]
        jittered = sizes.pixel_wh(imgsz, scale_jitter=SCALE_JITTER, generator=torch.Generator().manual_seed(seed))
        # Each rank measures and searches its share of the boxes; sums are all-reduced.
        return _YoloData(wh_px[rank::world_size].to(device), jittered[rank::world_size].to(device))

    def measure(self, state: HeadState, params: Tensor, data: _YoloData, *, thr: float, reducer: Reducer | None) -> Measure:
        anchors = params.reshape(-1, 2).to(data.check.device, torch.float32)
        (stats,) = stats_over(data.check, anchors[None], thr=thr, reducer=reducer)
        return Measure(stats.bpr, {"bpr": stats.bpr, "aat": stats.aat, "fitness": stats.fitness})

    def fit(
        self,
        state: HeadState,
        data: _YoloData,
        *,
        thr: float,
        gen: int,
        seed: int,
        search: SearchFn,
        reducer: Reducer | None,
        progress: bool,
        min_stride_units: float | None = None,
        max_stride_units: float | None = None,
    ) -> Tensor:
        nl, na = state.params.shape[0], state.params.shape[1]
        bounds = {}
        if min_stride_units is not None or max_stride_units is not None:
            # Levels by area, smallest on the finest stride: what _assign_levels does below.
            bounds = {
                "strides": tuple(sorted(state.extra.stride.tolist())),
                "min_stride_units": min_stride_units,
                "max_stride_units": max_stride_units,
            }
        # Blocks go to autoanchor's own search; any other search gets the tensor it was promised.
        rows = data.fit.materialise() if isinstance(data.fit, SizeBlocks) and search is not search_anchors else data.fit
        result = search(
            rows, nl * na, thr=thr, gen=gen, seed=seed, reducer=reducer, progress=progress, **bounds
        )
        found = result.anchors.detach().to("cpu", torch.float64).reshape(-1, 2)
        if found.shape[0] != nl * na or not torch.isfinite(found).all() or not (found > 0).all():
            raise ValueError(
                f"the search returned anchors of shape {list(found.shape)} with values "
                f"{found.flatten()[:4].tolist()}...; expected {nl * na} finite, positive (width, height) pairs"
            )
        stride = state.extra.stride
        levels_px = _assign_levels(found, stride, na)
        # As they would be stored: stride units rounded to the buffer's dtype.
        stored = (levels_px / stride[:, None, None]).to(state.extra.anchors.dtype).double()
        return stored * stride[:, None, None]

    def report(self, state: HeadState, data: _YoloData, outcome: Outcome, *, thr: float, reducer: Reducer | None) -> YoloReport:
        """A :class:`~autoanchor.training.report.YoloReport` with the per-level figures of the
        final anchors (collective: every rank) and those under one stride of their level."""
        final = outcome.anchors_after
        return YoloReport.of(
            self.name, outcome,
            levels=self._levels(state, final, data, thr=thr, reducer=reducer),
            below_stride=tuple(anchors_below_stride(final, state.extra.stride)),
            scale=data.scale,
        )

    def _levels(
        self, state: HeadState, params: Tensor, data: _YoloData, *, thr: float, reducer: Reducer | None
    ) -> tuple[LevelStats, ...]:
        """:func:`~autoanchor.core.levels.level_stats` of ``params`` on ``data.check``, the
        boxes :meth:`measure` uses, with the anchors in float32 as measured there."""
        anchors = params.to(data.check.device, torch.float32)  # [nl,na,2] px
        stride = state.extra.stride
        if reducer is None and isinstance(data.check, Tensor):
            return tuple(level_stats(data.check, anchors, stride, thr=thr))
        # Shares over all blocks and ranks: sum each block's counts (share x its boxes).
        blocks = [data.check] if isinstance(data.check, Tensor) else data.check
        counts = torch.zeros(len(stride), 3, dtype=torch.float64)  # [nl,3] matched, targets, best
        n_local, local = 0, None
        for block in blocks:
            if block.shape[0] == 0:
                continue
            local = level_stats(block, anchors, stride, thr=thr)
            counts += torch.tensor([[lv.matched, lv.targets, lv.best] for lv in local], dtype=torch.float64) * block.shape[0]
            n_local += block.shape[0]
        if local is None:  # no boxes here: the other fields (sizes in strides) need a box
            local = level_stats(anchors.new_ones(1, 2), anchors, stride, thr=thr)
        total = torch.cat([counts.flatten(), torch.tensor([float(n_local)], dtype=torch.float64)])
        if reducer is not None:
            total = reducer.sum(total)
        n = total[-1]
        shares = (total[:-1].view(-1, 3) / n.clamp(min=1)).tolist()  # [nl,3]
        return tuple(
            dataclasses.replace(lv, matched=m, targets=t, best=b, n_boxes=int(n))
            for lv, (m, t, b) in zip(local, shares)
        )

    def reorder(self, state: HeadState) -> Tensor | None:
        """The pixel anchors with the levels flipped if their mean area runs against
        the strides (yolov5's ``check_anchor_order``), else ``None``."""
        area = state.params.prod(-1).mean(-1)  # [nl]
        stride = state.extra.stride
        d_area, d_stride = float(area[-1] - area[0]), float(stride[-1] - stride[0])
        if d_area == 0 or d_stride == 0 or math.copysign(1, d_area) == math.copysign(1, d_stride):
            return None
        return state.params.flip(0)

    # -- writing -------------------------------------------------------------------

    def prepare(self, state: HeadState, params: Tensor) -> Write:
        live, stride = state.extra.anchors, state.extra.stride
        if params.shape != state.params.shape:
            raise ValueError(f"new anchors must have shape {list(state.params.shape)}, got {list(params.shape)}")
        stored = (params.to("cpu", torch.float64) / stride[:, None, None]).to(live.dtype)
        if not (torch.isfinite(stored).all() and (stored > 0).all()):
            raise ValueError(
                f"the new anchors do not fit in {live.dtype} as finite positive values: {format_anchors(params)}"
            )
        stored_px = stored.double() * stride[:, None, None]
        return Write(stored_px, (stored.to(live.device), self._prepare_caches(state, stored_px)))

    def _prepare_caches(self, state: HeadState, stored_px: Tensor) -> Any:
        return None

    def write(self, state: HeadState, write: Write) -> None:
        anchors, caches = write.payload
        with torch.no_grad():
            state.extra.anchors.copy_(anchors)
        self._write_caches(state, caches)

    def _write_caches(self, state: HeadState, caches: Any) -> None:
        pass

    def describe(self, state: HeadState, params: Tensor) -> str:
        return format_anchors(params)

    def format_measure(self, measure: Measure) -> str:
        figures = measure.figures
        return (
            f"{figures['aat']:.2f} anchors/target, {figures['bpr']:.4f} best possible recall (BPR), "
            f"fitness {figures['fitness']:.4f}"
        )


def _assign_levels(anchors_px: Tensor, stride: Tensor, na: int) -> Tensor:
    """``[nl·na, 2]`` pixel anchors -> ``[nl, na, 2]``: sorted by area, split evenly,
    the smallest ``na`` on the level with the smallest stride and so on."""
    chunks = split_levels(anchors_px, anchors_px.shape[0] // na)  # [nl,na,2], small to large
    levels = torch.empty_like(chunks)
    levels[torch.argsort(stride, stable=True)] = chunks
    return levels


@register_family
class Yolov5Detect(YoloHead):
    """yolov5 v6+ ``Detect``: ``grid`` / ``anchor_grid`` are lists built lazily in forward.

    After a write the lists are emptied level by level (tensors of shape ``[0]``, same
    dtype and device): yolov5's forward sees a shape mismatch with the feature map and
    rebuilds them from the new anchors. A head without those lists is accepted too.
    """

    name = "yolov5"

    def recognise(self, head: Any, where: str) -> None:
        super().recognise(head, where)
        if isinstance(getattr(head, "anchor_grid", None), Tensor):
            raise HeadNotFound(f"{where} has a registered anchor_grid tensor (not yolov5 v6+'s list)")

    def _read_caches(self, head: Any, where: str, anchors: Tensor, stride: Tensor) -> Any:
        lazy = tuple(name for name in ("grid", "anchor_grid") if isinstance(getattr(head, name, None), (list, tuple)))
        return _LazyExtra(anchors, stride, lazy)

    def _write_caches(self, state: HeadState, caches: Any) -> None:
        for name in state.extra.lazy:
            cache = getattr(state.module, name)
            empty = [
                torch.empty(0, dtype=t.dtype, device=t.device) if isinstance(t, Tensor) else torch.empty(0)
                for t in cache
            ]
            if isinstance(cache, list):
                cache[:] = empty
            else:
                setattr(state.module, name, type(cache)(empty))


class _LazyExtra(NamedTuple):
    anchors: Tensor  # the live buffer [nl,na,2], stride units
    stride: Tensor  # float64 [nl] on the CPU, pixels
    lazy: tuple[str, ...]  # names of list/tuple caches to empty after a write
