"""The fastai callbacks `catdog-train` adds to every fit, and the checkpoint they write.

`Checkpointer` logs each epoch, records it in the run's `RunState`, appends it to `history.csv` and saves
`checkpoint.pth`, from which `ResumePoint` continues an interrupted run; `LossOnDevice` keeps the smoothed loss on
the GPU.
"""

from __future__ import annotations

import logging
import random
import time
import typing
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import AvgSmoothLoss, Learner

from .config import TrainConfig
from .distributed import base_dl, is_main, unwrap, world_size
from .errors import ResumeError
from .files import BEST, CHECKPOINT, HISTORY, atomic_write
from .metrics import best_epoch
from .records import fits

log = logging.getLogger("catdog_fastai")


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


class FrozenBNStats(Callback):
    """Keep the backbone's BatchNorm layers in eval mode while training, so their statistics stay those of
    pretraining (their scale and shift still train). Batches of a few dozen photos, most of them from the biggest
    classes, would otherwise pull the statistics away from what the pretrained weights expect."""

    order = 11  # after TrainEvalCallback (-10), whose before_train calls model.train()

    def before_train(self) -> None:
        for m in unwrap(self.learn.model)[0].modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


@dataclass
class RunState:
    """What a run carries from epoch to epoch, and through `checkpoint.pth` to `--resume`.

    Typed, so that a misspelt key fails where it is written rather than epochs later on resume; saved in the
    checkpoint as a plain dict (`to_dict`), so a checkpoint loads without this class and older ones still load.
    """

    lr: float  # the base learning rate (lr_find's suggestion under --lr auto: resuming must not search again)
    phases: list[str]  # the schedule's phase names, in order ('frozen', 'unfrozen')
    total: int  # epochs in the whole schedule
    done: int = 0  # epochs completed so far, over all phases
    history: list[dict[str, Any]] = field(default_factory=list)  # one row of history.csv per completed epoch
    correct: list[list[bool]] = field(default_factory=list)  # per completed epoch: each validation photo right?

    def record(self, row: dict[str, Any], hits: list[bool]) -> None:
        "Add one completed epoch: its history row and which validation photos it got right."
        self.history.append(row)
        self.correct.append(hits)
        self.done += 1

    def last_is_best(self) -> bool:
        "Whether the epoch just recorded is the one `--export-epoch best` would export so far."
        return best_epoch(self.correct) == len(self.correct) - 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, source: str = "the checkpoint") -> RunState:
        "The state `to_dict` saved; `ResumeError` naming what is wrong if `d` is not one (a damaged or foreign file)."
        if not isinstance(d, dict):
            raise _bad_state(source, f"a {type(d).__name__} where a dict of the run's progress belongs")
        hints = typing.get_type_hints(cls)
        missing = [f.name for f in fields(cls) if f.name not in d]
        if missing:
            raise _bad_state(source, f"missing {', '.join(missing)}")
        wrong = [f"{k} is {type(d[k]).__name__}" for k, t in hints.items() if not fits(d[k], t)]
        if wrong:
            raise _bad_state(source, ", ".join(wrong))
        state = cls(**{k: d[k] for k in hints})
        if not (len(state.history) == len(state.correct) == state.done <= state.total):
            raise _bad_state(
                source,
                f"{state.done} epochs done of {state.total}, with {len(state.history)} history rows and "
                f"{len(state.correct)} validation records",
            )
        return state


def _bad_state(source: str, why: str) -> ResumeError:
    return ResumeError(f"--resume: the run state in {source} is malformed ({why}); start again without --resume")


class Checkpointer(Callback):
    """After every trained epoch: one log line, `history.csv`, `checkpoint.pth` (resume) and `best.pth`.

    All writes are atomic, so Ctrl-C or SIGTERM at any moment leaves the last completed epoch resumable.
    """

    order = 90  # after Recorder (50) has the epoch's metrics

    def __init__(self, cfg: TrainConfig, phase_idx: int, state: RunState, quiet_bar: bool):
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
            phase=self.state.phases[self.phase_idx],
            epoch=self.epoch,
            global_epoch=self.state.done,
            **{n: float(v) for n, v in zip(names, vals)},
            seconds=round(time.perf_counter() - self.t0, 2),
        )
        seen = self.n_seen * world_size()  # every rank trains an equal shard of the epoch
        row["train_img_per_s"] = round(seen / max(self.train_seconds, 1e-9), 1)  # training steps only
        self.state.record(row, _valid_hits(self.learn))
        if self.cfg.export_epoch == "best" and self.state.last_is_best():
            atomic_write(self.out / BEST, lambda p: torch.save(unwrap(self.learn.model).state_dict(), p))
        self._write_history()
        ckpt = dict(
            model=unwrap(self.learn.model).state_dict(),
            opt=self.learn.opt.state_dict(),
            phase=self.phase_idx,
            epoch=self.epoch,
            n_epoch=self.n_epoch,
            state=self.state.to_dict(),  # a plain dict: the checkpoint loads without this module's classes
            config=self.cfg.to_dict(),
            rng=_rng_state(self.dls),
            smooth_loss=_smooth_loss_state(self.recorder.smooth_loss),
        )
        atomic_write(self.out / CHECKPOINT, lambda p: torch.save(ckpt, p))
        if self.print_lines:
            metrics = "  ".join(f"{k} {row[k]:.4f}" for k in names)
            log.info(
                "epoch %d/%d (%s %d/%d)  %s  %.1fs  %.1f img/s",
                row["global_epoch"] + 1,
                self.state.total,
                row["phase"],
                self.epoch + 1,
                self.n_epoch,
                metrics,
                row["seconds"],
                row["train_img_per_s"],
            )

    def _write_history(self) -> None:
        rows = self.state.history
        keys = list(rows[0])
        text = ",".join(keys) + "\n" + "".join(",".join(str(r.get(k, "")) for k in keys) + "\n" for r in rows)
        atomic_write(self.out / HISTORY, lambda p: p.write_text(text))


