"""The recipes the benchmarks compare, as data: catdog_fastai's default (and variants of it), the fastai course
recipe and a plain PyTorch + timm loop. Same photos, backbone, image size, batch size and epoch budget.

Every recipe trains on the photos of `DATA/train` and watches `DATA/valid` as its validation set (fastai's
GrandparentSplitter layout; `catdog-train --split folders`), then returns its class probabilities for the
`DATA/valid` photos, also for their mirror images (flip test-time augmentation), with its training speed.
`accuracy.py` scores them by cross-validation; `throughput.py` and `memory.py` time them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from pathlib import Path

import bench
import torch
from views import ACCURACY_VIEWS, DEGRADATIONS

from catdog_fastai.labels import label_func

ARCH = "tf_efficientnet_lite0"  # the course and plain-loop recipes' backbone; accuracy.py --arch sets it for all
SIZE = 224  # catdog_fastai recipes' image size (accuracy.py --size)


WORKERS = -1  # --workers


def workers() -> int:
    "The same DataLoader worker count for every recipe: --workers, or catdog-train's automatic choice."
    from catdog_fastai.data import auto_workers

    return WORKERS if WORKERS >= 0 else auto_workers("cuda" if torch.cuda.is_available() else "cpu")


class _Speed:
    "A fastai callback counting training images and seconds (training steps only)."

    def __init__(self):
        from fastai.callback.core import Callback

        outer = self
        self.n, self.t = 0, 0.0

        class CB(Callback):
            order = 99

            def before_fit(self):  # fine_tune fits twice: keep the last (unfrozen) fit
                outer.n, outer.t = 0, 0.0

            def before_train(self):
                self.t0 = bench.timestamp(sync=True)

            def after_batch(self):
                if self.training:
                    outer.n += len(self.yb[0])

            def after_train(self):
                outer.t += bench.timestamp(sync=True) - self.t0

        self.cb = CB()

    @property
    def img_s(self) -> float:
        return self.n / self.t if self.t else float("nan")


# Variants of the default recipe, each (TrainConfig overrides, fastai callbacks, patches): one change at a time,
# for accuracy (the imbalance and small-data levers, tricks from the fastai and timm literature) and for speed (one
# speed-up undone, or the decoded-photo cache). Epoch budgets stay equal unless the name says otherwise ('freeze3'
# moves two unfrozen epochs into the frozen phase; 'ep8' doubles them). Test-time augmentation and post-hoc logit
# adjustment need no training of their own: `accuracy.py` scores every run with and without them.
def variant(name: str, epochs: int) -> tuple[dict, list, list]:
    from unittest import mock

    from fastai.callback.core import Callback
    from fastai.callback.mixup import CutMix, MixUp
    from fastai.optimizer import Adam

    from catdog_fastai import callbacks, optim

    class Deterministic(Callback):
        "Deterministic cuDNN kernels, as catdog-train used on GPUs before 0.2."

        def before_fit(self):
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False

        def after_fit(self):
            torch.backends.cudnn.deterministic = False

    class EMA(Callback):
        """timm's `ModelEmaV3` of the weights (decay 0.95, warmed up: ~1 epoch of 15 steps here), validated and
        saved in place of the raw weights; the raw weights go on training. Each fit of fine_tune starts a new
        average and ends with the model holding it (so the export is the EMA whichever epoch was best)."""

        order = 95  # after_epoch: after the Checkpointer (90) saved the validated (EMA) weights

        def before_fit(self):
            from timm.utils import ModelEmaV3

            self.ema, self.step, self.raw = ModelEmaV3(self.learn.model, decay=0.95, use_warmup=True), 0, None

        def after_step(self):
            self.step += 1
            self.ema.update(self.learn.model, step=self.step)

        def before_validate(self):
            self.raw = {k: v.clone() for k, v in self.learn.model.state_dict().items()}
            self.learn.model.load_state_dict(self.ema.module.state_dict())

        def after_epoch(self):
            if self.raw is not None:
                self.learn.model.load_state_dict(self.raw)
                self.raw = None

        def after_fit(self):
            self.learn.model.load_state_dict(self.ema.module.state_dict())

    def fastai_adam():
        return mock.patch.dict(optim.OPT_FUNCS, adam=Adam)

    def no_aug_syncs():
        """fastai's batch augmentation without its two GPU->CPU waits, same arithmetic: `_grid_sample` reads the
        zoom range (`.item()`) only when it can matter (resizing up by > 200 %, never at presize 320 -> 224), and
        Warp's `solve` skips the host-side error check (`solve_ex`)."""
        import fastai.vision.augment as aug
        import torch.nn.functional as F

        def grid_sample(x, coords, mode="bilinear", padding_mode="reflection", align_corners=None):
            if mode == "bilinear":
                d = min(x.shape[-2] / coords.shape[-2], x.shape[-1] / coords.shape[-1]) / 2
                if d > 1 and d > 1 / (coords.max() - coords.min()).item() * 2:
                    x = F.interpolate(x, scale_factor=1 / d, mode="area", recompute_scale_factor=True)
            return F.grid_sample(x, coords, mode=mode, padding_mode=padding_mode, align_corners=align_corners)

        return mock.patch.multiple(aug, _grid_sample=grid_sample, solve=lambda A, B: torch.linalg.solve_ex(A, B)[0])

    def sync_loss():  # the recorder's loss copied to the CPU every batch, as fastai does
        return mock.patch.multiple(callbacks.LossOnDevice, before_fit=lambda self: None, after_fit=lambda self: None)

    class KeepStart(Callback):
        "Keeps the weights training starts from (the imprinted head), for scoring WiSE-FT's mixing weight post hoc."

        def before_fit(self):
            if not hasattr(self, "start"):
                self.start = {k: v.detach().cpu().clone() for k, v in self.learn.model.state_dict().items()}

    return {
        "ours": ({}, [], []),
        "prototype": (dict(epochs=0, freeze_epochs=0), [], []),  # no training: the nearest class mean, served
        "ours-041": (dict(head="fastai", freeze_bn=False, wise=1.0), [], []),  # 0.4.1's default recipe
        "ours+sweep": (dict(wise=1.0), [KeepStart()], []),  # fine-tuned weights, scored at every WiSE-FT mix
        "ours+wise0.5": (dict(wise=0.5), [], []),
        "ours+short": (dict(freeze_epochs=0, epochs=1, size=128, presize=160), [], []),  # 1 epoch at 128 px
        "ours-freezebn": (dict(freeze_bn=False), [], []),
        "ours+fastaihead": (dict(head="fastai"), [], []),
        "ours-la": (dict(logit_adjust=0.0), [], []),  # plain cross-entropy instead of the logit-adjusted loss
        "ours+best": (dict(export_epoch="best"), [], []),
        "ours+balanced": (dict(sampling="balanced"), [], []),  # every class equally often (prior then uniform)
        "ours+sqrt": (dict(sampling="sqrt"), [], []),
        "ours+tau2": (dict(logit_adjust=2.0), [], []),
        "ours+cache": (dict(cache=True), [], []),
        "ours+nosyncaug": ({}, [], [no_aug_syncs()]),  # a GPU-side saving: measure it on a GPU (§4)
        "ours+ls": (dict(label_smoothing=0.1), [], []),
        "ours+ema": ({}, [EMA()], []),
        "ours+mixup": ({}, [MixUp(0.4)], []),
        "ours+cutmix": ({}, [CutMix(1.0)], []),
        "ours+freeze3": (dict(freeze_epochs=3, epochs=max(1, epochs - 2)), [], []),
        "ours+res288": (dict(size=288, presize=384), [], []),
        "ours+ep8": (dict(epochs=8), [], []),  # twice the default epoch budget
        "ours+lrfind": (dict(lr="auto"), [], []),
        "ours+sgd": (dict(opt="sgd", lr="2e-2"), [], []),
        # speed changes undone
        "ours-channelslast": (dict(channels_last=False), [], []),
        "ours-fusedadam": ({}, [], [fastai_adam()]),
        "ours-lossondevice": ({}, [], [sync_loss()]),
        "ours+deterministic": ({}, [Deterministic()], []),
        "ours-v0.1": (  # the 0.1.0 pipeline: channels_last on GPUs only
            dict(channels_last=torch.cuda.is_available()),
            [Deterministic()],
            [fastai_adam(), sync_loss()],
        ),
    }[name]


