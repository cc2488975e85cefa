"""The model card: `README.md` beside every export, in Hugging Face's format, so the folder uploads as it is.

    hf upload USER/NAME models/      # huggingface_hub >= 1.0; `huggingface-cli upload` before that

Everything on the card comes from `model.json` (arch, classes, recipe, validation figures, the "unknown" verdict)
and, when present, `report.json` (per-class recall): the card never states a figure the export does not hold.
The YAML front matter (tags, dataset, `model-index` with the metrics) is written by hand, every string quoted
where it could be misread, so neither PyYAML nor fastai is needed to write it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from .errors import CatdogError
from .files import atomic_write
from .labels import TASKS
from .meta import ONNX, PKL, ModelMeta, read_meta
from .verdict import GATES, is_pet_model, read_rule, unknown_text

log = logging.getLogger("catdog_fastai")

CARD, REPORT = "README.md", "report.json"
LICENSE = "apache-2.0"  # the project's own licence; the Oxford-IIIT Pet photos are CC BY-SA 4.0
MARKER = "<!-- model card written by catdog_fastai.card; regenerated on every export -->"  # ours to overwrite
N_WEAKEST = 5  # weakest classes named under "Limits"

# The one template. Each {section} is built by a function below from model.json (+ report.json).
TEMPLATE = """\
---
{front_matter}---
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

