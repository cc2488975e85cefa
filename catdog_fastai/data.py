"""Oxford-IIIT Pets as a fastai `DataBlock`: find the photos, label them from their names, split, presize.

Presizing (fastbook ch. 5): each item is first cropped at random to a large `presize` square on the CPU, then the
batch is warped, rotated, zoomed, lit and resized to `size` in one interpolation on the device. The validation
set gets the deterministic `images.center_crop_resize` view, the same function the predictor uses.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.core import DataLoaders
from fastai.vision.augment import RandTransform, aug_transforms
from fastai.vision.core import PILImage
from fastai.vision.data import ImageBlock
from PIL import Image

from .config import TrainConfig
from .images import IMAGE_EXTS, ImageError, center_crop_resize, check_image_file, open_image
from .labels import is_pets_name, label_func

log = logging.getLogger("catdog_fastai")


class DataError(ValueError):
    """Training data that cannot be used; the message says what was expected."""


class PetImage(PILImage):
    "A `PILImage` decoded by `images.open_image`: EXIF-upright RGB whatever the file's real format."

    @classmethod
    def create(cls, fn, **kwargs):  # noqa: ANN001 - fastai's signature; fn: a path or an `ImageCache` view
        return cls(open_image(fn))


class ImageCache:
    """Photos decoded once per run and kept in RAM, so no epoch after the first pays for JPEG decoding again.

    Without a cache, every photo is decoded again every epoch (on the 2-core CPU the item pipeline takes 1.9 ms a
    photo, 1.5 ms with the cache: `benchmarks/input_pipeline.py`). On the machines measured (BENCHMARKS.md) decoding
    did not set the pace, so it is off by default (`--cache` turns it on): an option for machines with few cores per
    GPU, not a measured speed-up. Training photos are kept with their short side shrunk to `presize` (the random
    crop happens after, as before); validation photos are kept as their final `center_crop_resize` view, so
    validation sees exactly the pixels the predictor sees. Used as the DataBlock's `get_x`: a cached item comes back
    as a PIL image, any other as its path, and `PetImage.create` accepts both. It pickles empty, so an export never
    carries photos, and DataLoader workers started by fork read the parent's copy without duplicating it.
    """

    def __init__(self) -> None:
        self.views: dict[Path, np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {"views": {}}

    def __call__(self, fn: Path) -> Path | Image.Image:
        a = self.views.get(fn)
        return fn if a is None else Image.fromarray(a)

    def fill(self, train: list[Path], valid: list[Path], size: int, presize: int, budget: int) -> int:
        "Decode the photos (in threads; PIL releases the GIL) until `budget` bytes are used; returns that size."

        def view(job: tuple[Path, bool]) -> np.ndarray | None:
            p, is_valid = job
            try:
                img = open_image(p)
            except ImageError:
                return None  # the normal path reports it when the item is loaded
            if is_valid:
                return np.asarray(center_crop_resize(img, size))
            w, h = img.size
            if min(w, h) > presize:
                k = presize / min(w, h)
                img = img.resize((max(presize, round(w * k)), max(presize, round(h * k))), Image.Resampling.BILINEAR)
            return np.asarray(img)

        jobs = [(p, True) for p in valid] + [(p, False) for p in train]
        used = 0
        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as ex:
            for (p, _), a in zip(jobs, ex.map(view, jobs)):
                if a is not None and used + a.nbytes <= budget:
                    self.views[p] = a
                    used += a.nbytes
        return used


def _available_memory() -> int:
    "Bytes of memory available to this process (Linux MemAvailable), or 0 when it cannot be told."
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Presize(RandTransform):
    """Training: a random square crop (>= `min_scale` of the short side) resized to `presize`.

    Validation: the centre crop at the final `size`, so the batch transforms have nothing left to resample.
    """

    order, split_idx = 1, None

    def __init__(self, size: int, presize: int, min_scale: float = 0.75):
        super().__init__(p=1.0)
        self.size, self.presize, self.min_scale = size, presize, min_scale

    def before_call(self, b, split_idx: int | None) -> None:  # noqa: ANN001
        super().before_call(b, split_idx)
        self.valid = bool(split_idx)
        self.scale, self.px, self.py = random.uniform(self.min_scale, 1.0), random.random(), random.random()

    def encodes(self, x: PILImage) -> PILImage:
        if self.valid:
            return type(x)(center_crop_resize(x, self.size))
        w, h = x.size
        s = max(1, int(min(w, h) * self.scale))
        left, top = int((w - s) * self.px), int((h - s) * self.py)
        box = (left, top, left + s, top + s)
        return type(x)(x.resize((self.presize, self.presize), Image.Resampling.BILINEAR, box=box))


def download_pets() -> Path:
    "`untar_data(URLs.PETS)`, failing in one clear line (not a traceback) when the download is impossible."
    from fastai.data.external import URLs, untar_data

    try:
        return Path(untar_data(URLs.PETS))
    except OSError as e:  # URLError, socket errors, HTTP errors are all OSErrors
        raise DataError(
            f"could not download Oxford-IIIT Pets from {URLs.PETS} ({e.__class__.__name__}: {e}). "
            "Offline? Pass --data DIR: a Pets folder (images/ [+ annotations/]) or a folder of Breed_N.jpg files, "
            "e.g. --data ../shared/data/pets-dev/images"
        ) from None


def image_dir(root: str | os.PathLike) -> Path:
    "The folder holding the photos: `root/images` for a Pets-shaped folder, else `root` itself."
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"--data must be a folder, not a file: {root}")
    return root / "images" if (root / "images").is_dir() else root


def find_images(folder: Path) -> tuple[list[Path], dict[str, str]]:
    """Pets-named image files in `folder` that decode, plus {name: reason} for those skipped.

    The real dataset has `.mat` files among the photos and a few files whose content is not what the name
    says; the first are ignored, the second load as RGB, and undecodable ones are skipped and counted.
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DataError(f"no image files in {folder} (looked for {', '.join(IMAGE_EXTS)})")
    named = [p for p in files if is_pets_name(p)]
    if not named:
        raise DataError(
            f"none of the {len(files)} images in {folder} is named like an Oxford-IIIT Pets photo "
            "(Breed_N.jpg, e.g. Bengal_12.jpg for a cat, beagle_3.jpg for a dog)"
        )
    skipped = {p.name: "not named Breed_N" for p in files if not is_pets_name(p)}
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as ex:
        reasons = list(ex.map(check_image_file, named))
    skipped.update({p.name: r for p, r in zip(named, reasons) if r is not None})
    good = [p for p, r in zip(named, reasons) if r is None]
    if not good:
        raise DataError(f"none of the images in {folder} could be decoded")
    return good, skipped


