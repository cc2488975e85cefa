"""Training curves (loggers.py): a tiny learner trained on the CPU, its TensorBoard events read back with
TensorBoard's own reader; the one-line errors for a missing package; rank 0 alone logs."""

from __future__ import annotations

import sys
from pathlib import Path

import fastai.callback.schedule  # noqa: F401 - patches Learner.fit_one_cycle
import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.metrics import accuracy
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from catdog_fastai.errors import CatdogError
from catdog_fastai.loggers import LOGGERS, RUNS, LoggerError, TensorBoardLogger, logger_callbacks
from catdog_fastai.optim import OPT_FUNCS

N_TRAIN, BS = 48, 16  # 3 training batches an epoch


def _learner() -> Learner:
    "A linear model on a separable synthetic task, trained as catdog-train trains: in well under a second."
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    ds = list(zip(x, y))
    dls = DataLoaders.from_dsets(ds[:N_TRAIN], ds[N_TRAIN:], bs=BS, device="cpu")
    # --opt adam (torch's AdamW): its settings hold None and booleans beside lr and momentum
    learn = Learner(dls, nn.Linear(4, 2), loss_func=nn.CrossEntropyLoss(), opt_func=OPT_FUNCS["adam"], metrics=accuracy)
    learn.logger = lambda *_: None  # no epoch table in the test output
    return learn


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    "Every scalar in the event files under `log_dir`, as TensorBoard reads them: tag -> [(step, value)]."
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_tensorboard_logs_every_epoch_metric(tmp_path):
    learn = _learner()
    cbs = logger_callbacks("tensorboard", tmp_path)
    assert [type(cb) for cb in cbs] == [TensorBoardLogger]
    with learn.no_bar():
        learn.fit_one_cycle(2, 1e-2, cbs=cbs)
    s = _scalars(tmp_path / RUNS)
    n = N_TRAIN // BS
    assert [step for step, _ in s["valid_loss"]] == [n, 2 * n]  # one value per epoch, at the epoch's last batch
    assert [step for step, _ in s["accuracy"]] == [n, 2 * n]
    rec = learn.recorder.values  # what fastai printed: [train_loss, valid_loss, accuracy] per epoch
    assert [v for _, v in s["valid_loss"]] == pytest.approx([float(r[1]) for r in rec], rel=1e-5)
    assert [v for _, v in s["accuracy"]] == pytest.approx([float(r[2]) for r in rec], rel=1e-5)
    assert [step for step, _ in s["train_loss"]] == list(range(1, 2 * n + 1))  # every training batch, once
    assert s["train_loss"][-1][1] == pytest.approx(float(rec[-1][0]), rel=1e-5)  # the epoch's smoothed loss
    lrs = [v for _, v in s["lr_0"]]
    assert len(lrs) == 2 * n and max(lrs) > 10 * lrs[0]  # the one-cycle warm-up is visible


def test_steps_carry_on_across_fits_and_resume(tmp_path):
    "catdog-train fits twice (frozen head, then all layers): the second fit continues the x axis, never restarts it."
    learn = _learner()
    cbs = logger_callbacks("tensorboard", tmp_path)
    with learn.no_bar():
        learn.fit_one_cycle(1, 1e-2, cbs=cbs)
        learn.fit_one_cycle(1, 1e-2, cbs=cbs)
    n = N_TRAIN // BS
    s = _scalars(tmp_path / RUNS)
    assert [step for step, _ in s["valid_loss"]] == [n, 2 * n]
    assert [step for step, _ in s["train_loss"]] == list(range(1, 2 * n + 1))

    # --resume after 2 epochs of a 3-epoch phase: the new process logs only epoch 3, after the first two
    resumed = tmp_path / "resumed"
    with learn.no_bar():
        learn.fit_one_cycle(3, 1e-2, cbs=logger_callbacks("tensorboard", resumed, epochs_done=2), start_epoch=2)
    assert [step for step, _ in _scalars(resumed / RUNS)["valid_loss"]] == [3 * n]


def test_unknown_logger_names_the_choices(tmp_path):
    assert logger_callbacks("none", tmp_path) == []
    with pytest.raises(LoggerError, match="tensorboard, wandb"):
        logger_callbacks("mlflow", tmp_path)
    assert LOGGERS == ("none", "tensorboard", "wandb")


@pytest.mark.parametrize("package", ["tensorboard", "wandb"])
def test_missing_package_says_how_to_install_it(tmp_path, monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    with pytest.raises(CatdogError) as e:
        logger_callbacks(package, tmp_path)
    msg = str(e.value)
    assert f"pip install 'catdog_fastai[{package}]'" in msg and f"pip install {package})" in msg
    assert "\n" not in msg  # one line, as the CLI prints it


@pytest.mark.parametrize("name", LOGGERS)
def test_only_rank_0_logs(tmp_path, monkeypatch, name):
    monkeypatch.setenv("RANK", "1")  # what torchrun sets in the second process; distributed.is_main reads it
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "wandb", None)  # a non-main rank must not even need the package
    assert logger_callbacks(name, tmp_path) == []
    assert not (tmp_path / RUNS).exists()


def test_wandb_offline_logs_the_curves(tmp_path, monkeypatch):
    "fastai's WandbCallback, offline (no account, no network), over two fits; wandb is in the test extra."
    import wandb

    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # nothing written to the home folder
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    learn = _learner()
    cbs = logger_callbacks("wandb", tmp_path, config={"arch": "tiny"})
    try:
        with learn.no_bar():
            learn.fit_one_cycle(2, 1e-2, cbs=cbs)  # fastai#4173 made this raise in before_fit
            learn.fit_one_cycle(1, 1e-2, cbs=cbs)
        summary = dict(wandb.run.summary)
        assert summary["epoch"] == 3 and "valid_loss" in summary and "accuracy" in summary
        assert wandb.run.step == 3 * (N_TRAIN // BS)  # steps carry on across the two fits
        assert wandb.config["arch"] == "tiny"
    finally:
        wandb.finish()
    assert list((tmp_path / "wandb").glob("offline-run-*"))