`DIR` is this folder: it needs nothing else. This `README.md` is the model card; `model.safetensors` + `model.json`
are the model.{upload_pkl}
"""


class CardError(CatdogError):
    """The model card cannot be written where asked; the message says why."""


def model_card(
    meta: ModelMeta | dict[str, Any], report: dict[str, Any] | None = None, files: Collection[str] | None = None
) -> str:
    """The text of `README.md` for the export `meta` (model.json, as read by `meta.read_meta` or as its JSON) and
    `report` (report.json's, optional). The card shows the file's own fields, so it renders the JSON form.

    Only `arch`, `vocab` and `size` are required: exports from older versions, or made by hand, still get a card.
    `files`: the names of the files in the export folder, so the card mentions `model.pkl` / `model.onnx` only when
    they are there; None guesses from `meta` (the config's `pkl` flag, an `onnx` entry).
    """
    meta = meta.to_json() if isinstance(meta, ModelMeta) else meta
    report = report or {}
    pkl = PKL in files if files is not None else bool(_cfg(meta).get("pkl", True))
    onnx = ONNX in files if files is not None else "onnx" in meta
    return TEMPLATE.format(
        front_matter=_yaml(_front_matter(meta)),
        marker=MARKER,
        title=_title(meta),
        summary=_summary(meta),
        results=_results(meta, report),
        classes=_classes(meta, report),
        training=_training(meta),
        usage=_usage(meta, pkl, onnx),
        limits=_limits(meta, report),
        upload_pkl=(
            " `model.pkl` is a pickle, which runs code when loaded: add `--exclude model.pkl` to publish only the "
            "pickle-free pair."
        )
        if pkl
        else "",
    )


def write_card(out: str | os.PathLike) -> Path:
    """Write `out/README.md` from `out/model.json` and `out/report.json` (if there), atomically; returns its path.

    A `README.md` that this module did not write (no marker line) is never overwritten: `--out .` in a project
    folder must not replace the project's own README.
    """
    out = Path(out)
    path = check_card_target(out)
    text = folder_card(out)
    # backslashreplace: a folder name that is not valid UTF-8 reaches the vocab as a lone surrogate
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8", errors="backslashreplace"))


def check_card_target(out: str | os.PathLike) -> Path:
    "OUT/README.md, unless it is a file this module did not write (no marker line): then a `CardError`."
    path = Path(out) / CARD
    if path.is_file() and MARKER not in path.read_text(encoding="utf-8", errors="replace"):
        raise CardError(f"{path} exists and is not a catdog_fastai model card: move it, or export to another --out")
    return path


def folder_card(out: str | os.PathLike) -> str:
    """The card of the export in `out` (a file in it will do), from its model.json and report.json: what
    `write_card` writes and the app shows."""
    out = Path(out) if Path(out).is_dir() else Path(out).parent
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


# ---- what the export is -------------------------------------------------------------------------------------------


def _cfg(meta: dict[str, Any]) -> dict[str, Any]:
    return meta.get("config") if isinstance(meta.get("config"), dict) else {}


def _metrics(meta: dict[str, Any]) -> dict[str, Any]:
    return meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}


def _is_pets(meta: dict[str, Any]) -> bool:
    "Labels read from Oxford-IIIT Pet file names (cat/dog or breeds), not from the user's own folders or CSV."
    return meta.get("task") in TASKS


def _unknown_text(meta: dict[str, Any]) -> str:
    "What the app and `catdog-predict` say for a photo that looks like none of the classes (`verdict.unknown_text`)."
    return unknown_text(_is_pet_model(meta))


def _is_pet_model(meta: dict[str, Any]) -> bool:
    'Cat/dog and Pets breed models, whose unknown answer is "not a cat or a dog" (`verdict.is_pet_model`).'
    return is_pet_model([str(v) for v in meta["vocab"]], meta.get("task"))


def _ood(meta: dict[str, Any]) -> dict[str, Any] | None:
    "Calibration (temperature, ECE): model.json's `ood` entry, else the report's copy in `metrics.calibration`."
    ood = meta.get("ood") or _metrics(meta).get("calibration")
    return ood if isinstance(ood, dict) else None


def _rule(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The 'unknown' verdict's rule: model.json's `verdict` entry, else (exports made before it) the `ood` entry's
    threshold, as `predict` reads them; None for exports with neither, which call nothing unknown."""
    rule = meta.get("verdict")
    if isinstance(rule, dict) and _finite(rule.get("threshold")):
        return {**rule, "views": True}  # fitted on each photo as it is, at low resolution and in grayscale
    legacy = read_rule(None, _ood(meta))
    return legacy if legacy is not None and _finite(legacy["threshold"]) else None


def _verdict_rates(meta: dict[str, Any]) -> dict[str, float]:
    "The measured rates in model.json's `verdict` entry (keys with 'rate' in them), flattened: 'unknown.ood_rate'."
    return {k: v for k, v in _flat(meta.get("verdict")).items() if "rate" in k and _finite(v)}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _what(meta: dict[str, Any]) -> str:
    n, task = len(meta["vocab"]), meta.get("task")
    if task == "catdog":
        return "Cat or dog"
    if task == "breeds":
        return f"{n} Oxford-IIIT Pet breeds"
    return f"{n} classes from own photos"


def _title(meta: dict[str, Any]) -> str:
    return f"{_what(meta)}: {meta['arch']} fine-tuned with fastai"


def _model_name(meta: dict[str, Any]) -> str:
    return f"catdog_fastai-{meta.get('task') or 'model'}-{meta['arch']}"


def _dataset(meta: dict[str, Any]) -> dict[str, str]:
    "model-index's dataset: Oxford-IIIT Pet for Pets tasks, else the user's own photos (no Hub dataset)."
    if _is_pets(meta):
        return dict(type="oxford-iiit-pet", name="Oxford-IIIT Pet", split="validation")
    task = meta.get("task")
    typ = {"folders": "imagefolder", "csv": "csv"}.get(task, "custom")
    return dict(type=typ, name=f"Own photos ({task or 'unknown layout'})", split="validation")


# ---- front matter -------------------------------------------------------------------------------------------------


_RATE_NAMES = {  # how each rate in model.json's `verdict` entry was measured
    "valid_unknown_rate": "Called unknown: validation photos and their low-resolution and grayscale views, every class "
    "the same (the threshold was fitted on them, so about 1 - keep)",
}


def _metric_entries(meta: dict[str, Any]) -> list[dict[str, Any]]:
    "model-index metrics ({type, value, name}): every validation figure model.json holds, none it does not."
    m, ood = _metrics(meta), _ood(meta) or {}
    known = [
        ("valid_accuracy", "accuracy", "Validation accuracy"),
        ("valid_balanced_accuracy", "balanced_accuracy", "Validation balanced accuracy (mean recall per class)"),
        ("valid_catdog_accuracy", "accuracy", "Validation cat/dog accuracy (implied by the breed)"),
        ("valid_catdog_balanced_accuracy", "balanced_accuracy", "Validation cat/dog balanced accuracy (per breed)"),
    ]
    entries = [dict(type=typ, value=m[key], name=name) for key, typ, name in known if _finite(m.get(key))]
    if _finite(ood.get("ece_after")):
        entries.append(dict(type="ece", value=ood["ece_after"], name="Expected calibration error (temperature-scaled)"))
    entries += [
        dict(type="unknown_rate", value=v, name=_RATE_NAMES.get(k, f"Verdict: {k.replace('_', ' ')}"))
        for k, v in _verdict_rates(meta).items()
    ]
    return entries


def _front_matter(meta: dict[str, Any]) -> dict[str, Any]:
    "The card's metadata block, as a dict (Hugging Face model-card fields)."
    pets = _is_pets(meta)
    fm: dict[str, Any] = dict(
        library_name="fastai",
        license=LICENSE,
        pipeline_tag="image-classification",
        tags=["image-classification", "fastai", "timm", *(["pets", meta["task"]] if pets else [])],
    )
    if pets:
        fm["datasets"] = ["oxford-iiit-pet"]
    metrics = _metric_entries(meta)
    if metrics:
        fm["model-index"] = [
            dict(
                name=_model_name(meta),
                results=[
                    dict(
                        task=dict(type="image-classification", name="Image Classification"),
                        dataset=_dataset(meta),
                        metrics=metrics,
                    )
                ],
            )
        ]
    return fm


_PLAIN = re.compile(r"[a-z][a-z0-9-]*(?:[._/][a-z0-9-]+)*")  # safe unquoted in YAML, unless a reserved word
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _scalar(v: Any) -> str:
    "One YAML scalar: numbers and booleans as JSON writes them, strings bare when unambiguous, else double-quoted."
    if v is None or isinstance(v, (bool, int, float)):
        return json.dumps(v if not isinstance(v, float) or math.isfinite(v) else None)
    s = str(v)
    if _PLAIN.fullmatch(s) and s not in _RESERVED:
        return s
    # JSON's escapes are YAML's; characters YAML would read as line breaks or drop (U+2028, BOM, ...) are escaped
    body = json.dumps(s, ensure_ascii=False)[1:-1]
    body = "".join(c if c.isprintable() else _escape(c) for c in body)
    return f'"{body}"'


def _escape(c: str) -> str:
    return f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"


def _yaml_lines(obj: Any, indent: int = 0) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines += [f"{pad}{_scalar(k)}:", *_yaml_lines(v, indent + 1)]
            else:
                lines.append(f"{pad}{_scalar(k)}: {_scalar(v) if not isinstance(v, (dict, list)) else json.dumps(v)}")
    else:
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                first, *rest = _yaml_lines(item, indent + 1)
                lines += [f"{pad}- {first.lstrip()}", *rest]
            else:
                lines.append(f"{pad}- {_scalar(item) if not isinstance(item, (dict, list)) else json.dumps(item)}")
    return lines


def _yaml(obj: dict[str, Any]) -> str:
    "A block-style YAML document for nested dicts/lists of scalars (what the front matter holds), newline-ended."
    return "\n".join(_yaml_lines(obj)) + "\n"


# ---- body ---------------------------------------------------------------------------------------------------------


def _code(s: Any) -> str:
    "`s` as a Markdown code span, so underscores and asterisks in class names print as they are."
    s = str(s).replace("\n", " ")
    fence = "`" * (max((len(r) for r in re.findall("`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _pct(v: Any) -> str:
    return f"{v:.1%}" if _finite(v) else "n/a"


def _summary(meta: dict[str, Any]) -> str:
    n = len(meta["vocab"])
    task = meta.get("task")
    if task == "catdog":
        does = "tells whether a photo shows a cat or a dog"
    elif task == "breeds":
        does = f"names which of the {n} cat and dog breeds of Oxford-IIIT Pet a photo shows"
    else:
        does = f"puts a photo in one of {n} classes learnt from the trainer's own labelled photos"
    rule = _rule(meta)
    verdict = (
        f' It also says when a photo looks like none of its classes ("{_unknown_text(meta)}")'
        + (", and when it is unsure which class it is." if rule.get("known_min_prob") is not None else ".")
        if rule
        else " It has no 'unknown' verdict: every photo, however unlike the training photos, gets one of its classes."
    )
    return (
        f"An image classifier that {does}, with a probability for each class.{verdict} It is a timm "
        f"`{meta['arch']}` backbone with {_head_text(meta)}, fine-tuned with catdog_fastai (fastai + timm) and "
        "exported pickle-free as `model.safetensors` + `model.json`."
    )


def _head_text(meta: dict[str, Any]) -> str:
    head = meta.get("head") or _cfg(meta).get("head")
    return {
        "cosine": "a cosine-classifier head (started at the class means of the pretrained features)",
        "fastai": "fastai's head (concat pooling, two linear layers)",
    }.get(head, "a new classification head")


def _results(meta: dict[str, Any], report: dict[str, Any]) -> str:
    m = {**report, **_metrics(meta)}  # model.json first: it describes the exported weights
    if not _finite(m.get("valid_accuracy")):
        return "No validation figures were recorded with this export."
    lines = [
        f"On {m.get('n_valid', '?')} validation photos ({_split_text(_cfg(meta))}), never trained on:",
        "",
        f"- accuracy **{m['valid_accuracy']:.4f}**",
    ]
    if _finite(m.get("valid_balanced_accuracy")):
        lines.append(
            f"- balanced accuracy **{m['valid_balanced_accuracy']:.4f}** (the mean of per-class recall: every class "
            f"weighs the same; chance is {1 / max(len(meta['vocab']), 1):.3f})"
        )
    if _finite(m.get("valid_catdog_accuracy")):
        lines.append(
            f"- cat or dog, as the predicted breed implies: accuracy {m['valid_catdog_accuracy']:.4f}, every breed "
            f"weighing the same {_num(m.get('valid_catdog_balanced_accuracy'))}"
        )
    ood = _ood(meta)
    if ood and _finite(ood.get("ece_before")) and _finite(ood.get("ece_after")):
        lines.append(
            f"- expected calibration error {ood['ece_before']:.4f} with the plain softmax, {ood['ece_after']:.4f} "
            f"with the fitted temperature {_num(ood.get('temperature'), 3)} (`predict(..., calibrated=True)`)"
        )
    for k, v in _verdict_rates(meta).items():
        lines.append(f"- {_RATE_NAMES.get(k, k.replace('_', ' '))}: {_pct(v)}")
    if _finite(m.get("baseline_balanced_accuracy")):
        lines.append(
            f"- for comparison, no training at all (the pretrained features' nearest class mean): balanced accuracy "
            f"{m['baseline_balanced_accuracy']:.4f}, accuracy {_num(m.get('baseline_accuracy'))}"
        )
    if _finite(m.get("exported_epoch")):
        lines.append(f"- exported weights: epoch {m['exported_epoch']}")
    few = m.get("n_few_valid_classes")
    if _finite(few) and few:
        lines += [
            "",
            f"{few} of {len(meta['vocab'])} classes have fewer than 5 validation photos, so their recall (and the "
            "balanced accuracy) moves by 20 points or more with a single photo: read these figures as rough.",
        ]
    return "\n".join(lines)


def _num(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if _finite(v) else "n/a"


def _classes(meta: dict[str, Any], report: dict[str, Any]) -> str:
    "Every class, in the model's output order; with its validation recall and photo count when the report has them."
    vocab = [str(v) for v in meta["vocab"]]
    recall = report.get("per_class") if isinstance(report.get("per_class"), dict) else {}
    counts = report.get("n_valid_per_class") if isinstance(report.get("n_valid_per_class"), dict) else {}
    head = f"{len(vocab)} classes, in the order of the model's outputs"
    if not recall:
        return f"{head}: " + ", ".join(_code(v) for v in vocab) + "."
    rows = []
    for i, v in enumerate(vocab):
        n = counts.get(v)
        photos = f" ({n} photo{'s' * (n != 1)})" if isinstance(n, int) else ""
        rows.append(f"{i + 1}. {_code(v)}: validation recall {_num(recall.get(v), 2)}{photos}")
    return f"{head}, with each class's recall on the validation photos:\n\n" + "\n".join(rows)


def _split_text(cfg: dict[str, Any]) -> str:
    split, pct = cfg.get("split"), cfg.get("valid_pct")
    share = f"{pct:.0%} " if _finite(pct) else ""
    return {
        "stratified": f"a stratified split: {share}of every class",
        "random": f"a random split: {share}of all photos",
        "official": "the official Oxford-IIIT Pet test list",
        "folders": "the data's own valid/ folder",
    }.get(split, f"split {split}" if split else "the validation split")


def _data_text(meta: dict[str, Any]) -> str:
    data = _cfg(meta).get("data")
    if _is_pets(meta) and not data:
        return "Oxford-IIIT Pet (downloaded by fastai's `untar_data(URLs.PETS)`)"
    where = f"`{'/'.join(Path(str(data)).parts[-2:])}`" if data else "(not recorded)"  # no home folder on the card
    return f"Oxford-IIIT Pet photos from {where}" if _is_pets(meta) else f"own labelled photos from {where}"


def _training(meta: dict[str, Any]) -> str:
    cfg = _cfg(meta)
    rows = [f"- backbone: timm `{meta['arch']}`" + (", ImageNet weights" if cfg.get("pretrained") else "")]
    if "epochs" in cfg or "freeze_epochs" in cfg:
        rows.append(
            f"- schedule: fastai's `fine_tune`, one-cycle: {cfg.get('freeze_epochs', '?')} epoch(s) training the new "
            f"head with the backbone frozen, then {cfg.get('epochs', '?')} epoch(s) of all layers"
        )
    rows.append(f"- image size: {meta['size']} px (centre crop of the short side at prediction time)")
    recipe = [
        ("head", meta.get("head") or cfg.get("head")),
        ("backbone BatchNorm statistics kept from pretraining", cfg.get("freeze_bn")),
        ("WiSE-FT: share of the fine-tuned weights in the exported ones", cfg.get("wise")),
        ("optimizer", cfg.get("opt")),
        ("learning rate", cfg.get("lr")),
        ("weight decay", cfg.get("wd")),
        ("batch size", cfg.get("bs")),
        ("loss: logit adjustment tau", cfg.get("logit_adjust")),
        ("label smoothing", cfg.get("label_smoothing")),
        ("sampling", cfg.get("sampling")),
        ("seed", cfg.get("seed")),
    ]
    rows += [f"- {k}: {v}" for k, v in recipe if v is not None]
    rows.append(f"- data: {_data_text(meta)}; validation: {_split_text(cfg)}")
    versions = meta.get("versions") if isinstance(meta.get("versions"), dict) else {}
    if versions:
        rows.append("- libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if meta.get("created"):
        rows.append(f"- exported: {meta['created']}")
    return "\n".join(rows) + "\n\n`model.json` holds the full training configuration (`config`)."


def _usage(meta: dict[str, Any], pkl: bool, onnx: bool) -> str:
    parts = [
        "With `catdog_fastai` installed (torch + timm; no fastai, no pickle):",
        "",
        "```python",
        "from catdog_fastai import load_predictor",
        "",
        'p = load_predictor("DIR")  # the folder with model.safetensors + model.json;',
        '# from the Hub: DIR = huggingface_hub.snapshot_download("USER/NAME")',
        'r = p.predict("photo.jpg")  # [(label, probability), ...], best first',
        "print(p.describe(r))",
        "```",
    ]
    if pkl:
        parts += [
            "",
            "fastai's own way, for a file you trust (`model.pkl` is a pickle; catdog_fastai must be installed, "
            "since the export refers to its labelling functions by name):",
            "",
            "```python",
            "from fastai.learner import load_learner",
            "",
            'learn = load_learner("DIR/model.pkl")',
            "```",
        ]
    if onnx:
        parts += [
            "",
            f"`{ONNX}` holds the same network for ONNX Runtime: a batch of {meta['size']}x{meta['size']} RGB images "
            "in, preprocessed as `model.json` says (`size`, `mean`, `std`); the logits and the pooled features out. "
            "`load_predictor` uses it when onnxruntime is installed, and then needs no torch "
            '(`load_predictor("DIR", backend="onnxruntime")`).',
        ]
    return "\n".join(parts)


def _weakest(report: dict[str, Any], k: int = N_WEAKEST) -> list[tuple[str, float]]:
    recall = report.get("per_class") if isinstance(report.get("per_class"), dict) else {}
    return sorted(((c, a) for c, a in recall.items() if _finite(a) and a < 1), key=lambda kv: kv[1])[:k]


def _limits(meta: dict[str, Any], report: dict[str, Any]) -> str:
    n, task = len(meta["vocab"]), meta.get("task")
    knows = {
        "catdog": "It knows two classes, cat and dog, learnt from the 37 breeds of Oxford-IIIT Pet.",
        "breeds": f"It knows only the {n} Oxford-IIIT Pet breeds listed above; other breeds get the nearest of these.",
    }.get(task, f"It knows only the {n} classes listed above.")
    rows = [f"- {knows}"]
    rows += _verdict_rows(meta)
    weakest = _weakest(report)
    if weakest:
        rows.append(
            "- Weakest classes on the validation photos (recall): "
            + ", ".join(f"{_code(c)} {a:.2f}" for c, a in weakest)
            + "."
        )
    rule = _rule(meta)
    if rule and rule.get("views"):
        hard = (
            "Such views of the validation photos were counted when the unknown threshold was set (above); how often "
            "they get the wrong class was not measured."
        )
    elif rule:
        hard = "Small, low-resolution photos of real pets are flagged 'unknown' more often than others."
    else:
        hard = "Its accuracy on such photos was not measured."
    rows.append(
        f"- Small, low-resolution and grayscale photos: every photo is centre-cropped and resized to {meta['size']} "
        f"px (a pet off to the side of a wide photo can be cut off, a tiny one fills few pixels), and grayscale is "
        f"read as three equal channels of a model trained on colour photos. {hard}"
    )
    return "\n".join(rows)


def _verdict_rows(meta: dict[str, Any]) -> list[str]:
    "What it says about photos of none of its classes, and when it says unsure: the rule and how it was fitted."
    rule = _rule(meta)
    if rule is None:
        return ["- Other animals, people and objects still get one of its classes: it has no 'unknown' verdict."]
    when = GATES.get(rule.get("gate"), f"its {rule.get('gate')} score is above the threshold")
    keep, n = rule.get("keep"), rule.get("n_valid")
    how = f"threshold {rule['threshold']:.4f}"
    if _finite(keep) and rule.get("views"):
        views = f", {n} views in all" if _finite(n) else ""
        how += (
            f", fitted on the validation photos, each also at a third of its resolution and in grayscale{views}, to "
            f"let {keep:.0%} through with every class weighing the same"
        )
    elif _finite(keep):
        how += f", fitted to let {keep:.0%} of the validation photos through"
    if _finite(keep):
        how += f": about {1 - keep:.0%} of real photos of its classes are flagged too, by design"
    rows = [
        f'- Other animals, people and objects: "{_unknown_text(meta)}" when {when} ({how}). The closest classes '
        "are still listed."
    ]
    least = rule.get("known_min_prob")
    if _finite(least):
        breeds = " (for breeds: cat or dog, breed unsure)" if meta.get("task") == "breeds" else ""
        rows.append(
            f"- Unsure: when no class reaches {least:.0%} of the calibrated probability it says it is unsure and "
            f"names the closest classes{breeds}."
        )
    return rows
