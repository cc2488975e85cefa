"""Per-batch cost of fastai's training loop itself, against a plain PyTorch loop, with a model too small to matter.

    python benchmarks/loop_overhead.py --batches 300

Both loops get the same in-memory batches (no decoding, no augmentation) and train a stack of tiny linear layers
with about as many parameter tensors as tf_efficientnet_lite0 (149 with timm's classifier), so what is left is
each loop's own work per batch: fastai's callbacks (recorder, one-cycle scheduler, metrics), its
DataLoader and optimizer wrapper, against `zero_grad/backward/step/sched.step`. Last, the same for catdog-train's
batch augmentation pipeline on tiny images (its Python and type-dispatch cost, not its arithmetic). This is the
CPU-side overhead a GPU step cannot hide when the model's own step is short (the H100 gap in BENCHMARKS.md §3).
"""

from __future__ import annotations

import warnings

import bench
import torch
from torch import nn


def tiny_model(n_in: int, tensors: int) -> nn.Module:
    "A model with `tensors` parameter tensors and almost no arithmetic, so per-tensor optimizer overhead shows."
    layers = [nn.Flatten(), nn.Linear(n_in, 16)] + [nn.Linear(16, 16) for _ in range(max(0, tensors // 2 - 2))]
    return nn.Sequential(*layers, nn.Linear(16, 37))


def plain(xs: torch.Tensor, ys: torch.Tensor, bs: int, epochs: int, tensors: int) -> list[float]:
    "Seconds per batch of a plain loop (AdamW, OneCycleLR, cross-entropy), one figure per epoch."
    from torch.utils.data import DataLoader, TensorDataset

    model = tiny_model(xs[0].numel(), tensors)
    dl = DataLoader(TensorDataset(xs, ys), batch_size=bs, shuffle=True, drop_last=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=epochs * len(dl))
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        t = bench.timestamp(sync=True)
        for xb, yb in dl:
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        times.append((bench.timestamp(sync=True) - t) / len(dl))
    return times


def fastai_loop(xs: torch.Tensor, ys: torch.Tensor, bs: int, epochs: int, opt: str, tensors: int) -> list[float]:
    """Seconds per training batch of fastai's `fit_one_cycle` with catdog-train's loss, metrics and optimizer, one
    figure per epoch."""
    import fastai.callback.progress  # noqa: F401 - patches in Learner.no_bar
    import fastai.callback.schedule  # noqa: F401 - patches in Learner.fit_one_cycle
    from fastai.callback.core import Callback
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy, error_rate
    from fastai.optimizer import Adam as FastaiAdam

    from catdog_fastai.optim import Adam

    class Timer(Callback):
        def before_train(self):
            self.t, self.n = bench.timestamp(sync=True), 0

        def after_batch(self):
            self.n += self.training

        def after_train(self):
            times.append((bench.timestamp(sync=True) - self.t) / self.n)

    times: list[float] = []
    items = list(zip(xs, ys))
    n_valid = len(items) // 5
    dls = DataLoaders(
        DataLoader(items[n_valid:], bs=bs, shuffle=True, drop_last=True),
        DataLoader(items[:n_valid], bs=bs),
    )
    model = tiny_model(xs[0].numel(), tensors)
    learn = Learner(
        dls,
        model,
        loss_func=CrossEntropyLossFlat(),
        opt_func=Adam if opt == "adamw" else FastaiAdam,
        metrics=[accuracy, error_rate],
        cbs=[Timer()],
    )
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, 1e-3)
    return times


def batch_aug(bs: int, n: int = 200) -> bench.Timing:
    "Seconds per batch of catdog-train's batch transforms on tiny images: their Python and dispatch cost."
    from fastai.data.transforms import IntToFloatTensor, Normalize
    from fastai.vision.augment import aug_transforms
    from fastai.vision.core import TensorImage
    from fasttransform import Pipeline

    tfms = Pipeline([IntToFloatTensor(), *aug_transforms(size=8), Normalize.from_stats([0.5] * 3, [0.5] * 3)])
    tfms.split_idx = 0  # training: the random transforms run
    x = TensorImage(torch.randint(0, 255, (bs, 3, 12, 12), dtype=torch.uint8))
    return bench.time_fn(lambda: tfms(x), n, warmup=20)


def main() -> None:
    ap = bench.parser(__doc__, "loop-overhead")
    ap.add_argument("--batches", type=int, default=300, help="training batches per epoch")
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tensors", type=int, default=150, help="parameter tensors in the model (lite0: 149)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    n = args.batches * args.bs
    xs, ys = torch.randn(n + n // 4, 3, 32, 32), torch.randint(0, 37, (n + n // 4,))
    m = bench.machine()
    print(
        f"{bench.describe(m)}\n{args.batches} batches of {args.bs}, 3x32x32 inputs, {args.tensors} parameter tensors; "
        f"medians over {args.repeats} repeats x {args.epochs} epochs"
    )
    per_epoch: dict[str, list[float]] = {"plain PyTorch loop": [], "fastai, torch AdamW": [], "fastai, fastai Adam": []}
    for _ in range(args.repeats):  # interleaved, so machine noise hits all three alike
        per_epoch["plain PyTorch loop"] += plain(xs[:n], ys[:n], args.bs, args.epochs, args.tensors)
        per_epoch["fastai, torch AdamW"] += fastai_loop(xs, ys, args.bs, args.epochs, "adamw", args.tensors)
        per_epoch["fastai, fastai Adam"] += fastai_loop(xs, ys, args.bs, args.epochs, "fastai", args.tensors)
    res = {k: bench.Timing(tuple(v)) for k, v in per_epoch.items()}
    res["fastai batch augmentation (12 px -> 8 px: overhead only)"] = batch_aug(args.bs)
    for name, t in res.items():
        print(f"{name:22} {t.median_ms:6.2f} ms per batch")
    print(f"results: {bench.save('loop-overhead', {k: t.as_dict() for k, t in res.items()}, args, m)}")


if __name__ == "__main__":
    main()
