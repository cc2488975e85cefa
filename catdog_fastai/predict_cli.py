"""`catdog-predict`: photos in, one line each out, a summary at the end, and the same answers as a CSV on request.

    catdog-predict PHOTOS_OR_FOLDERS --model DIR [--csv out.csv] [--top-k 3]

The answers and probabilities are `load_predictor(DIR).predict(photo)`'s (calibrated), the same the app and its
`/predict` endpoint give. A progress bar goes to stderr when stderr is a terminal and there is more than one batch,
so logs and pipes get the answers and the summary only. `table`/`write_csv` are the one CSV schema, shared with the
app's batch tab.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import verdict
from .backends import BACKENDS
from .cli import error, option, parse
from .errors import ExportError
from .files import atomic_write
from .images import IMAGE_EXTS, ImageError
from .meta import PKL
from .predict import Prediction, Predictor, load_predictor

CSV_TOP_K = 3  # labels per photo in the CSV (and the app's batch table) unless --top-k says otherwise


@dataclass
class PredictOptions:
    paths: list[str] = option(None, "image files and/or folders of images (searched recursively)", "input",
                              positional=True, nargs="+")  # fmt: skip
    model: str = option("models", "export folder (model.json + model.safetensors [+ model.onnx])", "model",
                        env="CATDOG_MODEL")  # fmt: skip
    backend: str = option("auto", "forward pass: onnxruntime (model.onnx), torch, or auto (ONNX Runtime when the "
                          "export has model.onnx)", "model", choices=BACKENDS)  # fmt: skip
    threads: int = option(0, "CPU threads for the forward pass; 0 = the backend's default", "model",
                          env="CATDOG_THREADS")  # fmt: skip
    trust_pickle: bool = option(False, "allow --model to be a model.pkl (unpickling runs its code)", "model")
    top_k: int | None = option(None, f"labels per photo: after each answer, and in the CSV (default: the answer "
                               f"alone on screen, {CSV_TOP_K} in the CSV)", "output")  # fmt: skip
    csv: str | None = option(None, "also write every answer to this CSV file", "output")
    bs: int = option(32, "images per forward pass", "output")


def _check(o: PredictOptions) -> str | None:
    if (o.top_k is not None and o.top_k < 1) or o.bs < 1 or o.threads < 0:
        return "--top-k and --bs must be at least 1, --threads at least 0"
    return None


def expand(paths: Sequence[str]) -> list[Path]:
    "Files as given, and the image files found under folders, sorted."
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        else:
            files.append(p)
    return files


def progress(total: int, bs: int, desc: str, show: bool = True) -> Any:
    """A tqdm bar on stderr, shown only on a terminal and for more than one batch (and when `show`): logs and pipes
    stay one line per answer, a person at a terminal sees how far a long run is."""
    from tqdm.auto import tqdm

    on = show and sys.stderr.isatty() and total > bs
    return tqdm(total=total, desc=desc, unit="photo", file=sys.stderr, leave=False, disable=not on)


def main(argv: list[str] | None = None) -> int:
    "`catdog-predict PATHS --model DIR`: one line per photo, then a summary; `--csv` for a table."
    o = parse(PredictOptions, argv, _check, prog="catdog-predict",
              description="Say what is in each photo (cat or dog and its breed, or your own classes) with an "
              "exported model.\n\nexamples:\n  catdog-predict photo.jpg --model models\n  catdog-predict "
              "holiday/ --model models --csv answers.csv --top-k 5")  # fmt: skip
    try:
        model_path = Path(o.model)
        if o.trust_pickle and model_path.is_dir() and (model_path / PKL).is_file():
            model_path = model_path / PKL
        pred = load_predictor(model_path, trusted=o.trust_pickle, backend=o.backend, threads=o.threads or None)
    except ExportError as e:
        return error("catdog-predict", e)
    files = expand(o.paths)
    if not files:
        return error("catdog-predict", "no images found in " + " ".join(o.paths))
    t0 = time.perf_counter()
    results: list[Prediction | ImageError] = []
    with progress(len(files), o.bs, "predicting") as bar:
        for i in range(0, len(files), o.bs):
            chunk = files[i : i + o.bs]
            got = pred.predict_each(chunk, top_k=max(o.top_k or 1, CSV_TOP_K if o.csv else 1), bs=o.bs)
            for f, r in zip(chunk, got):
                bar.write(_line(pred, f, r, o.top_k), file=sys.stderr if isinstance(r, ImageError) else sys.stdout)
            results += got
            bar.update(len(chunk))
    seconds = time.perf_counter() - t0
    if o.csv:
        write_csv(o.csv, table(pred, [str(f) for f in files], results, o.top_k or CSV_TOP_K))
    for line in summary(pred, results, seconds, o.csv):
        print(line, file=sys.stderr)
    return 1 if all(isinstance(r, ImageError) for r in results) else 0


def _line(pred: Predictor, f: Path, r: Prediction | ImageError, top_k: int | None) -> str:
    if isinstance(r, ImageError):
        return f"{f}: skipped: {r}"
    tops = f"\t{', '.join(f'{lab} {q:.0%}' for lab, q in r[:top_k])}" if top_k else ""
    return f"{f}\t{pred.describe(r)}{tops}"


def summary(
    pred: Predictor, results: Sequence[Prediction | Exception], seconds: float, csv_path: str | None = None
) -> list[str]:
    """What a person reads at the end: how many photos, how fast, what they were (species, or the most frequent
    answers), how many unsure or not one of the classes, how many unreadable, and where the CSV went."""
    good = [r for r in results if isinstance(r, Prediction)]
    n, bad = len(results), len(results) - len(good)
    lines = [f"catdog-predict: {n} photo{'s' * (n != 1)} in {seconds:.1f} s ({n / max(seconds, 1e-9):.0f} photos/s)"]
    known = [r for r in good if r.verdict != verdict.UNKNOWN]
    if pred.has_species:
        seen = Counter(r.species[0][0] for r in known)
        what = [f"{k} {seen[k]}" for k in ("cat", "dog") if seen[k]]
    else:
        what = [f"{lab} {c}" for lab, c in Counter(r[0][0] for r in known).most_common(5)]
    unknown = sum(r.verdict == verdict.UNKNOWN for r in good)
    unsure = sum(r.verdict == verdict.UNSURE for r in good)
    parts = what + ([f"{'breed' if pred.has_species else 'class'} unsure for {unsure} of them"] if unsure else [])
    if unknown:
        parts.append(f"{'not a cat or a dog' if pred.is_pet_model else 'none of its classes'} {unknown}")
    if parts:
        lines.append("  " + ", ".join(parts))
    if bad:
        lines.append(f"  {bad} of {n} files could not be read (listed above as skipped)")
    if csv_path:
        lines.append(f"  CSV: {csv_path}")
    return lines


def table(
    pred: Predictor, names: Sequence[str], results: Sequence[Prediction | Exception], top_k: int
) -> list[list[str]]:
    """The one CSV schema of `catdog-predict --csv` and the app's batch tab, header first: path, verdict (known,
    unsure, unknown), answer (`Predictor.describe`), unknown (true/false, empty for exports without OOD detection;
    kept for compatibility), ood_score, for Pets breed models species and species_prob, label1, prob1, ...
    (the calibrated probabilities `Predictor.predict` returns), and error (why a file could not be read)."""
    top_k = min(top_k, len(pred.vocab))
    header = ["path", "verdict", "answer", "unknown", "ood_score", *(["species", "species_prob"] * pred.has_species)]
    header += [c for i in range(1, top_k + 1) for c in (f"label{i}", f"prob{i}")] + ["error"]
    rows = [header]
    for name, r in zip(names, results):
        if not isinstance(r, Prediction):
            rows.append([name] + [""] * (len(header) - 2) + [str(getattr(r, "message", r))])
            continue
        unknown = "" if r.unknown is None else str(r.unknown).lower()
        row = [name, r.verdict, pred.describe(r), unknown, _num(r.ood_score)]
        row += [r.species[0][0], _num(r.species[0][1])] if r.species else []
        row += [c for lab, q in r[:top_k] for c in (lab, _num(q))]
        rows.append(row + [""] * (len(header) - len(row) - 1) + [""])
    return rows


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6f}"


def write_csv(path: str | os.PathLike, rows: list[list[str]]) -> Path:
    "Write `table` rows to `path` atomically (a crash never leaves half a file)."

    def _write(p: Path) -> None:
        with open(p, "w", newline="") as fh:
            csv.writer(fh).writerows(rows)

    return atomic_write(path, _write)


if __name__ == "__main__":
    sys.exit(main())
