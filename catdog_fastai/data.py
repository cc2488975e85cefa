"""Oxford-IIIT Pets, or your own photos, as a fastai `DataBlock`: find the photos, label them, split, presize.

`--data` is detected from what it holds (`find_data`): Pets file names (`Breed_N.jpg`, labelled by `--task`), one
subfolder per class (fastai's `parent_label`), or a CSV of file,label[,is_valid] (what fastai's `ColReader` reads);
`train/` and `valid/` subfolders, or the CSV's `is_valid` column, are the split.

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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import fastai.callback.data  # noqa: F401 - patches DataBlock.weighted_dataloaders (WeightedDL)
import numpy as np
import torch
from fastai.data.block import CategoryBlock, DataBlock
from fastai.data.core import DataLoaders
from fastai.data.transforms import parent_label
from fastai.vision.augment import RandTransform, aug_transforms
from fastai.vision.core import PILImage
from fastai.vision.data import ImageBlock
from PIL import Image

from .config import TrainConfig
from .errors import CatdogError
from .images import IMAGE_EXTS, ImageError, center_crop_resize, check_image_file, open_image
from .labels import CsvLabels, is_pets_name, label_func
from .losses import SAMPLING_POWER

log = logging.getLogger("catdog_fastai")
LAYOUTS = {  # where the labels come from (`dls.layout`), as the log and the messages say it
    "pets": "Oxford-IIIT Pets file names (Breed_N.jpg)",
    "folders": "class folder names",
    "csv": "a CSV's label column",
}
IMBALANCE = 5  # warn when the largest class has this many times the photos of the smallest


class DataError(CatdogError):
    """Training data that cannot be used; the message says what was expected."""


class PetImage(PILImage):
    "A `PILImage` decoded by `images.open_image`: EXIF-upright RGB whatever the file's real format."

    @classmethod
    def create(cls, fn: Path | str | bytes | Image.Image, **kwargs) -> PetImage:
        """`fn`: a path, bytes or an `ImageCache` view (a PIL image). The annotation is fastai's type dispatch:
        `learn.predict` on an exported learner accepts exactly these types (a plain str too)."""
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
            "Offline? Pass --data DIR: a Pets folder (images/ [+ annotations/]) or a folder of Breed_N.jpg files "
            "you already have (e.g. --data ~/.fastai/data/oxford-iiit-pet), one folder per class, or a CSV"
        ) from None


def image_dir(root: str | os.PathLike) -> Path:
    "The folder holding the photos: `root/images` for a Pets-shaped folder, else `root` itself."
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"--data must be a folder or a .csv file (file,label[,is_valid]), not {root}")
    return root / "images" if (root / "images").is_dir() else root


def _image_files(folder: Path) -> list[Path]:
    "Image files directly in `folder`, sorted; anything else (`.mat`, `.csv`, a README) is not a photo."
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _subfolders(folder: Path) -> list[Path]:
    "Visible subfolders holding images at any depth: empty ones and `.ipynb_checkpoints` are not classes."
    dirs = (d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    return sorted(d for d in dirs if any(p.suffix.lower() in IMAGE_EXTS for p in d.rglob("*") if p.is_file()))


def _keep_decodable(files: list[Path], base: Path) -> tuple[list[Path], dict[str, str]]:
    "The files that decode, and {path relative to `base`: reason} for the others (checked in threads)."
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as ex:
        reasons = list(ex.map(check_image_file, files))
    skipped = {Path(os.path.relpath(p, base)).as_posix(): r for p, r in zip(files, reasons) if r is not None}
    good = [p for p, r in zip(files, reasons) if r is None]
    if not good:
        raise DataError(f"none of the images in {base} could be decoded")
    return good, skipped


def find_images(folder: Path) -> tuple[list[Path], dict[str, str]]:
    """Pets-named image files in `folder` that decode, plus {name: reason} for those skipped.

    The real dataset has `.mat` files among the photos and a few files whose content is not what the name
    says; the first are ignored, the second load as RGB, and undecodable ones are skipped and counted.
    """
    files = _image_files(folder)
    if not files:
        csvs = [p.name for p in folder.glob("*.csv")]
        hint = f"; to read labels from {csvs[0]}, pass --data {folder / csvs[0]}" if csvs else ""
        raise DataError(f"no image files in {folder} (looked for {', '.join(IMAGE_EXTS)}){hint}")
    named = [p for p in files if is_pets_name(p)]
    if not named:
        raise DataError(
            f"none of the {len(files)} images in {folder} is named like an Oxford-IIIT Pets photo "
            "(Breed_N.jpg, e.g. Bengal_12.jpg for a cat, beagle_3.jpg for a dog); for your own labels put each "
            f"class in its own subfolder ({folder}/CLASS/photo.jpg) or pass a CSV of file,label"
        )
    good, skipped = _keep_decodable(named, folder)
    return good, {**{p.name: "not named Breed_N" for p in files if not is_pets_name(p)}, **skipped}


@dataclass
class Found:
    "What `--data` holds: the photos, how they are labelled and, where the data says so, which ones validate."

    folder: Path  # where the photos are: named in the log and in messages
    items: list[Path]
    get_y: Callable[[Path], str]  # the DataBlock's labeller; module-level, so `learn.export` pickles it by name
    layout: str  # a key of LAYOUTS
    is_valid: list[bool] | None = None  # the data's own split (train/ + valid/, a CSV's is_valid), else None
    skipped: dict[str, str] = field(default_factory=dict)  # file -> why it was left out

    @cached_property
    def labels(self) -> list[str]:
        return [self.get_y(p) for p in self.items]


def find_data(data: str | os.PathLike, task: str = "catdog", split: str = "stratified") -> Found:
    """The photos and labels in `--data`, whose layout is told from what it holds; a mix of layouts is refused.

    - a `.csv` file: columns file,label[,is_valid] (`_from_csv`);
    - a folder with `train/` and `valid/` (or `--split folders`): both parts hold one layout below, and they are
      the split (fastai's `GrandparentSplitter` for class folders);
    - a folder of subfolders: one per class, named as the label (fastai's `parent_label`);
    - a folder (or a Pets root with `images/`) of `Breed_N.jpg` photos: labelled from the names as `task` says.
    """
    path = Path(data).expanduser()
    if path.is_file() and path.suffix.lower() == ".csv":
        return _from_csv(path)
    folder = image_dir(path)
    parts = [folder / "train", folder / "valid"]
    if split != "folders" and not all(d.is_dir() for d in parts):
        return _from_folder(folder, task)
    missing = [str(d) for d in parts if not d.is_dir()]
    if missing:
        raise DataError(f"--split folders needs {' and '.join(missing)}; use --split stratified for a plain folder")
    others = [p.name for p in _image_files(folder) + _subfolders(folder) if p not in parts]
    if others:
        raise DataError(
            f"{folder} has train/ and valid/ beside other photos or folders ({', '.join(others[:3])}): "
            "with a train/valid split every photo goes inside train/ or valid/"
        )
    train, valid = (_from_folder(d, task) for d in parts)
    if train.layout != valid.layout:
        raise DataError(
            f"{parts[0]} holds {LAYOUTS[train.layout]} but {parts[1]} holds {LAYOUTS[valid.layout]}: "
            "use one layout in both"
        )
    skipped = {f"{d.name}/{k}": v for d, f in zip(parts, (train, valid)) for k, v in f.skipped.items()}
    is_valid = [False] * len(train.items) + [True] * len(valid.items)
    return Found(folder, train.items + valid.items, train.get_y, train.layout, is_valid, skipped)


def _from_folder(folder: Path, task: str) -> Found:
    "Pets-named photos (labels from the names) or one subfolder per class (labels from the folder names)."
    photos, classes = _image_files(folder), _subfolders(folder)
    if photos and classes:
        raise DataError(
            f"{folder} mixes photos ({photos[0].name}, ...) with class folders "
            f"({', '.join(d.name for d in classes[:3])}): use one layout, either Breed_N.jpg photos and no "
            "subfolders, or every photo inside its class folder"
        )
    if not classes:
        items, skipped = find_images(folder)
        return Found(folder, items, label_func(task), "pets", skipped=skipped)
    for d in classes:
        nested = _subfolders(d)
        if nested:
            raise DataError(
                f"{nested[0]} is a folder inside the class folder {d.name}: expected the photos of each class "
                f"directly in it ({folder}/CLASS/photo.jpg), or train/ and valid/ each holding class folders"
            )
    items, skipped = _keep_decodable([p for d in classes for p in _image_files(d)], folder)
    return Found(folder, items, parent_label, "folders", skipped=skipped)


def _from_csv(path: Path) -> Found:
    """A CSV of file,label[,is_valid]: what fastai's `ColReader('file', pref=folder)` and `ColReader('label')`
    read. `file` is relative to the CSV's folder; `is_valid` (True/False or 1/0), where present, is the split."""
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not a readable CSV file ({e})") from None
    missing = [c for c in ("file", "label") if c not in df.columns]
    if missing:
        raise DataError(
            f"{path} has no {' or '.join(missing)} column: expected a header row file,label[,is_valid] "
            f"(found: {', '.join(map(str, df.columns))})"
        )
    blank = [i for i, (f, y) in enumerate(zip(df["file"], df["label"])) if not f.strip() or not y.strip()]
    if df.empty or blank:
        where = f"line {blank[0] + 2} has an empty file or label" if blank else "it lists no photos"
        raise DataError(f"{path}: {where}; expected one row file,label[,is_valid] per photo")
    files = [path.parent / f.strip() for f in df["file"]]
    absent = [f for f, p in zip(df["file"], files) if not p.is_file()]
    if absent:
        raise DataError(
            f"{len(absent)} of {len(files)} files listed in {path} do not exist, e.g. {absent[0]} "
            f"(file names are relative to {path.parent})"
        )
    if len(set(files)) < len(files):
        twice = next(f for f, n in Counter(df["file"]).items() if n > 1)
        raise DataError(f"{path} lists {twice} more than once; each photo needs one row")
    flags = dict(zip(files, _is_valid_column(df["is_valid"], path))) if "is_valid" in df.columns else None
    items, skipped = _keep_decodable(files, path.parent)
    is_valid = None if flags is None else [flags[p] for p in items]
    return Found(path.parent, items, CsvLabels(dict(zip(files, df["label"].str.strip()))), "csv", is_valid, skipped)


def _is_valid_column(values: Sequence[str], path: Path) -> list[bool]:
    "A CSV's is_valid column as booleans; anything but True/False or 1/0 (any case) is refused with its line."
    flags = {"true": True, "1": True, "false": False, "0": False}
    bad = [(i, v) for i, v in enumerate(values) if v.strip().lower() not in flags]
    if bad:
        raise DataError(f"{path}: is_valid must be True/False or 1/0, got {bad[0][1]!r} on line {bad[0][0] + 2}")
    return [flags[v.strip().lower()] for v in values]


def check_classes(found: Found) -> None:
    """Refuse labels nothing can be learnt from, and warn when some classes have far fewer photos than others.

    Your own data (class folders, CSV) needs 2+ photos per class, one to train on and one to validate. A Pets class
    with one photo (a subset of the dataset, which you cannot add to) is trained on with a warning instead
    (`split_indices`).
    """
    counts = Counter(found.labels)
    if len(counts) < 2:
        raise DataError(f"only one class ({found.labels[0]!r}) in {found.folder}: a classifier needs at least two")
    singles = sorted(y for y, n in counts.items() if n == 1)
    if singles and found.layout != "pets":
        raise DataError(
            f"{len(singles)} class(es) in {found.folder} with a single photo ({', '.join(singles[:5])}"
            f"{' ...' if len(singles) > 5 else ''}): each class needs at least 2, one to train on and one to validate"
        )
    largest = max(counts.values())
    small = sorted((n, y) for y, n in counts.items() if n * IMBALANCE <= largest)
    if small:
        log.warning(
            "imbalanced classes in %s: the largest has %d photos, %d class(es) 1/%d of that or fewer: %s. "
            "Training balances them with the logit-adjusted loss (--logit-adjust 1, the default; 0 turns it off) or "
            "--sampling balanced; their figures rest on few photos",
            found.folder,
            largest,
            len(small),
            IMBALANCE,
            ", ".join(f"{y} ({n})" for n, y in small[:5]) + (" ..." if len(small) > 5 else ""),
        )


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


def split_indices(
    items: list[Path], labels: list[str], cfg: TrainConfig, root: Path, is_valid: Sequence[bool] | None = None
) -> tuple[list[int], list[int]]:
    """(train, valid) indices: the data's own split (`is_valid`) if it has one, else `cfg.split`'s; every
    validation class also appears in training.

    A class with a single photo cannot be both learnt and measured: it stays in training, with a warning (only Pets
    gets here with one; `check_classes` refuses it for your own data).
    """
    if is_valid is not None:  # train/ + valid/ folders, or a CSV's is_valid column
        train = [i for i, v in enumerate(is_valid) if not v]
        valid = [i for i, v in enumerate(is_valid) if v]
    elif cfg.split == "official":
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
        raise DataError(f"--split folders needs train/ and valid/ subfolders in {root}, or a CSV with is_valid")
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
        fix = "add images or raise --valid-pct"
        if is_valid is not None:
            fix = "valid/ (or the CSV's is_valid rows) needs photos of classes that are also in training"
        raise DataError(f"the validation set is empty: {fix}")
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
    found = find_data(root, cfg.task, cfg.split)
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
    train, valid = split_indices(items, labels, cfg, root, found.is_valid)
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
    dls.layout = found.layout  # where the labels came from (a key of LAYOUTS), for the export's model.json
    return dls
