"""The one training configuration, and the command line built from it.

Every setting lives once, here, with its default and the reason for it; `catdog-train --help` is generated from
these fields, and the final config is saved next to the export (`model.json`) so a model can be rebuilt.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .labels import TASKS
from .meta import HEADS

# The names each choice flag accepts, for `catdog-train --help` without torch (serving installs have none). The
# modules that implement them import them from here (loggers.LOGGERS, losses.SAMPLING_POWER), from labels.py (TASKS)
# or from meta.py (HEADS, the names model.json's `head` takes; model.create_head builds each), or are held equal to
# them by tests/test_layers.py (optim.OPT_FUNCS, keyed by the optimizers' own names).
LOGGERS = ("none", "tensorboard", "wandb")  # loggers.logger_callbacks starts each
OPTIMIZERS = ("adam", "sgd", "radam", "ranger", "lamb", "rmsprop", "qhadam")  # optim.OPT_FUNCS maps each
SAMPLING_POWER = {"instance": 0.0, "sqrt": 0.5, "balanced": 1.0}  # a photo is drawn with weight n_class ** -power


def _f(default: Any, help: str, group: str, **kw: Any) -> Any:
    return field(default=default, metadata=dict(help=help, group=group, **kw))


@dataclass
class TrainConfig:
    # data
    data: str | None = _f(
        None,
        "Pets-shaped folder (images/ [+ annotations/]) or a folder of Breed_N.jpg files; or your own photos: a "
        "folder with one subfolder per class (the folder names are the labels), or a CSV of file,label[,is_valid] "
        "(file relative to the CSV); train/ and valid/ subfolders holding either folder layout are the split; "
        "default: download Oxford-IIIT Pets with untar_data(URLs.PETS)",
        "data",
    )
    task: str = _f(
        "catdog",
        "for Pets file names: catdog (is_cat: Capitalised file names are cats) or breeds (37 classes); "
        "class folders and CSVs bring their own labels",
        "data",
        choices=TASKS,
    )
    split: str = _f(
        "stratified",
        "stratified (--valid-pct of every class, so every class is measured), random (--valid-pct of all photos), "
        "official (annotations/trainval.txt + test.txt) or folders (train/ and valid/ subfolders of --data); "
        "data with its own split (train/ and valid/ both there, or a CSV's is_valid column) always uses it",
        "data",
        choices=("stratified", "random", "official", "folders"),
    )
    valid_pct: float = _f(0.2, "validation fraction for random/stratified splits", "data")
    size: int = _f(
        224,
        "final training/inference image size (px); 224 is what ImageNet backbones were trained at, and keeps "
        "tf_efficientnet_lite2 within the serving-time rule of --arch",
        "data",
    )
    presize: int = _f(
        320,
        "item-level crop size before batch augmentation (presizing: big first, so the batch "
        "warp/zoom has real pixels to work with instead of padding)",
        "data",
    )
    min_scale: float = _f(0.75, "smallest random crop, as a fraction of the short side, in the item transform", "data")
    bs: int = _f(32, "batch size", "data")
    workers: int = _f(
        -1, "DataLoader worker processes; -1 = auto: CPU cores (max 8) on a GPU machine, 0 on CPU-only", "data"
    )
    cache: bool = _f(
        False,
        "decode each photo once and keep it in RAM (at most a quarter of available memory) instead of decoding "
        "it again every epoch; off by default: it helps only where decoding, not the model, sets the pace (few "
        "CPU cores per GPU), and it holds every photo in memory (BENCHMARKS.md §5)",
        "data",
    )
    # model
    arch: str = _f(
        "tf_efficientnet_lite2",
        "any timm model name. The default is chosen on the measured accuracy/time frontier (benchmarks/frontier.py, "
        "BENCHMARKS.md §0): the most accurate point whose README command takes at most 1.3x the time of the previous "
        "default (tf_efficientnet_lite0) and serves a photo in at most 1.5x its time. At 224 px its training-free "
        "start scores 0.854 balanced breed accuracy against lite0's 0.799 (group-aware 5-fold CV), for 1.20x the "
        "README command's time on a 2-core CPU and 1.49x lite0's floating-point work per photo",
        "model",
    )
    pretrained: bool = _f(True, "start from ImageNet weights (timm Hub, or --weights FILE offline)", "model")
    weights: str | None = _f(None, "local .safetensors/.pth with timm key names, for offline/air-gapped use", "model")
    head: str = _f(
        "cosine",
        "cosine (a cosine classifier on the pretrained average-pooled features, started at their class means: "
        "training begins at the training-free nearest-class-mean baseline instead of a random head) or fastai "
        "(fastai's default head: concat pooling, two linear layers, random start)",
        "model",
        choices=HEADS,
    )
    # training
    epochs: int = _f(
        0,
        "unfrozen epochs (fine_tune's epochs). 0 with --freeze-epochs 0, the default, trains nothing: it exports the "
        "nearest class mean of the pretrained features, from every labelled photo once the validation photos have "
        "given their figures. Under group-aware 5-fold CV on pets-dev, fastai's fine_tune recipe (--epochs 4 "
        "--freeze-epochs 1) adds -0.001 +/- 0.011 balanced breed accuracy to it on tf_efficientnet_lite2 at 224 px, "
        "for 2.85x the time (BENCHMARKS.md §0)",
        "train",
    )
    freeze_epochs: int = _f(0, "epochs training only the head before unfreezing (fine_tune's freeze_epochs)", "train")
    lr: str = _f("2e-3", "base learning rate, or 'auto' to run lr_find and use its suggestion", "train")
    opt: str = _f("adam", "optimizer from the SGD family", "train", choices=OPTIMIZERS)
    wd: float = _f(0.01, "weight decay (decoupled for adam-style optimizers)", "train")
    freeze_bn: bool = _f(
        True,
        "keep the backbone's BatchNorm statistics from pretraining while training (its layers in eval mode): with "
        "a few photos per class, batch statistics drift towards the classes that fill the batches",
        "train",
    )
    wise: float = _f(
        1.0,
        "weight-space ensemble (WiSE-FT, Wortsman et al., CVPR 2022): export (1 - wise) x the starting weights + "
        "wise x the fine-tuned ones; 1 (the default: mixing did not raise held-out accuracy, BENCHMARKS.md §1) "
        "exports the fine-tuned weights, 0 the untrained start",
        "train",
    )
    label_smoothing: float = _f(0.0, "label smoothing for the cross-entropy loss; 0 disables", "train")
    sampling: str = _f(
        "instance",
        "instance (every training photo once an epoch), balanced (every class equally often, drawn with "
        "replacement) or sqrt (classes in proportion to the square root of their size); the loss takes out "
        "whatever class prior the sampling leaves",
        "train",
        choices=tuple(SAMPLING_POWER),
    )
    logit_adjust: float = _f(
        1.0,
        "tau of the logit-adjusted loss (Menon et al. 2021): the model learns class-balanced probabilities from "
        "imbalanced photos, so a class with few training photos is not drowned out by the big ones; exactly "
        "cross-entropy on balanced data; 0 = plain cross-entropy",
        "train",
    )
    seed: int = _f(42, "random seed for the split, the initial head weights and augmentation", "train")
    precision: str = _f(
        "auto",
        "auto (bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU), fp32, bf16, fp16",
        "train",
        choices=("auto", "fp32", "bf16", "fp16"),
    )
    channels_last: bool = _f(
        True,
        "channels_last memory format: faster convolutions on a GPU and on the CPU (oneDNN; BENCHMARKS.md §4)",
        "train",
    )
    known_precision: float = _f(
        0.97,
        "share of unhedged ('known') answers that must be right: the known/unsure line is fitted at export so that "
        "known answers are right this often, every class weighing the same: training-free, on every labelled photo "
        "left out of its class mean; fine-tuned, on the validation photos and their low-resolution and grayscale "
        "views. The rest are answered as unsure, naming what the model is torn between. On held-out Pets photos "
        "0.97 keeps 60 %% known, 98.4 %% of them right (BENCHMARKS.md §2)",
        "train",
    )
    # output
    out: str = _f("models", "output folder: model.safetensors + model.json, model.pkl, report, history.csv", "output")
    resume: bool = _f(False, "continue an interrupted run from OUT/checkpoint.pth", "output")
    export_epoch: str = _f(
        "last",
        "last (one-cycle's final epoch) or best (the epoch with the most validation hits, only where a McNemar "
        "test says the validation set can tell it from the last one)",
        "output",
        choices=("last", "best"),
    )
    logger: str = _f(
        "none",
        "training curves: none, tensorboard (event files in OUT/runs: tensorboard --logdir OUT/runs) or wandb "
        "(Weights & Biases; WANDB_MODE=offline logs without an account); needs pip install 'catdog_fastai[NAME]'",
        "output",
        choices=LOGGERS,
    )
    pkl: bool = _f(True, "also write model.pkl (fastai learn.export) beside the pickle-free export", "output")
    onnx: bool = _f(
        True,
        "also write model.onnx, the same network for ONNX Runtime (serving without torch, faster on CPUs)",
        "output",
    )

    def lr_value(self) -> float | None:
        "The numeric learning rate, or None for 'auto'."
        if self.lr == "auto":
            return None
        return float(self.lr)

    def validate(self) -> TrainConfig:
        "Reject settings that would fail later (and slowly), with a message that names the flag."
        problems = []
        if self.lr != "auto":
            try:
                lr = float(self.lr)
                if not (0 < lr < 10):
                    problems.append(f"--lr must be between 0 and 10 (got {self.lr})")
            except ValueError:
                problems.append(f"--lr must be a number like 2e-3 or 'auto' (got {self.lr!r})")
        if self.bs < 1:
            problems.append(f"--bs must be at least 1 (got {self.bs})")
        if self.size < 32:
            problems.append(f"--size must be at least 32 px (got {self.size})")
        if self.presize < self.size:
            problems.append(f"--presize ({self.presize}) must be at least --size ({self.size})")
        if not (0 < self.valid_pct < 1):
            problems.append(f"--valid-pct must be between 0 and 1 (got {self.valid_pct})")
        if not (0 < self.min_scale <= 1):
            problems.append(f"--min-scale must be in (0, 1] (got {self.min_scale})")
        if self.epochs < 0 or self.freeze_epochs < 0:
            problems.append("--epochs and --freeze-epochs must be >= 0")
        elif self.epochs + self.freeze_epochs == 0 and self.head != "cosine":
            problems.append(
                "--head fastai starts from random weights: train it with --epochs N (e.g. --epochs 4 --freeze-epochs "
                "1); with --epochs 0 --freeze-epochs 0 (the default) only the cosine head is a classifier, the "
                "nearest class mean"
            )
        if self.logit_adjust < 0:
            problems.append(f"--logit-adjust must be >= 0 (got {self.logit_adjust})")
        if not (0 <= self.wise <= 1):
            problems.append(f"--wise must be in [0, 1] (got {self.wise})")
        elif self.wise < 1 and self.head != "cosine":
            problems.append(
                "--wise below 1 mixes in the starting head, which only --head cosine starts anywhere useful"
            )
        if not (0.5 <= self.known_precision <= 1):
            problems.append(f"--known-precision must be in [0.5, 1] (got {self.known_precision})")
        if not (0 <= self.label_smoothing < 1):
            problems.append(f"--label-smoothing must be in [0, 1) (got {self.label_smoothing})")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_parser(cls: type = TrainConfig, **kw: Any) -> argparse.ArgumentParser:
    "An argparse parser with one flag per dataclass field, grouped, defaults shown in `--help` (`cli.build_parser`)."
    from .cli import build_parser as build

    return build(cls, **kw)


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    "Parse `argv` into a validated `TrainConfig`; bad values exit with argparse's usage message."
    p = build_parser(description="Fine-tune a timm backbone on Oxford-IIIT Pets with fastai and export it.")
    ns = p.parse_args(argv)
    cfg = TrainConfig(**vars(ns))
    try:
        return cfg.validate()
    except ValueError as e:
        p.error(str(e))
        raise  # unreachable: p.error exits
