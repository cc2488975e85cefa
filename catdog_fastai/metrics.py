"""How a classifier is scored when some classes have 5 photos and others 195.

Plain accuracy on an imbalanced validation set mostly measures its biggest classes, so every figure this project
shows has balanced accuracy (the mean of per-class recall, each class weighing the same) beside it. One set of
functions computes them for the training log (`balanced_accuracy`, a fastai metric), the post-training report, and
`catdog-evaluate` (`scores`), and `export_epoch` decides whether an epoch other than the last may be exported.
The counting itself is scikit-learn's (confusion matrix, balanced accuracy) and SciPy's (the exact binomial test
behind McNemar's), both installed with fastai.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

from .labels import breed, breed_is_cat, cat_or_dog
from .meta import FEW_VALID


def confusion(actual: Sequence[int], predicted: Sequence[int], n_classes: int) -> np.ndarray:
    "Confusion matrix of class indices in [0, n_classes), rows = actual class, columns = predicted class."
    if len(actual) == 0:  # scikit-learn refuses empty input; an empty matrix is the honest answer
        return np.zeros((n_classes, n_classes), dtype=np.int64)
    return confusion_matrix(actual, predicted, labels=np.arange(n_classes)).astype(np.int64)


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
    """fastai metric form (`AccumMetric(balanced_accuracy, dim_argmax=-1)`): class indices in, a scalar out; the mean
    recall over the classes that have photos (NaN for no photo at all)."""
    preds, targs = preds.view(-1).long().cpu(), targs.view(-1).long().cpu()
    return torch.tensor(_balanced(targs.numpy(), preds.numpy()))


def _balanced(actual: np.ndarray, predicted: np.ndarray) -> float:
    "scikit-learn's balanced accuracy; a class predicted but absent from `actual` just counts as a miss."
    if len(actual) == 0:
        return float("nan")
    with warnings.catch_warnings():  # a 5-photo validation set rarely holds every class the model predicts
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        return float(balanced_accuracy_score(actual, predicted))


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
    "Accuracy, and the mean over `groups` (the breeds) of each group's accuracy: a photo weighs 1 / its group's size."
    size = Counter(groups)
    weight = [1 / size[g] for g in groups]
    return {
        f"{name}_accuracy": float(accuracy_score(actual, predicted)),
        f"{name}_balanced_accuracy": float(accuracy_score(actual, predicted, sample_weight=weight)),
    }


def label_scores(actual: Sequence[str], predicted: Sequence[str], vocab: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, per-class recall and the confusion matrix for any labels (any folder layout)."""
    idx = {v: i for i, v in enumerate(vocab)}
    extra = sorted(set(actual) - set(idx))  # classes the model has never seen count as always wrong
    labels = list(vocab) + extra
    idx.update({v: len(vocab) + i for i, v in enumerate(extra)})
    a, p = np.array([idx[v] for v in actual], dtype=np.int64), np.array([idx[v] for v in predicted], dtype=np.int64)
    cm = confusion(a, p, len(labels))
    recall = per_class_recall(cm)
    return dict(
        accuracy=float(np.trace(cm) / max(cm.sum(), 1)),
        balanced_accuracy=_balanced(a, p),
        per_class={lab: None if math.isnan(r) else float(r) for lab, r in zip(labels, recall) if cm[idx[lab]].sum()},
        n_per_class={lab: int(cm[idx[lab]].sum()) for lab in labels if cm[idx[lab]].sum()},
        confusion_matrix=dict(labels=labels, matrix=cm.tolist()),
    )


def few_photo_classes(n_per_class: dict[str, int], few: int = FEW_VALID) -> list[str]:
    "Classes whose figures rest on fewer than `few` photos."
    return sorted(c for c, n in n_per_class.items() if n < few)


def mcnemar_p(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> float:
    """Two-sided exact McNemar test: how likely two models that are equally good disagree this one-sidedly.

    Only the photos exactly one of the two gets right count; under 'equally good' each such photo is a coin flip
    (SciPy's exact binomial test at p = 1/2).
    """
    b = sum(1 for x, y in zip(a_correct, b_correct) if x and not y)
    c = sum(1 for x, y in zip(a_correct, b_correct) if y and not x)
    return float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0


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
