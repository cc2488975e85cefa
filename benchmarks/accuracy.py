"""Accuracy and training speed: catdog_fastai's default recipe against the fastai course recipe and a plain
PyTorch + timm loop, same photos, backbone, image size, batch size and epoch budget, scored on the same held-out
photos; and the default recipe with one small-data trick (or one speed change undone) at a time.

    python benchmarks/accuracy.py --data ../shared/data/pets-dev/images \\
        --weights ../shared/weights/tf_efficientnet_lite0.in1k.safetensors --epochs 8 --seeds 0 1 2 \\
        --tasks breeds catdog --recipes ours course timm

The photos are split per breed (stratified) into a training folder and a held-out folder, so all 37 breeds
count even where pets-dev has only 5 photos. Each recipe trains on the same 80 % of the training folder (the
other 20 %, also stratified, is the validation set the fastai recipes watch) and is scored on the held-out
folder. `--tasks breeds` trains 37-breed models (cat/dog accuracy is implied by the predicted breed), `catdog`
two-class models. Training images/second counts the training steps of unfrozen epochs (the whole network
learning), the same work in all three recipes. On a GPU, several copies of this script (one seed each, fewer
`--workers`) can share the card: accuracy does not depend on speed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

ARCH = "tf_efficientnet_lite0"


def split_folder(src: Path, dst: Path, frac: float, seed: int) -> tuple[Path, Path]:
    "Symlink a per-breed stratified split of `src` into dst/train and dst/heldout."
    from catdog_fastai.data import find_images
    from catdog_fastai.labels import breed

    items, _ = find_images(src)
    rng = random.Random(seed)
    groups: dict[str, list[Path]] = {}
    for p in items:
        groups.setdefault(breed(p), []).append(p)
    for name in ("train", "heldout"):
        (dst / name).mkdir(parents=True, exist_ok=True)
    for ps in groups.values():
        ps = sorted(ps)
        rng.shuffle(ps)
        k = max(1, round(len(ps) * frac))
        for i, p in enumerate(ps):
            (dst / ("heldout" if i < k else "train") / p.name).symlink_to(p.resolve())
    return dst / "train", dst / "heldout"


def train_valid(train: Path, seed: int) -> tuple[list[Path], set[str]]:
    "The training photos and the names of the stratified 20 % all recipes keep out of training (seeded)."
    from catdog_fastai import TrainConfig
    from catdog_fastai.data import find_images, split_indices
    from catdog_fastai.labels import breed

    items, _ = find_images(train)
    cfg = TrainConfig(data=str(train), split="stratified", seed=seed)
    tr, va = split_indices(items, [breed(p) for p in items], cfg, train)
    return [items[i] for i in tr], {items[i].name for i in va}


def _score(top1: list[str], files: list[Path], task: str) -> dict:
    "Held-out accuracy, as `catdog-evaluate` computes it: breeds (breed models) and cat/dog (every model)."
    from catdog_fastai.evaluate import accuracies

    acc = accuracies(top1, files, task)
    return dict(breeds_acc=acc.get("breeds_accuracy"), catdog_acc=acc["catdog_accuracy"])


WORKERS = -1  # --workers


def _workers() -> int:
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
                self.t0 = time.perf_counter()

            def after_batch(self):
                if self.training:
                    outer.n += len(self.yb[0])

            def after_train(self):
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                outer.t += time.perf_counter() - self.t0

        self.cb = CB()

    @property
    def img_s(self) -> float:
        return self.n / self.t if self.t else float("nan")


# Variants of the default recipe: the small-data tricks of the fastai and timm literature, one at a time, the
# decoded-photo cache, and the speed changes of 0.2.0 undone one at a time. (The H100 runs named 'ours' and
# 'ours-*' in BENCHMARKS.md had the cache on, the default then: read them as 'ours+cache'.) Each variant is
# (TrainConfig overrides, fastai callbacks, patches). Epoch budgets stay equal: 'freeze3' moves two unfrozen
# epochs into the frozen phase. Test-time augmentation needs no training of its own: every 'ours*' run is also
# scored with it (`*_tta`).
def _variant(name: str, epochs: int) -> tuple[dict, list, list]:
    from unittest import mock

    from fastai.callback.core import Callback
    from fastai.callback.mixup import CutMix, MixUp
    from fastai.optimizer import Adam

    from catdog_fastai import train

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
        return mock.patch.dict(train.OPT_FUNCS, adam=Adam)

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
        return mock.patch.multiple(train.LossOnDevice, before_fit=lambda self: None, after_fit=lambda self: None)

    return {
        "ours": ({}, [], []),
        "ours+cache": (dict(cache=True), [], []),
        "ours+nosyncaug": ({}, [], [no_aug_syncs()]),  # not measured yet: needs a GPU (BENCHMARKS.md §3)
        "ours+ls": (dict(label_smoothing=0.1), [], []),
        "ours+ema": ({}, [EMA()], []),
        "ours+mixup": ({}, [MixUp(0.4)], []),
        "ours+cutmix": ({}, [CutMix(1.0)], []),
        "ours+freeze3": (dict(freeze_epochs=3, epochs=max(1, epochs - 2)), [], []),
        "ours+res288": (dict(size=288, presize=384), [], []),
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


def run_ours(
    train: Path, heldout: Path | None, weights: str, epochs: int, seed: int, out: Path, task: str, variant: str
) -> dict:
    from catdog_fastai import TrainConfig
    from catdog_fastai.data import find_images
    from catdog_fastai.predict import load_predictor
    from catdog_fastai.train import train_model

    overrides, cbs, patches = _variant(variant, epochs)
    cfg = TrainConfig(
        data=str(train),
        task=task,
        arch=ARCH,
        weights=weights,
        epochs=epochs,
        freeze_epochs=1,
        seed=seed,
        split="stratified",
        out=str(out),
        pkl=False,
        workers=_workers(),
    )
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        summary = train_model(dataclasses.replace(cfg, **overrides), cbs=cbs)
    train_min = (time.perf_counter() - t0) / 60
    unfrozen = [h["train_img_per_s"] for h in summary["history"] if h["phase"] == "unfrozen"]
    res = dict(img_s=sum(unfrozen) / len(unfrozen) if unfrozen else float("nan"), train_minutes=train_min)
    if heldout is None:
        return res
    pred = load_predictor(out)
    files = sorted(find_images(heldout)[0])
    x = torch.stack([pred.preprocess(f) for f in files])
    p = torch.cat([pred.probs(x[i : i + 64]) for i in range(0, len(x), 64)])
    p_flip = torch.cat([pred.probs(x[i : i + 64].flip(-1)) for i in range(0, len(x), 64)])
    res.update(_score([pred.vocab[i] for i in p.argmax(1)], files, task))
    tta = _score([pred.vocab[i] for i in (p + p_flip).argmax(1)], files, task)
    res.update(breeds_acc_tta=tta["breeds_acc"], catdog_acc_tta=tta["catdog_acc"])
    return res


def run_course(train: Path, heldout: Path | None, weights: str, epochs: int, seed: int, task: str) -> dict:
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

    from catdog_fastai.labels import label_func

    _, valid = train_valid(train, seed)  # the course's RandomSplitter can leave a 5-photo breed out of training
    set_seed(seed)  # as the course: no deterministic cuDNN kernels (they are slow)
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=label_func(task),
        splitter=FuncSplitter(lambda p: p.name in valid),
        item_tfms=Resize(460),
        batch_tfms=aug_transforms(size=224, min_scale=0.75),
    )
    dls = dblock.dataloaders(train, bs=32, num_workers=_workers())
    learn = vision_learner(dls, ARCH, metrics=error_rate, pretrained=True, pretrained_cfg_overlay=dict(file=weights))
    if torch.cuda.is_available():
        learn.to_bf16()  # same precision as the other recipes
    learn.logger = lambda *_: None  # no per-epoch lists in the benchmark's output
    speed = _Speed()
    t0 = time.perf_counter()
    with learn.no_bar():
        learn.fine_tune(epochs, 2e-3, cbs=[speed.cb])
    res = dict(img_s=speed.img_s, train_minutes=(time.perf_counter() - t0) / 60)
    if heldout is None:
        return res
    files = sorted(get_image_files(heldout))
    preds, _ = learn.get_preds(dl=dls.test_dl(files))
    return dict(**_score([str(dls.vocab[i]) for i in preds.argmax(1)], files, task), **res)


def run_timm(
    train: Path, heldout: Path | None, weights: str, epochs: int, seed: int, task: str, channels_last: bool = False
) -> dict:
    """Plain PyTorch + timm: RandomResizedCrop, AdamW one-cycle 2e-3, label smoothing 0.1, bf16 on GPU (epochs + 1).

    NCHW as written plainly (timm's own train.py has channels_last off by default); `timm+cl` turns it on."""
    import timm
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    from catdog_fastai.data import find_images
    from catdog_fastai.images import open_image
    from catdog_fastai.labels import label_func

    torch.manual_seed(seed)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    label = label_func(task)
    files, _ = train_valid(train, seed)
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
        num_workers=_workers(),
        pin_memory=dev.type == "cuda",
    )
    n_ep = epochs + 1
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=n_ep * len(dl))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    n, t, t_start = 0, 0.0, time.perf_counter()
    for ep in range(n_ep):
        model.train()
        t0 = time.perf_counter()
        for xb, yb in dl:
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            with amp:
                loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            n += len(yb) if ep > 0 else 0
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t += time.perf_counter() - t0 if ep > 0 else 0.0  # like the others: not the first (warm-up) epoch
    res = dict(img_s=n / t if t else float("nan"), train_minutes=(time.perf_counter() - t_start) / 60)
    if heldout is None:
        return res
    model.eval()
    held = sorted(find_images(heldout)[0])
    with torch.inference_mode(), amp:
        logits = torch.cat(
            [
                model(torch.stack([tf_eval(open_image(f)) for f in held[i : i + 64]]).to(dev)).float()
                for i in range(0, len(held), 64)
            ]
        )
    return dict(**_score([vocab[i] for i in logits.argmax(1).tolist()], held, task), **res)