def _valid_probs(model_probs, xs: torch.Tensor, bs: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    "Probabilities for a batch of inputs and for their mirror images (flip TTA), `bs` at a time."
    p = torch.cat([model_probs(xs[i : i + bs]) for i in range(0, len(xs), bs)])
    p_flip = torch.cat([model_probs(xs[i : i + bs].flip(-1)) for i in range(0, len(xs), bs)])
    return p.float().cpu(), p_flip.float().cpu()


def _result(vocab, files, counts, probs, img_s, t0, history=None, hits=None, **more) -> dict:
    """What every recipe returns: validation files, the vocab, training photos per class, probabilities (plain and
    mirrored) and training speed (unfrozen epochs); catdog_fastai's recipes add `views` (probabilities of degraded
    copies), `verdicts` and `ood` (`score_export`)."""
    return dict(
        **more,
        vocab=[str(v) for v in vocab],
        files=[str(f) for f in files],
        counts=list(counts),
        probs=probs[0],
        probs_flip=probs[1],
        img_s=img_s,
        train_minutes=(time.perf_counter() - t0) / 60,
        history=history or [],
        valid_hits=hits or [],
    )


def run_ours(data: Path, weights: str, epochs: int, seed: int, out: Path, task: str, recipe: str, score: bool):
    from catdog_fastai import TrainConfig
    from catdog_fastai.predict import load_predictor
    from catdog_fastai.sources import find_images
    from catdog_fastai.train import train_model

    overrides, cbs, patches = variant(recipe, epochs)
    cfg = TrainConfig(
        data=str(data),
        split="folders",
        task=task,
        arch=ARCH,
        size=SIZE,
        weights=weights,
        epochs=epochs,
        freeze_epochs=1,
        seed=seed,
        out=str(out),
        pkl=False,
        workers=workers(),
    )
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        summary = train_model(dataclasses.replace(cfg, **overrides), cbs=cbs)
    unfrozen = [h["train_img_per_s"] for h in summary["history"] if h["phase"] == "unfrozen"]
    img_s = sum(unfrozen) / len(unfrozen) if unfrozen else float("nan")
    if not score:
        return _result([], [], [], (None, None), img_s, t0)
    pred = load_predictor(out, backend="torch")  # the ours+sweep recipe edits its torch weights
    files = sorted(find_images(data / "valid")[0])
    train_files = find_images(data / "train")[0]
    label = label_func(task)
    counts = [sum(label(f) == v for f in train_files) for v in pred.vocab]
    scored = score_export(pred, files, OOD_PHOTOS)
    starts = [cb.start for cb in cbs if hasattr(cb, "start")]
    if starts:  # ours+sweep: the same training, exported at every WiSE-FT mixing weight
        from catdog_fastai.model import wise_ft

        tuned = {k: v.clone() for k, v in pred.model.state_dict().items()}
        for alpha in (0.0, 0.25, 0.5, 0.75):
            pred.model.load_state_dict(tuned)
            wise_ft(pred.model, starts[0], alpha)
            views = score_export(pred, files, {}, ("clean", *ACCURACY_VIEWS))["views"]
            scored["views"].update({f"{k}~wise{alpha}": v for k, v in views.items()})
    views = scored["views"]
    return _result(
        pred.vocab,
        files,
        counts,
        (views["clean"], views["flip"]),
        img_s,
        t0,
        summary["history"],
        summary["valid_hits"],
        **scored,
    )


OOD_PHOTOS: dict[str, list[Path]] = {}  # --ood-photos: category -> photos that are not Pets photos


def score_export(pred, files: list[Path], ood_photos: dict[str, list[Path]], view_names=None) -> dict:
    """An export as served (`load_predictor`) on the held-out photos, their mirror images and their degraded
    copies (`views.DEGRADATIONS`): probabilities per view; the verdict and its score per view; and on
    `ood_photos`, by category, the verdict and score of each."""
    from PIL import ImageOps

    from catdog_fastai.images import open_image

    imgs = [open_image(f) for f in files]
    fns = {"clean": lambda i: i, "flip": ImageOps.mirror, **DEGRADATIONS}
    views, verdicts = {}, {}
    for name in view_names or fns:
        preds = pred.predict_batch([fns[name](i) for i in imgs], top_k=None)
        views[name] = torch.tensor([[dict(p)[v] for v in pred.vocab] for p in preds])
        verdicts[name] = [(p.verdict, p.ood_score) for p in preds]
    ood = {
        cat: [
            (p.verdict, p.ood_score, p.species[0][0] if p.species else p[0][0]) for p in pred.predict_batch(fs, top_k=1)
        ]
        for cat, fs in ood_photos.items()
    }
    return dict(views=views, verdicts=verdicts, ood=ood)


def run_course(data: Path, weights: str, epochs: int, seed: int, task: str, score: bool) -> dict:
    "fastbook ch. 5: Resize(460) + aug_transforms(size=224, min_scale=0.75), vision_learner, fine_tune(epochs, 2e-3)."
    from fastai.vision.all import (
        CategoryBlock,
        DataBlock,
        FuncSplitter,
        ImageBlock,
        Resize,
        aug_transforms,
        error_rate,
        get_image_files,
        set_seed,
        vision_learner,
    )

    from catdog_fastai.train import class_counts

    set_seed(seed)  # as the course: no deterministic cuDNN kernels (they are slow)
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=label_func(task),
        splitter=FuncSplitter(lambda p: p.parent.name == "valid"),  # DATA/train, DATA/valid
        item_tfms=Resize(460),
        batch_tfms=aug_transforms(size=224, min_scale=0.75),
    )
    dls = dblock.dataloaders(data, bs=32, num_workers=workers())
    learn = vision_learner(dls, ARCH, metrics=error_rate, pretrained=True, pretrained_cfg_overlay=dict(file=weights))
    if torch.cuda.is_available():
        learn.to_bf16()  # same precision as the other recipes
    learn.logger = lambda *_: None  # no per-epoch lists in the benchmark's output
    speed = _Speed()
    t0 = time.perf_counter()
    with learn.no_bar():
        learn.fine_tune(epochs, 2e-3, cbs=[speed.cb])
    if not score:
        return _result([], [], [], (None, None), speed.img_s, t0)
    files = list(dls.valid_ds.items)
    dl = dls.test_dl(files, bs=64)
    learn.model.eval()
    with torch.inference_mode():
        xs = torch.cat([b[0] for b in dl])
        probs = _valid_probs(lambda x: learn.model(x).float().softmax(1), xs)
    return _result(dls.vocab, files, class_counts(dls), probs, speed.img_s, t0)


