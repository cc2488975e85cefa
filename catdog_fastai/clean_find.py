"""What is wrong with each photo, from one pass of pretrained features and a few matrix products: no training.

- `label_probs`: every photo's class probabilities from the nearest-class-mean classifier (`prototypes.py`)
  whose means leave out the photo and its near-duplicates (leave-one-group-out, exact, computed by subtraction),
  as a softmax of scaled cosine similarity (the scale of `model.CosineClassifier`), averaged with the votes of its
  nearest neighbours outside its group. A photo never votes for its own label, nor does its copy.
- `label_findings`: confident learning (cleanlab) on those probabilities: the photos whose given label the others
  disagree with more than the classes' own confusion explains.
- `duplicate_findings`: near-duplicate groups (`duplicates.py`), and the groups that straddle train and valid.
- `stranger_findings`: photos that are not a cat or a dog (the `imagenet` verdict gate, `verdict.py`) or, for
  other classes, far from every class mean.

NumPy (and cleanlab) only; each function returns plain finding dicts, the rows of issues.csv.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .duplicates import near_duplicate_groups, similar_pairs, unit_rows
from .errors import DataError

COLUMNS = ["path", "issue", "score", "given_label", "suggested_label", "group", "split", "note", "action"]
ISSUES_CSV, SHEET, INFO = "issues.csv", "issues.html", "clean.json"  # what catdog-clean writes into --out

KNN = 10  # neighbours that vote in `neighbour_probs`
SCALE = 16.0  # cosine logits x 16, as model.CosineClassifier: a confident softmax from similarities in [-1, 1]
# "not a cat or a dog": ImageNet puts less than this on its dog and cat classes. pets-dev: 1 % of photos are under
# 0.12, 5 % under 0.35; tests/data/not_pets: all 8 under 0.033 (benchmarks/results/clean-cpu.json, not_pet)
NOT_PET_MAX = 0.05
OUTLIER_MADS = 6.0  # "outlier": distance to the nearest class mean this many robust deviations above the median
ISSUES = ("unreadable", "tiny", "duplicate", "label", "not_pet", "outlier")  # issues.csv's order

Finding = dict[str, Any]


def finding(path: str, issue: str, score: float, given: str = "", suggested: str = "", **kw: Any) -> Finding:
    "One row of issues.csv; `score` is in [0, 1], higher = more certain."
    return dict(path=path, issue=issue, score=round(float(score), 4), given_label=given, suggested_label=suggested,
                **kw)  # fmt: skip


def out_of_fold_probs(
    feats: np.ndarray, targets: np.ndarray, n_classes: int, groups: np.ndarray | None = None, scale: float = SCALE
) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities, cosine similarity to each class mean) per photo, the means leaving out the photo's
    group (`groups`; default: the photo alone). The mean of a class is the sum of its unit rows, so leaving a group
    out is a subtraction; a class with no photo left matches nothing (similarity 0)."""
    unit = unit_rows(feats)
    y = np.asarray(targets, dtype=np.int64)
    n = len(unit)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    sums = np.zeros((n_classes, unit.shape[1]))
    np.add.at(sums, y, unit)
    dots = unit @ sums.T  # u_i . S_c
    normsq = np.tile((sums * sums).sum(1), (n, 1))  # |S_c - G_c|^2 for the photo's group G
    sizes = np.bincount(groups, minlength=groups.max() + 1 if n else 0)
    single = sizes[groups] == 1
    rows = np.nonzero(single)[0]
    self_dot = (unit[rows] * unit[rows]).sum(1)
    normsq[rows, y[rows]] -= 2 * dots[rows, y[rows]] - self_dot
    dots[rows, y[rows]] -= self_dot
    for g in np.unique(groups[~single]):
        idx = np.nonzero(groups == g)[0]
        for c in np.unique(y[idx]):
            held = unit[idx[y[idx] == c]].sum(0)
            normsq[idx, c] = ((sums[c] - held) ** 2).sum()
            dots[idx, c] -= unit[idx] @ held
    norms = np.sqrt(np.clip(normsq, 0, None))
    sims = np.where(norms > 1e-9, dots / np.where(norms > 1e-9, norms, 1.0), 0.0)
    logits = scale * sims
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), sims


def neighbour_probs(
    feats: np.ndarray,
    targets: np.ndarray,
    n_classes: int,
    groups: np.ndarray | None = None,
    k: int = KNN,
    scale: float = SCALE,
    block: int = 1024,
) -> np.ndarray:
    """Class probabilities from each photo's `k` most similar photos outside its group: softmax-weighted votes
    (log-sum-exp of `scale` x similarity per class). A class of many looks (all the dog breeds in "dog") has no
    single mean that fits it; its photos' neighbours do."""
    unit = unit_rows(feats)
    y = np.asarray(targets, dtype=np.int64)
    n = len(unit)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    k = max(1, min(k, n - 1))
    out = np.zeros((n, n_classes))
    for start in range(0, n, block):
        sims = unit[start : start + block] @ unit.T
        sims[groups[start : start + block, None] == groups[None, :]] = -np.inf  # never the photo nor its copies
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sims, idx, 1)
        w = np.exp(scale * (s - 1))  # <= 1; -inf (too few other photos) weighs nothing
        for c in range(n_classes):
            out[start : start + block, c] = (w * (y[idx] == c)).sum(1)
    out += 1e-12
    return out / out.sum(1, keepdims=True)


