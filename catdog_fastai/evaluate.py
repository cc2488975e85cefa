"""How good is a model? The post-training report, and `catdog-evaluate` for any export on any labelled folder.

`report` (after training) writes `report.json`, `confusion_matrix.png` and `top_losses.png` next to the export
and prints a one-screen summary. `evaluate_folder` scores an export on a folder of `Breed_N.jpg` photos through
the pickle-free predictor, reporting breed accuracy (breed models) and cat/dog accuracy (every model: a breed
prediction implies cat or dog).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .export import ExportError, atomic_write, write_json
from .labels import breed, breed_is_cat, cat_or_dog, is_pets_name

log = logging.getLogger("catdog_fastai")


def _save_fig(fig: Any, path: Path) -> None:
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100, bbox_inches="tight"))


def per_class_accuracy(cm: Any, vocab: list[str]) -> dict[str, float | None]:
    "Recall of each class from a confusion matrix (rows = actual); None for classes with no validation image."
    return {str(v): float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None for i, v in enumerate(vocab)}


def report(learn: Any, out: str | os.PathLike, top_k: int = 9) -> dict[str, Any]:
    """Evaluate `learn` on its validation set; write report.json and the two PNGs to `out`; print a summary."""
    import matplotlib

    matplotlib.use("Agg")
    import fastai.vision.learner  # noqa: F401 - registers plot_top_losses for images
    import matplotlib.pyplot as plt
    from fastai.interpret import ClassificationInterpretation

    out = Path(out)
    interp = ClassificationInterpretation.from_learner(learn)
    cm = interp.confusion_matrix()
    vocab = [str(v) for v in learn.dls.vocab]
    n = int(cm.sum())
    acc = float(cm.trace() / n)
    per_class = per_class_accuracy(cm, vocab)
    summary: dict[str, Any] = dict(
        valid_accuracy=acc, valid_error=1 - acc, n_valid=n, n_classes=len(vocab), per_class=per_class
    )
    if learn.dls.vocab is not None and all(is_pets_name(f"{v}_1") for v in vocab) and "cat" not in vocab:
        cats = [breed_is_cat(v) for v in vocab]  # breeds model: a breed prediction implies cat or dog
        agree = sum(int(cm[i, j]) for i in range(len(vocab)) for j in range(len(vocab)) if cats[i] == cats[j])
        summary["valid_catdog_accuracy"] = agree / n
    big = len(vocab) > 10
    interp.plot_confusion_matrix(figsize=(12, 12) if big else (4, 4), dpi=100, normalize=False)
    _save_fig(plt.gcf(), out / "confusion_matrix.png")
    plt.close("all")
    k = min(top_k, n)
    rows = int(k**0.5) or 1
    interp.plot_top_losses(k, nrows=rows, figsize=(5 * -(-k // rows), 5 * rows))
    _save_fig(plt.gcf(), out / "top_losses.png")
    plt.close("all")
    write_json(out / "report.json", summary)
    worst = sorted(((c, a) for c, a in per_class.items() if a is not None), key=lambda kv: kv[1])[:5]
    lines = [f"validation accuracy {acc:.4f} (error {1 - acc:.4f}) on {n} images, {len(vocab)} classes"]
    if "valid_catdog_accuracy" in summary:
        lines.append(f"cat/dog accuracy implied by the breed predictions: {summary['valid_catdog_accuracy']:.4f}")
    lines.append("weakest classes: " + ", ".join(f"{c} {a:.2f}" for c, a in worst))
    most = interp.most_confused(min_val=1)[:5]
    if most:
        lines.append(
            "most confused (actual -> predicted, count): " + "; ".join(f"{a} -> {p} ({c})" for a, p, c in most)
        )
    lines.append(f"report: {out / 'report.json'}, {out / 'confusion_matrix.png'}, {out / 'top_losses.png'}")
    log.info("\n".join(lines))
    return summary


def accuracies(top1: list[str], items: list[Path], task: str) -> dict[str, float]:
    "Accuracy of top-1 labels for Pets-named photos: breeds (breed models) and cat/dog (every model)."
    n = len(items)
    res = {}
    if task == "breeds":
        res["breeds_accuracy"] = sum(p == breed(f) for p, f in zip(top1, items)) / n
        top1 = ["cat" if breed_is_cat(p) else "dog" for p in top1]  # a breed prediction implies cat or dog
    res["catdog_accuracy"] = sum(p == cat_or_dog(f) for p, f in zip(top1, items)) / n
    return res


def evaluate_folder(model: str | os.PathLike, data: str | os.PathLike, bs: int = 32) -> dict[str, Any]:
    """Accuracy of an export on every `Breed_N` photo in `data` (or `data/images`), via `load_predictor`."""
    from .data import find_images, image_dir
    from .predict import load_predictor

    pred = load_predictor(model)
    items, skipped = find_images(image_dir(data))
    results = pred.predict_batch(items, top_k=1, bs=bs)
    top1 = [r[0][0] for r in results]
    task = pred.meta.get("task", "breeds")
    res: dict[str, Any] = dict(model=str(model), data=str(data), n=len(items), skipped=len(skipped), task=task)
    return {**res, **accuracies(top1, items, task)}


def main(argv: list[str] | None = None) -> int:
    "`catdog-evaluate --model DIR --data FOLDER`: prints breeds and cat/dog accuracy as JSON."
    ap = argparse.ArgumentParser(
        description="Score an exported model on a folder of Breed_N.jpg photos.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--model", default=os.environ.get("CATDOG_MODEL", "models"), help="export folder")
    ap.add_argument("--data", required=True, help="folder of Oxford-IIIT Pets-named photos (or a Pets root)")
    ap.add_argument("--bs", type=int, default=32, help="images per forward pass")
    args = ap.parse_args(argv)
    from .data import DataError

    try:
        res = evaluate_folder(args.model, args.data, bs=args.bs)
    except (ExportError, DataError) as e:
        print(f"catdog-evaluate: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
