"""Oxford-IIIT Pets, or your own photos, as fastai `DataLoaders` (`get_dls`): the DataBlock that joins the steps.

Each step has its own module, as timm splits `timm/data` and fastai keeps getters, labellers and splitters apart:
`sources` finds the photos and their labels, `splits` checks the classes and splits, `cache` optionally keeps the
decoded photos in RAM, `transforms` presizes each item; here they become a `DataBlock` of `PetImage`s, augmented on
the batch (`aug_transforms`) and, with `--sampling`, drawn by class weight (fastai's `WeightedDL`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import fastai.callback.data  # noqa: F401 - patches DataBlock.weighted_dataloaders (WeightedDL)
import torch
from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.core import DataLoaders
from fastai.vision.augment import aug_transforms
from fastai.vision.core import PILImage
from fastai.vision.data import ImageBlock
from PIL import Image

from .cache import ImageCache, available_memory
from .config import TrainConfig
from .images import open_image
from .losses import SAMPLING_POWER
from .sources import LAYOUTS, Found, download_pets, find_data
from .splits import check_classes, leaked_groups, split_indices
from .transforms import Presize

# `ImageCache` and `Presize` are used below, and must also stay importable from here: model.pkl files exported before
# they had their own modules pickled them as catdog_fastai.data.ImageCache and catdog_fastai.data.Presize (and
# `PetImage`, defined here, is pickled by this path still), so `load_learner` on those files looks them up here.
__all__ = ["ImageCache", "PetImage", "Presize", "auto_workers", "get_dls"]

log = logging.getLogger("catdog_fastai")


class PetImage(PILImage):
    "A `PILImage` decoded by `images.open_image`: EXIF-upright RGB whatever the file's real format."

    @classmethod
    def create(cls, fn: Path | str | bytes | Image.Image, **kwargs) -> PetImage:
        """`fn`: a path, bytes or an `ImageCache` view (a PIL image). The annotation is fastai's type dispatch:
        `learn.predict` on an exported learner accepts exactly these types (a plain str too)."""
        return cls(open_image(fn))


def auto_workers(device: str | torch.device | None) -> int:
    """DataLoader worker processes for `--workers -1`: min(8, cores) feeding a GPU, none on a CPU-only machine.

    On a CPU-only machine worker processes take cores from the training step itself.
    """
    on_gpu = device is not None and torch.device(device).type == "cuda"
    return min(8, os.cpu_count() or 1) if on_gpu else 0


def _log_groups(groups: Sequence[int], train: list[int], valid: list[int], own_split: bool) -> None:
    "How many near-duplicate photos the split kept together, or, for the data's own split, how many leak across it."
    sizes = Counter(groups)
    dup = sum(n for n in sizes.values() if n > 1)
    if not dup:
        return
    n_groups = sum(n > 1 for n in sizes.values())
    if own_split:
        leaked = leaked_groups(groups, train, valid)
        log.warning(
            "%d near-duplicate group(s) (%d photos) in the data; %d of them straddle its own train/valid split, "
            "which flatters the validation figures (catdog-clean lists them)",
            n_groups,
            dup,
            leaked,
        )
    else:
        log.info("near-duplicates: %d photos in %d group(s), each kept on one side of the split", dup, n_groups)


def find(cfg: TrainConfig) -> Found:
    "The photos and labels `cfg` trains on: `--data`, or Oxford-IIIT Pets downloaded."
    root = Path(cfg.data).expanduser() if cfg.data else download_pets()
    return dataclasses.replace(find_data(root, cfg.task, cfg.split), root=root)


def get_dls(
    cfg: TrainConfig,
    device: str | None = None,
    found: Found | None = None,
    groups: Sequence[int] | None = None,  # near-duplicate group of each found photo, kept on one side of the split
) -> DataLoaders:
    """The `DataLoaders` for `cfg`: items found (`found`, or `find(cfg)`), labelled, split, presized and augmented.

    Normalisation depends on the backbone, so `train.get_learner` adds it (as fastai's `vision_learner` does).
    """
    found = found or find(cfg)
    folder, items, labels, skipped = found.folder, found.items, found.labels, found.skipped
    if skipped:
        shown = "; ".join(f"{k} ({v})" for k, v in list(skipped.items())[:5])
        log.warning(
            "skipped %d of %d files in %s: %s%s",
            len(skipped),
            len(items) + len(skipped),
            folder,
            shown,
            " ..." if len(skipped) > 5 else "",
        )
    check_classes(found)
    if found.is_valid is not None and cfg.split != "folders":
        log.info("split: the data's own (train/ and valid/, or is_valid), not --split %s", cfg.split)
    train, valid = split_indices(
        items,
        labels,
        found.root or found.folder,
        split=cfg.split,
        valid_pct=cfg.valid_pct,
        seed=cfg.seed,
        is_valid=found.is_valid,
        groups=groups,
    )
    if groups is not None:
        _log_groups(groups, train, valid, own_split=found.is_valid is not None)
    cache = ImageCache()
    if cfg.cache:
        t0 = time.perf_counter()
        ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", 1))  # each process on this machine keeps its own
        used = cache.fill(
            [items[i] for i in train],
            [items[i] for i in valid],
            cfg.size,
            cfg.presize,
            budget=available_memory() // 4 // ranks_here,
        )
        log.info(
            "decoded %d of %d images into RAM (%.0f MB) in %.1fs",
            len(cache.views),
            len(items),
            used / 2**20,
            time.perf_counter() - t0,
        )
    dblock = DataBlock(
        blocks=(ImageBlock(cls=PetImage), CategoryBlock),
        get_x=cache,
        get_y=found.get_y,
        splitter=lambda _: (train, valid),  # not exported: Learner.export drops the DataLoaders' items
        item_tfms=Presize(cfg.size, cfg.presize, cfg.min_scale),
        batch_tfms=aug_transforms(size=cfg.size),
    )
    workers = cfg.workers if cfg.workers >= 0 else auto_workers(device)
    log.info(
        "%d images (%d train, %d valid), %d classes, labels from %s, from %s",
        len(items),
        len(train),
        len(valid),
        len(set(labels)),
        LAYOUTS[found.layout],
        folder,
    )
    if cfg.sampling == "instance":
        dls = dblock.dataloaders(items, bs=cfg.bs, num_workers=workers, device=device)
    else:  # fastai's WeightedDL: photos drawn with replacement, each with weight n_class ** -power
        size = Counter(labels[i] for i in train)
        wgts = [size.get(y, 1) ** -SAMPLING_POWER[cfg.sampling] for y in labels]
        dls = dblock.weighted_dataloaders(items, wgts=wgts, bs=cfg.bs, num_workers=workers, device=device)
    dls.image_cache = cache  # for inspection; the DataBlock holds its own reference
    return dls
