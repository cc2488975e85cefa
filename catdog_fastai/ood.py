"""Calibrated probabilities, and the scores behind the "is it one of the classes at all?" verdict.

At export time `fit` fits, on the validation photos the model never trained on, what model.json keeps:
- its `ood` entry, a temperature T (Guo et al., 2017, "On calibration of modern neural networks"): softmax(logits / T)
  with the T that minimises the validation NLL, so a shown 80 % is right about 80 % of the time; the expected
  calibration error (ECE) before and after goes in the report. T > 0 never changes which label comes first.
- its `verdict` entry, the gate and its threshold (`verdict.py` says which gate and why), fitted on the validation
  photos and their `hard_views`.

The scores themselves (`verdict.pet_probability`, `verdict.mean_distance`) are NumPy, shared with serving.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import verdict
from .backends import forward  # (logits, pooled) in one pass: serving's, so training scores what serving runs
from .labels import is_pet_model
from .model import gather
from .prototypes import class_means

MEANS_KEY = verdict.MEANS_KEY
N_BINS = 15  # ECE bins, the usual choice since Guo et al.


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


def collect(model: nn.Sequential, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    "(logits, pooled features, targets) of the model in eval mode over (normalised images, targets) batches."
    return gather(model, lambda x: forward(model, x), batches)


def calibration(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """model.json's `ood` entry from the validation photos' logits and targets: the temperature, and the expected
    calibration error before and after it."""
    t = fit_temperature(logits, targets)
    return dict(
        temperature=t,
        n_valid=len(targets),
        ece_before=ece(logits.softmax(1), targets),
        ece_after=ece((logits / t).softmax(1), targets),
    )


HARD_VIEWS = tuple(verdict.VIEW_WORDS)  # the rows `fit` scores per validation photo: as it is, then `hard_views`


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


def fit(
    learn: Any,
    size: int,
    keep: float = verdict.KEEP,
    task: str | None = None,
    known_target: float = verdict.KNOWN_TARGET,
    left_out: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Fitted:
    """Calibration and the verdict's gate for a fastai `Learner` at export time, from its validation photos and their
    `hard_views`. Cat/dog and Pets breed models whose backbone kept its ImageNet-1k classifier get the `imagenet`
    gate; every other model the `features` gate, whose class means come from its training photos seen the way
    validation photos are (centre crop, no augmentation). `size`: the validation photos' size; the `imagenet` gate
    reads them at `verdict.gate_size`. `task`: model.json's (`labels.model_task`). See `verdict.py`. The
    known/unsure line is fitted to reach `known_target` (`verdict.fit_known`) on calibrated probabilities: of
    `left_out` (logits and classes of photos scored out of sample, `start.left_out_logits`: a training-free export's
    every labelled photo) where given, else of the same rows as the gate, the validation photos and their views."""
    from .model import norm_stats

    model, dls = learn.model, learn.dls
    mean, std = (torch.tensor(v, device=dls.device).view(1, 3, 1, 1) for v in norm_stats(model))
    view_of_row: list[torch.Tensor] = []  # which of HARD_VIEWS each row is: one pass serves calibration and gate

    def views() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in dls.valid:
            for i, v in enumerate((x.as_subclass(torch.Tensor), *hard_views(x, mean, std))):
                view_of_row.append(torch.full((len(y),), i))
                yield v, y

    clf = model[0].source_classifier
    pets = is_pet_model([str(v) for v in dls.vocab], task)
    gate = "imagenet" if clf is not None and pets else "features"
    model[0].gate_size = verdict.gate_size(gate, size)  # the export's forward pass (and model.onnx) reads it too
    all_logits, pooled, view_targets = collect(model, views())
    as_is = torch.cat(view_of_row) == 0
    logits, targets = all_logits[as_is], view_targets[as_is]
    if gate == "imagenet":
        scores = 1 - verdict.pet_probability(pooled.numpy(), *(t.float().cpu().numpy() for t in clf))
        tensors = {verdict.IMAGENET_WEIGHT: clf[0], verdict.IMAGENET_BIAS: clf[1]}
    else:
        _, train_pooled, train_targets = collect(model, dls.test_dl(dls.train.items, with_labels=True))
        means = class_means(train_pooled, train_targets, len(dls.vocab))
        scores, tensors = verdict.mean_distance(pooled.numpy(), means.numpy()), {MEANS_KEY: means}
    cal = calibration(logits, targets)
    t = cal["temperature"]
    if left_out is None:
        known = verdict.fit_known((all_logits / t).softmax(1).numpy(), view_targets.tolist(), known_target)
    else:
        left_logits, left_targets = left_out
        probs = (left_logits / t).softmax(1).numpy()
        known = verdict.fit_known(probs, left_targets.tolist(), known_target, fitted_on=verdict.LEFT_OUT)
    rule = verdict.fit_gate(scores, view_targets.tolist(), gate, HARD_VIEWS, keep, known, model[0].gate_size)
    return Fitted(cal, rule, tensors)
