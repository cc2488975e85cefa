"""Which classes can be learnt, and which photos validate: the class checks and the train/valid split.

Kept apart from finding the photos (`sources.py`), as fastai keeps its splitters apart from its getters: a split
takes a list of labels and returns indices, whatever layout the photos came in.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .errors import DataError
from .labels import is_pets_name
from .sources import Found

log = logging.getLogger("catdog_fastai")
IMBALANCE = 5  # warn when the largest class has this many times the photos of the smallest


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
    items: list[Path],
    labels: list[str],
    root: Path,  # where `--split official` looks for annotations/
    *,
    split: str,  # stratified, random, official or folders (TrainConfig.split)
    valid_pct: float,  # validation share of each class (stratified) or of all photos (random)
    seed: int,  # the same seed, the same split
    is_valid: Sequence[bool] | None = None,  # the data's own split (train/ + valid/, a CSV's is_valid), else None
) -> tuple[list[int], list[int]]:
    """(train, valid) indices: the data's own split (`is_valid`) if it has one, else `split`'s; every validation
    class also appears in training.

    A class with a single photo cannot be both learnt and measured: it stays in training, with a warning (only Pets
    gets here with one; `check_classes` refuses it for your own data).
    """
    if is_valid is not None:  # train/ + valid/ folders, or a CSV's is_valid column
        train = [i for i, v in enumerate(is_valid) if not v]
        valid = [i for i, v in enumerate(is_valid) if v]
    elif split == "official":
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
    elif split == "folders":
        raise DataError(f"--split folders needs train/ and valid/ subfolders in {root}, or a CSV with is_valid")
    else:
        rng = random.Random(seed)
        groups: dict[str, list[int]] = {}
        for i, y in enumerate(labels):
            groups.setdefault(y if split == "stratified" else "", []).append(i)
        train, valid = [], []
        for idxs in groups.values():
            idxs = idxs[:]
            rng.shuffle(idxs)
            n_valid = int(round(len(idxs) * valid_pct)) if len(idxs) > 1 else 0
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
