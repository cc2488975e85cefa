"""What the model card states, read once from `model.json` (and `report.json`) into typed records.

model.json's `metrics`, `config` and `verdict` entries are open dicts that grew over versions: an export may lack
any optional key, or (made by hand) hold a string where a number belongs. Each record below reads the keys it needs,
keeps a value only when it has the expected type, and leaves it None otherwise, so the card's text can say "not
recorded" or leave a line out rather than print a placeholder or a figure the export does not hold.

The `ood` and `verdict` entries come typed from `meta.ModelMeta` (older exports upgraded there, once), the same
record serving reads, so the card describes the rule `load_predictor` applies, old exports included.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from . import meta as meta_
from .labels import TASKS, is_pet_model
from .meta import ONNX, PKL, Metrics, ModelMeta, Recipe
from .verdict import unknown_text


def number(v: Any) -> float | None:
    "A finite int or float (not a bool) as float; None for anything else."
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def count(v: Any) -> int | None:
    "A whole, non-negative number as int; None for anything else."
    x = number(v)
    return int(x) if x is not None and x >= 0 and x == int(x) else None


def text(v: Any) -> str | None:
    "A scalar setting as the card prints it (`2e-3` stays `2e-3`); None when missing or not a scalar."
    return None if v is None or isinstance(v, (dict, list)) else str(v)


def flag(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


@dataclass(frozen=True)
class Figures:
    "Validation figures of the exported weights: model.json's `metrics` over report.json's; None = not recorded."

    accuracy: float | None = None
    balanced_accuracy: float | None = None
    catdog_accuracy: float | None = None  # breeds models: the species the predicted breed implies
    catdog_balanced_accuracy: float | None = None  # ... with every breed weighing the same
    baseline_accuracy: float | None = None  # no training: the pretrained features' nearest class mean
    baseline_balanced_accuracy: float | None = None
    n_valid: int | None = None
    exported_epoch: int | None = None
    n_few_valid_classes: int | None = None
    per_class: dict[str, float] = field(default_factory=dict)  # recall per class (report.json)
    n_per_class: dict[str, int] = field(default_factory=dict)  # validation photos per class (report.json)

    @classmethod
    def read(cls, metrics: Metrics, report: dict[str, Any]) -> Figures:
        def m(name: str) -> Any:  # model.json first: it describes the exported weights; report.json fills gaps
            v = getattr(metrics, name)
            return v if v is not None else report.get(name)

        recall = {str(k): number(v) for k, v in _dict(report.get("per_class")).items()}
        counts = {str(k): count(v) for k, v in _dict(report.get("n_valid_per_class")).items()}
        return cls(
            accuracy=number(m("valid_accuracy")),
            balanced_accuracy=number(m("valid_balanced_accuracy")),
            catdog_accuracy=number(m("valid_catdog_accuracy")),
            catdog_balanced_accuracy=number(m("valid_catdog_balanced_accuracy")),
            baseline_accuracy=number(m("baseline_accuracy")),
            baseline_balanced_accuracy=number(m("baseline_balanced_accuracy")),
            n_valid=count(m("n_valid")),
            exported_epoch=count(m("exported_epoch")),
            n_few_valid_classes=count(m("n_few_valid_classes")),
            per_class={k: v for k, v in recall.items() if v is not None},
            n_per_class={k: v for k, v in counts.items() if v is not None},
        )


def rates(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    'The measured rates in a `verdict` entry (`Rule.to_json()`: every number with "rate" in its key), flattened.'
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(rates(v, f"{key}."))
        elif "rate" in key and number(v) is not None:
            out[key] = float(v)
    return out


@dataclass(frozen=True)
class Facts:
    "Everything the card states about one export."

    meta: ModelMeta
    figures: Figures
    recipe: Recipe
    calibration: meta_.Calibration | None
    rule: meta_.Rule | None  # as `load_predictor` applies it (older exports' upgraded when read)
    pkl: bool  # model.pkl is in the folder
    onnx: bool  # model.onnx is in the folder

    @property
    def n_classes(self) -> int:
        return len(self.meta.vocab)

    @property
    def pets(self) -> bool:
        "Labels read from Oxford-IIIT Pet file names (cat/dog or breeds), not from the user's own folders or CSV."
        return self.meta.task in TASKS

    @property
    def unknown_text(self) -> str:
        "What the app and `catdog-predict` say for a photo that looks like none of the classes."
        return unknown_text(is_pet_model(self.meta.vocab, self.meta.task))

    @property
    def head(self) -> str | None:
        return self.meta.head or self.recipe.head


def as_meta(meta: ModelMeta | dict[str, Any]) -> ModelMeta:
    """`meta` as a `ModelMeta`. A dict needs only `arch`, `vocab` and `size`: cards of old or hand-made exports
    still render (the card does not use `mean` / `std`, which serving checks), and a malformed `ood`, `verdict` or
    `onnx` entry is left out."""
    if not isinstance(meta, ModelMeta):
        meta = ModelMeta.read(meta_.upgrade({"mean": [], "std": [], **meta}), lenient=True)
    return dataclasses.replace(  # a hand-edited model.json can hold anything in its open entries
        meta,
        vocab=[str(v) for v in meta.vocab],
        size=int(meta.size),
        versions=_dict(meta.versions),
    )


def read_facts(
    meta: ModelMeta | dict[str, Any], report: dict[str, Any] | None = None, files: Collection[str] | None = None
) -> Facts:
    """The card's facts from model.json (`meta`), report.json (`report`) and the folder's file names (`files`; None
    guesses from `meta`: the config's `pkl` flag, an `onnx` entry)."""
    meta = as_meta(meta)
    recipe = meta.config
    return Facts(
        meta=meta,
        figures=Figures.read(meta.metrics, report or {}),
        recipe=recipe,
        calibration=meta.ood,
        rule=meta.verdict,
        pkl=PKL in files if files is not None else recipe.pkl is not False,
        onnx=ONNX in files if files is not None else meta.onnx is not None,
    )
