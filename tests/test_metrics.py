"""Balanced accuracy, the cat/dog score every breed weighs the same in, the k-fold deal, the logit-adjusted loss and
the rule for exporting an epoch other than the last, each on hand-made numbers."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from folds import cv_folds  # benchmarks/folds.py: only the benchmarks deal folds

from catdog_fastai.metrics import (
    balanced_accuracy,
    balanced_accuracy_cm,
    confusion,
    export_epoch,
    label_scores,
    mcnemar_p,
    per_class_recall,
    scores,
)


def test_balanced_accuracy_on_a_hand_made_confusion_matrix():
    cm = np.array(
        [
            [90, 10, 0, 0],  # a big class, recall 0.9
            [0, 1, 0, 0],  # small classes: recall 1.0 and 0.0
            [2, 0, 0, 0],
            [0, 0, 0, 0],  # no photo: left out, not counted as 0
        ]
    )
    assert np.allclose(per_class_recall(cm)[:3], [0.9, 1.0, 0.0]) and np.isnan(per_class_recall(cm)[3])
    assert balanced_accuracy_cm(cm) == pytest.approx((0.9 + 1.0 + 0.0) / 3)
    assert np.trace(cm) / cm.sum() == pytest.approx(91 / 103)  # plain accuracy: the big class alone


def test_fastai_metric_form_agrees_with_the_confusion_matrix():
    targs = torch.tensor([0, 0, 0, 0, 1, 2, 2])
    preds = torch.tensor([0, 0, 0, 1, 1, 0, 2])
    cm = confusion(targs.tolist(), preds.tolist(), 3)
    assert cm.tolist() == [[3, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert float(balanced_accuracy(preds, targs)) == pytest.approx((0.75 + 1 + 0.5) / 3)
    assert balanced_accuracy_cm(cm) == pytest.approx(float(balanced_accuracy(preds, targs)))


def test_edge_cases_scikit_learn_would_refuse_or_warn_about():
    "No photo at all, and a predicted class no validation photo has: the training log must not crash or nag."
    assert confusion([], [], 3).tolist() == [[0] * 3] * 3
    assert np.isnan(float(balanced_accuracy(torch.tensor([]), torch.tensor([]))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn's "y_pred contains classes not in y_true" is silenced
        assert float(balanced_accuracy(torch.tensor([0, 2, 1]), torch.tensor([0, 0, 1]))) == pytest.approx(0.75)


def test_scores_weigh_every_breed_the_same_also_for_cat_or_dog():
    files = [Path(f"Bengal_{i}.jpg") for i in range(8)] + [Path("Persian_1.jpg"), Path("pug_1.jpg")]
    predicted = ["Bengal"] * 8 + ["Siamese", "Bengal"]  # a Persian called Siamese is still a cat; a pug called Bengal
    s = scores(files, predicted, "breeds")
    assert s["breeds_accuracy"] == pytest.approx(8 / 10)
    assert s["breeds_balanced_accuracy"] == pytest.approx((1 + 0 + 0) / 3)
    assert s["catdog_accuracy"] == pytest.approx(9 / 10)
    assert s["catdog_balanced_accuracy"] == pytest.approx((1 + 1 + 0) / 3)
    c = scores(files, ["cat"] * 9 + ["cat"], "catdog")
    assert c == {"catdog_accuracy": pytest.approx(0.9), "catdog_balanced_accuracy": pytest.approx(2 / 3)}


def test_label_scores_give_per_class_figures_and_the_confusion_matrix_for_any_labels():
    s = label_scores(["bear", "bear", "teddy", "grizzly"], ["bear", "teddy", "teddy", "bear"], ["bear", "teddy"])
    assert s["per_class"] == {"bear": 0.5, "teddy": 1.0, "grizzly": 0.0}  # a class the model never saw
    assert s["n_per_class"] == {"bear": 2, "teddy": 1, "grizzly": 1}
    assert s["confusion_matrix"] == dict(labels=["bear", "teddy", "grizzly"], matrix=[[1, 1, 0], [0, 1, 0], [1, 0, 0]])
    assert s["accuracy"] == 0.5 and s["balanced_accuracy"] == pytest.approx(0.5)


def test_cv_folds_hold_every_photo_out_once_and_every_breed_in_every_fold():
    labels = ["Bengal"] * 195 + ["pug"] * 5 + ["Birman"] * 5
    folds = cv_folds(labels, k=5, seed=3)
    assert len(folds) == len(labels) and set(folds) == set(range(5))
    for breed in ("pug", "Birman"):  # exactly one photo of a 5-photo breed in each fold
        assert sorted(f for f, y in zip(folds, labels) if y == breed) == [0, 1, 2, 3, 4]
    assert Counter(f for f, y in zip(folds, labels) if y == "Bengal") == {f: 39 for f in range(5)}
    assert cv_folds(labels, 5, seed=3) == folds and cv_folds(labels, 5, seed=4) != folds
    small = cv_folds(["a", "a", "b", "b", "b", "b", "b", "b", "b"], k=3)  # a class smaller than k misses a fold
    assert Counter(small) == {0: 3, 1: 3, 2: 3} and len(set(small[:2])) == 2


def test_mcnemar_counts_only_the_photos_the_two_disagree_on():
    assert mcnemar_p([True] * 10, [False] * 10) == pytest.approx(2 / 2**10)
    assert mcnemar_p([True, False] * 5, [False, True] * 5) == 1.0
    assert mcnemar_p([True] * 50, [True] * 50) == 1.0  # no disagreement: nothing to tell apart
    assert mcnemar_p([True, True, False], [False, True, False]) == 1.0  # one photo of difference is a coin flip
    # 3 photos one way, 17 the other: 2 x P(X <= 3), X ~ Binomial(20, 1/2), summed by hand
    assert mcnemar_p([True] * 3 + [False] * 17, [False] * 3 + [True] * 17) == pytest.approx(
        2 * sum(math.comb(20, i) for i in range(4)) / 2**20
    )


def test_export_epoch_takes_the_last_unless_the_validation_set_can_tell():
    last_good = [[True] * 6 + [False] * 4, [True] * 7 + [False] * 3]
    noisy_best = [[True] * 8 + [False] * 2, [True] * 7 + [False] * 3]  # 1 photo better: noise
    clear_best = [[True] * 20 + [False] * 0, [False] * 10 + [True] * 10]  # 10 photos better, none worse
    assert export_epoch(noisy_best, "last") == 1 and export_epoch(clear_best, "last") == 1
    assert export_epoch(last_good, "best") == 1
    assert export_epoch(noisy_best, "best") == 1
    assert export_epoch(clear_best, "best") == 0
    assert export_epoch([[True, False]], "best") == 0


def test_logit_adjusted_loss_is_cross_entropy_on_balanced_counts_and_shifts_by_the_prior():
    from fastai.losses import CrossEntropyLossFlat

    from catdog_fastai.losses import LogitAdjustedLoss, training_loss

    torch.manual_seed(0)
    logits, y = torch.randn(16, 3), torch.randint(0, 3, (16,))
    ce = CrossEntropyLossFlat()(logits, y)
    assert torch.allclose(LogitAdjustedLoss([5, 5, 5])(logits, y), ce)  # balanced data: exactly cross-entropy
    counts = [195, 5, 5]
    la = LogitAdjustedLoss(counts)(logits, y)
    prior = torch.tensor(counts, dtype=torch.float32) / sum(counts)
    assert torch.allclose(la, CrossEntropyLossFlat()(logits + prior.log(), y))
    assert not torch.allclose(la, ce)
    # the head's own logits then need no prior: same activation and decodes as plain cross-entropy
    assert torch.equal(
        LogitAdjustedLoss(counts).decodes(logits), ce.__class__ and CrossEntropyLossFlat().decodes(logits)
    )
    assert type(training_loss(counts, 0.0)) is CrossEntropyLossFlat


def test_sampled_counts_are_the_prior_the_loss_takes_out():
    from catdog_fastai.losses import sampled_counts

    assert sampled_counts([100, 4, 0], "instance") == [100, 4, 0]
    assert sampled_counts([100, 4, 0], "sqrt") == [10, 2, 0]
    assert sampled_counts([100, 4], "balanced") == [1, 1]  # every class drawn equally often: nothing to take out
