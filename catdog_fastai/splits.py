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


def _group_members(n: int, groups: Sequence[int] | None) -> list[list[int]]:
    "Row indices of each group, in order of first appearance; every row its own group without `groups`."
    if groups is None:
        return [[i] for i in range(n)]
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(int(g), []).append(i)
    return list(members.values())


def leaked_groups(groups: Sequence[int], train: Sequence[int], valid: Sequence[int]) -> int:
    "How many near-duplicate groups have photos on both sides of a split (the data's own, which is not changed)."
    train_groups = {groups[i] for i in train}
    return len({groups[i] for i in valid} & train_groups)


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
    groups: Sequence[int] | None = None,  # near-duplicate group of each photo (`duplicates`), kept on one side
) -> tuple[list[int], list[int]]:
    """(train, valid) indices: the data's own split (`is_valid`) if it has one, else `split`'s; every validation
    class also appears in training. With `groups`, the stratified and random splits deal whole groups, so a copy
    of a validation photo never sits in training and flatters the validation figures.

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
        by_class: dict[str, list[list[int]]] = {}
        for members in _group_members(len(labels), groups):
            by_class.setdefault(labels[members[0]] if split == "stratified" else "", []).append(members)
        train, valid = [], []
        for gs in by_class.values():
            rng.shuffle(gs)
            n = sum(len(g) for g in gs)
            n_valid = int(round(n * valid_pct)) if n > 1 else 0
            taken = 0
            for g in gs:  # whole groups, in random order, until the class's validation share is reached
                if taken + len(g) <= n_valid:
                    valid += g
                    taken += len(g)
                else:
                    train += g
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
