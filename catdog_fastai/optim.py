"""The optimizers `--opt` names: fastai's SGD family, with Adam computed by torch's multi-tensor AdamW."""

from __future__ import annotations

from typing import Any

import torch
from fastai.optimizer import SGD, Lamb, OptimWrapper, QHAdam, RAdam, RMSProp, ranger


def Adam(params: Any, lr: float, **kw: Any) -> OptimWrapper:  # noqa: N802 - named like fastai's optimizers
    """fastai's Adam (decoupled weight decay, betas 0.9/0.99, eps 1e-5) computed by `torch.optim.AdamW`.

    Same update rule, but on a GPU torch's multi-tensor kernels update
    every weight in a few launches, where fastai's `Optimizer` runs a Python loop of small kernels per weight
    tensor. fastai's `OptimWrapper` keeps one-cycle momentum, freezing, discriminative rates and `--wd` (set by
    `fit`); unlike fastai's optimizer it also decays batch-norm and bias weights.
    """
    return OptimWrapper(params, torch.optim.AdamW, lr=lr, betas=(0.9, 0.99), eps=1e-5, **kw)


# `--opt NAME` -> optimizer, each named by its own function (lowercased), so the names are written once, in
# config.OPTIMIZERS (which `--help` reads without torch); tests/test_layers.py holds the two equal.
OPT_FUNCS = {f.__name__.lower(): f for f in (Adam, SGD, RAdam, ranger, Lamb, RMSProp, QHAdam)}
