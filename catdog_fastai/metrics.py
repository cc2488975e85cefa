"""How a classifier is scored when some classes have 5 photos and others 195.

Plain accuracy on an imbalanced validation set mostly measures its biggest classes, so every figure this project
shows has balanced accuracy (the mean of per-class recall, each class weighing the same) beside it. One set of
functions computes them for the training log (`balanced_accuracy`, a fastai metric), the post-training report, and
`catdog-evaluate` (`scores`), and `export_epoch` decides whether an epoch other than the last may be exported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .labels import breed, breed_is_cat, cat_or_dog

FEW_VALID = 5  # fewer validation photos than this in a class: its recall moves by >= 20 points per photo


def confusion(actual: Sequence[int], predicted: Sequence[int], n_classes: int) -> np.ndarray:
    "Confusion matrix, rows = actual class, columns = predicted class."
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(actual, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return cm


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    "Recall of each class (rows = actual); NaN for a class with no photo."
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.diag(cm) / n, np.nan)


def balanced_accuracy_cm(cm: np.ndarray) -> float:
    "The mean recall over the classes that have photos: every class weighs the same, whatever its size."
    r = per_class_recall(cm)
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def balanced_accuracy(preds: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
    "fastai metric form (`AccumMetric(balanced_accuracy, dim_argmax=-1)`): class indices in, a scalar out."
    preds, targs = preds.view(-1).long().cpu(), targs.view(-1).long().cpu()
    n = int(max(preds.max(), targs.max())) + 1 if len(targs) else 1
    return torch.tensor(balanced_accuracy_cm(confusion(targs.numpy(), preds.numpy(), n)))


def BalancedAccuracy():  # noqa: N802 - named like fastai's metric factories (e.g. `BalancedAccuracy` in fastai)
    "The fastai metric logged every epoch beside `accuracy`; module-level function, so exports pickle it by name."
    from fastai.metrics import AccumMetric

    return AccumMetric(balanced_accuracy, dim_argmax=-1, flatten=True)


def scores(files: Sequence[str | Path], predicted: Sequence[str], task: str) -> dict[str, float]:
    """Plain and balanced accuracy of top-1 labels for Pets-named photos (the labels come from the file names).

    breeds models: `breeds_*` over 37 breeds, and `catdog_*` for the species each predicted breed implies.
    catdog models: `catdog_*`. `catdog_balanced_accuracy` weighs every breed the same (the mean over breeds of the
    share of its photos given the right species), so three big breeds cannot carry the cat/dog figure either.
    """
    breeds = [breed(f) for f in files]
    res: dict[str, float] = {}
    if task == "breeds":
        res.update(_plain_and_balanced("breeds", breeds, list(predicted), breeds))
        predicted = ["cat" if breed_is_cat(p) else "dog" for p in predicted]
    res.update(_plain_and_balanced("catdog", [cat_or_dog(f) for f in files], list(predicted), breeds))
    return res


def _plain_and_balanced(name: str, actual: list[str], predicted: list[str], groups: list[str]) -> dict[str, float]:
    "Accuracy, and the mean over `groups` (the breeds) of each group's accuracy."
    hit = np.array([a == p for a, p in zip(actual, predicted)], dtype=np.float64)
    by_group: dict[str, list[float]] = {}
    for g, h in zip(groups, hit):
        by_group.setdefault(g, []).append(h)
    return {
        f"{name}_accuracy": float(hit.mean()),
        f"{name}_balanced_accuracy": float(np.mean([np.mean(v) for v in by_group.values()])),
    }


def label_scores(actual: Sequence[str], predicted: Sequence[str], vocab: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, per-class recall and the confusion matrix for any labels (any folder layout)."""
    idx = {v: i for i, v in enumerate(vocab)}
    extra = sorted(set(actual) - set(idx))  # classes the model has never seen count as always wrong
    labels = list(vocab) + extra
    idx.update({v: len(vocab) + i for i, v in enumerate(extra)})
    cm = confusion([idx[a] for a in actual], [idx[p] for p in predicted], len(labels))
    recall = per_class_recall(cm)
    return dict(
        accuracy=float(np.trace(cm) / max(cm.sum(), 1)),
        balanced_accuracy=balanced_accuracy_cm(cm),
        per_class={lab: None if math.isnan(r) else float(r) for lab, r in zip(labels, recall) if cm[idx[lab]].sum()},
        n_per_class={lab: int(cm[idx[lab]].sum()) for lab in labels if cm[idx[lab]].sum()},
        confusion_matrix=dict(labels=labels, matrix=cm.tolist()),
    )


def few_photo_classes(n_per_class: dict[str, int], few: int = FEW_VALID) -> list[str]:
    "Classes whose figures rest on fewer than `few` photos."
    return sorted(c for c, n in n_per_class.items() if n < few)


def cv_folds(labels: Sequence[str], k: int = 5, seed: int = 0) -> list[int]:
    """A fold number in [0, k) for every item, dealt out class by class (stratified k-fold).

    Each class's items are shuffled (seeded) and dealt round-robin, so a class of 5 photos puts exactly one in each
    of 5 folds and every item is held out exactly once across the folds.
    """
    rng = np.random.default_rng(seed)
    fold = [0] * len(labels)
    by_class: dict[str, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    for idxs in by_class.values():
        for j, i in enumerate(rng.permutation(idxs)):
            fold[int(i)] = j % k
    return fold


def mcnemar_p(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> float:
    """Two-sided exact McNemar test: how likely two models that are equally good disagree this one-sidedly.

    Only the photos exactly one of the two gets right count; under 'equally good' each such photo is a coin flip.
    """
    b = sum(1 for x, y in zip(a_correct, b_correct) if x and not y)
    c = sum(1 for x, y in zip(a_correct, b_correct) if y and not x)
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def best_epoch(correct_by_epoch: Sequence[Sequence[bool]]) -> int:
    "The epoch (0-based) with the most validation hits; the later one on a tie, as `Checkpointer` keeps it."
    return max(range(len(correct_by_epoch)), key=lambda e: (sum(correct_by_epoch[e]), e))


def export_epoch(correct_by_epoch: Sequence[Sequence[bool]], rule: str = "last", alpha: float = 0.05) -> int:
    """Which epoch to export (0-based) from each epoch's per-photo validation hits.

    'last': one-cycle's final epoch, always. 'best': the epoch with the most hits, but only when the validation
    set can tell it from the last one (exact McNemar test, p < `alpha`); otherwise still the last. On 8 or 151
    validation photos the highest score is mostly noise, and picking it exported undertrained epochs.
    """
    last = len(correct_by_epoch) - 1
    if rule == "last" or last <= 0:
        return last
    best = best_epoch(correct_by_epoch)
    if best != last and mcnemar_p(correct_by_epoch[best], correct_by_epoch[last]) < alpha:
        return best
    return last