def _valid_hits(learn: Learner) -> list[bool]:
    "Whether each validation photo of this epoch was right, from the balanced-accuracy metric's predictions."
    m = next(m for m in learn.metrics if m.name == "balanced_accuracy")
    hits = torch.cat(m.preds).view(-1) == torch.cat(m.targs).view(-1)
    return hits.tolist()


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


def _smooth_loss_state(m: AvgSmoothLoss) -> dict:
    return dict(val=m.val.detach().cpu(), count=m.count)


class _RestoreSmoothLoss(Callback):
    """Continue the smoothed training loss where the interrupted fit left it, instead of from Recorder's reset.

    fastai's smoothed loss runs across the epochs of a fit, so without this the resumed epoch's `train_loss`
    would differ from the uninterrupted run's (the weights would not)."""

    order = 60  # after Recorder (50) resets it in before_fit

    def __init__(self, state: dict):
        self.state = state

    def before_fit(self) -> None:
        m = self.recorder.smooth_loss
        m.val, m.count = self.state["val"].to(m.val.device), self.state["count"]

    def after_fit(self) -> None:
        self.learn.remove_cb(self)  # once: the next phase starts its own smoothed loss


@dataclass
class ResumePoint:
    """Where an interrupted run stopped, read from OUT/checkpoint.pth: the whole of `--resume` in one object."""

    ckpt: dict  # what `Checkpointer` saved after the last completed epoch
    path: Path = Path(CHECKPOINT)  # where it was read from, for messages

    @classmethod
    def load(cls, cfg: TrainConfig) -> tuple[TrainConfig, ResumePoint | None]:
        "(the settings to train with, the resume point): the interrupted run's settings win over the command line."
        if not cfg.resume:
            return cfg, None
        path = Path(cfg.out) / CHECKPOINT
        if not path.is_file():
            raise ResumeError(f"--resume: no {CHECKPOINT} in {cfg.out}; nothing to resume (start without --resume)")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ResumeError(f"--resume: {path} cannot be read ({e}); start again without --resume") from None
        before_05 = dict(head="fastai", freeze_bn=False, wise=1.0)  # what runs interrupted before 0.5 trained with
        saved = TrainConfig(**{**before_05, **ckpt["config"], "resume": True})
        changed = {k: v for k, v in cfg.to_dict().items() if k != "resume" and v != getattr(saved, k)}
        if changed:
            log.warning("--resume uses the interrupted run's settings; ignoring %s", changed)
        return saved, cls(ckpt, path)

    @cached_property
    def state(self) -> RunState:
        "The interrupted run's state, read once: training goes on recording into this same object."
        return RunState.from_dict(self.ckpt.get("state"), str(self.path))

    def start(self) -> tuple[int, int]:
        "(phase, epoch) to continue from: the epoch after the last completed one."
        phase, epoch = self.ckpt["phase"], self.ckpt["epoch"] + 1
        return (phase + 1, 0) if epoch >= self.ckpt["n_epoch"] else (phase, epoch)

    def restore(self, learn: Learner, dls: DataLoaders) -> None:
        "Weights, and mid-phase also the optimizer moments, RNG streams and smoothed loss the interrupted run had."
        learn.model.load_state_dict(self.ckpt["model"])
        if self.start()[1] > 0:
            learn.create_opt()
            learn.opt.load_state_dict(self.ckpt["opt"])
            _set_rng_state(self.ckpt["rng"], dls)
            if "smooth_loss" in self.ckpt:  # older checkpoints lack it: only train_loss differs then
                learn.add_cb(_RestoreSmoothLoss(self.ckpt["smooth_loss"]))
