"""Stratified k-fold for the benchmarks' cross-validation (accuracy.py): which fold holds each photo out.

scikit-learn's `StratifiedKFold` (shuffled, seeded) deals every class's photos evenly over the folds, so a class of
5 photos puts exactly one in each of 5 folds, and every photo is held out exactly once across the folds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedKFold


def cv_folds(labels: Sequence[str], k: int = 5, seed: int = 0) -> list[int]:
    "A fold number in [0, k) for every item: the fold in which it is held out (stratified by its label)."
    fold = [0] * len(labels)
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class smaller than k simply misses some folds
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        for f, (_, held_out) in enumerate(skf.split(np.zeros(len(labels)), list(labels))):
            for i in held_out:
                fold[int(i)] = f
    return fold


def group_folds(labels: Sequence[str], groups: Sequence[int], k: int = 5, seed: int = 0) -> list[int]:
    """`cv_folds` that keeps each near-duplicate group (`catdog_fastai.duplicates`) whole in one fold
    (scikit-learn's `StratifiedGroupKFold`): a copy of a held-out photo never sits in the training folds, where it
    would flatter a model that memorised it."""
    from sklearn.model_selection import StratifiedGroupKFold

    fold = [0] * len(labels)
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        for f, (_, held_out) in enumerate(cv.split(np.zeros(len(labels)), list(labels), list(groups))):
            for i in held_out:
                fold[int(i)] = f
    return fold
