"""How good is a model? The post-training report, and `catdog-evaluate` for any export on any labelled folder.

`report` (after training) writes `report.json`, `confusion_matrix.png` and `top_losses.png` next to the export
and prints a one-screen summary. `evaluate_folder` scores an export on any labelled data `catdog-train` reads
(Pets names, a folder per class, a CSV) through the pickle-free predictor. Both give balanced accuracy (every
class weighs the same) beside plain accuracy, per-class recall and the confusion matrix, and say when classes have
too few photos for their figures to mean much; a breed model is also scored on the cat or dog each predicted breed
implies. The arithmetic is in `metrics`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .files import CONFUSION, REPORT, TOP_LOSSES, atomic_write, write_json
from .labels import TASKS, has_species, is_pets_name
from .meta import Recipe, Rule, few_photos_note
from .metrics import few_photo_classes, label_scores, scores
from .verdict import known_rows, when_unknown

log = logging.getLogger("catdog_fastai")


def _save_fig(fig: Any, path: Path) -> None:
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100, bbox_inches="tight"))


def report(
    learn: Any,
    out: str | os.PathLike,
    top_k: int = 9,
    calibration: dict[str, Any] | None = None,
    baseline: dict[str, Any] | None = None,
    verdict: dict[str, Any] | None = None,
    task: str | None = None,
    trained: bool = True,
) -> dict[str, Any]:
    """Evaluate `learn` on its validation set; write report.json and the two PNGs to `out`; print a summary.

    `calibration`: the export's `ood` entry (`ood.fit`), whose temperature and ECE before/after join the report.
    `verdict`: the export's `verdict` entry (`ood.fit`), summarised in one line.
    `baseline`: the training-free nearest-class-mean classifier's `label_scores` on the same validation photos
    (`train.start_from_pretrained`), set beside the fine-tuned figures.
    `task`: model.json's (`labels.model_task`); cat/dog figures for Pets breed models (`labels.has_species`).
    `trained`: False for the training-free export (`--epochs 0 --freeze-epochs 0`), which is the baseline itself.
    """
    import matplotlib

    matplotlib.use("Agg")
    import fastai.vision.learner  # noqa: F401 - registers plot_top_losses for images
    import matplotlib.pyplot as plt
    from fastai.interpret import ClassificationInterpretation

    out = Path(out)
    dl = learn.dls.valid.new(shuffle=False, drop_last=False)  # what `ClassificationInterpretation.from_learner` uses
    _, targs, decoded, losses = learn.get_preds(dl=dl, with_decoded=True, with_loss=True)  # one pass for both
    interp = ClassificationInterpretation(learn, dl, losses)
    vocab = [str(v) for v in learn.dls.vocab]
    actual, predicted = [vocab[int(i)] for i in targs], [vocab[int(i)] for i in decoded]
    s = label_scores(actual, predicted, vocab)
    n = len(actual)
    summary: dict[str, Any] = dict(
        valid_accuracy=s["accuracy"],
        valid_balanced_accuracy=s["balanced_accuracy"],
        valid_error=1 - s["accuracy"],
        n_valid=n,
        n_classes=len(vocab),
    )
    files = [Path(f) for f in interp.dl.items]
    if has_species(vocab, task) and all(is_pets_name(f) for f in files):  # each photo's species from its name
        cd = scores(files, predicted, "breeds")
        summary.update(
            valid_catdog_accuracy=cd["catdog_accuracy"], valid_catdog_balanced_accuracy=cd["catdog_balanced_accuracy"]
        )
    if baseline is not None:
        summary.update(baseline_accuracy=baseline["accuracy"], baseline_balanced_accuracy=baseline["balanced_accuracy"])
        summary["trained"] = trained
    if calibration is not None:
        summary["calibration"] = {k: calibration[k] for k in ("temperature", "ece_before", "ece_after")}
    if verdict is not None:
        summary["verdict"] = {k: verdict[k] for k in ("gate", "threshold", "keep", "known_min_prob")}
    few = few_photo_classes(s["n_per_class"])
    summary.update(
        n_few_valid_classes=len(few),
        few_valid_classes=few,
        per_class=s["per_class"],
        n_valid_per_class=s["n_per_class"],
    )
    interp.plot_confusion_matrix(figsize=(12, 12) if len(vocab) > 10 else (4, 4), dpi=100, normalize=False)
    _save_fig(plt.gcf(), out / CONFUSION)
    plt.close("all")
    k = min(top_k, n)
    rows = int(k**0.5) or 1
    interp.plot_top_losses(k, nrows=rows, figsize=(5 * -(-k // rows), 5 * rows))
    _save_fig(plt.gcf(), out / TOP_LOSSES)
    plt.close("all")
    write_json(out / REPORT, summary)
    rule = Rule.from_json(verdict) if verdict is not None else None
    log.info("\n".join(_summary_lines(summary, rule, interp.most_confused(min_val=1)[:5], out)))
    return summary


def _summary_lines(summary: dict[str, Any], rule: Rule | None, most: list, out: Path) -> list[str]:
    n, nc = summary["n_valid"], summary["n_classes"]
    lines = [
        f"validation: accuracy {summary['valid_accuracy']:.4f}, balanced accuracy "
        f"{summary['valid_balanced_accuracy']:.4f} (mean recall per class) on {n} images, {nc} classes"
    ]
    if "baseline_balanced_accuracy" in summary:
        lines.append(baseline_line(summary))
    if "valid_catdog_accuracy" in summary:
        lines.append(
            f"cat/dog implied by the breed predictions: accuracy {summary['valid_catdog_accuracy']:.4f}, "
            f"every breed weighted the same {summary['valid_catdog_balanced_accuracy']:.4f}"
        )
    cal = summary.get("calibration")
    if cal:
        lines.append(
            f"calibration: expected calibration error {cal['ece_before']:.4f} -> {cal['ece_after']:.4f} with "
            f"temperature {cal['temperature']:.3f}"
        )
    if rule:
        unsure = ""
        if rule.known_min_prob is not None:
            unsure = f"; unsure when no class reaches {rule.known_min_prob:.0%}"
            if rule.known_target is not None:
                unsure += f" (fitted for {rule.known_target:.0%} of known answers right on {known_rows(rule)})"
        lines.append(f"answers: unknown when {when_unknown(rule)}{unsure}")
    per_class, counts, few = summary["per_class"], summary["n_valid_per_class"], summary["few_valid_classes"]
    if few:
        lines.append(
            f"{few_photos_note(len(few), nc)}: read them as rough. benchmarks/accuracy.py measures a recipe by "
            "cross-validation instead."
        )
    worst = sorted(((c, a) for c, a in per_class.items() if a is not None), key=lambda kv: kv[1])[:5]
    lines.append(
        "weakest classes: " + ", ".join(f"{c} {a:.2f} ({counts[c]} photo{'s' * (counts[c] != 1)})" for c, a in worst)
    )
    if most:
        lines.append(
            "most confused (actual -> predicted, count): " + "; ".join(f"{a} -> {p} ({c})" for a, p, c in most)
        )
    lines.append(f"report: {out / REPORT}, {out / CONFUSION}, {out / TOP_LOSSES}")
    return lines


def baseline_line(summary: dict[str, Any]) -> str:
    "What fine-tuning added to the pretrained features' nearest class mean, in words, worse included."
    if not summary.get("trained", True):
        return (
            "no training (--epochs 0 --freeze-epochs 0): the model is the nearest class mean of the pretrained "
            "features; --epochs 4 --freeze-epochs 1 runs fastai's fine_tune from it (what it adds: BENCHMARKS.md §0)"
        )
    gain = summary["valid_balanced_accuracy"] - summary["baseline_balanced_accuracy"]
    base = (
        f"the pretrained features' nearest class mean (no training), which scores "
        f"{summary['baseline_balanced_accuracy']:.4f} on the same photos"
    )
    if gain >= 0:
        return f"fine-tuning added {gain:+.4f} balanced accuracy to {base}"
    return (
        f"fine-tuning came out WORSE than no training: {gain:+.4f} balanced accuracy against {base}. Try fewer "
        "epochs or a lower --lr; with --head cosine, --epochs 0 --freeze-epochs 0 exports that baseline itself"
    )


def evaluate_folder(
    model: str | os.PathLike,
    data: str | os.PathLike,
    bs: int = 32,
    progress: bool = False,
    unseen: bool = False,
    backend: str = "auto",
    threads: int | None = None,
) -> dict[str, Any]:
    """An export scored on the labelled photos in `data`, via `load_predictor` (the same answers as `predict`).

    `data` is any layout `catdog-train --data` reads (`data.find_data`): `Breed_N` photos (or a Pets root), labelled
    as the model's task says; one subfolder per class; a CSV of file,label. Where the data has its own split (train/
    and valid/, an is_valid column) only its validation photos are scored: the model may have trained on the rest.
    Plain and balanced accuracy, per-class recall and the confusion matrix for the model's own labels; for a
    breed model on Pets photos also the cat/dog figures its breeds imply. `trained_on` counts the photos that were in
    the model's own training split (`training_overlap`): figures on them flatter the model; `unseen=True` leaves
    them out. `progress`: a bar on stderr (`predict_cli.progress`: on a terminal only).
    """
    from .errors import DataError
    from .predict import load_predictor
    from .predict_cli import progress as bar
    from .sources import find_data

    pred = load_predictor(model, backend=backend, threads=threads)
    task = pred.meta.task or "breeds"
    found = find_data(data, task if task in TASKS else "breeds")
    if found.layout == "pets" and task not in TASKS:
        raise DataError(
            f"{data} holds Pets-named photos, but the model in {model} learnt labels from {task}: "
            "pass a folder with one subfolder per class, or a CSV of file,label"
        )
    keep = [i for i in range(len(found.items)) if found.is_valid is None or found.is_valid[i]]
    seen, how = training_overlap(pred.meta.config, [found.items[i] for i in keep])
    n_seen = len(seen)
    if unseen:
        keep = [i for i in keep if found.items[i] not in seen]
    if not keep:
        raise DataError(f"no photos left to score in {data}" + (" once those it trained on are left out" * unseen))
    items, labels = [found.items[i] for i in keep], [found.labels[i] for i in keep]
    top1: list[str] = []
    with bar(len(items), bs, "evaluating", show=progress) as b:
        for i in range(0, len(items), bs):
            top1 += [r[0][0] for r in pred.predict_batch(items[i : i + bs], top_k=1, bs=bs)]
            b.update(len(items[i : i + bs]))
    s = label_scores(labels, top1, pred.vocab)
    res: dict[str, Any] = dict(model=str(model), data=str(data), n=len(items), skipped=len(found.skipped), task=task)
    res.update(labels_from=found.layout, accuracy=s["accuracy"], balanced_accuracy=s["balanced_accuracy"])
    if found.layout == "pets":
        res.update(scores(items, top1, task))
    res.update(trained_on=dict(n=0 if unseen else n_seen, left_out=n_seen if unseen else 0, how=how))
    res.update(
        few_photo_classes=few_photo_classes(s["n_per_class"]),
        **{k: s[k] for k in ("per_class", "n_per_class", "confusion_matrix")},
    )
    return res


def training_overlap(config: Recipe, items: Sequence[Path]) -> tuple[set[Path], str]:
    """Which of `items` were in the training split of the model whose model.json `config` is given, and how that
    was found out (a sentence). The split is redone from the config (data folder, split, valid_pct, seed), as
    training did it; a photo counts as seen when its path is a training photo's, or its name is (Pets names, unique
    across the dataset; for class folders, the class folder and the name). Without the training folder on this
    machine, Pets-named photos from a model trained on the downloaded Pets count as possibly seen."""
    from .labels import is_pets_name as pets_named
    from .sources import find_data
    from .splits import split_indices

    def key(p: Path) -> str:
        return p.name if pets_named(p) else f"{p.parent.name}/{p.name}"

    where = config.data
    if not where:
        hits = {p for p in items if pets_named(p)}
        return hits, "it was trained on the downloaded Oxford-IIIT Pets, so Pets-named photos may be among them"
    root = Path(where).expanduser()
    if not root.exists():
        return set(), f"its training data ({where}) is not on this machine to compare with"
    try:
        split = config.split or "stratified"  # the defaults of the versions that did not record them
        found = find_data(root, config.task or "breeds", split)
        train, _ = split_indices(
            found.items, found.labels, root, split=split, valid_pct=config.valid_pct or 0.2,
            seed=42 if config.seed is None else config.seed, is_valid=found.is_valid,
        )  # fmt: skip
    except Exception as e:  # a changed folder: say so rather than fail the evaluation
        return set(), f"its training data ({where}) could not be split again ({e})"
    paths = {found.items[i].resolve() for i in train}
    keys = {key(found.items[i]) for i in train}
    hits = {p for p in items if p.resolve() in paths or key(p) in keys}
    return hits, f"model.json: trained on {where}, split {config.split}, seed {config.seed}"
