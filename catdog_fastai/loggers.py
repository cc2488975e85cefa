"""Training curves in TensorBoard or Weights & Biases, as fastai callbacks.

    catdog-train --logger tensorboard ...   then   tensorboard --logdir OUT/runs
    catdog-train --logger wandb ...         (WANDB_MODE=offline logs without an account; `wandb sync` uploads later)

`logger_callbacks` returns the callbacks for one name; `train_model(cfg, cbs=...)` passes them to every fit. Only
rank 0 logs under torchrun / accelerate launch. The packages are optional extras, imported only when asked for.

W&B goes through fastai's own `WandbCallback`, with fastai#4173 fixed (with fastai 2.8.12 and fastcore 2.2.41 it
fails in its `before_fit`, formatting the learner's settings). TensorBoard goes through `TensorBoardLogger`
below rather than fastai's `TensorBoardCallback`, which starts its steps from 0 in every `fit` (`catdog-train` fits
twice, the frozen head then all layers, so the second phase would be drawn over the first) and fails on the first
batch with `--opt adam` (a None among the optimizer's settings).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from fastai.callback.core import Callback
from fastai.learner import Recorder

from .config import LOGGERS  # the --logger names, written once there
from .distributed import is_main
from .errors import CatdogError

RUNS = "runs"  # TensorBoard's folder inside --out: `tensorboard --logdir OUT/runs`
WANDB_PROJECT = "catdog_fastai"


class LoggerError(CatdogError):
    """A training logger that cannot start: an unknown name, a package that is not installed, W&B not logged in."""


def logger_callbacks(
    name: str, out: str | Path, epochs_done: int = 0, config: dict[str, Any] | None = None
) -> list[Callback]:
    """The fastai callbacks that log training curves to `name` ("none", "tensorboard" or "wandb") for `out`.

    - tensorboard: event files in OUT/runs (`TensorBoardLogger`): per batch the smoothed training loss and each
      parameter group's lr, momentum and weight decay; per epoch the validation loss and every metric.
    - wandb: fastai's `WandbCallback` (the same curves, plus the learner's settings) in the active W&B run, else
      in a new one, `wandb.init(project="catdog_fastai", dir=OUT)`. It needs `wandb login`, or
      `WANDB_MODE=offline` to log into OUT/wandb without an account (`wandb sync OUT/wandb/offline-run-*` uploads
      it later). Prediction tables are off: no photo leaves the machine.

    `epochs_done`: epochs an interrupted run already trained (`--resume`), so that its TensorBoard steps carry on
    after them instead of drawing over them. `config`: the run's settings (`TrainConfig.to_dict()`), shown as the
    W&B run's config. Processes other than rank 0 get [] (they train; rank 0 logs).
    """
    if name not in LOGGERS:
        raise LoggerError(f"--logger {name!r}: choose one of {', '.join(LOGGERS)}")
    if name == "none" or not is_main():
        return []
    _require(name)
    out = Path(out)
    if name == "tensorboard":
        return [TensorBoardLogger(out / RUNS, epochs_done)]
    return [_wandb_callback(out, config)]


def _require(package: str) -> None:
    "Import `package` (the optional extra of the same name), or fail in one line that says how to install it."
    try:
        importlib.import_module(package)
    except ImportError:
        raise LoggerError(
            f"--logger {package} needs the {package} package: pip install 'catdog_fastai[{package}]' "
            f"(or pip install {package})"
        ) from None


def _wandb_callback(out: Path, config: dict[str, Any] | None = None) -> Callback:
    "fastai's `WandbCallback` in the active W&B run, or in a new one (fastai's callback refuses to start without)."
    import fastai.callback.wandb as fw
    import wandb

    try:
        fw._format_config({"probe": True})
    except TypeError:  # fastai#4173 (seen with fastai 2.8.12 + fastcore 2.2.41): every fit fails before its first batch
        fw._format_config_value = _format_config_value
    if wandb.run is None:
        out.mkdir(parents=True, exist_ok=True)
        try:
            wandb.init(project=WANDB_PROJECT, dir=str(out), config=config)
        except Exception as e:  # wandb's own error types (UsageError, CommError) for login and network problems
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise LoggerError(
                f"--logger wandb: wandb.init failed ({first}); run `wandb login`, or set WANDB_MODE=offline"
            ) from None
    elif config:
        wandb.config.update(config, allow_val_change=True)
    return fw.WandbCallback(log_preds=False)


def _format_config_value(v: Any) -> Any:
    """fastai's `callback.wandb._format_config_value`, fixed (fastai#4173): a value without attributes (a bool, an
    int, a string) stays as it is instead of raising TypeError from `fastcore.init_args`."""
    import fastai.callback.wandb as fw
    from fastcore.basics import init_args

    if isinstance(v, list):
        return [_format_config_value(x) for x in v]
    try:
        args = init_args(v)
    except TypeError:
        return v
    return {**fw._format_config(args), "_name": v} if args else v


class TensorBoardLogger(Callback):
    """TensorBoard curves on one x axis for the whole run: the number of training batches seen so far.

    What fastai's `TensorBoardCallback` logs (the same tag names), with three fixes: the steps carry on across fits
    and across `--resume` (from `epochs_done`); only training batches are logged (fastai's writes the training loss
    again for every validation batch); only numeric optimizer settings are logged (fastai's fails on `foreach=None`
    and `fused=None`, which `torch.optim.AdamW`, `--opt adam`, keeps beside lr and momentum). The per-batch loss
    stays on its device until the epoch ends, so logging does not make the CPU wait for the GPU after every step
    (`callbacks.LossOnDevice`).
    """

    order = Recorder.order + 1  # after Recorder has the epoch's metrics, as fastai's TensorBoardCallback

    def __init__(self, log_dir: str | Path, epochs_done: int = 0):
        self.log_dir, self.epochs_done = Path(log_dir), epochs_done
        self.offset: int | None = None  # training batches of earlier fits; set on the first fit (needs the dls)

    def before_fit(self) -> None:
        # like fastai's callback: nothing during lr_find or get_preds; a new event file for every fit
        self.run = not hasattr(self.learn, "lr_finder") and not hasattr(self, "gather_preds")
        if not self.run:
            return
        from torch.utils.tensorboard import SummaryWriter

        if self.offset is None:
            self.offset = self.epochs_done * len(self.dls.train)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.pending: list[torch.Tensor] = []  # this epoch's smoothed losses, still on their device
        self.trained = False

    def global_step(self) -> int:
        "Training batches seen in the whole run, the current one included."
        return self.offset + self.train_iter

    def before_train(self) -> None:
        self.trained = True  # stays False for the epochs `--resume` skips: nothing to log for them

    def after_batch(self) -> None:
        if not self.training:
            return
        self.pending.append(torch.as_tensor(self.smooth_loss).detach().float().reshape(()))
        for i, h in enumerate(self.opt.hypers):
            for k, v in h.items():  # numbers only: torch optimizers also carry flags (foreach=None, maximize=False)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.writer.add_scalar(f"{k}_{i}", v, self.global_step())

    def after_epoch(self) -> None:
        if not self.trained:
            return
        self.trained = False
        step = self.global_step()
        first = step - len(self.pending) + 1
        for i, v in enumerate(torch.stack(self.pending).cpu().tolist() if self.pending else []):
            self.writer.add_scalar("train_loss", v, first + i)
        self.pending = []
        for n, v in zip(self.recorder.metric_names[2:-1], self.recorder.log[2:-1]):  # valid_loss, then metrics
            if v is not None:
                self.writer.add_scalar(n, float(v), step)
        self.writer.flush()

    def after_fit(self) -> None:
        self.offset += self.train_iter
        self.writer.close()
