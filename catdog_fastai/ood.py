"""Is the photo one of the model's classes at all? Temperature scaling and an out-of-distribution (OOD) verdict.

A softmax classifier spreads all its probability over the classes it knows, so a car, a person or a drawing gets
a confident breed. At export time `calibrate` fits three things on the validation photos, which the model never
trained on, and `model.json` keeps them (its `ood` entry):

- a temperature T (Guo et al., 2017, "On calibration of modern neural networks"): softmax(logits / T) with the T
  that minimises the validation NLL, so a shown 80 % is right about 80 % of the time. The expected calibration
  error (ECE) before and after goes in the report. T > 0 never changes which label comes first.
- a score, higher = less like the training photos: the cosine distance of the photo's pooled backbone features to
  the nearest class mean (means of the training photos' features, stored in `model.safetensors`). The ImageNet
  features keep what a photo shows, so they tell a rocket from a beagle better than the logits of a head that
  only ever saw pets (benchmarks/ood.py compares it with the energy score, -T * logsumexp(logits / T)).
- a threshold: the score's `keep` (97 %) quantile over the validation photos, so about 1 - `keep` of real photos of the
  classes are flagged by design and everything scoring higher is "unknown".

Torch only: the serving path (`predict`) imports this module without fastai.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import verdict
from .prototypes import class_means, similarities

# share of validation photos the threshold keeps in-distribution. 0.97, not 0.95: on held-out Pets photos 0.95 flagged
# 5.8 % (cross-fitted), 0.97 flags 4.1 % and still all 21 real non-pet photos (benchmarks/ood.py, pets-dev, lite0)
KEEP = 0.97
MEANS_KEY = "ood.class_means"  # the class-mean tensor's name in model.safetensors, beside the model's weights
N_BINS = 15  # ECE bins, the usual choice since Guo et al.


def forward(model: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pooled features) in one pass: the same computation as `model(x)`, stopped once to keep the head's
    input (concat-pooled feature map, or a ViT's pooled features)."""
    body, head = model[0], model[1]
    feats = body(x)
    n_pool = 2 if body.needs_pool else 0  # AdaptiveConcatPool2d + Flatten open the head of a CNN
    pooled = head[:n_pool](feats)
    return head[n_pool:](pooled), pooled


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T): a golden-section search over log T in [1/20, 20].

    NLL is convex in 1/T, so one bracketed 1-D search finds the minimum without LBFGS's step-size tuning.
    """
    logits, targets = logits.double(), targets.long()

    def nll(log_t: float) -> float:
        return float(nn.functional.cross_entropy(logits / math.exp(log_t), targets))

    lo, hi = -math.log(20), math.log(20)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(60):
        if nll(a) < nll(b):
            hi, b = b, a
            a = hi - g * (hi - lo)
        else:
            lo, a = a, b
            b = lo + g * (hi - lo)
    return math.exp((lo + hi) / 2)


def ece(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = N_BINS) -> float:
    """Expected calibration error: the mean gap between confidence and accuracy over equal-width confidence bins,
    weighted by how many photos fall in each."""
    conf, pred = probs.max(1)
    hit = (pred == targets).double()
    bins = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    err = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            err += float(m.double().mean() * (conf[m].double().mean() - hit[m].mean()).abs())
    return err


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    "Energy score (Liu et al., 2020): -T * logsumexp(logits / T); higher = less like the training photos."
    return -temperature * torch.logsumexp(logits.double() / temperature, dim=1)


def mean_distance(pooled: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    "Cosine distance from each feature vector to the nearest class mean: 0 on a mean, up to 2 opposite."
    return 1 - similarities(pooled, means).max(1).values


def score(logits: torch.Tensor, pooled: torch.Tensor, ood: dict[str, Any], means: torch.Tensor | None) -> torch.Tensor:
    "The export's OOD score for a batch (`ood` is model.json's entry, `means` its tensor for the feature score)."
    if ood["score"] == "energy":
        return energy(logits, ood["temperature"])
    if means is None:
        raise ValueError(f"the {ood['score']!r} score needs the class means ({MEANS_KEY}) in model.safetensors")
    return mean_distance(pooled, means)


def threshold(scores: torch.Tensor, keep: float = KEEP) -> float:
    "The score below which `keep` of `scores` fall: photos scoring higher are called unknown."
    return float(torch.quantile(scores.double(), keep))


@torch.inference_mode()
def collect(model: nn.Sequential, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    "(logits, pooled features, targets) of the model in eval mode over (normalised images, targets) batches."
    model.eval()
    outs = [(*forward(model, x.as_subclass(torch.Tensor)), y.as_subclass(torch.Tensor)) for x, y in batches]
    return tuple(torch.cat([o[i].float().cpu() for o in outs]) for i in range(3))


def calibrate(
    valid: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    train_pooled: torch.Tensor,
    train_targets: torch.Tensor,
    keep: float = KEEP,
    method: str = "mean_distance",
) -> tuple[dict[str, Any], torch.Tensor]:
    """model.json's `ood` entry (temperature, score, threshold, ECE) and the class means, from the validation photos'
    (logits, pooled features, targets) and the training photos' pooled features and targets."""
    logits, pooled, targets = valid
    t = fit_temperature(logits, targets)
    means = class_means(train_pooled, train_targets, logits.shape[1])
    entry: dict[str, Any] = dict(score=method, temperature=t, keep=keep, n_valid=len(targets))
    entry["threshold"] = threshold(score(logits, pooled, entry, means), keep)
    entry["ece_before"] = ece(logits.softmax(1), targets)
    entry["ece_after"] = ece((logits / t).softmax(1), targets)
    return entry, means