def run(recipe: str, train: Path, heldout: Path | None, args: argparse.Namespace, seed: int, task: str, tmp: Path):
    "One recipe, one seed, one task; adds the wall-clock minutes."
    t = time.perf_counter()
    if recipe.startswith("ours"):
        out = tmp / f"{recipe}-{task}-{seed}"
        r = run_ours(train, heldout, args.weights, args.epochs, seed, out, task, recipe)
    elif recipe == "course":
        r = run_course(train, heldout, args.weights, args.epochs, seed, task)
    elif recipe in ("timm", "timm+cl"):
        r = run_timm(train, heldout, args.weights, args.epochs, seed, task, channels_last=recipe == "timm+cl")
    else:
        raise SystemExit(f"unknown recipe {recipe!r}")
    r.update(recipe=recipe, task=task, seed=seed, minutes=(time.perf_counter() - t) / 60)
    return r


def _fmt(x: float | None) -> str:
    return "  -  " if x is None else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/pets-dev/images")
    ap.add_argument("--weights", default="../shared/weights/tf_efficientnet_lite0.in1k.safetensors")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--tasks", nargs="+", default=["breeds", "catdog"], choices=["breeds", "catdog"])
    ap.add_argument("--heldout", type=float, default=0.2, help="held-out fraction per breed")
    ap.add_argument(
        "--recipes",
        nargs="+",
        default=["ours", "course", "timm"],
        help="ours, course, timm, timm+cl (channels_last), or a variant of ours: ours+ls, ours+ema, ours+mixup, "
        "ours+cutmix, ours+freeze3, ours+res288, ours+lrfind, ours+sgd; speed: ours+cache, ours+nosyncaug, and "
        "changes undone: ours-channelslast, ours-fusedadam, ours-lossondevice, ours+deterministic, ours-v0.1 (all)",
    )
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--workers", type=int, default=-1, help="DataLoader workers for every recipe (-1: auto)")
    args = ap.parse_args()
    global WORKERS
    WORKERS = args.workers
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING)
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        train, heldout = split_folder(Path(args.data), Path(tmp) / "split", args.heldout, seed=1234)
        dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
        print(
            f"train {len(list(train.iterdir()))} photos, held out {len(list(heldout.iterdir()))}; "
            f"{ARCH}, 224 px, batch 32, {args.epochs} epochs (+1 frozen/warm-up); {dev}; workers {_workers()}"
        )
        for task in args.tasks:
            for seed in args.seeds:
                for recipe in args.recipes:
                    r = run(recipe, train, heldout, args, seed, task, Path(tmp))
                    results.append(r)
                    tta = (
                        f"  (TTA {_fmt(r['breeds_acc_tta'])} / {_fmt(r['catdog_acc_tta'])})"
                        if "breeds_acc_tta" in r
                        else ""
                    )
                    print(
                        f"{task:6} seed {seed} {recipe:13}: breeds {_fmt(r['breeds_acc'])}  cat/dog "
                        f"{_fmt(r['catdog_acc'])}{tta}  train {r['img_s']:.1f} img/s  ({r['minutes']:.1f} min)",
                        flush=True,
                    )
                    if args.json:
                        Path(args.json).write_text(json.dumps(results, indent=2))
    print("\nmeans over seeds", args.seeds)
    for task in args.tasks:
        for recipe in args.recipes:
            rs = [r for r in results if r["task"] == task and r["recipe"] == recipe]
            m = {
                k: statistics.mean(r[k] for r in rs) if rs[0].get(k) is not None else None
                for k in rs[0]
                if k in ("breeds_acc", "catdog_acc", "breeds_acc_tta", "catdog_acc_tta", "img_s")
            }
            print(
                f"{task:6} {recipe:13}: breeds {_fmt(m['breeds_acc'])}  cat/dog {_fmt(m['catdog_acc'])}  "
                + (f"TTA {_fmt(m['breeds_acc_tta'])} / {_fmt(m['catdog_acc_tta'])}  " if "breeds_acc_tta" in m else "")
                + f"train {m['img_s']:.1f} img/s"
            )


if __name__ == "__main__":
    main()
