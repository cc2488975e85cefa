"""Writing and reading the export: `model.safetensors` + `model.json` (pickle-free), `model.onnx` (ONNX Runtime)
and `model.pkl` (fastai).

Every file is written to a temporary name in the same folder and renamed into place (`files.atomic_write`), so a
crash, a full disk or Ctrl-C mid-write leaves the previous good file untouched, never half a file. `model.json`
(`meta.ModelMeta`) records the arch, vocab, preprocessing and the library versions; on load it is checked against
the weights so a mismatched or foreign file fails with a message instead of wrong predictions.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from .errors import ExportError
from .files import atomic_write
from .meta import (
    EXTRA_PREFIX,
    MIXED_UP,
    ONNX,
    PKL,
    WEIGHTS,
    ModelMeta,
    read_meta,
    stamped,
    verify,
    versions,
    write_meta,
)

if TYPE_CHECKING:
    from fastai.learner import Learner

    from .config import TrainConfig
    from .ood import Fitted


def save_safe(
    model: torch.nn.Module, meta: ModelMeta, out: str | Path, extra: dict[str, torch.Tensor] | None = None
) -> ModelMeta:
    """Write `model.safetensors` then `model.json` (which carries the weights' sha256, tying the pair together);
    returns the record as written.

    `extra` tensors (names starting `ood.`, e.g. the class means of the unknown gate) are stored beside the weights.
    """
    meta = stamped(meta, save_weights(model, out, extra))
    write_meta(out, meta)
    return meta


def save_weights(model: torch.nn.Module, out: str | Path, extra: dict[str, torch.Tensor] | None = None) -> Path:
    "Write `model.safetensors` (the weights, float32 on the CPU, and the `extra` tensors) atomically; its path."
    sd = {
        k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in {**model.state_dict(), **(extra or {})}.items()
    }
    return atomic_write(Path(out) / WEIGHTS, lambda p: save_file(sd, str(p), metadata={"format": "pt"}))


def load_safe(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelMeta]:
    """Rebuild the model from `model.json` and load `model.safetensors` into it, checking every key and shape."""
    from .model import ModelError, build_model

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta = read_meta(folder)
    wpath = folder / WEIGHTS
    if not wpath.is_file():
        raise ExportError(f"{wpath} is missing; the export in {folder} is incomplete")
    verify(wpath, meta.weights_sha256, MIXED_UP)
    try:
        model = build_model(meta.arch, meta.n_classes, pretrained=False, head=meta.head)
    except ModelError as e:
        raise ExportError(f"{e} (the export was made with {meta.versions}, running {versions()})") from None
    try:
        sd = load_file(str(wpath), device="cpu")
    except Exception as e:  # safetensors raises its own error types for damaged headers
        raise ExportError(f"{wpath} is not a readable safetensors file ({e})") from None
    sd = {k: v for k, v in sd.items() if not k.startswith(EXTRA_PREFIX)}  # not weights: see `read_extras`
    want = model.state_dict()
    missing, extra = sorted(set(want) - set(sd)), sorted(set(sd) - set(want))
    bad = [k for k in set(want) & set(sd) if want[k].shape != sd[k].shape]
    if missing or extra or bad:
        detail = "; ".join(
            s
            for s in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {extra[:3]}" if extra else "",
                f"shape mismatch {bad[:3]}" if bad else "",
            )
            if s
        )
        raise ExportError(
            f"{wpath} does not fit {meta.arch} with {meta.n_classes} classes ({detail}). Exported with "
            f"{meta.versions}, running {versions()}."
        )
    model.load_state_dict(sd)
    return model.to(device).eval(), meta


def export_meta(learn: Learner, cfg: TrainConfig, metrics: dict[str, Any], layout: str = "pets") -> ModelMeta:
    """What `model.json` says about a model: enough to rebuild it, preprocess for it and judge it. `layout`: where
    the labels came from (`sources.LAYOUTS`)."""
    from .model import norm_stats

    mean, std = norm_stats(learn.model)
    return ModelMeta(
        arch=cfg.arch,
        head=cfg.head,
        task=cfg.task if layout == "pets" else layout,  # "folders"/"csv": labels from the user's own layout
        vocab=[str(v) for v in learn.dls.vocab],
        size=cfg.size,
        mean=list(mean),
        std=list(std),
        metrics=metrics,
        config=cfg.to_dict(),
    )


def export(
    learn: Learner, cfg: TrainConfig, metrics: dict[str, Any], fitted: Fitted | None = None, layout: str = "pets"
) -> Path:
    """Write the pickle-free pair, `model.onnx` (unless --no-onnx; an architecture the exporter cannot trace gets a
    warning and no graph) and `model.pkl` (unless --no-pkl), each atomically.

    `fitted` (`ood.fit`): model.json's `ood` and `verdict` entries and their tensors (class means, ImageNet's
    classifier for the gate); older exports have neither.
    """
    from .onnx_export import write_onnx

    out = Path(cfg.out)
    meta = export_meta(learn, cfg, metrics, layout)
    extra = None
    if fitted is not None:
        meta = dataclasses.replace(meta, ood=fitted.ood, verdict=fitted.verdict)
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
