"""Where the photos and their labels come from: what `--data` holds, found, checked and labelled (`find_data`).

`--data` is detected from what it holds: Pets file names (`Breed_N.jpg`, labelled by `--task`), one subfolder per
class (fastai's `parent_label`), or a CSV of file,label[,is_valid] (what fastai's `ColReader` reads); `train/` and
`valid/` subfolders, or the CSV's `is_valid` column, are the data's own split. Files that do not decode are left out
and counted, so one bad photo never stops a run. fastai keeps its getters and labellers apart from the DataBlock the
same way; `DataError`, the one error of every data module, lives here, at the start of the pipeline.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from fastai.data.transforms import parent_label

from .errors import DataError
from .images import IMAGE_EXTS, check_image_file
from .labels import CsvLabels, is_pets_name, label_func

LAYOUTS = {  # where the labels come from (`Found.layout`), as the log and the messages say it
    "pets": "Oxford-IIIT Pets file names (Breed_N.jpg)",
    "folders": "class folder names",
    "csv": "a CSV's label column",
}


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
    root: Path | None = None  # the folder asked for (--data, or the downloaded Pets): `--split official` reads it

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
