"""`catdog-evaluate`: score an export on labelled photos and print a table a person reads, as timm's `validate.py`
and Ultralytics' `val` do; the full figures as JSON on request.

    catdog-evaluate --model models --data path/to/photos              (a table)
    catdog-evaluate --model models --data path/to/photos --json       (JSON on stdout instead)
    catdog-evaluate --model models --data path/to/photos --json r.json  (the table, and the JSON in r.json)

It warns when the photos include ones the model was trained on (model.json records its data folder and split):
figures on them flatter the model. `--unseen` scores only the others.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

from .backends import BACKENDS
from .cli import error, option, parse
from .errors import DataError, ExportError
from .files import write_json
from .meta import few_photos_note

ROWS = 40  # per-class rows printed in full; more classes show the weakest and the strongest


@dataclass
class EvaluateOptions:
    data: str = option(None, "labelled photos, as catdog-train --data takes them: Breed_N.jpg names, a folder per "
                       "class, or a CSV of file,label", "input", required=True)  # fmt: skip
    model: str = option("models", "export folder", "model", env="CATDOG_MODEL")
    backend: str = option("auto", "forward pass: onnxruntime, torch, or auto", "model", choices=BACKENDS)
    threads: int = option(0, "CPU threads for the forward pass; 0 = the backend's default", "model",
                          env="CATDOG_THREADS")  # fmt: skip
    bs: int = option(32, "images per forward pass", "model")
    unseen: bool = option(False, "score only photos the model did not train on (model.json names its data)", "input")
    json: str | None = option(None, "the full results as JSON: --json alone prints them instead of the table, "
                              "--json FILE writes them to FILE as well as printing the table", "output",
                              nargs="?", const="-", metavar="FILE")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    "`catdog-evaluate --data FOLDER [--model DIR] [--json [FILE]]`: a table, a summary, and a warning on overlap."
    o = parse(EvaluateOptions, argv, lambda o: "--bs must be at least 1" if o.bs < 1 else None,
              prog="catdog-evaluate", description=__doc__.split("\n\n")[0])  # fmt: skip
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)  # fastai's import
    from .evaluate import evaluate_folder

    t0 = time.perf_counter()
    try:
        res = evaluate_folder(o.model, o.data, bs=o.bs, progress=True, unseen=o.unseen, backend=o.backend,
                              threads=o.threads or None)  # fmt: skip
    except (ExportError, DataError) as e:
        return error("catdog-evaluate", f"error: {e}")
    res["seconds"] = round(time.perf_counter() - t0, 2)
    if o.json == "-":
        print(json.dumps(res, indent=2))
    else:
        print("\n".join(report_table(res)))
        if o.json:
            write_json(o.json, res)
            print(f"full results (per class, confusion matrix): {o.json}")
    warning = overlap_warning(res)
    if warning:
        print(f"catdog-evaluate: WARNING: {warning}", file=sys.stderr)
    return 0


def overlap_warning(res: dict[str, Any]) -> str | None:
    "The sentence that says how many scored photos the model trained on, or None when none."
    seen = res.get("trained_on") or {}
    if not seen.get("n"):
        return None
    return (
        f"{seen['n']} of these {res['n']} photos were in the model's training split ({seen['how']}): its figures on "
        "them flatter it. Score photos it never saw, or add --unseen to leave those out."
    )


def report_table(res: dict[str, Any]) -> list[str]:
    """The summary a person reads: what was scored, accuracy and balanced accuracy (and cat/dog for Pets breed
    models), then one row per class with its photos and recall, weakest first where there are many."""
    lines = [
        f"{res['model']} on {res['data']}: {res['n']} photos, {len(res['n_per_class'])} classes, task {res['task']}"
        + (f", {res['skipped']} unreadable files skipped" if res.get("skipped") else "")
        + (f", {res['trained_on']['left_out']} it trained on left out" if res["trained_on"].get("left_out") else "")
        + (f" ({res['seconds']:.1f} s)" if "seconds" in res else ""),
        "",
        f"{'':<28}{'accuracy':>10}{'balanced':>10}",
        f"{res['task']:<28}{res['accuracy']:>10.4f}{res['balanced_accuracy']:>10.4f}",
    ]
    if "catdog_accuracy" in res and res["task"] != "catdog":
        lines.append(f"{'cat/dog':<28}{res['catdog_accuracy']:>10.4f}{res['catdog_balanced_accuracy']:>10.4f}")
    lines.append("balanced = every class weighs the same (the mean of the per-class recalls)")
    per, counts = res["per_class"], res["n_per_class"]
    order = sorted(counts, key=lambda c: (per.get(c) if per.get(c) is not None else -1, c))
    if len(order) > ROWS:
        order = order[: ROWS // 2] + ["..."] + order[-ROWS // 2 :]
    lines += ["", f"{'class':<28}{'photos':>10}{'recall':>10}"]
    for c in order:
        if c == "...":
            lines.append("...")
            continue
        r = per.get(c)
        lines.append(f"{c[:27]:<28}{counts[c]:>10}{'-' if r is None else format(r, '.3f'):>10}")
    if res.get("few_photo_classes"):
        lines.append(few_photos_note(len(res["few_photo_classes"]), photos="photos here"))
    return lines


if __name__ == "__main__":
    sys.exit(main())
