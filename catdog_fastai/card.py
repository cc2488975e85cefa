"""The model card: `README.md` beside every export, a Hugging Face `ModelCard`, so the folder uploads as it is.

    hf upload USER/NAME models/      # huggingface_hub >= 1.0; `huggingface-cli upload` before that

Everything on the card comes from `model.json` (arch, classes, recipe, validation figures, the "unknown" verdict)
and, when present, `report.json` (per-class recall), read into typed records by `card_facts.py`: the card never
states a figure the export does not hold. The metadata is huggingface_hub's `ModelCardData`, its figures
`EvalResult`s, so the library writes the YAML and `model-index` and parses them back before the card is written;
`card_text.py` writes the Markdown body.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from . import card_text as text
from .card_facts import Facts, read_facts
from .errors import CatdogError
from .files import CARD, REPORT, atomic_write
from .meta import ONNX, ModelMeta, read_meta

log = logging.getLogger("catdog_fastai")

LICENSE = "apache-2.0"  # the project's own licence; the Oxford-IIIT Pet photos are CC BY-SA 4.0
MARKER = "<!-- model card written by catdog_fastai.card; regenerated on every export -->"  # ours to overwrite
PETS_DATASET = "timm/oxford-iiit-pet"  # the Hub's Oxford-IIIT Pet (its train and test splits are the official lists)
TASK = "image-classification"
OWN_DATASETS = {"folders": "imagefolder", "csv": "csv"}  # model-index dataset type of the user's own photos

# The body. Each {section} is written by card_text.py from the export's facts.
BODY = """\
{marker}

# {title}

{summary}

## Results

{results}

## Classes

{classes}

## Training

{training}

## How to use

{usage}

## Limits

{limits}

## Upload to the Hugging Face Hub

```bash
hf auth login                # once; with huggingface_hub < 1.0: huggingface-cli login
hf upload USER/NAME DIR      # with huggingface_hub < 1.0: huggingface-cli upload USER/NAME DIR
```

