"""A Lightning callback: check (and fit) a detector's anchors before the first epoch.

``Trainer(callbacks=[AutoAnchor()])`` runs :func:`~autoanchor.training.hook.check_anchors`
in ``on_fit_start``, Lightning's place for a check before training, on the dataset and
the detector it finds:

* **the dataset**: the ``dataset`` argument, else the datamodule's
  ``train_dataloader()``, else the dataloaders given to ``fit``, else the
  LightningModule's ``train_dataloader()`` (anything
  :func:`~autoanchor.io.datasets.load_boxes` reads: a ``DataLoader`` is read through its
  dataset, from the annotations it holds where it can);
* **the head**: the first module inside the LightningModule (itself, then its
  submodules, shallowest first) in which a registered head family finds one: a
  torchvision RetinaNet or R-CNN at ``self.model`` (DeepForest), a yolov5 ``Model``;
  or ``detect=`` in the options.

Distributed: rank 0 checks alone (``distributed=False``) and its anchors reach every
rank through ``trainer.strategy.broadcast``; an error on rank 0 is raised on every rank.

Checkpoints: the fitted anchors are in the LightningModule's ``state_dict()`` (YOLO
anchors are buffers; a torchvision ``AnchorGenerator`` gets the hooks of
:func:`~autoanchor.training.rebuild.persist_anchors` in ``setup``, before Lightning
restores a checkpoint), so ``trainer.fit(..., ckpt_path=...)`` restores them, and a
resumed run is not refitted. Outside the Trainer, restore them with
:func:`autoanchor.restore_anchors` (``restore_anchors(module,
"last.ckpt")`` then ``module.load_state_dict(state)``).

The report: rank 0 logs it on the ``lightning.pytorch`` console logger (where Lightning
prints its own messages) and sends its figures to every logger of the Trainer
(``autoanchor/<figure>_before`` and ``_after``, ``autoanchor/replaced``);
:attr:`AutoAnchor.report` keeps it.

Works with ``lightning`` (``lightning.pytorch``) and ``pytorch_lightning``: the class
subclasses the ``Callback`` of each one installed. Install with
``pip install autoanchor[lightning]``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any, Optional

from torch import nn

from .training.heads import find_head
from .training.heads.unsupported import UnsupportedDetector
from .training.hook import check_anchors
from .training.rebuild import is_grid_generator, persist_anchors

__all__ = ["AutoAnchor"]

_BASES = []
for _name in ("lightning.pytorch", "pytorch_lightning"):
    try:
        _BASES.append(importlib.import_module(_name).Callback)
    except ImportError:
        pass
_MISSING = "AutoAnchor needs lightning or pytorch_lightning: pip install autoanchor[lightning]"

logger = logging.getLogger(__name__)

_NOT_OPTIONS = ("dataset", "model", "distributed")
_OPTIONS = tuple(name for name in inspect.signature(check_anchors).parameters if name not in _NOT_OPTIONS)


def _find_detector(module: nn.Module, detect: Any) -> nn.Module:
    """The shallowest module of ``module`` in which a head family finds a head."""
    if detect is not None:
        return module
    candidates = sorted(module.named_modules(), key=lambda item: item[0].count(".") + bool(item[0]))
    reasons = []
    for name, candidate in candidates:
        try:
            find_head(candidate)
        except UnsupportedDetector:
            raise  # a detector autoanchor must not (or cannot) fit: say so, not "no head"
        except TypeError as error:
            if not name:
                reasons.append(str(error))
            continue
        return candidate
    raise TypeError(
        f"AutoAnchor found no detection head inside {type(module).__name__} nor its submodules "
        f"({reasons[0] if reasons else 'no family recognised any'}); pass detect= to AutoAnchor"
    )


class AutoAnchor(*_BASES):  # type: ignore[misc]  # no base when neither is installed: __init__ says so
    """Check the detector's anchors against the training data in ``on_fit_start``.

    Args:
        dataset: what to measure the anchors on (see the module docstring); None to
            take the training data of the fit.
        **check_options: options of :func:`~autoanchor.training.hook.check_anchors`
            (``bpr_threshold``, ``seed``, ``thr``, ``imgsz``, ``detect``, ``family``,
            ``strides``, ``resize``, ``threshold``, ...), keyword only.

    Attributes:
        report: the :class:`~autoanchor.training.report.AnchorReport` of the check
            (on every rank), or None before it ran or on a resumed run.

    Raises:
        TypeError: an unknown option (the message lists the known ones).
        ImportError: if neither ``lightning`` nor ``pytorch_lightning`` is installed.

    Example:
        >>> trainer = Trainer(callbacks=[AutoAnchor(bpr_threshold=0.99)])  # doctest: +SKIP
        >>> trainer.fit(model, datamodule)  # doctest: +SKIP
    """

    def __init__(self, dataset: Any = None, **check_options: Any) -> None:
        if not _BASES:
            raise ImportError(_MISSING)
        unknown = sorted(set(check_options) - set(_OPTIONS))
        if unknown:
            raise TypeError(f"AutoAnchor got unknown options {unknown}; check_anchors takes {', '.join(_OPTIONS)}")
        self.dataset = dataset
        self.check_options = check_options
        self.report: Any = None
        self._checked: Optional[dict] = None  # from a checkpoint: this run resumes a checked one

    # -- Lightning hooks ---------------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Make every torchvision anchor generator carry its anchors in the state dict,
        before Lightning restores a checkpoint into the module."""
        for module in pl_module.modules():
            if is_grid_generator(module):
                persist_anchors(module)

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self._checked is not None or getattr(trainer, "ckpt_path", None) is not None:
            if trainer.is_global_zero:
                _console(trainer).info(
                    "autoanchor: resumed from a checkpoint: the anchors it holds are kept, not refitted"
                )
            return
        detector = _find_detector(pl_module, self.check_options.get("detect"))
        payload: dict[str, Any] = {}
        failure: Optional[BaseException] = None
        if trainer.is_global_zero:
            try:
                dataset = self.dataset if self.dataset is not None else self._training_data(trainer, pl_module)
                report = check_anchors(dataset, detector, distributed=False, **self.check_options)
                payload = {"report": report, "anchors": self._anchor_state(detector)}
            except Exception as error:  # re-raised below, after every rank has heard of it
                failure = error
                payload = {"error": f"{type(error).__name__}: {error}"}
        payload = trainer.strategy.broadcast(payload, src=0)
        if failure is not None:
            raise failure
        if "error" in payload:
            raise RuntimeError(f"autoanchor failed on rank 0: {payload['error']}")
        if not trainer.is_global_zero:
            self._apply(detector, payload["anchors"])
        self.report = payload["report"]
        self._checked = {"replaced": bool(self.report.replaced), "report": str(self.report)}
        if trainer.is_global_zero:
            self._log(trainer, self.report)

    def state_dict(self) -> dict[str, Any]:
        return dict(self._checked or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self._checked = dict(state_dict)

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _training_data(trainer: Any, pl_module: Any) -> Any:
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and _overrides(datamodule, "train_dataloader"):
            return datamodule.train_dataloader()
        source = getattr(getattr(trainer, "fit_loop", None), "_data_source", None)
        instance = getattr(source, "instance", None)
        if instance is not None and not hasattr(instance, "train_dataloader"):
            return instance  # the dataloaders given to fit (not a module or datamodule)
        if _overrides(pl_module, "train_dataloader"):
            return pl_module.train_dataloader()
        raise ValueError(
            "AutoAnchor found no training data: pass dataset= to AutoAnchor, or give the Trainer a datamodule or "
            "train_dataloaders"
        )

    @staticmethod
    def _anchor_state(detector: nn.Module) -> dict[str, Any]:
        """The detector's state entries that hold anchors (YOLO buffers, torchvision's fitted-anchor entry)."""
        return {
            key: value.detach().cpu()
            for key, value in detector.state_dict().items()
            if key.rsplit(".", 1)[-1] in ("anchors", "anchor_grid") or "autoanchor" in key
        }

    def _apply(self, detector: nn.Module, anchors: dict[str, Any]) -> None:
        """Take rank 0's anchors, then rewrite them through the family so that caches are rebuilt."""
        result = detector.load_state_dict(anchors, strict=False)
        if result.unexpected_keys:
            raise RuntimeError(f"rank 0's anchors do not fit this rank's model: {result.unexpected_keys}")
        family, head, where = find_head(detector, self.check_options.get("detect"))
        state = family.read(head, where)
        family.write(state, family.prepare(state, state.params))

    @staticmethod
    def _log(trainer: Any, report: Any) -> None:
        console = _console(trainer)
        for line in report.lines():  # the report line, then the family's own (e.g. the per-level table)
            console.info("%s", line)
        metrics = {"autoanchor/replaced": float(report.replaced)}
        for name, value in report.figures_before.items():
            metrics[f"autoanchor/{name.replace(' ', '_')}_before"] = float(value)
        for name, value in report.figures_after.items():
            metrics[f"autoanchor/{name.replace(' ', '_')}_after"] = float(value)
        for each in getattr(trainer, "loggers", ()) or ():
            each.log_metrics(metrics, step=int(getattr(trainer, "global_step", 0)))


def _console(trainer: Any) -> logging.Logger:
    """A child of the Lightning logger that prints the Trainer's own messages (``lightning.pytorch``
    or ``pytorch_lightning``, whichever the trainer comes from)."""
    package = type(trainer).__module__.split(".")[0]
    root = "pytorch_lightning" if package == "pytorch_lightning" else "lightning.pytorch"
    return logging.getLogger(f"{root}.callbacks.autoanchor")


def _overrides(obj: Any, method: str) -> bool:
    """Whether ``obj``'s class defines ``method`` beyond Lightning's hook stubs."""
    for cls in type(obj).__mro__:
        if method in vars(cls):
            return not cls.__module__.startswith(("lightning.", "pytorch_lightning."))
    return False