def hard_views(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> list[torch.Tensor]:
    """Everyday degradations of a normalised batch, for fitting the unknown threshold: the same photos at a third
    of the resolution (upscaled back) and in grayscale."""
    size = x.shape[-2:]
    small = nn.functional.interpolate(x, scale_factor=1 / 3, mode="bilinear", antialias=True)
    low_res = nn.functional.interpolate(small, size=size, mode="bilinear")
    raw = x * std + mean
    gray = (raw * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return [low_res, (gray.expand_as(raw) - mean) / std]


@dataclass
class Fitted:
    "What the export keeps for calibration and the verdict: model.json's `ood` and `verdict` entries, and tensors."

    ood: dict[str, Any]
    verdict: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def fit(learn: Any, keep: float = KEEP, method: str = "mean_distance") -> Fitted:
    """Calibration and the verdict's gate for a fastai `Learner` at export time, from its validation photos (and
    their `hard_views`), and its training photos seen the way validation photos are (centre crop, no
    augmentation) for the class means. Cat/dog and Pets breed models whose backbone kept its ImageNet-1k classifier
    get the `imagenet` gate, every other model the `features` gate (`verdict.py`)."""
    from .model import norm_stats

    model, dls = learn.model, learn.dls
    valid = collect(model, dls.valid)
    _, train_pooled, train_targets = collect(model, dls.test_dl(dls.train.items, with_labels=True))
    entry, means = calibrate(valid, train_pooled, train_targets, keep, method)
    tensors = {MEANS_KEY: means}
    mean, std = (torch.tensor(v, device=dls.device).view(1, 3, 1, 1) for v in norm_stats(model))
    views = ((v, y) for x, y in dls.valid for v in (x.as_subclass(torch.Tensor), *hard_views(x, mean, std)))
    _, pooled, targets = collect(model, views)
    clf = model[0].source_classifier
    task = "breeds" if getattr(dls, "layout", "pets") == "pets" else None  # Pets names: cat and dog breeds
    if clf is not None and verdict.is_pet_model([str(v) for v in dls.vocab], task):
        tensors.update({verdict.IMAGENET_WEIGHT: clf[0], verdict.IMAGENET_BIAS: clf[1]})
        scores = 1 - verdict.pet_probability(pooled, *clf)
        rule = verdict.fit_gate(scores, targets.tolist(), "imagenet")
    else:
        rule = verdict.fit_gate(mean_distance(pooled, means), targets.tolist(), "features")
    return Fitted(entry, rule, tensors)
