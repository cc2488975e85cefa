"""The model card's Markdown body: one function per section, each from the export's typed `Facts` (card_facts.py).

A figure the export does not hold is left out, never shown as a placeholder; `card.py` puts the sections together
under the Hugging Face metadata.
"""

from __future__ import annotations

import re
from pathlib import Path

from .card_facts import Facts, count, number, rates
from .meta import ONNX, Recipe, Rule, few_photos_note
from .verdict import known_rows, when_unknown

N_WEAKEST = 5  # weakest classes named under "Limits"
RATE_NAMES = {  # how each rate in model.json's `verdict` entry was measured
    "valid_unknown_rate": "Called unknown: validation photos and their low-resolution and grayscale views, every class "
    "the same (the threshold was fitted on them, so about 1 - keep)",
}
HEADS = {
    "cosine": "a cosine-classifier head (started at the class means of the pretrained features)",
    "fastai": "fastai's head (concat pooling, two linear layers)",
}


def code(s: object) -> str:
    "`s` as a Markdown code span, so underscores and asterisks in class names print as they are."
    s = str(s).replace("\n", " ")
    fence = "`" * (max((len(r) for r in re.findall("`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def what(f: Facts) -> str:
    return {"catdog": "Cat or dog", "breeds": f"{f.n_classes} Oxford-IIIT Pet breeds"}.get(
        f.meta.task or "", f"{f.n_classes} classes from own photos"
    )


def title(f: Facts) -> str:
    return f"{what(f)}: {f.meta.arch} fine-tuned with fastai"


def split_text(r: Recipe) -> str:
    "Where the validation photos came from, in words."
    pct = number(r.valid_pct)
    share = f"{pct:.0%} " if pct is not None else ""
    return {
        "stratified": f"a stratified split: {share}of every class, held out of training",
        "random": f"a random split: {share}of all photos, held out of training",
        "official": "the official Oxford-IIIT Pet test list",
        "folders": "the data's own valid/ folder",
    }.get(r.split or "", f"split {r.split}" if r.split else "the validation split")


def summary(f: Facts) -> str:
    task = f.meta.task
    if task == "catdog":
        does = "tells whether a photo shows a cat or a dog"
    elif task == "breeds":
        does = f"names which of the {f.n_classes} cat and dog breeds of Oxford-IIIT Pet a photo shows"
    else:
        does = f"puts a photo in one of {f.n_classes} classes learnt from the trainer's own labelled photos"
    if f.rule is None:
        verdict = (
            " It has no 'unknown' verdict: every photo, however unlike the training photos, gets one of its classes."
        )
    else:
        unsure = ", and when it is unsure which class it is." if f.rule.known_min_prob is not None else "."
        verdict = f' It also says when a photo looks like none of its classes ("{f.unknown_text}"){unsure}'
    return (
        f"An image classifier that {does}, with a probability for each class.{verdict} It is a timm "
        f"`{f.meta.arch}` backbone with {HEADS.get(f.head or '', 'a new classification head')}, fine-tuned with "
        "catdog_fastai (fastai + timm) and exported pickle-free as `model.safetensors` + `model.json`"
        + (f", with the same network as `{ONNX}` for ONNX Runtime." if f.onnx else ".")
    )


def results(f: Facts) -> str:
    g, n = f.figures, f.n_classes
    if g.accuracy is None:
        return "No validation figures were recorded with this export."
    photos = f"{g.n_valid} validation photos" if g.n_valid is not None else "the validation photos"
    lines = [f"On {photos} ({split_text(f.recipe)}), never trained on:", "", f"- accuracy **{g.accuracy:.4f}**"]
    if g.balanced_accuracy is not None:
        lines.append(
            f"- balanced accuracy **{g.balanced_accuracy:.4f}** (the mean of per-class recall: every class weighs "
            f"the same; chance is {1 / max(n, 1):.3f})"
        )
    if g.catdog_accuracy is not None:
        each = (
            f", every breed weighing the same {g.catdog_balanced_accuracy:.4f}"
            if g.catdog_balanced_accuracy is not None
            else ""
        )
        lines.append(f"- cat or dog, as the predicted breed implies: accuracy {g.catdog_accuracy:.4f}{each}")
    c = f.calibration
    if c and c.ece_before is not None and c.ece_after is not None:
        t = f" {c.temperature:.3f}" if c.temperature is not None else ""
        lines.append(
            f"- expected calibration error {c.ece_before:.4f} with the plain softmax, {c.ece_after:.4f} with the "
            f"temperature{t} fitted on these same photos (`predict(..., calibrated=True)`)"
        )
    for k, v in (rates(f.rule.to_json()) if f.rule else {}).items():
        name = RATE_NAMES.get(k) or f"the verdict entry's {code(k)}"
        lines.append(f"- {name}: {v:.1%}")
    if g.baseline_balanced_accuracy is not None:
        plain = f", accuracy {g.baseline_accuracy:.4f}" if g.baseline_accuracy is not None else ""
        lines.append(
            "- for comparison, no training at all (the pretrained features' nearest class mean): balanced accuracy "
            f"{g.baseline_balanced_accuracy:.4f}{plain}"
        )
    if g.exported_epoch is not None:
        n = g.exported_epoch  # counted from 1; history.csv's global_epoch counts from 0
        lines.append(f"- exported weights: after epoch {n} of training (history.csv's row with global_epoch {n - 1})")
    if g.n_few_valid_classes:
        lines += [
            "",
            f"{few_photos_note(g.n_few_valid_classes, n)}: read these figures as rough.",
        ]
    return "\n".join(lines)


def classes(f: Facts) -> str:
    "Every class, in the model's output order; with its validation recall and photo count when the report has them."
    vocab, g = f.meta.vocab, f.figures
    head = f"{len(vocab)} classes, in the order of the model's outputs"
    if not g.per_class:
        return f"{head}: " + ", ".join(code(v) for v in vocab) + "."
    rows = []
    for i, v in enumerate(vocab):
        n = g.n_per_class.get(v)
        photos = f" ({n} photo{'s' * (n != 1)})" if n is not None else ""
        recall = f"validation recall {g.per_class[v]:.2f}" if v in g.per_class else "no validation recall recorded"
        rows.append(f"{i + 1}. {code(v)}: {recall}{photos}")
    return f"{head}, with each class's recall on the validation photos:\n\n" + "\n".join(rows)


def _data_text(f: Facts) -> str:
    data = f.recipe.data
    if f.pets and not data:
        return "Oxford-IIIT Pet (downloaded by fastai's `untar_data(URLs.PETS)`)"
    where = f"`{'/'.join(Path(data).parts[-2:])}`" if data else "(not recorded)"  # no home folder on the card
    return f"Oxford-IIIT Pet photos from {where}" if f.pets else f"own labelled photos from {where}"


def training(f: Facts, base_model: str | None) -> str:
    r = f.recipe
    start = ""
    if r.pretrained:
        source = [f"`{base_model}`"] if base_model else []
        source += [f"read from a local file, `{Path(r.weights).name}`"] if r.weights else []
        start = ", ImageNet weights" + (f" ({', '.join(source)})" if source else "")
    elif r.pretrained is False:
        start = ", random start (no pretrained weights)"
    rows = [f"- backbone: timm `{f.meta.arch}`{start}"]
    phases = []
    frozen, unfrozen = count(r.freeze_epochs), count(r.epochs)
    if frozen is not None:
        phases.append(f"{frozen} epoch(s) training the new head with the backbone frozen")
    if unfrozen is not None:
        phases.append(f"{unfrozen} epoch(s) of all layers")
    if phases:
        rows.append("- schedule: fastai's `fine_tune`, one-cycle: " + ", then ".join(phases))
    rows.append(f"- image size: {f.meta.size} px (centre crop of the short side at prediction time)")
    recipe = [
        ("head", f.head),
        ("backbone BatchNorm statistics kept from pretraining", r.freeze_bn),
        ("WiSE-FT: share of the fine-tuned weights in the exported ones", r.wise),
        ("optimizer", r.opt),
        ("learning rate", r.lr),
        ("weight decay", r.wd),
        ("batch size", r.bs),
        ("loss: logit adjustment tau", r.logit_adjust),
        ("label smoothing", r.label_smoothing),
        ("sampling", r.sampling),
        ("seed", r.seed),
    ]
    rows += [f"- {k}: {v}" for k, v in recipe if v is not None]
    rows.append(f"- data: {_data_text(f)}; validation: {split_text(r)}")
    if f.meta.versions:
        rows.append("- libraries: " + ", ".join(f"{k} {v}" for k, v in f.meta.versions.items()))
    if f.meta.created:
        rows.append(f"- exported: {f.meta.created}")
    return "\n".join(rows) + "\n\n`model.json` holds the full training configuration (`config`)."


ORT_SNIPPET = """\
```python
import json

import numpy as np
import onnxruntime as ort
from PIL import Image

meta = json.load(open("DIR/model.json"))
img, size = Image.open("photo.jpg").convert("RGB"), meta["size"]
w, h = img.size
s = min(w, h)  # centre crop of the short side, resized (bilinear): the view the model was validated on
left, top = (w - s) // 2, (h - s) // 2
img = img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + s, top + s))
x = ((np.asarray(img, np.float32) / 255 - meta["mean"]) / meta["std"]).astype(np.float32)
logits, pooled = ort.InferenceSession("DIR/model.onnx").run(None, {"image": x.transpose(2, 0, 1)[None]})
print(meta["vocab"][int(logits[0].argmax())])
```"""


def usage(f: Facts) -> str:
    parts = [
        "With `catdog_fastai` installed:",
        "",
        "```python",
        "from catdog_fastai import load_predictor",
        "",
        'p = load_predictor("DIR")  # the folder with model.safetensors + model.json;',
        '# from the Hub: DIR = huggingface_hub.snapshot_download("USER/NAME")',
        'r = p.predict("photo.jpg")  # [(label, probability), ...], best first',
        "print(p.describe(r))",
        "```",
        "",
    ]
    if f.onnx:
        parts += [
            f"`load_predictor` runs `{ONNX}` in ONNX Runtime, so serving needs onnxruntime, NumPy, Pillow and "
            'safetensors: no torch, no timm, no fastai, no pickle. `backend="torch"` rebuilds the network from '
            "`model.safetensors` instead (torch + timm), for Grad-CAM or a GPU.",
            "",
            f"`{ONNX}` alone, in ONNX Runtime: a batch of {f.meta.size}x{f.meta.size} RGB images in (`image`, "
            "float32, N x 3 x H x W, preprocessed as `model.json` says: `size`, `mean`, `std`); the logits and the "
            "pooled features out (`logits`, `pooled`). Without catdog_fastai, the top class is:",
            "",
            ORT_SNIPPET,
            "",
            "`load_predictor` adds what this leaves out: EXIF rotation, the calibrated probabilities and the "
            "known / unsure / unknown verdict.",
        ]
    else:
        parts.append(
            f"This export has no `{ONNX}`, so `load_predictor` rebuilds the network from `model.safetensors` with "
            "torch and timm (no fastai, no pickle). `catdog-export DIR --onnx` adds it; serving then needs "
            "onnxruntime, NumPy, Pillow and safetensors, and no torch."
        )
    if f.pkl:
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
    return "\n".join(parts)


def _weakest(f: Facts, k: int = N_WEAKEST) -> list[tuple[str, float]]:
    return sorted(((c, a) for c, a in f.figures.per_class.items() if a < 1), key=lambda kv: kv[1])[:k]


def limits(f: Facts) -> str:
    n, task = f.n_classes, f.meta.task
    knows = {
        "catdog": "It knows two classes, cat and dog, learnt from the 37 breeds of Oxford-IIIT Pet.",
        "breeds": f"It knows only the {n} Oxford-IIIT Pet breeds listed above; other breeds get the nearest of these.",
    }.get(task or "", f"It knows only the {n} classes listed above.")
    rows = [f"- {knows}", *verdict_rows(f)]
    weakest = _weakest(f)
    if weakest:
        named = ", ".join(f"{code(c)} {a:.2f}" for c, a in weakest)
        rows.append(f"- Weakest classes on the validation photos (recall): {named}.")
    if f.rule and f.rule.views:
        hard = (
            "Such views of the validation photos were counted when the unknown threshold was set (above); how often "
            "they get the wrong class was not measured."
        )
    elif f.rule:
        hard = "Small, low-resolution photos of real pets are flagged 'unknown' more often than others."
    else:
        hard = "Its accuracy on such photos was not measured."
    rows.append(
        f"- Small, low-resolution and grayscale photos: every photo is centre-cropped and resized to {f.meta.size} "
        f"px (a pet off to the side of a wide photo can be cut off, a tiny one fills few pixels), and grayscale is "
        f"read as three equal channels of a model trained on colour photos. {hard}"
    )
    return "\n".join(rows)


def verdict_rows(f: Facts) -> list[str]:
    "What it says about photos of none of its classes, and when it says unsure: the rule and how it was fitted."
    rule = f.rule
    if rule is None:
        return ["- Other animals, people and objects still get one of its classes: it has no 'unknown' verdict."]
    by_design = f": about {1 - rule.keep:.0%} of real photos of its classes are flagged too, by design"
    rows = [
        f'- Other animals, people and objects: "{f.unknown_text}" when '
        f"{when_unknown(rule, by_design if rule.keep is not None else '')}. The closest classes are still listed."
    ]
    if rule.known_min_prob is not None:
        rows.append(_unsure_row(f, rule, rule.known_min_prob))
    return rows


def _unsure_row(f: Facts, rule: Rule, least: float) -> str:
    "The unsure answer's bar, `known_min_prob`, and where it came from: fixed (older exports) or fitted."
    if rule.known_target is None:
        basis = f"fixed at {least:g} (older export)"
    else:
        basis = f"fitted for a target precision of {rule.known_target:.0%} on {known_rows(rule)}"
    precision, coverage = rule.valid_known_precision, rule.valid_known_coverage
    if rule.known_target is not None and precision is not None and coverage is not None:
        basis += (
            f"; there, {precision:.0%} of its known answers were right and {coverage:.0%} of "
            "the photos got one, every class weighing the same (optimistic: the bar was fitted on them)"
        )
    breeds = " (for breeds: cat or dog, breed unsure)" if f.meta.task == "breeds" else ""
    return (
        f"- Unsure: when no class reaches {least:.0%} of the calibrated probability, it says it is unsure and names "
        f"the closest classes{breeds}. `known_min_prob` {least:.2f}: {basis}."
    )
