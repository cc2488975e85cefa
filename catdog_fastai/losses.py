"""The training loss: cross-entropy that does not learn the training set's class imbalance as a prior.

Plain cross-entropy learns p(class | photo) under the *training* class frequencies, so a model trained on 195
Bengals and 5 Birmans answers "Bengal" for any doubtful cat. The logit-adjusted loss (Menon et al., "Long-tail
learning via logit adjustment", ICLR 2021) adds tau * log(prior) to the logits inside the loss only; the network's
own logits then estimate the class-balanced posterior, which is what a user with a new photo wants. Prediction needs
nothing special: the export is an ordinary classifier. With equal class counts the added term is the same for every
class, softmax ignores it, and the loss is exactly plain cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from fastai.losses import CrossEntropyLossFlat

from .config import SAMPLING_POWER  # the --sampling names and their powers, written once there


class LogitAdjustedLoss(CrossEntropyLossFlat):
    "fastai's `CrossEntropyLossFlat` on `logits + tau * log(prior)`; activation and decodes unchanged."

    def __init__(self, counts: Sequence[int], tau: float = 1.0, **kwargs):  # counts: training photos per class
        super().__init__(**kwargs)
        c = torch.as_tensor(list(counts), dtype=torch.float32).clamp_min(1)
        self.adjust = tau * (c / c.sum()).log()

    def __call__(self, inp: torch.Tensor, targ: torch.Tensor, **kwargs) -> torch.Tensor:
        return super().__call__(inp + self.adjust.to(inp.device, inp.dtype), targ, **kwargs)


def sampled_counts(counts: Sequence[int], sampling: str) -> list[float]:
    "How often each class is drawn per epoch under `sampling` (relative): the prior the loss must take out."
    return [n ** (1 - SAMPLING_POWER[sampling]) if n else 0.0 for n in counts]


def training_loss(counts: Sequence[int], tau: float, label_smoothing: float = 0.0) -> CrossEntropyLossFlat:
    "The loss `catdog-train` uses: logit-adjusted for `tau` > 0, plain cross-entropy for `tau` = 0."
    if tau == 0:
        return CrossEntropyLossFlat(label_smoothing=label_smoothing)
    return LogitAdjustedLoss(counts, tau, label_smoothing=label_smoothing)