def _find_items(root: Path, split: str) -> tuple[Path, list[Path], dict[str, str]]:
    "(folder, photos, skipped) for `--data root`: with `--split folders`, the photos of root/train and root/valid."
    if split != "folders":
        folder = image_dir(root)
        return (folder, *find_images(folder))
    parts = [image_dir(root) / "train", image_dir(root) / "valid"]
    missing = [str(d) for d in parts if not d.is_dir()]
    if missing:
        raise DataError(f"--split folders needs {' and '.join(missing)}; use --split stratified for a plain folder")
    found = [find_images(d) for d in parts]
    return image_dir(root), found[0][0] + found[1][0], {**found[0][1], **found[1][1]}


def _read_list(path: Path) -> set[str]:
    "Image stems from an official Pets split file (`Abyssinian_100 1 1 1` per line, `#` comments)."
    names = set()
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name = line.split()[0]
        if not is_pets_name(name):
            raise DataError(f"{path}:{i}: expected 'Breed_N ...', got {line[:60]!r}")
        names.add(name)
    return names


def split_indices(items: list[Path], labels: list[str], cfg: TrainConfig, root: Path) -> tuple[list[int], list[int]]:
    """(train, valid) indices for `cfg.split`; every validation class also appears in training.

    A class with a single photo cannot be both learnt and measured: it stays in training, with a warning.
    """
    if cfg.split == "official":
        ann = root / "annotations"
        files = [ann / "trainval.txt", ann / "test.txt"]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DataError(f"--split official needs {' and '.join(missing)}; use --split random for a plain folder")
        trainval, test = (_read_list(f) for f in files)
        train = [i for i, p in enumerate(items) if p.stem in trainval]
        valid = [i for i, p in enumerate(items) if p.stem in test]
        if not train or not valid:
            raise DataError(f"the official split matches no images in {root} (train {len(train)}, valid {len(valid)})")
    elif cfg.split == "folders":
        train = [i for i, p in enumerate(items) if p.parent.name == "train"]
        valid = [i for i, p in enumerate(items) if p.parent.name == "valid"]
    else:
        rng = random.Random(cfg.seed)
        groups: dict[str, list[int]] = {}
        for i, y in enumerate(labels):
            groups.setdefault(y if cfg.split == "stratified" else "", []).append(i)
        train, valid = [], []
        for idxs in groups.values():
            idxs = idxs[:]
            rng.shuffle(idxs)
            n_valid = int(round(len(idxs) * cfg.valid_pct)) if len(idxs) > 1 else 0
            valid += idxs[:n_valid]
            train += idxs[n_valid:]
    counts = Counter(labels[i] for i in train)
    lonely = sorted({labels[i] for i in valid} - set(counts))
    if lonely:
        log.warning("classes with no training image after the split, moved to training: %s", ", ".join(lonely))
        moved = [i for i in valid if labels[i] in lonely]
        valid = [i for i in valid if labels[i] not in lonely]
        train += moved
    singles = sorted(y for y, n in Counter(labels).items() if n == 1)
    if singles:
        log.warning("classes with a single image (trained on, not validated): %s", ", ".join(singles))
    if not valid:
        raise DataError("the validation set is empty: add images or raise --valid-pct")
    return sorted(train), sorted(valid)


