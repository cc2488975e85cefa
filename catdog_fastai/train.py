"""`catdog-train`: find the data, build the learner, fine-tune one-cycle, report, export. Reads top to bottom.

    catdog-train --task breeds                          # downloads Oxford-IIIT Pets and ImageNet weights
    catdog-train --data PETS/images --task breeds --weights tf_efficientnet_lite0.in1k.safetensors   # offline

The schedule is fastai's `fine_tune` (head only with `pct_start=0.99`, then everything with discriminative rates),
run phase by phase so that every epoch can be checkpointed and an interrupted run resumed mid-schedule.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastai.callback.channelslast  # noqa: F401 - patches Learner.to_channelslast
import fastai.callback.fp16  # noqa: F401 - patches Learner.to_fp16 / to_bf16
import fastai.callback.schedule  # noqa: F401 - patches Learner.fit_one_cycle / lr_find
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.data.core import DataLoaders
from fastai.data.transforms import Normalize
from fastai.learner import Learner
from fastai.metrics import accuracy, error_rate
from fastai.torch_core import set_seed

from . import ood
from .callbacks import Checkpointer, FrozenBNStats, LossOnDevice, ResumePoint, RunState
from .card import check_card_target, write_card
from .cli import error
from .config import TrainConfig, parse_config
from .data import find, get_dls
from .distributed import LaunchError, distrib, finish, is_main, per_rank_bs, world_size
from .errors import CatdogError, OutputError
from .evaluate import report
from .export import export
from .files import BEST, CHECKPOINT, CONFIG, LR_FIND, ONNX, atomic_write, write_json
from .labels import model_task
from .loggers import logger_callbacks
from .losses import sampled_counts, training_loss
from .metrics import BalancedAccuracy, export_epoch
from .model import CosineClassifier, build_model, norm_stats, splitter, wise_ft
from .optim import OPT_FUNCS
from .start import (
    duplicate_groups,
    imprint_all,
    left_out_logits,
    own_split,
    split_rows,
    start_from_pretrained,
    starting_features,
)

log = logging.getLogger("catdog_fastai")


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


def get_model(cfg: TrainConfig, n_classes: int) -> torch.nn.Sequential:
    "The network `cfg` names (`model.build_model`): its backbone, weights and head."
    return build_model(cfg.arch, n_classes, pretrained=cfg.pretrained, weights=cfg.weights, head=cfg.head)


def get_learner(dls: DataLoaders, cfg: TrainConfig, model: torch.nn.Sequential | None = None) -> Learner:
    """A fastai `Learner` over `model` (default: `get_model`), normalising inputs with the backbone's own statistics.

    Normalisation is added whether or not the weights are pretrained (fastai adds it only when pretrained), so
    training and the pickle-free predictor always agree on the input scale.
    """
    model = model if model is not None else get_model(cfg, len(dls.vocab))
    if not any(isinstance(t, Normalize) for t in dls.after_batch.fs):
        dls.add_tfms([Normalize.from_stats(*norm_stats(model))], "after_batch")
    learn = Learner(
        dls,
        model,
        loss_func=training_loss(sampled_counts(class_counts(dls), cfg.sampling), cfg.logit_adjust, cfg.label_smoothing),
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


def find_lr(learn: Learner, out: Path) -> float:
    "Run `lr_find`, save its plot to OUT/lr_find.png, and return the 'valley' suggestion."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = learn.lr_find(show_plot=True)
    atomic_write(out / LR_FIND, lambda p: plt.gcf().savefig(p, format="png", dpi=100, bbox_inches="tight"))
    plt.close("all")
    log.info("lr_find suggests lr = %.2e (plot: %s)", res.valley, out / LR_FIND)
    return float(res.valley)


def train_model(cfg: TrainConfig, cbs: list[Callback] | None = None) -> dict[str, Any]:
    """Train and export as `cfg` says; returns the evaluation summary. The whole job behind `catdog-train`.

    `cbs` are extra fastai callbacks for every phase (loggers, early stopping, ...).
    """
    cfg, resume = ResumePoint.load(cfg)  # --resume: the interrupted run's settings and where it stopped
    out = Path(cfg.out)
    if is_main():
        _check_writable(out)
    # loggers first: a missing package is one line now, not after the data, the weights and the baseline
    epochs_done = resume.state.done if resume else 0
    cbs = [*logger_callbacks(cfg.logger, out, epochs_done=epochs_done, config=cfg.to_dict()), *(cbs or [])]
    if world_size() > 1 and cfg.lr_value() is None:
        raise LaunchError("--lr auto runs lr_find on one process: run it without the launcher, then pass --lr")

    # device and seed: bit-reproducible on the CPU (what --resume is tested against); on a GPU, cuDNN picks the
    # on a GPU: the fastest kernels for our fixed input size instead of deterministic ones (cuDNN autotuning)
    device = _device()
    set_seed(cfg.seed, reproducible=device.type == "cpu")
    torch.backends.cudnn.benchmark = device.type == "cuda"

    # data and learner
    found = find(cfg)  # found.layout: where the labels come from, for the report, the gate and model.json
    model = get_model(cfg, len(set(found.labels)))
    feats = starting_features(model, found, cfg, device)  # one pass: the split's groups, the head, the baseline
    groups = duplicate_groups(feats, cfg)
    dls = get_dls(dataclasses.replace(cfg, bs=per_rank_bs(cfg.bs)), device=device, found=found, groups=groups)
    learn = get_learner(dls, cfg, model)
    quiet_bar = not sys.stdout.isatty()
    if quiet_bar:  # logs and CI: one line per epoch from Checkpointer instead of bars and raw lists
        learn.remove_cb(ProgressCallback)
        learn.logger = lambda *_: None

    # start at what the pretrained features know: their class means, scored and (cosine head) imprinted
    baseline = start_from_pretrained(learn, feats, found)
    start = {k: v.detach().cpu().clone() for k, v in learn.model.state_dict().items()} if cfg.wise < 1 else None

    # learning rate and schedule
    trains = cfg.epochs + cfg.freeze_epochs > 0  # else: the training-free export, no rate to find
    lr = resume.state.lr if resume else cfg.lr_value() or (find_lr(learn, out) if trains else 0.0)
    phases = schedule(cfg, lr)
    state = resume.state if resume else new_state(lr, phases)
    start_phase, start_epoch = resume.start() if resume else (0, 0)
    if resume:
        phase = state.phases[min(start_phase, len(phases) - 1)]
        log.info("resuming at %s epoch %d of %d", phase, start_epoch + 1, state.total)

    # fine_tune, phase by phase, every epoch checkpointed
    on_gpu = [LossOnDevice()] if device.type == "cuda" else []
    frozen_bn = [FrozenBNStats()] if cfg.freeze_bn else []
    for i, ph in enumerate(phases[start_phase:], start=start_phase):
        learn.freeze() if ph.name == "frozen" else learn.unfreeze()
        if resume and i == start_phase:
            resume.restore(learn, dls)
        with distrib(learn):
            learn.fit_one_cycle(
                ph.epochs,
                ph.lr,
                cbs=[Checkpointer(cfg, i, state, quiet_bar), *frozen_bn, *on_gpu, *cbs],
                start_epoch=start_epoch if i == start_phase else 0,
                **ph.kw,
            )
    if not finish():  # every rank has finished training; rank 0 alone reports and exports
        return {}

    # the epoch to export, the report, the export
    epoch = export_epoch(state.correct, cfg.export_epoch)
    if epoch != state.done - 1:
        log.info("exporting epoch %d: better than the last on the validation set (McNemar p < 0.05)", epoch + 1)
        learn.model.load_state_dict(torch.load(out / BEST, map_location="cpu"))
    if start is not None:
        wise_ft(learn.model, start, cfg.wise)
    # calibration, the "unknown" gate and the known/unsure line (ood.py, verdict.py)
    task = model_task(cfg.task, found.layout)
    free = not phases and isinstance(learn.model[1][-1], CosineClassifier)  # a head of class means, nothing trained
    means_of_all = free and own_split(cfg, found)  # ... which will hold every labelled photo (below)
    left_out = None
    if free:  # the known line, fitted out of sample on every photo the class means will hold
        held = range(len(found.items)) if means_of_all else split_rows(dls, found)[0]
        left_out = left_out_logits(learn, feats, found, held, groups)
    fitted = ood.fit(learn, cfg.size, task=task, known_target=cfg.known_precision, left_out=left_out)
    summary = report(
        learn,
        out,
        calibration=fitted.ood,
        baseline=baseline,
        verdict=fitted.verdict,
        task=task,
        trained=trains,
    )
    summary.update(exported_epoch=epoch + 1, history=state.history, valid_hits=state.correct)
    if means_of_all:
        imprint_all(learn, feats, found)
        summary["exported_means"] = "all labelled photos (training and validation); figures from the split"
        log.info(
            "export: class means of all %d labelled photos; the figures above come from the split", len(feats) // 2
        )
    export(learn, cfg, {k: v for k, v in summary.items() if k not in _REPORT_ONLY}, fitted, found.layout)
    write_json(out / CONFIG, cfg.to_dict())
    card = write_card(out)
    for f in (CHECKPOINT, BEST):
        (out / f).unlink(missing_ok=True)
    log.info("\n".join(where_it_went(cfg, out, card)))
    return summary


def where_it_went(cfg: TrainConfig, out: Path, card: Path) -> list[str]:
    "The closing lines: where the export, the card and the logs are, and how to open the app on this model."
    lines = [
        f"export: {out}/model.safetensors + model.json (load_predictor({str(out)!r}))"
        + (f", {out}/model.onnx (ONNX Runtime)" if (out / ONNX).is_file() else "")
        + (f", {out}/model.pkl (fastai load_learner)" if cfg.pkl else ""),
        f"model card: {card} (publish the folder as it is: hf upload USER/NAME {out})",
    ]
    if cfg.logger == "tensorboard":
        lines.append(f"training curves: tensorboard --logdir {out / 'runs'}")
    elif cfg.logger == "wandb":
        lines.append("training curves: in your Weights & Biases run (offline runs: wandb sync " + f"{out}/wandb)")
    lines.append(f"try it: catdog-app --model {out}   or   catdog-predict PHOTOS --model {out}")
    return lines


def new_state(lr: float, phases: list[Phase]) -> RunState:
    "A fresh run's state for `phases`: nothing done yet, at learning rate `lr`."
    return RunState(lr=lr, phases=[p.name for p in phases], total=sum(p.epochs for p in phases))


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
        raise OutputError(f"--out {out} is not writable ({e.strerror})") from None
    check_card_target(out)  # the model card must not replace a README.md of someone else's, found after training


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
    except CatdogError as e:
        return error("catdog-train", f"error: {e}")
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
