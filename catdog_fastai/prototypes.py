"""What the pretrained backbone knows before any training: the nearest-class-mean classifier on its features.

Average the unit-length pooled features of each class's training photos and of their mirror images; a photo's
class is the mean it is most cosine-similar to. There is no training step, and with few photos per class it is a
strong baseline (its figures are the `prototype` rows of BENCHMARKS.md §1). `catdog-train` uses it
twice: the cosine head starts from these means (`model.CosineClassifier.imprint`), so fine-tuning starts at the
baseline, and the report scores it on the same validation photos as the fine-tuned model, so the summary says
what fine-tuning added.

Torch only: the batches are any iterable of (normalised images, targets).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .model import gather, pooled_features

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def features(model: nn.Sequential, batches: Batches, mirror: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled features, targets) of `model`'s body in eval mode; with `mirror`, each photo's mirror image too
    (after all the originals, targets repeated)."""
    if not mirror:
        return gather(model, lambda x: (pooled_features(model, x),), batches)  # type: ignore[return-value]
    feats, flipped, targs = gather(
        model, lambda x: (pooled_features(model, x), pooled_features(model, x.flip(-1))), batches
    )
    return torch.cat([feats, flipped]), torch.cat([targs, targs])


def class_means(feats: torch.Tensor, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    "The mean unit-length feature vector of each class (zeros for a class with no photo, which then matches none)."
    unit = nn.functional.normalize(feats.double(), dim=1)
    sums = torch.zeros(n_classes, unit.shape[1], dtype=torch.float64).index_add_(0, targets.long(), unit)
    return (sums / torch.bincount(targets.long(), minlength=n_classes).clamp(min=1)[:, None]).float()


def similarities(feats: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    "Cosine similarity of each feature vector (rows) to each class mean (columns)."
    return nn.functional.normalize(feats.double(), dim=1) @ nn.functional.normalize(means.double(), dim=1).T


def nearest_mean(feats: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    "The index of the most similar class mean, per row: the baseline's prediction."
    return similarities(feats, means).argmax(1)