def auto_workers(device: str | torch.device | None) -> int:
    """DataLoader worker processes for `--workers -1`: min(8, cores) feeding a GPU, none on a CPU-only machine.

    Measured on a 2-core CPU (BENCHMARKS.md): worker processes there only steal cores from the model.
    """
    on_gpu = device is not None and torch.device(device).type == "cuda"
    return min(8, os.cpu_count() or 1) if on_gpu else 0


def get_dls(cfg: TrainConfig, device: str | None = None) -> DataLoaders:
    """The `DataLoaders` for `cfg`: items found, labelled, split, presized and augmented.

    Normalisation depends on the backbone, so `train.get_learner` adds it (as fastai's `vision_learner` does).
    """
    root = Path(cfg.data).expanduser() if cfg.data else download_pets()
    folder, items, skipped = _find_items(root, cfg.split)
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
    labeller = label_func(cfg.task)
    labels = [labeller(p) for p in items]
    if len(set(labels)) < 2:
        raise DataError(f"only one class ({labels[0]!r}) in {folder}: a classifier needs at least two")
    train, valid = split_indices(items, labels, cfg, root)
    cache = ImageCache()
    if cfg.cache:
        t0 = time.perf_counter()
        ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", 1))  # each process on this machine keeps its own
        used = cache.fill(
            [items[i] for i in train],
            [items[i] for i in valid],
            cfg.size,
            cfg.presize,
            budget=_available_memory() // 4 // ranks_here,
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
        get_y=labeller,
        splitter=lambda _: (train, valid),  # not exported: Learner.export drops the DataLoaders' items
        item_tfms=Presize(cfg.size, cfg.presize, cfg.min_scale),
        batch_tfms=aug_transforms(size=cfg.size),
    )
    workers = cfg.workers if cfg.workers >= 0 else auto_workers(device)
    log.info(
        "%d images (%d train, %d valid), %d classes, from %s",
        len(items),
        len(train),
        len(valid),
        len(set(labels)),
        folder,
    )
    dls = dblock.dataloaders(items, bs=cfg.bs, num_workers=workers, device=device)
    dls.image_cache = cache  # for inspection; the DataBlock holds its own reference
    return dls
