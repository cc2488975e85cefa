"""Writing and reading the export: `model.safetensors` + `model.json` (pickle-free) and `model.pkl` (fastai).

Every file is written to a temporary name in the same folder and renamed into place, so a crash, a full disk or
Ctrl-C mid-write leaves the previous good file untouched, never half a file. `model.json` records the arch, vocab,
preprocessing and the library versions; on load it is checked against the weights so a mismatched or
foreign file fails with a message instead of wrong predictions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file

from .errors import CatdogError

if TYPE_CHECKING:
    from fastai.learner import Learner

    from .config import TrainConfig
    from .ood import Fitted

FORMAT_VERSION = 1  # bump when model.json's meaning changes; loaders refuse other versions
WEIGHTS, META, PKL = "model.safetensors", "model.json", "model.pkl"
EXTRA_PREFIX = "ood."  # tensors in model.safetensors that are not the model's weights (`save_safe(extra=...)`)


class ExportError(CatdogError):
    """An export that is missing, damaged, or from an incompatible version; the message says which."""


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    "Call `write(tmp_path)`, fsync, then rename onto `path`; on any failure remove the temp file and re-raise."
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def versions(*extra: str) -> dict[str, str]:
    """Versions of the libraries an export depends on (pickles break across some of these, e.g. timm renames),
    and of the `extra` distributions asked for; the ones not installed are left out."""
    out = {"python": platform.python_version()}
    for name in ("catdog_fastai", "torch", "timm", "fastai", "safetensors", "pillow", *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_safe(
    model: torch.nn.Module,
    meta: dict[str, Any],
    out: str | os.PathLike,
    extra: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Write `model.safetensors` then `model.json` (which carries the weights' sha256, tying the pair together).

    `extra` tensors (names starting `ood.`, e.g. the class means of the OOD score) are stored beside the weights.
    """
    out = Path(out)
    sd = {
        k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in {**model.state_dict(), **(extra or {})}.items()
    }
    atomic_write(out / WEIGHTS, lambda p: save_file(sd, str(p), metadata={"format": "pt"}))
    meta = {
        "format_version": FORMAT_VERSION,
        **meta,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "weights_sha256": _sha256(out / WEIGHTS),
    }
    write_json(out / META, meta)
    return meta


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    "Read and check `model.json` (a folder or the file itself)."
    path = Path(path)
    meta_path = path / META if path.is_dir() else path
    if not meta_path.is_file():
        raise ExportError(
            f"no {META} in {path.parent if not path.is_dir() else path}: train a model first "
            "(catdog-train --out DIR) or point at the folder that holds model.json"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{meta_path} is not valid JSON ({e}); the export is damaged, re-export it") from None
    fv = meta.get("format_version") if isinstance(meta, dict) else None
    if fv != FORMAT_VERSION:
        raise ExportError(
            f"{meta_path} has export format {fv!r}, this catdog_fastai reads format {FORMAT_VERSION} "
            f"(file written by {meta.get('versions', {}) if isinstance(meta, dict) else '?'}; running {versions()}). "
            "Re-export the model with this version."
        )
    missing = [k for k in ("arch", "vocab", "size", "mean", "std") if k not in meta]
    if missing:
        raise ExportError(f"{meta_path} lacks {', '.join(missing)}: not a catdog_fastai export")
    return meta


def load_safe(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model from `model.json` and load `model.safetensors` into it, checking every key and shape."""
    from .model import ModelError, build_model

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta = read_meta(folder)
    wpath = folder / WEIGHTS
    if not wpath.is_file():
        raise ExportError(f"{wpath} is missing; the export in {folder} is incomplete")
    if meta.get("weights_sha256") not in (None, _sha256(wpath)):
        raise ExportError(
            f"{wpath} does not match {folder / META} (checksum differs): the pair was mixed up or "
            "a write was interrupted; re-export"
        )
    try:
        model = build_model(meta["arch"], len(meta["vocab"]), pretrained=False, head=meta.get("head", "fastai"))
    except ModelError as e:
        raise ExportError(f"{e} (the export was made with {meta.get('versions')}, running {versions()})") from None
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
            f"{wpath} does not fit {meta['arch']} with {len(meta['vocab'])} classes ({detail}). Exported with "
            f"{meta.get('versions')}, running {versions()}."
        )
    model.load_state_dict(sd)
    return model.to(device).eval(), meta


def read_extras(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors saved beside the weights (`save_safe(extra=...)`: class means, the gate's classifier); exports
    made before one existed load without it."""
    from safetensors import safe_open

    path = Path(path)
    wpath = (path if path.is_dir() else path.parent) / WEIGHTS
    if not wpath.is_file():
        return {}
    with safe_open(str(wpath), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys() if k.startswith(EXTRA_PREFIX)}


def export_meta(learn: Learner, cfg: TrainConfig, metrics: dict[str, Any]) -> dict[str, Any]:
    "What `model.json` says about a model: enough to rebuild it, preprocess for it and judge it."
    from .model import norm_stats

    mean, std = norm_stats(learn.model)
    layout = getattr(learn.dls, "layout", "pets")
    return dict(
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


def export(learn: Learner, cfg: TrainConfig, metrics: dict[str, Any], fitted: Fitted | None = None) -> Path:
    """Write the pickle-free pair and (unless --no-pkl) `model.pkl`, each atomically.

    `fitted` (`ood.fit`): model.json's `ood` and `verdict` entries and their tensors (class means, ImageNet's
    classifier for the gate); older exports have neither.
    """
    out = Path(cfg.out)
    meta = export_meta(learn, cfg, metrics)
    extra = None
    if fitted is not None:
        meta["ood"], meta["verdict"], extra = fitted.ood, fitted.verdict, fitted.tensors
    learn.model.float()
    save_safe(learn.model, meta, out, extra)
    if cfg.pkl:
        learn.catdog_meta = meta  # travels inside model.pkl, so load_predictor(trusted=True) needs nothing else
        atomic_write(out / PKL, lambda p: learn.export(p))
    return out
