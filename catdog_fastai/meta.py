"""`model.json`: what an export is, as one typed, versioned record (`ModelMeta`), written and read only here.

The record says how to rebuild the network (`arch`, `head`, `vocab`), how to preprocess a photo for it (`size`,
`mean`, `std`), how good it is (`metrics`), how it was trained (`config`), how to calibrate it and when to say
"unknown" (`ood`, `verdict`: `ood.py`, `verdict.py`), which ONNX graph serves it (`onnx`) and which weights it
belongs to (`weights_sha256`). Like Hugging Face's `PretrainedConfig` and timm's `PretrainedCfg` it is a plain
dataclass with `to_json`/`from_json`; fields added since the first format are optional, so every export since 0.2
(format 1) reads.

Standard library only, so serving without torch can read it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import ExportError
from .files import sha256, write_json

FORMAT_VERSION = 1  # bump when a field's meaning changes; loaders refuse other versions
WEIGHTS, META, PKL, ONNX = "model.safetensors", "model.json", "model.pkl", "model.onnx"
REQUIRED = ("arch", "vocab", "size", "mean", "std")
MIXED_UP = "the pair was mixed up or a write was interrupted; re-export"  # what to do about a checksum mismatch
EXTRA_PREFIX = "ood."  # arrays in model.safetensors that are not the network's weights (`read_extras`)


@dataclass
class ModelMeta:
    """One export's `model.json`. `task` is a Pets task (`catdog`, `breeds`) or where a user's labels came from
    (`folders`, `csv`). `ood`: the calibration temperature (and, before 0.5, the unknown threshold); `verdict`: the
    unknown gate and its thresholds; `onnx`: the graph's file, opset, outputs and checksum. Exports made before a
    field existed leave it empty."""

    arch: str
    vocab: list[str]
    size: int
    mean: list[float]
    std: list[float]
    task: str | None = None
    head: str = "fastai"  # exports before the cosine head had fastai's
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    ood: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    onnx: dict[str, Any] | None = None
    created: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    weights_sha256: str | None = None
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, d: Any, source: str = META) -> ModelMeta:
        "Check and type a parsed model.json; `source` names the file in the messages."
        fv = d.get("format_version") if isinstance(d, dict) else None
        if fv != FORMAT_VERSION:
            written = d.get("versions", {}) if isinstance(d, dict) else "?"
            raise ExportError(
                f"{source} has export format {fv!r}, this catdog_fastai reads format {FORMAT_VERSION} "
                f"(file written by {written}; running {versions()}). Re-export the model with this version."
            )
        missing = [k for k in REQUIRED if k not in d]
        if missing:
            raise ExportError(f"{source} lacks {', '.join(missing)}: not a catdog_fastai export")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            meta = cls(**{k: v for k, v in d.items() if k in names})
            meta.vocab, meta.size = [str(v) for v in meta.vocab], int(meta.size)
            meta.mean, meta.std = [float(v) for v in meta.mean], [float(v) for v in meta.std]
        except (TypeError, ValueError) as e:
            raise ExportError(f"{source} has a malformed field ({e}): the export is damaged, re-export it") from None
        if not meta.vocab or meta.size < 1 or len(meta.mean) != 3 or len(meta.std) != 3:
            raise ExportError(f"{source} describes no usable model (vocab, size, mean or std): re-export it")
        return meta

    def to_json(self) -> dict[str, Any]:
        "The record as model.json holds it (empty optional entries left out)."
        d = dataclasses.asdict(self)
        return {"format_version": d.pop("format_version"), **{k: v for k, v in d.items() if v is not None}}

    @property
    def n_classes(self) -> int:
        return len(self.vocab)


def stamped(meta: ModelMeta, weights: Path) -> ModelMeta:
    "`meta` with the export's time, the library versions and the checksum of the weights it belongs to."
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return dataclasses.replace(meta, created=now, versions=versions(), weights_sha256=sha256(weights))


def write_meta(folder: str | os.PathLike, meta: ModelMeta) -> Path:
    "Write `model.json` into `folder`, atomically."
    return write_json(Path(folder) / META, meta.to_json())


def read_meta(path: str | os.PathLike) -> ModelMeta:
    "Read and check `model.json` (a folder or the file itself)."
    path = Path(path)
    meta_path = path / META if path.is_dir() else path
    if not meta_path.is_file():
        raise ExportError(
            f"no {META} in {path.parent if not path.is_dir() else path}: train a model first "
            "(catdog-train --out DIR) or point at the folder that holds model.json"
        )
    try:
        d = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{meta_path} is not valid JSON ({e}); the export is damaged, re-export it") from None
    return ModelMeta.from_json(d, str(meta_path))


def read_extras(path: str | os.PathLike) -> dict[str, Any]:
    """The arrays saved beside the weights in model.safetensors (names starting `ood.`: the gate's class means or
    ImageNet's classifier), as NumPy; exports made before one existed load without it."""
    from safetensors import safe_open

    path = Path(path)
    wpath = (path if path.is_dir() else path.parent) / WEIGHTS
    if not wpath.is_file():
        return {}
    with safe_open(str(wpath), "np") as f:
        return {k: f.get_tensor(k) for k in f.keys() if k.startswith(EXTRA_PREFIX)}


def verify(path: Path, expected: str | None, fix: str) -> Path:
    """`path`, if its SHA-256 is the one model.json recorded (`expected`; None: an export from before checksums);
    else an `ExportError` ending with `fix`."""
    if expected not in (None, sha256(path)):
        raise ExportError(f"{path} does not match {path.parent / META} (checksum differs): {fix}")
    return path


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
