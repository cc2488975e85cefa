"""Input pipeline alone, no model: milliseconds per batch of catdog-train's DataLoader against a plain loop's.

    python benchmarks/input_pipeline.py [--workers 0] [--cache]

catdog-train's training DataLoader (decode, presize crop, tensor; then the batch augmentation, on the CPU here)
against a torchvision pipeline (decode, RandomResizedCrop(224), flip, tensor, normalise), same photos, same batch
size and workers, medians over batches after the first.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import bench

from catdog_fastai import TrainConfig


def main() -> None:
    ap = bench.parser(__doc__, "input-pipeline")
    ap.add_argument("--data", default="../shared/data/pets-dev/images")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--cache", action="store_true", help="catdog-train's --cache")
    ap.add_argument("--batches", type=int, default=15)
    ap.add_argument("--bs", type=int, default=TrainConfig.bs)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    from catdog_fastai.data import get_dls
    from catdog_fastai.images import open_image
    from catdog_fastai.sources import find_images

    cfg = TrainConfig(data=args.data, task="breeds", bs=args.bs, workers=args.workers, cache=args.cache)
    dl = get_dls(cfg, device="cpu").train
    m = bench.machine()
    res = dict(items=bench.time_iter(dl.new(after_batch=[]), args.batches))
    res["items_and_batch_augmentation"] = bench.time_iter(dl, args.batches)
    files = find_images(Path(args.data))[0]
    tf = T.Compose(
        [T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)]
    )

    class DS(Dataset):
        def __len__(self):
            return len(files)

        def __getitem__(self, i):
            return tf(open_image(files[i])), 0

    plain = DataLoader(DS(), batch_size=cfg.bs, shuffle=True, num_workers=args.workers)
    res["plain_torchvision"] = bench.time_iter(plain, args.batches)
    print(f"{bench.describe(m)}\nbatch {cfg.bs}, workers {args.workers}, cache {args.cache}; medians per batch")
    print(f"catdog-train items (decode, presize crop, tensor)    {res['items'].median_ms:7.1f} ms")
    print(
        f"catdog-train items + batch augmentation (on the CPU) {res['items_and_batch_augmentation'].median_ms:7.1f} ms"
    )
    print(f"plain torchvision pipeline                           {res['plain_torchvision'].median_ms:7.1f} ms")
    print(f"results: {bench.save('input-pipeline', {k: t.as_dict() for k, t in res.items()}, args, m)}")


if __name__ == "__main__":
    main()