`DIR` is this folder: it needs nothing else. This `README.md` is the model card; `model.safetensors` + `model.json`\
{onnx} are the model.{pkl} The card names no `library_name` on purpose: the Hub's fastai loader expects a pickled \
Learner and timm's a `config.json`, so neither would load this folder; load it as shown above.
"""


class CardError(CatdogError):
    """The model card cannot be written where asked; the message says why."""


def model_card(
    meta: ModelMeta | dict[str, Any], report: dict[str, Any] | None = None, files: Collection[str] | None = None
) -> str:
    """The text of `README.md` for the export `meta` (model.json, as read by `meta.read_meta` or as its JSON) and
    `report` (report.json's, optional).

    Only `arch`, `vocab` and `size` are required: exports from older versions, or made by hand, still get a card.
    `files`: the names of the files in the export folder, so the card mentions `model.pkl` / `model.onnx` only when
    they are there; None guesses from `meta` (the config's `pkl` flag, an `onnx` entry).
    """
    f = read_facts(meta, report, files)
    base = base_model(f.meta.arch) if f.recipe.pretrained else None
    body = BODY.format(
        marker=MARKER,
        title=text.title(f),
        summary=text.summary(f),
        results=text.results(f),
        classes=text.classes(f),
        training=text.training(f, base),
        usage=text.usage(f),
        limits=text.limits(f),
        onnx=f" (and `{ONNX}`)" if f.onnx else "",
        pkl=" `model.pkl` is a pickle, which runs code when loaded: add `--exclude model.pkl` to publish only the "
        "pickle-free files."
        if f.pkl
        else "",
    )
    # ModelCard parses the metadata back (model-index included) and raises if the Hub could not read it
    return str(ModelCard(f"---\n{card_data(f, base).to_yaml()}\n---\n{body}"))


def card_data(f: Facts, base: str | None = None) -> ModelCardData:
    """The card's Hub metadata. No `library_name`: the Hub's fastai loader wants `model.pkl` (which the upload
    advice leaves out) and timm's a `config.json`; the card's body says how to load the folder instead."""
    tags = [TASK, "timm", "fastai", "safetensors", *(["onnx"] if f.onnx else [])]
    results = eval_results(f)
    return ModelCardData(
        base_model=base,
        datasets=[PETS_DATASET] if f.pets else None,
        license=LICENSE,
        pipeline_tag=TASK,
        tags=tags + (["pets", f.meta.task or ""] if f.pets else []),
        model_name=model_name(f) if results else None,
        eval_results=results or None,
    )


def base_model(arch: str) -> str:
    """The Hub id of the pretrained weights `arch` starts from (`tf_efficientnet_lite0` ->
    `timm/tf_efficientnet_lite0.in1k`: its default pretrained tag, or the tag the arch names), from timm's pretrained
    config; the arch itself where timm is not installed or knows no Hub weights for it."""
    if arch.startswith(("hf-hub:", "hf_hub:")):
        return arch.split(":", 1)[1]
    try:
        from timm.models import get_pretrained_cfg
    except ImportError:  # serving installs leave timm out; the card written at export had it
        return arch
    try:
        cfg = get_pretrained_cfg(arch)
    except (RuntimeError, ValueError, KeyError):  # a name timm cannot parse
        cfg = None
    return cfg.hf_hub_id if cfg is not None and cfg.hf_hub_id else arch


def model_name(f: Facts) -> str:
    return f"catdog_fastai-{f.meta.task or 'model'}-{f.meta.arch}"


def eval_results(f: Facts) -> list[EvalResult]:
    """model-index: the accuracy and the balanced accuracy of the model's own task on its validation photos, the
    figures model.json holds and no other. The validation photos are a held-out part of the photos trained from
    (`split: validation`; the dataset's name says which part), or the official test list (`split: test`)."""
    g = f.figures
    if g.accuracy is None:
        return []
    if f.pets:
        labels = "cat or dog" if f.meta.task == "catdog" else f"{f.n_classes} breeds"
        dataset, name = PETS_DATASET, f"Oxford-IIIT Pet, {labels}"
    else:
        dataset, name = OWN_DATASETS.get(f.meta.task or "", "custom"), f"Own photos, {f.n_classes} classes"
    common = dict(
        task_type=TASK,
        task_name="Image Classification",
        dataset_type=dataset,
        dataset_name=f"{name} ({text.split_text(f.recipe)})",
        dataset_split="test" if f.recipe.split == "official" else "validation",
    )
    figures = [
        ("accuracy", g.accuracy, "Accuracy"),
        ("balanced_accuracy", g.balanced_accuracy, "Balanced accuracy (mean recall per class)"),
    ]
    return [EvalResult(metric_type=t, metric_value=v, metric_name=n, **common) for t, v, n in figures if v is not None]


def write_card(out: str | os.PathLike) -> Path:
    """Write `out/README.md` from `out/model.json` and `out/report.json` (if there), atomically; returns its path.

    A `README.md` that this module did not write (no marker line) is never overwritten: `--out .` in a project
    folder must not replace the project's own README.
    """
    out = Path(out)
    path = check_card_target(out)
    card = _render(out)
    # backslashreplace: a folder name that is not valid UTF-8 reaches the vocab as a lone surrogate
    return atomic_write(path, lambda p: p.write_text(card, encoding="utf-8", errors="backslashreplace"))


def check_card_target(out: str | os.PathLike) -> Path:
    "OUT/README.md, unless it is a file this module did not write (no marker line): then a `CardError`."
    path = Path(out) / CARD
    if path.is_file() and MARKER not in path.read_text(encoding="utf-8", errors="replace"):
        raise CardError(f"{path} exists and is not a catdog_fastai model card: move it, or export to another --out")
    return path


def folder_card(out: str | os.PathLike) -> str:
    """The card of the export in `out` (a file in it will do): the README.md `write_card` wrote there, else one
    rendered from its model.json and report.json (exports made before cards). Reading the written card keeps the
    app from importing timm (and torch) only to name the base model on a serving install."""
    out = Path(out) if Path(out).is_dir() else Path(out).parent
    written = out / CARD
    if written.is_file():
        card = written.read_text(encoding="utf-8", errors="replace")
        if MARKER in card:
            return card
    return _render(out)


def _render(out: Path) -> str:
    return model_card(read_meta(out), _read_report(out / REPORT), files=[p.name for p in out.iterdir()])


def _read_report(path: Path) -> dict[str, Any] | None:
    "report.json's dict, or None when it is missing or unreadable (the card then goes without per-class figures)."
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("%s cannot be read (%s): the model card leaves out per-class figures", path, e)
        return None
    return report if isinstance(report, dict) else None