def label_probs(feats: np.ndarray, targets: np.ndarray, n_classes: int, groups: np.ndarray | None = None) -> tuple:
    """(out-of-fold class probabilities, similarity to each class mean): the mean of the nearest-class-mean and the
    nearest-neighbour probabilities. On pets-dev with 5 % flipped labels the mix finds more of them than either
    alone (benchmarks/clean.py: cat/dog 0.97 vs 0.93 and 0.96, breeds 0.93 vs 0.92 and 0.87)."""
    means, sims = out_of_fold_probs(feats, targets, n_classes, groups)
    return (means + neighbour_probs(feats, targets, n_classes, groups)) / 2, sims


def label_quality(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    "cleanlab's self-confidence: the probability the others give the photo's own label (low = suspect)."
    from cleanlab.rank import get_label_quality_scores

    return get_label_quality_scores(np.asarray(targets), probs, method="self_confidence")


def label_findings(paths: Sequence[str], probs: np.ndarray, targets: np.ndarray, vocab: Sequence[str]) -> list[Finding]:
    """Photos whose label is likely wrong: cleanlab's `find_label_issues` (prune by noise rate), which estimates
    how many labels are wrong in each class from the confident joint instead of a fixed cut-off."""
    from cleanlab.filter import find_label_issues

    y = np.asarray(targets, dtype=np.int64)
    if len(vocab) < 2 or len(y) < 2 * len(vocab):  # too few photos per class to tell anything
        return []
    idx = find_label_issues(y, probs, return_indices_ranked_by="self_confidence")
    return [
        finding(paths[i], "label", 1 - probs[i, y[i]], vocab[y[i]], vocab[int(probs[i].argmax())],
                note=f"the other photos say {vocab[int(probs[i].argmax())]} ({probs[i].max():.0%})")
        for i in idx if probs[i].argmax() != y[i]
    ]  # fmt: skip


def duplicate_findings(
    paths: Sequence[str],
    feats: np.ndarray,
    labels: Sequence[str],
    is_valid: Sequence[bool] | None,
    threshold: float,
    thumbs: np.ndarray | None = None,
) -> tuple[list[Finding], np.ndarray]:
    """A row per photo in a group of two or more near-duplicates, score = its highest similarity in the group; a
    group with photos in both train and valid is leakage (its rows say so). Also returns the group ids."""
    groups = near_duplicate_groups(feats, threshold, thumbs)
    best = np.zeros(len(paths))
    for i, j, s in similar_pairs(feats, threshold, thumbs):
        best[int(i)] = max(best[int(i)], s)
        best[int(j)] = max(best[int(j)], s)
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=int)
    out = []
    for i in np.nonzero(sizes[groups] > 1)[0] if len(groups) else []:
        members = np.nonzero(groups == groups[i])[0]
        split = "" if is_valid is None else ("valid" if is_valid[i] else "train")
        leak = is_valid is not None and len({bool(is_valid[j]) for j in members}) == 2
        mixed = len({labels[j] for j in members}) > 1
        note = "; ".join(
            t for t, on in (("leakage: group in train and valid", leak), ("group has different labels", mixed)) if on
        )
        others = ", ".join(paths[j] for j in members if j != i)
        out.append(finding(paths[i], "duplicate", min(best[i], 1.0), labels[i], "", group=int(groups[i]),
                           split=split, note=note or f"same as {others}", leak=leak))  # fmt: skip
    out.sort(key=lambda f: (-f["leak"], -f["score"], f["group"]))
    return out, groups


def stranger_findings(
    paths: Sequence[str],
    labels: Sequence[str],
    pet_prob: np.ndarray | None,
    sims: np.ndarray,
    vocab: Sequence[str],
) -> list[Finding]:
    """Photos that do not belong: with the `imagenet` gate (`pet_prob` given), those ImageNet does not see as a cat
    or a dog; else those whose nearest (leave-one-out) class mean is unusually far, judged robustly against the
    folder's own distances (median + OUTLIER_MADS x the scaled median absolute deviation)."""
    if pet_prob is not None:
        return [
            finding(paths[i], "not_pet", 1 - pet_prob[i], labels[i], "", note=f"cat or dog: {pet_prob[i]:.0%}")
            for i in np.nonzero(pet_prob < NOT_PET_MAX)[0]
        ]
    if sims.size == 0:
        return []
    dist = 1 - sims.max(1)
    med = np.median(dist)
    mad = 1.4826 * np.median(np.abs(dist - med)) or 1e-6
    z = (dist - med) / mad
    return [
        finding(paths[i], "outlier", 1 - np.exp(-(z[i] - OUTLIER_MADS) / OUTLIER_MADS), labels[i],
                vocab[int(sims[i].argmax())], note=f"distance {dist[i]:.2f}, median {med:.2f}")
        for i in np.nonzero(z > OUTLIER_MADS)[0]
    ]  # fmt: skip


def rank(findings: list[Finding]) -> list[Finding]:
    "issues.csv's order: by issue (ISSUES), then most certain first (duplicates keep their groups together)."
    order = {k: i for i, k in enumerate(ISSUES)}
    dup_best: dict[int, float] = {}
    for f in findings:
        if f["issue"] == "duplicate":
            dup_best[f["group"]] = max(dup_best.get(f["group"], 0.0), f["score"])

    def key(f: Finding) -> tuple:
        if f["issue"] == "duplicate":
            return (order["duplicate"], not f.get("leak"), -dup_best[f["group"]], f["group"], -f["score"])
        return (order[f["issue"]], False, -f["score"], 0, 0.0)

    return sorted(findings, key=key)


def read_issues(path: str | os.PathLike) -> list[dict[str, str]]:
    "The rows of an issues.csv or plan; a file that is not one is a one-line error."
    p = Path(path)
    if not p.is_file():
        raise DataError(f"plan not found: {p}")
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"path", "issue"} <= set(rows[0]):
        raise DataError(f"{p} is not an issues.csv from catdog-clean (no path and issue columns)")
    return rows
