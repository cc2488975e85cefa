"""Writing and reading the export: `model.safetensors` + `model.json` (pickle-free), `model.onnx` (ONNX Runtime)
and `model.pkl` (fastai).

Every file is written to a temporary name in the same folder and renamed into place (`files.atomic_write`), so a
crash, a full disk or Ctrl-C mid-write leaves the previous good file untouched, never half a file. `model.json`
(`meta.ModelMeta`) records the arch, vocab, preprocessing and the library versions; on load it is checked against
the weights so a mismatched or foreign file fails with a message instead of wrong predictions. Reading the pair back
(`load_safe`) is the serving side's job (`backends.load_safe`, re-exported here): this module writes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from .backends import load_safe
from .files import atomic_write
from .labels import model_task
from .meta import ONNX, PKL, WEIGHTS, Calibration, Metrics, ModelMeta, Recipe, Rule, stamped, write_meta
from .onnx_export import write_onnx

__all__ = ["save_weights", "load_safe", "export_meta", "export"]

if TYPE_CHECKING:
    from fastai.learner import Learner

    from .config import TrainConfig
    from .ood import Fitted


def save_weights(model: torch.nn.Module, out: str | Path, extra: dict[str, torch.Tensor] | None = None) -> Path:
    "Write `model.safetensors` (the weights, float32 on the CPU, and the `extra` tensors) atomically; its path."
    sd = {
        k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in {**model.state_dict(), **(extra or {})}.items()
    }
    return atomic_write(Path(out) / WEIGHTS, lambda p: save_file(sd, str(p), metadata={"format": "pt"}))


def export_meta(learn: Learner, cfg: TrainConfig, metrics: dict[str, Any], layout: str = "pets") -> ModelMeta:
    """What `model.json` says about a model: enough to rebuild it, preprocess for it and judge it. `layout`: where
    the labels came from (`sources.LAYOUTS`)."""
    from .model import norm_stats

    mean, std = norm_stats(learn.model)
    return ModelMeta(
        arch=cfg.arch,
        head=cfg.head,
        task=model_task(cfg.task, layout),
        vocab=[str(v) for v in learn.dls.vocab],
        size=cfg.size,
        mean=list(mean),
        std=list(std),
        metrics=Metrics.from_json(metrics),
        config=Recipe.from_json(cfg.to_dict()),
    )


def export(
    learn: Learner, cfg: TrainConfig, metrics: dict[str, Any], fitted: Fitted | None = None, layout: str = "pets"
) -> Path:
    """Write the pickle-free pair, `model.onnx` (unless --no-onnx; an architecture the exporter cannot trace gets a
    warning and no graph) and `model.pkl` (unless --no-pkl), each atomically.

    `fitted` (`ood.fit`): model.json's `ood` and `verdict` entries and their tensors (class means, ImageNet's
    classifier for the gate); older exports have neither.
    """
    out = Path(cfg.out)
    meta = export_meta(learn, cfg, metrics, layout)
    extra = None
    if fitted is not None:
        meta = dataclasses.replace(meta, ood=Calibration.from_json(fitted.ood), verdict=Rule.from_json(fitted.verdict))
        extra = fitted.tensors
    learn.model.float()
    meta = stamped(meta, save_weights(learn.model, out, extra))
    if cfg.onnx:
        meta = dataclasses.replace(meta, onnx=write_onnx(learn.model, meta, out))
    else:
        (out / ONNX).unlink(missing_ok=True)  # a graph from an earlier export would not match these weights
    write_meta(out, meta)  # last: it vouches for the files above by their checksums
    if cfg.pkl:
        atomic_write(out / PKL, lambda p: learn.export(p))
    return out
