"""`catdog-train`: find the data, build the learner, fine-tune one-cycle, report, export. Reads top to bottom.

    catdog-train --data ../shared/data/pets-dev/images --task breeds \\
        --arch tf_efficientnet_lite0 --weights ../shared/weights/tf_efficientnet_lite0.in1k.safetensors

The schedule is fastai's `fine_tune` (head only with `pct_start=0.99`, then everything with discriminative rates),
run phase by phase so that every epoch can be checkpointed and an interrupted run resumed mid-schedule.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastai.callback.channelslast  # noqa: F401 - patches Learner.to_channelslast
import fastai.callback.fp16  # noqa: F401 - patches Learner.to_fp16 / to_bf16
import fastai.callback.schedule  # noqa: F401 - patches Learner.fit_one_cycle / lr_find
import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.data.core import DataLoaders
from fastai.data.transforms import Normalize
from fastai.learner import AvgSmoothLoss, Learner
from fastai.metrics import accuracy, error_rate
from fastai.optimizer import SGD, Lamb, OptimWrapper, QHAdam, RAdam, RMSProp, ranger
from fastai.torch_core import set_seed

from .config import TrainConfig, parse_config
from .data import DataError, get_dls
from .distributed import LaunchError, base_dl, distrib, finish, is_main, per_rank_bs, unwrap, world_size
from .export import PKL, ExportError, atomic_write, save_safe, write_json
from .losses import training_loss
from .metrics import BalancedAccuracy, export_epoch
from .model import ModelError, build_model, norm_stats, splitter

log = logging.getLogger("catdog_fastai")
CHECKPOINT, BEST, HISTORY = "checkpoint.pth", "best.pth", "history.csv"


def Adam(params: Any, lr: float, **kw: Any) -> OptimWrapper:  # noqa: N802 - named like fastai's optimizers
    """fastai's Adam (decoupled weight decay, betas 0.9/0.99, eps 1e-5) computed by `torch.optim.AdamW`.

    Same update rule (same held-out accuracy, BENCHMARKS.md), but on a GPU torch's multi-tensor kernels update
    every weight in a few launches, where fastai's `Optimizer` runs a Python loop of small kernels per weight
    tensor. fastai's `OptimWrapper` keeps one-cycle momentum, freezing, discriminative rates and `--wd` (set by
    `fit`); unlike fastai's optimizer it also decays batch-norm and bias weights.
    """
    return OptimWrapper(params, torch.optim.AdamW, lr=lr, betas=(0.9, 0.99), eps=1e-5, **kw)


OPT_FUNCS = {
    "adam": Adam,
    "sgd": SGD,
    "radam": RAdam,
    "ranger": ranger,
    "lamb": Lamb,
    "rmsprop": RMSProp,
    "qhadam": QHAdam,
}


@dataclass
class Phase:
    "One `fit_one_cycle` of the fine-tuning schedule."

    name: str  # 'frozen' (head only) or 'unfrozen' (all layers)
    epochs: int
    lr: slice  # lr_max, as a slice for discriminative rates (body, head)
    kw: dict  # extra fit_one_cycle arguments (pct_start, div)


def schedule(cfg: TrainConfig, lr: float) -> list[Phase]:
    "fastai's `fine_tune(epochs, lr, freeze_epochs)`, as data (lr_mult=100, pct_start=0.3, div=5 when unfrozen)."
    phases = [
        Phase("frozen", cfg.freeze_epochs, slice(lr), dict(pct_start=0.99)),
        Phase("unfrozen", cfg.epochs, slice(lr / 2 / 100, lr / 2), dict(pct_start=0.3, div=5.0)),
    ]
    return [p for p in phases if p.epochs > 0]


def _device() -> torch.device:
    "This process's device: under a launcher, the GPU matching its LOCAL_RANK."
    if not torch.cuda.is_available():
        return torch.device("cpu")
    dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.cuda.set_device(dev)
    return dev


def get_learner(dls: DataLoaders, cfg: TrainConfig) -> Learner:
    """A fastai `Learner` over `model.build_model`, normalising inputs with the backbone's own statistics.

    Normalisation is added whether or not the weights are pretrained (fastai adds it only when pretrained), so
    training and the pickle-free predictor always agree on the input scale.
    """
    model = build_model(cfg.arch, len(dls.vocab), pretrained=cfg.pretrained, weights=cfg.weights)
    if not any(isinstance(t, Normalize) for t in dls.after_batch.fs):
        dls.add_tfms([Normalize.from_stats(*norm_stats(model))], "after_batch")
    learn = Learner(
        dls,
        model,
        loss_func=training_loss(class_counts(dls), cfg.logit_adjust, cfg.label_smoothing),
        opt_func=OPT_FUNCS[cfg.opt],
        splitter=splitter,
        metrics=[accuracy, BalancedAccuracy(), error_rate],
        wd=cfg.wd,
        path=Path(cfg.out),
        model_dir=".",
    )
    if dls.device is not None and dls.device.type == "cuda":
        prec = cfg.precision
        if prec == "auto":
            prec = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if prec == "bf16":
            learn.to_bf16()
        elif prec == "fp16":
            learn.to_fp16()
    if cfg.channels_last:  # faster on the CPU too (BENCHMARKS.md); use_amp=False: precision is decided above
        learn.to_channelslast(use_amp=False)
    if cfg.pretrained or cfg.weights:
        learn.freeze()
    return learn


def class_counts(dls: DataLoaders) -> list[int]:
    "Training photos per class, in vocab order: the label prior the logit-adjusted loss takes out."
    ys = torch.tensor([int(y) for y in dls.train_ds.tls[1]], dtype=torch.long)
    return torch.bincount(ys, minlength=len(dls.vocab)).tolist()


def export_meta(learn: Learner, cfg: TrainConfig, metrics: dict[str, Any]) -> dict[str, Any]:
    "What `model.json` says about a model: enough to rebuild it, preprocess for it and judge it."
    mean, std = norm_stats(learn.model)
    return dict(
        arch=cfg.arch,
        task=cfg.task,
        vocab=[str(v) for v in learn.dls.vocab],
        size=cfg.size,
        mean=list(mean),
        std=list(std),
        metrics=metrics,
        config=cfg.to_dict(),
    )


def export(learn: Learner, cfg: TrainConfig, metrics: dict[str, Any]) -> Path:
    "Write the pickle-free pair and (unless --no-pkl) `model.pkl`, each atomically."
    out = Path(cfg.out)
    meta = export_meta(learn, cfg, metrics)
    learn.model.float()
    save_safe(learn.model, meta, out)
    if cfg.pkl:
        learn.catdog_meta = meta  # travels inside model.pkl, so load_predictor(trusted=True) needs nothing else
        atomic_write(out / PKL, lambda p: learn.export(p))
    return out


class DeviceSmoothLoss(AvgSmoothLoss):
    "fastai's smoothed training loss, kept on the loss's device instead of copied to the CPU after every batch."

    def accumulate(self, learn: Learner) -> None:
        self.count += 1
        loss = learn.loss.detach().float().mean()
        self.val = torch.lerp(loss, self.val.to(loss.device), self.beta)


class LossOnDevice(Callback):
    """Swap in `DeviceSmoothLoss` while fitting on a GPU.

    fastai's recorder moves the loss to the CPU after each batch, which makes the CPU wait for the GPU to finish
    the step before it can queue the next one; kept on the GPU, it is read once an epoch.
    """

    order = 40  # before Recorder (50) resets it

    def before_fit(self) -> None:
        self.orig = self.recorder.smooth_loss
        vars(self.recorder)["smooth_loss"] = DeviceSmoothLoss(beta=self.orig.beta)  # vars: no fastai warning

    def after_fit(self) -> None:
        rec = self.recorder
        vars(rec)["smooth_loss"] = self.orig
        if rec.losses and torch.is_tensor(rec.losses[-1]) and rec.losses[-1].device.type != "cpu":
            rec.losses = list(torch.stack(rec.losses).cpu().unbind())  # as fastai keeps them: for plot_loss
            self.learn.smooth_loss = rec.losses[-1]


class Checkpointer(Callback):
    """After every trained epoch: one log line, `history.csv`, `checkpoint.pth` (resume) and `best.pth`.

    All writes are atomic, so Ctrl-C or SIGTERM at any moment leaves the last completed epoch resumable.
    """

    order = 90  # after Recorder (50) has the epoch's metrics

    def __init__(self, cfg: TrainConfig, phase_idx: int, state: dict, quiet_bar: bool):
        self.cfg, self.phase_idx, self.state, self.print_lines = cfg, phase_idx, state, quiet_bar
        self.out = Path(cfg.out)

    def before_train(self) -> None:
        self.trained, self.t0, self.n_seen = True, time.perf_counter(), 0

    def after_batch(self) -> None:
        if self.training:
            self.n_seen += len(self.yb[0])

    def after_train(self) -> None:
        self.train_seconds = time.perf_counter() - self.t0

    def after_epoch(self) -> None:
        if not getattr(self, "trained", False):  # epoch skipped by SkipToEpoch on resume
            return
        self.trained = False
        if not is_main():  # other ranks train; rank 0 alone logs and writes
            return
        names, vals = self.recorder.metric_names[1:-1], self.recorder.values[-1]
        row = dict(
            phase=self.state["phases"][self.phase_idx],
            epoch=self.epoch,
            global_epoch=self.state["done"],
            **{n: float(v) for n, v in zip(names, vals)},
            seconds=round(time.perf_counter() - self.t0, 2),
        )
        seen = self.n_seen * world_size()  # every rank trains an equal shard of the epoch
        row["train_img_per_s"] = round(seen / max(self.train_seconds, 1e-9), 1)  # training steps only
        self.state["history"].append(row)
        self.state["done"] += 1
        hits = _valid_hits(self.learn)
        self.state["correct"].append(hits)
        if self.cfg.export_epoch == "best" and hits.count("1") >= max(h.count("1") for h in self.state["correct"]):
            atomic_write(self.out / BEST, lambda p: torch.save(unwrap(self.learn.model).state_dict(), p))
        self._write_history()
        ckpt = dict(
            model=unwrap(self.learn.model).state_dict(),
            opt=self.learn.opt.state_dict(),
            phase=self.phase_idx,
            epoch=self.epoch,
            n_epoch=self.n_epoch,
            state=self.state,
            config=self.cfg.to_dict(),
            rng=_rng_state(self.dls),
        )
        atomic_write(self.out / CHECKPOINT, lambda p: torch.save(ckpt, p))
        if self.print_lines:
            metrics = "  ".join(f"{k} {row[k]:.4f}" for k in names)
            log.info(
                "epoch %d/%d (%s %d/%d)  %s  %.1fs  %.1f img/s",
                row["global_epoch"] + 1,
                self.state["total"],
                row["phase"],
                self.epoch + 1,
                self.n_epoch,
                metrics,
                row["seconds"],
                row["train_img_per_s"],
            )

    def _write_history(self) -> None:
        rows = self.state["history"]
        keys = list(rows[0])
        text = ",".join(keys) + "\n" + "".join(",".join(str(r.get(k, "")) for k in keys) + "\n" for r in rows)
        atomic_write(self.out / HISTORY, lambda p: p.write_text(text))


def _valid_hits(learn: Learner) -> str:
    "This epoch's validation photos as a string of '1' (right) and '0' (wrong), from the balanced-accuracy metric."
    m = next(m for m in learn.metrics if m.name == "balanced_accuracy")
    hits = torch.cat(m.preds).view(-1) == torch.cat(m.targs).view(-1)
    return "".join("1" if h else "0" for h in hits.tolist())


def _rng_state(dls: DataLoaders) -> dict:
    return dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state(),
        dl=base_dl(dls.train).rng.getstate(),
    )


def _set_rng_state(s: dict, dls: DataLoaders) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    base_dl(dls.train).rng.setstate(s["dl"])


def find_lr(learn: Learner, out: Path) -> float:
    "Run `lr_find`, save its plot to OUT/lr_find.png, and return the 'valley' suggestion."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = learn.lr_find(show_plot=True)
    atomic_write(out / "lr_find.png", lambda p: plt.gcf().savefig(p, format="png", dpi=100, bbox_inches="tight"))
    plt.close("all")
    log.info("lr_find suggests lr = %.2e (plot: %s)", res.valley, out / "lr_find.png")
    return float(res.valley)


def _load_checkpoint(out: Path) -> dict:
    path = out / CHECKPOINT
    if not path.is_file():
        raise ExportError(f"--resume: no {CHECKPOINT} in {out}; nothing to resume (start without --resume)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ExportError(f"--resume: {path} cannot be read ({e}); start again without --resume") from None


def train_model(cfg: TrainConfig, cbs: list[Callback] | None = None) -> dict[str, Any]:
    """Train and export as `cfg` says; returns the evaluation summary. The whole job behind `catdog-train`.

    `cbs` are extra fastai callbacks for every phase (loggers, early stopping, ...).
    """
    out = Path(cfg.out)
    ckpt = _load_checkpoint(out) if cfg.resume else None
    if ckpt is not None:
        saved = TrainConfig(**{**ckpt["config"], "resume": True})
        changed = {k: v for k, v in cfg.to_dict().items() if k != "resume" and v != getattr(saved, k)}
        if changed:
            log.warning("--resume uses the interrupted run's settings; ignoring %s", changed)
        cfg = saved
    if is_main():
        _check_writable(out)
    if world_size() > 1 and cfg.lr_value() is None:
        raise LaunchError("--lr auto runs lr_find on one process: run it without the launcher, then pass --lr")
    device = _device()
    # Bit-reproducible on the CPU (what --resume is tested against). On a GPU, cuDNN picks the fastest kernels
    # for our fixed input size instead of deterministic ones (BENCHMARKS.md).
    set_seed(cfg.seed, reproducible=device.type == "cpu")
    torch.backends.cudnn.benchmark = device.type == "cuda"
    dls = get_dls(dataclasses.replace(cfg, bs=per_rank_bs(cfg.bs)), device=device)
    learn = get_learner(dls, cfg)
    quiet_bar = not sys.stdout.isatty()
    if quiet_bar:  # logs and CI: one line per epoch from Checkpointer instead of bars and raw lists
        learn.remove_cb(ProgressCallback)
        learn.logger = lambda *_: None
    lr = cfg.lr_value()
    if ckpt is not None:
        lr = ckpt["state"]["lr"]
    elif lr is None:
        lr = find_lr(learn, out)
    phases = schedule(cfg, lr)
    state = (
        ckpt["state"]
        if ckpt
        else dict(
            lr=lr,
            phases=[p.name for p in phases],
            history=[],
            correct=[],
            done=0,
            total=sum(p.epochs for p in phases),
        )
    )
    start_phase, start_epoch = 0, 0
    if ckpt is not None:
        start_phase, start_epoch = ckpt["phase"], ckpt["epoch"] + 1
        if start_epoch >= ckpt["n_epoch"]:
            start_phase, start_epoch = start_phase + 1, 0
        log.info(
            "resuming at %s epoch %d of %d",
            state["phases"][min(start_phase, len(phases) - 1)],
            start_epoch + 1,
            state["total"],
        )
    for i, ph in enumerate(phases):
        if i < start_phase:
            continue
        learn.freeze() if ph.name == "frozen" else learn.unfreeze()
        if ckpt is not None and i == start_phase:
            learn.model.load_state_dict(ckpt["model"])
            if start_epoch > 0:  # mid-phase: same optimizer moments and RNG as the interrupted run
                learn.create_opt()
                learn.opt.load_state_dict(ckpt["opt"])
                _set_rng_state(ckpt["rng"], dls)
        on_gpu = [LossOnDevice()] if device.type == "cuda" else []
        with distrib(learn):
            learn.fit_one_cycle(
                ph.epochs,
                ph.lr,
                cbs=[Checkpointer(cfg, i, state, quiet_bar), *on_gpu, *(cbs or [])],
                start_epoch=start_epoch if i == start_phase else 0,
                **ph.kw,
            )
    if not finish():  # every rank has finished training; rank 0 alone reports and exports
        return {}
    epoch = export_epoch([[c == "1" for c in h] for h in state["correct"]], cfg.export_epoch)
    if epoch != state["done"] - 1:
        log.info("exporting epoch %d: better than the last on the validation set (McNemar p < 0.05)", epoch + 1)
        learn.model.load_state_dict(torch.load(out / BEST, map_location="cpu"))
    from .evaluate import report

    summary = report(learn, out)
    summary.update(exported_epoch=epoch + 1, history=state["history"], valid_hits=state["correct"])
    export(learn, cfg, {k: v for k, v in summary.items() if k not in _REPORT_ONLY})
    write_json(out / "train_config.json", cfg.to_dict())
    for f in (CHECKPOINT, BEST):
        (out / f).unlink(missing_ok=True)
    log.info("exported to %s (model.safetensors + model.json%s)", out, ", model.pkl" if cfg.pkl else "")
    return summary


_REPORT_ONLY = (
    "per_class",
    "n_valid_per_class",
    "few_valid_classes",
    "history",
    "valid_hits",
)  # report.json, not model.json


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ExportError(f"--out {out} is not writable ({e.strerror})") from None


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    "Console entry point: `catdog-train --help`."
    level = logging.INFO if is_main() else logging.WARNING  # under a launcher, rank 0 speaks for all
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stdout, force=True)
    cfg = parse_config(argv)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)  # `kill`, schedulers: same as Ctrl-C
    try:
        train_model(cfg)
    except (DataError, ModelError, ExportError, LaunchError) as e:
        print(f"catdog-train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\ncatdog-train: interrupted. The last completed epoch is saved in {Path(cfg.out) / CHECKPOINT}; "
            f"continue with: catdog-train --out {cfg.out} --resume",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
