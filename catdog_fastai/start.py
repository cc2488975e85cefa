"""Where fine-tuning starts: the pretrained features of every photo found, computed once before the split.

From them come the near-duplicate groups the split keeps on one side (`duplicates.py`), the cosine head's class
means (`model.CosineClassifier.imprint`) and the training-free baseline the report sets beside the fine-tuned figure
(`prototypes.py`); for a training-free export of a split catdog-train made, the class means of every labelled
photo; and, for every training-free export, each photo scored against class means that leave it out, on which the
known/unsure line is fitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from fastai.data.core import DataLoaders
from fastai.learner import Learner

from . import prototypes
from .config import TrainConfig
from .duplicates import near_duplicate_groups
from .metrics import label_scores
from .model import CosineClassifier
from .sources import Found


def starting_features(model: torch.nn.Sequential, found: Found, cfg: TrainConfig, device: torch.device) -> torch.Tensor:
    """The starting network's pooled features of every photo found, seen as validation photos are (centre crop, no
    augmentation), then of their mirror images: 2 x len(found.items) rows, computed once for the near-duplicate
    groups of the split, the cosine head's class means and the training-free baseline."""
    return prototypes.photo_features(model.to(device), found.items, cfg.size, mirror=True)


def duplicate_groups(feats: torch.Tensor, cfg: TrainConfig) -> np.ndarray | None:
    """Near-duplicate groups of the photos (`duplicates.near_duplicate_groups` on their pretrained features), for a
    split that keeps each group on one side; None when the backbone starts untrained, whose features say nothing."""
    if not (cfg.pretrained or cfg.weights):
        return None
    return near_duplicate_groups(feats[: len(feats) // 2].numpy())


def start_from_pretrained(learn: Learner, feats: torch.Tensor, found: Found) -> dict[str, Any]:
    """The training-free baseline, and the cosine head started from it.

    `feats` are `starting_features`. The class means of the training photos' features and their mirror images'
    become the cosine head's weights (`CosineClassifier.imprint`); the nearest-class-mean classifier on those
    features is scored on the validation photos, so the report can say what fine-tuning added to it. Returns that
    score (`label_scores`).
    """
    vocab, y = _targets(learn, found)
    train, valid = split_rows(learn.dls, found)
    means = _class_means(feats, y, train, len(vocab))
    if isinstance(learn.model[1][-1], CosineClassifier):
        learn.model[1][-1].imprint(means)
    predicted = prototypes.nearest_mean(feats[torch.tensor(valid)], means).tolist()
    return label_scores([vocab[int(y[i])] for i in valid], [vocab[i] for i in predicted], vocab)


def imprint_all(learn: Learner, feats: torch.Tensor, found: Found) -> None:
    """The training-free export's head from every labelled photo: class means of the training *and* validation
    photos (and their mirror images), once the validation photos have given their figures and fitted the verdict.
    With a few photos per class, the one held out for validation is a fifth of what the class mean knows. Only for
    splits catdog-train made itself (`own_split`)."""
    vocab, y = _targets(learn, found)
    learn.model[1][-1].imprint(_class_means(feats, y, range(len(y)), len(vocab)))


def left_out_logits(
    learn: Learner, feats: torch.Tensor, found: Found, rows: Sequence[int], groups: np.ndarray | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training-free cosine head's logits for each photo in `rows` as if it were new
    (`prototypes.left_out_similarities` on `feats`, the starting features, at the head's scale), and the classes of
    those photos. The known/unsure line is fitted on them (`ood.fit`): every photo the exported class means hold,
    scored out of sample, instead of the validation photos alone, which hold one photo of a class of five."""
    vocab, y = _targets(learn, found)
    rows = list(rows)
    dup = groups[rows] if groups is not None else None
    sims, kept = prototypes.left_out_similarities(_with_mirrors(feats, rows), y[rows], len(vocab), dup)
    return float(learn.model[1][-1].scale) * sims.float(), y[rows][kept]


def _targets(learn: Learner, found: Found) -> tuple[list[str], torch.Tensor]:
    "The learner's vocab, and each found photo's class index in it."
    vocab = [str(v) for v in learn.dls.vocab]
    index = {v: i for i, v in enumerate(vocab)}
    return vocab, torch.tensor([index[str(v)] for v in found.labels])


def _class_means(feats: torch.Tensor, y: torch.Tensor, rows: Sequence[int], n_classes: int) -> torch.Tensor:
    "Class means of the photos in `rows` and of their mirror images."
    rows = list(rows)
    return prototypes.class_means(_with_mirrors(feats, rows), y[rows * 2], n_classes)


def _with_mirrors(feats: torch.Tensor, rows: list[int]) -> torch.Tensor:
    "The features of the photos in `rows`, then of their mirror images (the second half of `starting_features`)."
    n = len(feats) // 2
    return feats[torch.tensor([*rows, *(i + n for i in rows)], dtype=torch.long)]


def own_split(cfg: TrainConfig, found: Found) -> bool:
    """True when catdog-train dealt the validation photos itself (stratified or random), only to measure the model:
    then the export may learn from them too. A split the data brings (train/ and valid/, a CSV's is_valid, Pets'
    official test list) is kept apart: it may be someone's test set."""
    return found.is_valid is None and cfg.split in ("stratified", "random")


def split_rows(dls: DataLoaders, found: Found) -> tuple[list[int], list[int]]:
    "Rows of `found.items` in the training and the validation set."
    row = {p: i for i, p in enumerate(found.items)}
    return [row[p] for p in dls.train.items], [row[p] for p in dls.valid.items]
