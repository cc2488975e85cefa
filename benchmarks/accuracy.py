"""Accuracy and training speed: catdog_fastai's default recipe against the fastai course recipe and a plain
PyTorch + timm loop, same photos, backbone, image size, batch size and epoch budget, scored on the same held-out
photos.

    python benchmarks/accuracy.py --data ../shared/data/pets-dev/images \\
        --weights ../shared/weights/tf_efficientnet_lite0.in1k.safetensors --epochs 8 --seeds 0 1 2

The photos are split per breed (stratified) into a training folder and a held-out folder, so all 37 breeds
count even where pets-dev has only 5 photos. Each recipe trains on the same 80 % of the training folder (the
other 20 %, also stratified, is the validation set the fastai recipes watch) and is scored on the held-out
folder: breed accuracy, and cat/dog accuracy implied by the breed predictions. Training images/second counts
the training steps of unfrozen epochs (the whole network learning), the same work in all three recipes.
"""

from __future__ import annotations

import argparse
import json
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


def _score(top1: list[str], files: list[Path]) -> dict:
    from catdog_fastai.labels import breed, breed_is_cat, is_cat

    n = len(files)
    return dict(
        breeds_acc=sum(p == breed(f) for p, f in zip(top1, files)) / n,
        catdog_acc=sum(breed_is_cat(p) == is_cat(f) for p, f in zip(top1, files)) / n,
    )


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
                outer.t += time.perf_counter() - self.t0

        self.cb = CB()

    @property
    def img_s(self) -> float:
        return self.n / self.t if self.t else float("nan")


def run_ours(train: Path, heldout: Path, weights: str, epochs: int, seed: int, out: Path) -> dict:
    from catdog_fastai import TrainConfig
    from catdog_fastai.evaluate import evaluate_folder
    from catdog_fastai.train import train_model

    summary = train_model(
        TrainConfig(
            data=str(train),
            task="breeds",
            arch=ARCH,
            weights=weights,
            epochs=epochs,
            freeze_epochs=1,
            seed=seed,
            split="stratified",
            out=str(out),
            pkl=False,
        )
    )
    hist = summary["history"]
    unfrozen = [h["train_img_per_s"] for h in hist if h["phase"] == "unfrozen"]
    img_s = sum(unfrozen) / len(unfrozen) if unfrozen else float("nan")
    res = evaluate_folder(out, heldout)
    return dict(breeds_acc=res["breeds_accuracy"], catdog_acc=res["catdog_accuracy"], img_s=img_s)


def run_course(train: Path, heldout: Path, weights: str, epochs: int, seed: int) -> dict:
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

    from catdog_fastai.labels import breed

    _, valid = train_valid(train, seed)  # the course's RandomSplitter can leave a 5-photo breed out of training
    set_seed(seed, reproducible=True)
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=breed,
        splitter=FuncSplitter(lambda p: p.name in valid),
        item_tfms=Resize(460),
        batch_tfms=aug_transforms(size=224, min_scale=0.75),
    )
    dls = dblock.dataloaders(train, bs=32, num_workers=0)
    learn = vision_learner(dls, ARCH, metrics=error_rate, pretrained=True, pretrained_cfg_overlay=dict(file=weights))
    speed = _Speed()
    with learn.no_bar():
        learn.fine_tune(epochs, 2e-3, cbs=[speed.cb])
    files = sorted(get_image_files(heldout))
    preds, _ = learn.get_preds(dl=dls.test_dl(files))
    return dict(**_score([str(dls.vocab[i]) for i in preds.argmax(1)], files), img_s=speed.img_s)


def run_timm(train: Path, heldout: Path, weights: str, epochs: int, seed: int) -> dict:
    "Plain PyTorch + timm: RandomResizedCrop, AdamW one-cycle 2e-3, label smoothing 0.1 (epochs + 1 in all)."
    import timm
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    from catdog_fastai.data import find_images
    from catdog_fastai.images import open_image
    from catdog_fastai.labels import breed

    torch.manual_seed(seed)
    files, _ = train_valid(train, seed)
    vocab = sorted({breed(f) for f in files})
    norm = T.Normalize([0.5] * 3, [0.5] * 3)
    tf_train = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    tf_eval = T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor(), norm])

    class DS(Dataset):
        def __init__(self, fs, tf):
            self.fs, self.tf = fs, tf

        def __len__(self):
            return len(self.fs)

        def __getitem__(self, i):
            return self.tf(open_image(self.fs[i])), vocab.index(breed(self.fs[i]))

    model = timm.create_model(ARCH, pretrained=True, num_classes=len(vocab), pretrained_cfg_overlay=dict(file=weights))
    dl = DataLoader(DS(files, tf_train), batch_size=32, shuffle=True, drop_last=True, num_workers=0)
    n_ep = epochs + 1
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=n_ep * len(dl))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    n, t = 0, 0.0
    for _ in range(n_ep):
        model.train()
        t0 = time.perf_counter()
        for xb, yb in dl:
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            n += len(yb)
        t += time.perf_counter() - t0
    model.eval()
    held = sorted(find_images(heldout)[0])
    with torch.inference_mode():
        logits = torch.cat(
            [model(torch.stack([tf_eval(open_image(f)) for f in held[i : i + 64]])) for i in range(0, len(held), 64)]
        )
    return dict(**_score([vocab[i] for i in logits.argmax(1)], held), img_s=n / t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/pets-dev/images")
    ap.add_argument("--weights", default="../shared/weights/tf_efficientnet_lite0.in1k.safetensors")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--heldout", type=float, default=0.2, help="held-out fraction per breed")
    ap.add_argument("--recipes", nargs="+", default=["ours", "course", "timm"])
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    results: dict[str, list[dict]] = {r: [] for r in args.recipes}
    with tempfile.TemporaryDirectory() as tmp:
        train, heldout = split_folder(Path(args.data), Path(tmp) / "split", args.heldout, seed=1234)
        print(
            f"train {len(list(train.iterdir()))} photos, held out {len(list(heldout.iterdir()))}; "
            f"{ARCH}, 224 px, batch 32, {args.epochs} epochs (+1 frozen/warm-up), CPU threads "
            f"{torch.get_num_threads()}, cuda {torch.cuda.is_available()}"
        )
        for seed in args.seeds:
            for recipe in args.recipes:
                t = time.perf_counter()
                if recipe == "ours":
                    r = run_ours(train, heldout, args.weights, args.epochs, seed, Path(tmp) / f"ours{seed}")
                elif recipe == "course":
                    r = run_course(train, heldout, args.weights, args.epochs, seed)
                else:
                    r = run_timm(train, heldout, args.weights, args.epochs, seed)
                r["minutes"] = (time.perf_counter() - t) / 60
                results[recipe].append(r)
                print(
                    f"seed {seed} {recipe:6}: breeds {r['breeds_acc']:.3f}  cat/dog {r['catdog_acc']:.3f}  "
                    f"train {r['img_s']:.1f} img/s  ({r['minutes']:.1f} min)",
                    flush=True,
                )
    print("\nmean over seeds", args.seeds)
    for recipe, rs in results.items():
        m = {k: statistics.mean(r[k] for r in rs) for k in ("breeds_acc", "catdog_acc", "img_s")}
        print(f"{recipe:6}: breeds {m['breeds_acc']:.3f}  cat/dog {m['catdog_acc']:.3f}  train {m['img_s']:.1f} img/s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
