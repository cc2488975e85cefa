"""`model.json`: what an export is, as one typed, versioned record (`ModelMeta`), written and read only here.

The record says how to rebuild the network (`arch`, `head`, `vocab`), how to preprocess a photo for it (`size`,
`mean`, `std`), how good it is (`metrics`), how it was trained (`config`), how to calibrate it and when to say
"unknown" (`ood`: a `Calibration`, `verdict`: a `Rule`; `ood.py`, `verdict.py`), which ONNX graph serves it (`onnx`:
an `OnnxGraph`) and which weights it belongs to (`weights_sha256`). Like Hugging Face's `PretrainedConfig` and timm's
`PretrainedCfg` it is a plain dataclass with `to_json`/`from_json`; fields added since the first format are optional,
so every export since 0.2 (format 1) reads, and `from_json` is the one place an older file is brought up to date
(`upgrade`). Keys this version does not know are kept (`extra`) and written back unchanged.

`metrics` (the report's figures) and `config` (the `TrainConfig` of whichever version trained it) are records of
what was: their typed fields are what the package reads back, and a value that does not fit stays as it was in
`extra` instead of refusing the file (`Entry.STRICT`).

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
from .files import META, ONNX, PKL, WEIGHTS, sha256, write_json  # noqa: F401 - PKL: callers name it from here too
from .records import Entry, field_names

FORMAT_VERSION = 1  # bump when a field's meaning changes; loaders refuse other versions
REQUIRED = ("arch", "vocab", "size", "mean", "std")
HEADS = ("cosine", "fastai")  # the heads `head` can name (`model.create_head` builds each)
MIXED_UP = "the pair was mixed up or a write was interrupted; re-export"  # what to do about a checksum mismatch
EXTRA_PREFIX = "ood."  # arrays in model.safetensors that are not the network's weights (`read_extras`)


@dataclass
class Calibration(Entry):
    """model.json's `ood` entry: the temperature T fitted on the validation photos (`ood.calibration`; probabilities
    are softmax(logits / T)) and the expected calibration error before and after it."""

    temperature: float = 1.0
    n_valid: int | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    given: frozenset[str] = field(default=frozenset(), repr=False, compare=False)


@dataclass
class Rule(Entry):
    """model.json's `verdict` entry (`verdict.fit_gate`): the unknown gate and its threshold, and the known/unsure bar.

    `known_min_prob` None: an export from before the unsure answer (0.4), known or unknown only; `known_target`
    None: one from before the bar was fitted (0.5, 0.6: fixed at 0.5). `views`: what each validation photo was
    scored as (empty: 0.4's threshold, on the photos as they are). `gate_size`: the size the gate reads photos at,
    where it is not the model's (`verdict.gate_size`)."""

    gate: str
    threshold: float
    keep: float | None = None
    known_min_prob: float | None = None
    known_target: float | None = None
    known_fitted_on: str | None = None  # verdict.LEFT_OUT or VALIDATION; None (0.7, 0.8): validation photos, views
    n_known_fit: int | None = None  # the rows the bar was fitted on
    valid_known_precision: float | None = None  # the fitted bar's precision and coverage on those rows
    valid_known_coverage: float | None = None
    views: list[str] = field(default_factory=list)
    n_valid: int | None = None  # validation rows: photos x views
    valid_unknown_rate: float | None = None
    gate_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    given: frozenset[str] = field(default=frozenset(), repr=False, compare=False)


@dataclass
class OnnxGraph(Entry):
    "model.json's `onnx` entry (`onnx_export.write_onnx`): the graph beside the weights, and how it was made."

    file: str = ONNX
    sha256: str | None = None
    opset: int | None = None
    exporter: str | None = None
    input: str = "image"
    outputs: list[str] = field(default_factory=lambda: ["logits", "pooled"])
    dynamic_batch: bool = True
    max_abs_diff: float | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    given: frozenset[str] = field(default=frozenset(), repr=False, compare=False)


FEW_VALID = 5  # fewer validation photos than this in a class: its recall moves by >= 20 points per photo


def few_photos_note(n_few: int, n_classes: int | None = None, photos: str = "validation photos") -> str:
    "The sentence every figure of few-photo classes comes with: how far one photo moves their recall."
    of = f" of {n_classes}" if n_classes is not None else ""
    return (
        f"{n_few}{of} classes have fewer than {FEW_VALID} {photos}, so their recall (and the balanced accuracy) "
        f"moves by {100 // FEW_VALID} points or more with a single photo"
    )


@dataclass
class Metrics(Entry):
    """model.json's `metrics`: the exported weights' figures on the validation photos (`evaluate.report`'s summary
    without its per-class rows), each None where the export did not record it."""

    STRICT = False
    valid_accuracy: float | None = None
    valid_balanced_accuracy: float | None = None  # every class weighing the same
    valid_catdog_accuracy: float | None = None  # Pets breed models: the species the predicted breed implies
    valid_catdog_balanced_accuracy: float | None = None
    baseline_accuracy: float | None = None  # no training: the pretrained features' nearest class mean
    baseline_balanced_accuracy: float | None = None
    n_valid: int | None = None
    n_classes: int | None = None
    exported_epoch: int | None = None  # history.csv's row + 1; 0: no training
    n_few_valid_classes: int | None = None
    trained: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    given: frozenset[str] = field(default=frozenset(), repr=False, compare=False)


@dataclass
class Recipe(Entry):
    """model.json's `config`: the `TrainConfig` it was trained with, as that version saved it. The settings the
    package reads back are typed here (None where that version had no such setting); the rest stay in `extra`.
    Not a `TrainConfig`: its defaults changed across versions, and a missing key must not read as today's."""

    STRICT = False
    data: str | None = None
    task: str | None = None
    split: str | None = None
    valid_pct: float | None = None
    seed: int | None = None
    pretrained: bool | None = None
    weights: str | None = None
    head: str | None = None
    epochs: int | None = None
    freeze_epochs: int | None = None
    freeze_bn: bool | None = None
    wise: float | None = None
    opt: str | None = None
    lr: str | None = None
    wd: float | None = None
    bs: int | None = None
    logit_adjust: float | None = None
    label_smoothing: float | None = None
    sampling: str | None = None
    pkl: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    given: frozenset[str] = field(default=frozenset(), repr=False, compare=False)


ENTRIES = {  # model.json's typed entries, by key
    "ood": Calibration,
    "verdict": Rule,
    "onnx": OnnxGraph,
    "metrics": Metrics,
    "config": Recipe,
}


def upgrade(d: dict[str, Any]) -> dict[str, Any]:
    """A parsed model.json of any earlier version in today's shape: the one place old files are brought up to date.

    - 0.4 kept the unknown threshold in `ood` (`score`, `threshold`, `keep`) and no `verdict` entry: its rule becomes
      a `verdict` entry that says known or unknown only (`known_min_prob` None), on the gate it used.
    - 0.4 also kept a copy of the calibration in `metrics`: it is the `ood` entry where that is missing.
    - 0.5 and 0.6 wrote no `known_target`: their `known_min_prob` is the fixed 0.5 (`Rule`)."""
    d = dict(d)
    ood = d.get("ood")
    cal = (d.get("metrics") or {}).get("calibration") if isinstance(d.get("metrics"), dict) else None
    if ood is None and isinstance(cal, dict):
        d["ood"] = ood = cal
    if d.get("verdict") is None and isinstance(ood, dict) and "threshold" in ood:
        gate = "energy" if ood.get("score") == "energy" else "features"
        d["verdict"] = dict(gate=gate, threshold=ood["threshold"], keep=ood.get("keep"), known_min_prob=None)
    return d


@dataclass
class ModelMeta:
    """One export's `model.json`. `task` is a Pets task (`catdog`, `breeds`) or where a user's labels came from
    (`folders`, `csv`). `metrics`: its validation figures; `config`: how it was trained; `ood`: the calibration
    temperature; `verdict`: the unknown gate and its thresholds (0.4's, from its `ood` entry: `upgrade`); `onnx`: the
    graph's file, opset, outputs and checksum. Exports made before a field existed leave it empty."""

    arch: str
    vocab: list[str]
    size: int
    mean: list[float]
    std: list[float]
    task: str | None = None
    head: str = "fastai"  # exports before the cosine head had fastai's
    metrics: Metrics = field(default_factory=Metrics)
    config: Recipe = field(default_factory=Recipe)
    ood: Calibration | None = None
    verdict: Rule | None = None
    onnx: OnnxGraph | None = None
    created: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    weights_sha256: str | None = None
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, written back as they were

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
        try:
            meta = cls.read(upgrade(d))
        except (TypeError, ValueError) as e:
            raise ExportError(f"{source} has a malformed field ({e}): the export is damaged, re-export it") from None
        if not meta.vocab or meta.size < 1 or len(meta.mean) != 3 or len(meta.std) != 3:
            raise ExportError(f"{source} describes no usable model (vocab, size, mean or std): re-export it")
        return meta

    @classmethod
    def read(cls, d: dict[str, Any], lenient: bool = False) -> ModelMeta:
        """The record from an upgraded dict, each typed entry through its class. `lenient` (the model card of a
        hand-made or damaged file): a malformed optional entry is left out instead of raising ValueError."""
        names = field_names(cls)
        kw: dict[str, Any] = {k: d[k] for k in names if k in d}
        for key, entry in ENTRIES.items():
            if kw.get(key) is None:
                kw.pop(key, None)  # the field's default: None, or an empty record
                continue
            try:
                kw[key] = entry.from_json(kw[key])
            except (TypeError, ValueError) as e:
                if not lenient:
                    raise ValueError(f"{key}: {e}") from None
                del kw[key]
        meta = cls(**kw, extra={k: v for k, v in d.items() if k not in names})
        meta.vocab, meta.size = [str(v) for v in meta.vocab], int(meta.size)
        meta.mean, meta.std = [float(v) for v in meta.mean], [float(v) for v in meta.std]
        return meta

    def to_json(self) -> dict[str, Any]:
        "The record as model.json holds it (empty optional entries left out, unknown keys kept)."
        d = {k: getattr(self, k) for k in field_names(type(self))}
        d = {k: v.to_json() if isinstance(v, Entry) else v for k, v in d.items()}
        d = {"format_version": d.pop("format_version"), **{k: v for k, v in d.items() if v is not None}}
        return {**d, **self.extra}

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
        where = (
            f"{path} does not exist" if not path.exists() else f"no {META} in {path if path.is_dir() else path.parent}"
        )
        raise ExportError(
            f"{where}: train a model first (catdog-train --out DIR) or point at the folder that holds {META}"
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
