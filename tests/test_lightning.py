"""The Lightning callback on a small torchvision RetinaNet (torchvision CI environment)."""

from __future__ import annotations

import csv
import importlib
import logging
from collections import OrderedDict

import pytest
import torch
from torch import nn

torchvision = pytest.importorskip("torchvision")
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision.models.detection import RetinaNet  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402

from autoanchor.training import hook  # noqa: E402
from autoanchor.training.rebuild import STATE_KEY, restore_anchors  # noqa: E402

PACKAGES = [name for name in ("lightning.pytorch", "pytorch_lightning") if importlib.util.find_spec(name.split(".")[0])]
if not PACKAGES:
    pytest.skip("neither lightning nor pytorch_lightning is installed", allow_module_level=True)
from autoanchor.lightning import AutoAnchor  # noqa: E402

DEFAULT_SIZES = ((32,), (64,))


class TinyBackbone(nn.Module):
    """Two feature maps, strides 8 and 16."""

    out_channels = 8

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(3, 8, 3, stride=8, padding=1)
        self.second = nn.Conv2d(8, 8, 3, stride=2, padding=1)

    def forward(self, x):
        first = self.first(x)
        return OrderedDict([("0", first), ("1", self.second(first))])


def tiny_retinanet() -> RetinaNet:
    generator = AnchorGenerator(DEFAULT_SIZES, ((0.5, 1.0, 2.0),) * 2)
    return RetinaNet(TinyBackbone(), num_classes=2, anchor_generator=generator, min_size=96, max_size=128)


class TallBoxes(Dataset):
    """Images [3, 96, 128] with tall boxes (the default 32 and 64 px squares serve them at lower IoU;
    the tests refit them with bpr_threshold=0.98, as the torchvision default 0.5 keeps them)."""

    def __init__(self, n=12):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        width, height = 10 + 2 * (i % 5), 40 + 4 * (i % 7)
        x0, y0 = 20 + 3 * i, 10 + i
        boxes = torch.tensor([[x0, y0, x0 + width, y0 + height]], dtype=torch.float32)
        return torch.zeros(3, 96, 128), {"boxes": boxes, "labels": torch.ones(1, dtype=torch.int64)}


def collate(batch):
    return tuple(zip(*batch))


def module_class(package: str):
    pl = importlib.import_module(package)

    class Detector(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = tiny_retinanet()

        def training_step(self, batch, batch_index):
            images, targets = batch
            return sum(self.model(list(images), list(targets)).values())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1e-4)

        def train_dataloader(self):
            return DataLoader(TallBoxes(), batch_size=4, collate_fn=collate)

    return pl, Detector


def trainer_for(pl, tmp_path, callbacks, **options):
    return pl.Trainer(
        default_root_dir=tmp_path, callbacks=callbacks, accelerator="cpu", devices=1, enable_progress_bar=False,
        enable_model_summary=False, logger=pl.loggers.CSVLogger(tmp_path), enable_checkpointing=False, **options,
    )


def cells(module):
    return [c.clone() for c in module.model.anchor_generator.cell_anchors]


@pytest.fixture
def checks(monkeypatch):
    """Counts the calls of check_anchors made by the callback."""
    calls = []
    real = hook.check_anchors

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr("autoanchor.lightning.check_anchors", counted)
    return calls


@pytest.mark.slow  # two Lightning fits per package: about 25 s
@pytest.mark.parametrize("package", PACKAGES)
def test_the_callback_fits_before_training_and_the_checkpoint_resumes_with_the_fit(package, tmp_path, checks, caplog):
    pl, Detector = module_class(package)
    module = Detector()
    callback = AutoAnchor(seed=1, bpr_threshold=0.98)
    assert isinstance(callback, pl.Callback)
    with caplog.at_level(logging.INFO):
        trainer = trainer_for(pl, tmp_path, [callback], max_steps=1)
        trainer.fit(module)
    assert len(checks) == 1 and checks[0]["distributed"] is False
    assert callback.report.replaced and module.model.anchor_generator.sizes != DEFAULT_SIZES
    assert any("autoanchor: anchors replaced" in r.getMessage() for r in caplog.records)
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = list(csv.DictReader(file))
    assert any(row.get("autoanchor/replaced") == "1.0" for row in rows)
    fitted, fitted_sizes = cells(module), module.model.anchor_generator.sizes
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert f"model.anchor_generator.{STATE_KEY}" in checkpoint["state_dict"]

    # resume: a new module built the usual way gets the fitted anchors back, and is not refitted
    resumed, again = Detector(), AutoAnchor(seed=1, bpr_threshold=0.98)
    trainer_for(pl, tmp_path, [again], max_steps=2).fit(resumed, ckpt_path=tmp_path / "last.ckpt")
    assert len(checks) == 1 and again.report is None
    assert resumed.model.anchor_generator.sizes == fitted_sizes
    assert all(torch.equal(a, b) for a, b in zip(cells(resumed), fitted))

    # outside the Trainer: refused without the documented path, bit for bit with it
    with pytest.raises(RuntimeError, match="restore_anchors"):
        Detector().load_state_dict(checkpoint["state_dict"])
    rebuilt = Detector()
    rebuilt.load_state_dict(restore_anchors(rebuilt, tmp_path / "last.ckpt", weights_only=False))
    assert all(torch.equal(a, b) for a, b in zip(cells(rebuilt), fitted))


