"""The network: a timm backbone (the body) plus fastai's classifier head, written in plain PyTorch.

The layout is exactly what fastai's `vision_learner` builds for a timm model (`TimmBody` + `create_head`), so
fastai's freezing, discriminative learning rates and `fine_tune` work unchanged. It is spelled out here, without
importing fastai, so the pickle-free export (`model.safetensors`) can be loaded for serving with only torch and
timm: the app and `load_predictor` start faster and never need pickle.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from .errors import CatdogError
from .meta import HEADS


class ModelError(CatdogError):
    """An architecture or weights file that cannot be used; the message says what to do instead."""


class Body(nn.Module):
    """A timm model without its classifier, returning the feature map (CNNs) or pooled features (ViT-style).

    `source_classifier` is the (weight, bias) of the classifier the weights were pretrained with, when that was
    ImageNet-1k's 1000 classes: not part of the model (it is not trained or saved as a weight), but the export keeps
    it for the "is it a cat or a dog at all" verdict (`verdict.py`).

    `gate_size`: where set, `backends.forward` also reads each photo enlarged to this size for that verdict's
    features (`verdict.gate_size`); a class attribute, so bodies pickled before it existed have it too.
    """

    gate_size: int | None = None

    def __init__(self, model: nn.Module, source_classifier: tuple[torch.Tensor, torch.Tensor] | None = None):
        super().__init__()
        self.model = model
        self.needs_pool = model.pretrained_cfg.get("pool_size") is not None  # same test as fastai's TimmBody
        self.source_classifier = source_classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x) if self.needs_pool else self.model(x)


class AdaptiveConcatPool2d(nn.Module):
    "Concatenate average and max pooling: twice the features, and the head learns how to mix them (fastai)."

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([nn.functional.adaptive_max_pool2d(x, 1), nn.functional.adaptive_avg_pool2d(x, 1)], 1)


def _bn1d(n: int) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(n)
    nn.init.ones_(bn.weight)
    nn.init.constant_(bn.bias, 1e-3)  # fastai's BatchNorm init
    return bn


class CosineClassifier(nn.Module):
    """Logits = `scale` x the cosine similarity of the features to one weight vector per class.

    Set the weights to the class means of the pretrained features (`imprint`, Qi et al., CVPR 2018, "Low-shot
    learning with imprinted weights") and the untrained model already is the nearest-class-mean classifier on the
    ImageNet features: training starts from what the backbone knows instead of from a random head. The scale is
    fixed (not learnt): cosine logits in [-1, 1] need one to make a confident softmax.
    """

    def __init__(self, nf: int, n_out: int, scale: float = 16.0):
        super().__init__()
        self.weight = nn.Parameter(nn.init.normal_(torch.empty(n_out, nf), std=nf**-0.5))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = nn.functional.normalize(self.weight, dim=1)
        return self.scale * nn.functional.normalize(x, dim=1) @ w.T.to(x.dtype)

    @torch.no_grad()
    def imprint(self, means: torch.Tensor) -> None:
        """Start from `means` (one row per class). Rows are rescaled to norm sqrt(nf), entries of order 1: the
        cosine ignores the norm, and at that norm an optimizer step moves the direction as little as it moves a
        kaiming-initialised layer's."""
        means = means.to(self.weight)
        unit = nn.functional.normalize(means, dim=1) * self.weight.shape[1] ** 0.5
        has_photos = means.norm(dim=1, keepdim=True) > 0  # a class with no training photo keeps its random start
        self.weight.copy_(torch.where(has_photos, unit, self.weight))


def create_head(
    nf: int, n_out: int, pool: bool = True, kind: str = "fastai", hidden: int = 512, ps: float = 0.5
) -> nn.Sequential:
    """The classifier head on the body's features.

    `cosine`: [average-pool, flatten], `CosineClassifier`: on the same pooled features the backbone was
    pretrained with, so it can be imprinted with their class means. `fastai`: fastai's default head, [concat-pool,
    flatten], BN-dropout-linear-ReLU, BN-dropout-linear, randomly initialised.
    """
    if kind == "cosine":
        pooling: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if pool else []
        return nn.Sequential(*pooling, CosineClassifier(nf, n_out))
    if kind != "fastai":
        raise ModelError(f"unknown head {kind!r}: one of {', '.join(HEADS)}")
    layers: list[nn.Module] = [AdaptiveConcatPool2d(), nn.Flatten()] if pool else []
    nf = nf * 2 if pool else nf
    layers += [_bn1d(nf), nn.Dropout(ps / 2), nn.Linear(nf, hidden, bias=False), nn.ReLU(inplace=True)]
    layers += [_bn1d(hidden), nn.Dropout(ps), nn.Linear(hidden, n_out, bias=False)]
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
    return nn.Sequential(*layers)


@functools.lru_cache(maxsize=1)
def _all_timm_names() -> tuple[str, ...]:
    return tuple(timm.list_models())


def check_arch(arch: str) -> str:
    "Return `arch` if timm knows it, else raise `ModelError` suggesting close names."
    if timm.is_model(arch):
        return arch
    close = difflib.get_close_matches(arch, _all_timm_names(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else " See timm.list_models() for the names."
    raise ModelError(f"timm has no model called {arch!r}.{hint}")


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    "One quick TCP connect, so offline users wait seconds, not the Hub client's minute of retries."
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    "Make huggingface_hub use only its local cache (no retries) while `offline`."
    import huggingface_hub.constants as hf

    old = hf.HF_HUB_OFFLINE
    hf.HF_HUB_OFFLINE = old or offline
    try:
        yield
    finally:
        hf.HF_HUB_OFFLINE = old


def _create_timm(arch: str, pretrained: bool, weights: str | None) -> nn.Module:
    kw: dict = {} if pretrained or weights else dict(num_classes=0)  # pretrained: keep its classifier for now
    if weights is not None:
        p = Path(weights)
        if not p.is_file():
            raise ModelError(f"--weights file not found: {p}")
        kw["pretrained_cfg_overlay"] = dict(file=str(p.resolve()))
        pretrained = True
    offline = pretrained and weights is None and not hub_reachable()
    try:
        with _hub_offline(offline):
            return timm.create_model(arch, pretrained=pretrained, **kw)
    except RuntimeError as e:
        if weights is not None:  # perhaps a file without the classifier: load the body alone
            return _create_timm_body(arch, weights, e)
        raise
    except OSError as e:  # HF Hub unreachable: LocalEntryNotFoundError / ConnectionError are OSErrors
        if weights is None and pretrained:
            raise ModelError(
                f"could not download pretrained weights for {arch} from the Hugging Face Hub ({type(e).__name__}). "
                "Offline? Pass --weights FILE (a local .safetensors with timm key names) or --no-pretrained."
            ) from None
        raise


def _create_timm_body(arch: str, weights: str, first: RuntimeError) -> nn.Module:
    "`arch` without a classifier from a `weights` file that has none; the first error when it does not fit either."
    try:
        return timm.create_model(
            arch, pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=str(Path(weights).resolve()))
        )
    except RuntimeError:
        raise ModelError(
            f"{weights} does not fit {arch}: {str(first).splitlines()[0]}. The file must hold timm key names for "
            "this exact architecture."
        ) from None


@torch.no_grad()
def _split_classifier(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Take the classifier off a pretrained timm model (`reset_classifier(0)`, as `num_classes=0` builds it) and
    return its (weight, bias) when it is ImageNet-1k's and reads exactly the pooled features `Body` gives (checked on
    one input: some heads add a layer or a norm after pooling, and those are not kept), else None."""
    clf = model.get_classifier() if model.num_classes else None
    usable = isinstance(clf, nn.Linear) and clf.out_features == IMAGENET_CLASSES and clf.bias is not None
    if usable:
        was_training = model.training
        model.eval()
        x = torch.randn(1, *model.pretrained_cfg.get("input_size", (3, 224, 224)))
        logits = model(x)
        weight, bias = clf.weight.detach().float().clone(), clf.bias.detach().float().clone()
    model.reset_classifier(0)
    if not usable:
        return None
    body = Body(model)
    pooled = body(x).mean((2, 3)) if body.needs_pool else body(x)
    model.train(was_training)
    if pooled.shape[-1] != weight.shape[1] or not torch.allclose(pooled @ weight.T + bias, logits, atol=1e-3):
        return None
    return weight, bias


IMAGENET_CLASSES = 1000


def build_model(
    arch: str, n_out: int, pretrained: bool = False, weights: str | None = None, head: str = "fastai"
) -> nn.Sequential:
    """`nn.Sequential(Body, head)` for any timm `arch` with `n_out` classes.

    `weights` loads a local timm checkpoint (offline use); `pretrained` without it downloads from the Hub.
    `head` is `create_head`'s kind.
    """
    model = _create_timm(check_arch(arch), pretrained, weights)
    body = Body(model, _split_classifier(model))
    return nn.Sequential(body, create_head(body.model.num_features, n_out, pool=body.needs_pool, kind=head))


@torch.inference_mode()
def gather(
    model: nn.Module, fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], batches: Iterable[tuple[Any, Any]]
) -> tuple[torch.Tensor, ...]:
    """`fn`'s outputs over (images, targets) batches with `model` in eval mode, each concatenated as float32 on the
    CPU, then the targets: the one loop behind the baseline's features and the export's calibration pass."""
    model.eval()
    outs = [(*(t.float().cpu() for t in fn(x.as_subclass(torch.Tensor))), y.as_subclass(torch.Tensor).cpu())
            for x, y in batches]  # fmt: skip
    return tuple(torch.cat(column) for column in zip(*outs))


def pooled_features(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    "The body's average-pooled features: what a timm model with `num_classes=0` returns, whatever the head."
    feats = model[0](x)
    return feats.mean((2, 3)) if model[0].needs_pool else feats


@torch.no_grad()
def wise_ft(model: nn.Module, start: dict[str, torch.Tensor], alpha: float) -> nn.Module:
    """Move `model`'s floating-point weights to (1 - alpha) x `start` + alpha x themselves, in place (WiSE-FT,
    Wortsman et al., CVPR 2022: one network that keeps what the start knew and adds what fine-tuning learnt)."""
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            v.copy_(torch.lerp(start[k].to(v), v, alpha))
    return model


def norm_stats(model: nn.Sequential) -> tuple[tuple[float, ...], tuple[float, ...]]:
    "The (mean, std) the backbone was pretrained with; inputs must be normalised the same way."
    cfg = model[0].model.pretrained_cfg
    return tuple(cfg["mean"]), tuple(cfg["std"])


def splitter(model: nn.Sequential) -> list[list[nn.Parameter]]:
    "Parameter groups for discriminative learning rates: backbone, then head (fastai's `default_split`)."
    return [list(model[0].parameters()), list(model[1].parameters())]
