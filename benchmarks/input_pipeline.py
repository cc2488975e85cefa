"""Input pipeline alone, no model: milliseconds per batch of catdog-train's DataLoader against a plain loop's.

    python benchmarks/input_pipeline.py [--workers 0] [--cache]

catdog-train's training DataLoader (decode, presize crop, tensor; then the batch augmentation, on the CPU here)
against a torchvision pipeline (decode, RandomResizedCrop(224), flip, tensor, normalise), same photos, same batch
size and workers, medians over batches after the first.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

from catdog_fastai import TrainConfig


def ms_per_batch(dl, n: int) -> float:
    "Median milliseconds per batch over `n` batches, the first (worker start-up) left out."
    it = iter(dl)
    next(it)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            break
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/pets-dev/images")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--cache", action="store_true", help="catdog-train's --cache")
    ap.add_argument("--batches", type=int, default=15)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    from catdog_fastai.data import find_images, get_dls
    from catdog_fastai.images import open_image

    cfg = TrainConfig(data=args.data, task="breeds", workers=args.workers, cache=args.cache)
    dl = get_dls(cfg, device="cpu").train
    ours_items = ms_per_batch(dl.new(after_batch=[]), args.batches)
    ours_all = ms_per_batch(dl, args.batches)
    files = find_images(Path(args.data))[0]
    tf = T.Compose(
        [T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)]
    )

    class DS(Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            return tf(open_image(files[i])), 0

    plain = ms_per_batch(DataLoader(DS(), batch_size=cfg.bs, shuffle=True, num_workers=args.workers), args.batches)
    print(f"batch {cfg.bs}, workers {args.workers}, cache {args.cache}, CPU threads {torch.get_num_threads()}")
    print(f"catdog-train items (decode, presize crop, tensor)    {ours_items:7.1f} ms per batch")
    print(f"catdog-train items + batch augmentation (on the CPU) {ours_all:7.1f} ms per batch")
    print(f"plain torchvision pipeline                           {plain:7.1f} ms per batch")


if __name__ == "__main__":
    main()