def test_rank_zero_anchors_applied_on_another_rank_are_bit_identical():
    fitted = tiny_retinanet()
    hook.check_anchors(TallBoxes(), fitted, bpr_threshold=0.98, verbose=False)
    callback = AutoAnchor()
    other = tiny_retinanet()
    callback.setup(None, other, "fit")
    callback._apply(other, AutoAnchor._anchor_state(_persisted(fitted)))
    assert other.anchor_generator.sizes == fitted.anchor_generator.sizes
    pairs = zip(other.anchor_generator.cell_anchors, fitted.anchor_generator.cell_anchors)
    assert all(torch.equal(a, b) for a, b in pairs)


def _persisted(model):
    AutoAnchor().setup(None, model, "fit")
    return model


def test_unknown_options_are_named():
    with pytest.raises(TypeError, match="unknown options \\['bpr'\\].*bpr_threshold"):
        AutoAnchor(bpr=0.9)


@pytest.mark.slow  # a Lightning fit: about 10 s
def test_the_dataloaders_given_to_fit_are_the_data(tmp_path, checks):
    pl, Detector = module_class(PACKAGES[0])

    class WithoutLoader(Detector):
        train_dataloader = pl.LightningModule.train_dataloader  # Lightning's stub: none of its own

    module, callback = WithoutLoader(), AutoAnchor(bpr_threshold=0.98)
    loader = DataLoader(TallBoxes(6), batch_size=3, collate_fn=collate)
    trainer_for(pl, tmp_path, [callback], max_steps=1).fit(module, train_dataloaders=loader)
    assert len(checks) == 1 and callback.report.replaced


class _Strategy:
    """Stands for a two-rank strategy: rank 0's broadcast records the payload, rank 1's returns it."""

    def __init__(self, shared):
        self.shared = shared

    def broadcast(self, obj, src=0):
        if "payload" not in self.shared:
            self.shared["payload"] = obj
        return self.shared["payload"]


class _Trainer:
    def __init__(self, rank, shared):
        self.is_global_zero, self.strategy, self.ckpt_path = rank == 0, _Strategy(shared), None
        self.loggers, self.global_step, self.datamodule = [], 0, None


def test_every_rank_ends_with_rank_zero_anchors_and_rank_zero_errors_reach_every_rank():
    pl, Detector = module_class(PACKAGES[0])
    shared: dict = {}
    ranks = [Detector(), Detector()]
    callbacks = [AutoAnchor(TallBoxes(), bpr_threshold=0.98), AutoAnchor(TallBoxes(), bpr_threshold=0.98)]
    for rank, (module, callback) in enumerate(zip(ranks, callbacks)):
        callback.setup(_Trainer(rank, shared), module, "fit")
        callback.on_fit_start(_Trainer(rank, shared), module)
    assert callbacks[0].report.replaced and callbacks[1].report.replaced
    assert ranks[1].model.anchor_generator.sizes == ranks[0].model.anchor_generator.sizes != DEFAULT_SIZES
    assert all(torch.equal(a, b) for a, b in zip(cells(ranks[1]), cells(ranks[0])))

    shared = {}
    failing = [AutoAnchor(object()), AutoAnchor(object())]  # no format reads an object()
    with pytest.raises(TypeError, match="got object"):
        failing[0].on_fit_start(_Trainer(0, shared), Detector())
    with pytest.raises(RuntimeError, match="autoanchor failed on rank 0: TypeError: dataset must be"):
        failing[1].on_fit_start(_Trainer(1, shared), Detector())
