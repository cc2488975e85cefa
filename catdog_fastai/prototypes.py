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

from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .images import ImageInput, center_crop_resize, open_image
from .model import gather, norm_stats, pooled_features

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


def photo_batches(
    photos: Sequence[ImageInput],
    size: int,  # the validation view's size (px)
    mean: Sequence[float],  # the backbone's normalisation
    std: Sequence[float],
    view: Callable[[Image.Image], Image.Image] | None = None,  # a change to each decoded photo (a degradation)
    bs: int = 32,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(normalised images, row indices) batches of `photos` seen as validation photos and the predictor see them
    (`images.center_crop_resize`), decoded here with PIL: features of every photo before any split exists."""
    m = torch.tensor(mean).view(1, 3, 1, 1) * 255
    s = torch.tensor(std).view(1, 3, 1, 1) * 255
    for i in range(0, len(photos), bs):
        imgs = [open_image(p) for p in photos[i : i + bs]]
        arrs = [np.asarray(center_crop_resize(view(im) if view else im, size), dtype=np.uint8) for im in imgs]
        x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float()
        yield (x - m) / s, torch.arange(i, i + len(imgs))


def photo_features(
    model: nn.Sequential,
    photos: Sequence[ImageInput],
    size: int,
    view: Callable[[Image.Image], Image.Image] | None = None,
    mirror: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Pooled features of `photos` (validation view, optionally changed by `view`), in order; with `mirror`, the
    mirror images' after all the originals (as `features`)."""
    mean, std = norm_stats(model)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    batches = ((x.to(dev), y) for x, y in photo_batches(photos, size, mean, std, view))
    feats, _ = features(model, batches, mirror=mirror)
    return feats


def class_means(feats: torch.Tensor, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    "The mean unit-length feature vector of each class (zeros for a class with no photo, which then matches none)."
    unit = nn.functional.normalize(feats.double(), dim=1)
    sums = torch.zeros(n_classes, unit.shape[1], dtype=torch.float64).index_add_(0, targets.long(), unit)
    return (sums / torch.bincount(targets.long(), minlength=n_classes).clamp(min=1)[:, None]).float()


def left_out_similarities(
    feats: torch.Tensor, targets: torch.Tensor, n_classes: int, groups: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each photo's cosine similarity to every class mean, its own class's mean taken without it: how the
    nearest-class-mean classifier would score it as a new photo. `feats`: n photos' features, then the same photos'
    mirror images (2n rows, as `class_means` takes them for a head); `targets`: the n photos' classes; `groups`:
    their near-duplicate groups, whose other members of the same class leave the mean with the photo (a copy in the
    mean is the photo itself). Returns the similarities of the photos that kept another photo in their class mean,
    (m, n_classes), and which photos those are (indices into the n)."""
    n = len(targets)
    unit = nn.functional.normalize(feats.double(), dim=1)
    both = unit[:n] + unit[n:]  # sums serve: the cosine does not see a mean's length
    y = targets.long()
    sums = torch.zeros(n_classes, unit.shape[1], dtype=torch.float64).index_add_(0, y, both)
    sims = unit[:n] @ nn.functional.normalize(sums, dim=1).T
    group = torch.as_tensor(np.asarray(groups) if groups is not None else np.arange(n))
    kept = []
    for i, c in enumerate(y.tolist()):
        rest = sums[c] - both[(group == group[i]) & (y == c)].sum(0)
        if rest.norm() > 1e-9:
            sims[i, c] = unit[i] @ nn.functional.normalize(rest, dim=0)
            kept.append(i)
    return sims[kept], torch.tensor(kept, dtype=torch.long)


def similarities(feats: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    "Cosine similarity of each feature vector (rows) to each class mean (columns)."
    return nn.functional.normalize(feats.double(), dim=1) @ nn.functional.normalize(means.double(), dim=1).T


def nearest_mean(feats: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    "The index of the most similar class mean, per row: the baseline's prediction."
    return similarities(feats, means).argmax(1)