def run_timm(data: Path, weights: str, epochs: int, seed: int, task: str, score: bool, channels_last: bool = False):
    """Plain PyTorch + timm: RandomResizedCrop, AdamW one-cycle 2e-3, label smoothing 0.1, bf16 on GPU (epochs + 1).

    NCHW as written plainly (timm's own train.py has channels_last off by default); `timm+cl` turns it on."""
    import timm
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    from catdog_fastai.images import open_image
    from catdog_fastai.sources import find_images

    torch.manual_seed(seed)
    t_start = time.perf_counter()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    label = label_func(task)
    files, _ = find_images(data / "train")
    vocab = sorted({label(f) for f in files})
    norm = T.Normalize([0.5] * 3, [0.5] * 3)
    tf_train = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    tf_eval = T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor(), norm])

    class DS(Dataset):
        def __init__(self, fs, tf):
            self.fs, self.tf = fs, tf

        def __len__(self):
            return len(self.fs)

        def __getitem__(self, i):
            return self.tf(open_image(self.fs[i])), vocab.index(label(self.fs[i]))

    model = timm.create_model(ARCH, pretrained=True, num_classes=len(vocab), pretrained_cfg_overlay=dict(file=weights))
    model.to(dev, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    dl = DataLoader(
        DS(files, tf_train),
        batch_size=32,
        shuffle=True,
        drop_last=True,
        num_workers=workers(),
        pin_memory=dev.type == "cuda",
    )
    n_ep = epochs + 1
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=n_ep * len(dl))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    n, t = 0, 0.0
    for ep in range(n_ep):
        model.train()
        t0 = bench.timestamp(sync=True)
        for xb, yb in dl:
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            with amp:
                loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            n += len(yb) if ep > 0 else 0
        t += bench.timestamp(sync=True) - t0 if ep > 0 else 0.0  # like the others: not the first (warm-up) epoch
    img_s = n / t if t else float("nan")
    if not score:
        return _result([], [], [], (None, None), img_s, t_start)
    model.eval()
    held = sorted(find_images(data / "valid")[0])
    xs = torch.stack([tf_eval(open_image(f)) for f in held])
    counts = [sum(label(f) == v for f in files) for v in vocab]

    def probs(x):
        with torch.inference_mode(), amp:
            return model(x.to(dev)).float().softmax(1)

    return _result(vocab, held, counts, _valid_probs(probs, xs), img_s, t_start)


def run(recipe: str, data: Path, args: argparse.Namespace, seed: int, task: str, tmp: Path, score: bool = True):
    "One recipe, one seed, one task on DATA/train (validated on DATA/valid); adds the wall-clock minutes."
    t = bench.timestamp(sync=True)
    if recipe.startswith("ours") or recipe == "prototype":
        out = tmp / f"{recipe}-{task}-{seed}"
        r = run_ours(data, args.weights, args.epochs, seed, out, task, recipe, score)
    elif recipe == "course":
        r = run_course(data, args.weights, args.epochs, seed, task, score)
    elif recipe in ("timm", "timm+cl"):
        r = run_timm(data, args.weights, args.epochs, seed, task, score, channels_last=recipe == "timm+cl")
    else:
        raise SystemExit(f"unknown recipe {recipe!r}")
    r.update(recipe=recipe, task=task, seed=seed, minutes=(bench.timestamp(sync=True) - t) / 60)
    return r
