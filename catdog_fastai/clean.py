"""`catdog-clean`: look at your photos before you train: wrong labels, copies, strangers and broken files.

fast.ai's second lesson ends with `ImageClassifierCleaner`: look at the photos the model finds hardest, fix the
labels, drop what does not belong. This does it before any training, from one pass of the pretrained backbone's
features (`clean_find.py`), and writes into `--out`:
- `issues.csv`: one row per finding (`unreadable`, `tiny`, `duplicate`, `label`, `not_pet`, `outlier`), most
  certain first, with an empty `action` column to fill (`keep`, `relabel:CLASS`, `remove`);
- `issues.html`: the contact sheet, each photo beside its given and suggested label, copies side by side;
- `clean.json`: what was checked and how, so `--apply` knows the layout.

`catdog-clean --apply PLAN.csv` then moves files (never deletes) and `--undo` puts them back (`clean_apply.py`);
`catdog-clean --ui` shows the findings as a gallery that writes the same plan (`clean_ui.py`).
"""

from __future__ import annotations

import csv
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import clean_find
from .clean_find import COLUMNS, INFO, ISSUES_CSV, SHEET, read_issues  # noqa: F401 - the plan's format, used here too
from .cli import error
from .config import _f, build_parser
from .duplicates import THRESHOLD
from .errors import CatdogError, DataError
from .files import atomic_write, write_json
from .images import IMAGE_EXTS, MIN_SIDE, check_image_file, open_image
from .labels import is_pet_model, model_task


@dataclass
class CleanConfig:
    data: str | None = _f(None, "the photos, in any layout catdog-train takes: Pets names, class folders, "
                          "train/ + valid/, or a CSV of file,label[,is_valid]", "data")  # fmt: skip
    task: str = _f("breeds", "for Pets file names: breeds (37 classes: a wrong breed is found even when the species "
                   "is right) or catdog", "data", choices=("breeds", "catdog"))  # fmt: skip
    out: str | None = _f(None, "where issues.csv, issues.html and clean.json go; default: DATA/../clean", "output")
    arch: str = _f("tf_efficientnet_lite0", "timm backbone whose pretrained features judge the photos", "model")
    weights: str | None = _f(None, "local .safetensors with timm key names (offline); default: the Hub", "model")
    size: int = _f(224, "the validation view's size (px), as in training", "model")
    bs: int = _f(32, "photos per forward pass", "model")
    threshold: float = _f(THRESHOLD, "cosine similarity at which two photos are near-duplicates (duplicates.py)",
                          "check")  # fmt: skip
    tiny: int = _f(112, "a photo whose short side is under this (px) is 'tiny': the model would enlarge it more "
                   "than twice (pets-dev's smallest is 116)", "check")  # fmt: skip
    apply: str | None = _f(None, "a plan (issues.csv with its action column filled) to carry out", "fix")
    undo: str | None = _f(None, "an undo manifest (or the folder holding it) to put every moved file back", "fix")
    ui: bool = _f(False, "open the findings in --out as a gallery (Gradio) that writes the plan", "fix")


def default_out(data: str | os.PathLike) -> Path:
    "DATA/../clean: beside the photos, never among them (a class folder called `clean` would be a class)."
    p = Path(data).expanduser().resolve()
    return (p.parent if p.is_file() else p).parent / "clean"


def load_backbone(arch: str, weights: str | None) -> Any:
    "The pretrained backbone (with ImageNet's classifier kept aside for the cat-or-dog gate)."
    from .model import build_model

    return build_model(arch, 1, pretrained=True, weights=weights, head="cosine").eval()


def _unreadable_folder(data: Path, error: DataError) -> list[clean_find.Finding]:
    "When nothing in `data` decodes, each image file is a finding; with no image file at all, the error stands."
    root = data if data.is_dir() else data.parent
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    reasons = [check_image_file(p) for p in files]
    if not files or any(r is None for r in reasons):  # some photo decodes: the error is about the layout
        raise error
    return [_bad_file(p.relative_to(root).as_posix(), r or "") for p, r in zip(files, reasons)]


def _bad_file(path: str, reason: str) -> clean_find.Finding:
    issue = "tiny" if reason.startswith("only ") else "unreadable"
    return clean_find.finding(path, issue, 1.0, note=reason)


def check(cfg: CleanConfig, model: Any = None) -> tuple[list[clean_find.Finding], dict[str, Any]]:
    """Every finding for `cfg.data`, ranked, and what was checked (`clean.json`). `model`: a backbone already
    loaded (tests, the benchmark), else `load_backbone(cfg.arch, cfg.weights)`."""
    from .sources import find_data

    start = time.perf_counter()
    data = Path(cfg.data or "").expanduser()
    try:
        found = find_data(data, task=cfg.task)
    except DataError as e:
        if not data.is_dir():
            raise
        bad = _unreadable_folder(data, e)
        return bad, dict(data=str(data.resolve()), folder=str(data.resolve()), layout="", n_photos=0,
                         counts=_counts(bad), seconds=time.perf_counter() - start)  # fmt: skip
    findings = [_bad_file(p, r) for p, r in found.skipped.items() if r != "not named Breed_N"]
    paths = [p.relative_to(found.folder).as_posix() for p in found.items]
    tiny, thumbs = _sizes_and_thumbprints(found.items, paths, cfg.tiny)
    findings += tiny
    labels = [str(y) for y in found.labels]
    vocab = sorted(set(labels))
    targets = np.array([vocab.index(y) for y in labels])
    model = model if model is not None else load_backbone(cfg.arch, cfg.weights)
    feats = _features(model, found.items, cfg.size, cfg.bs)
    dups, groups = clean_find.duplicate_findings(paths, feats, labels, found.is_valid, cfg.threshold, thumbs)
    probs, sims = clean_find.label_probs(feats, targets, len(vocab), groups)
    findings += dups + clean_find.label_findings(paths, probs, targets, vocab)
    pets = _pet_probability(model, feats, model_task(cfg.task, found.layout), vocab)
    findings += clean_find.stranger_findings(paths, labels, pets, sims, vocab)
    findings = clean_find.rank(findings)
    leaked = len({f["group"] for f in dups if f["leak"]})
    info = dict(data=str(data.resolve()), folder=str(found.folder.resolve()), layout=found.layout, task=cfg.task,
                n_photos=len(paths), vocab=vocab, arch=cfg.arch, threshold=cfg.threshold, counts=_counts(findings),
                leaked_groups=leaked, seconds=time.perf_counter() - start)  # fmt: skip
    return findings, info


def _features(model: Any, items: list[Any], size: int, bs: int) -> np.ndarray:
    "Pooled features of the photos' validation view, channels-last (faster convolutions on a CPU)."
    import torch

    from .model import norm_stats
    from .prototypes import features, photo_batches

    model = model.to(memory_format=torch.channels_last)
    batches = ((x.contiguous(memory_format=torch.channels_last), y) for x, y in
               photo_batches(items, size, *norm_stats(model), bs=bs))  # fmt: skip
    with torch.inference_mode():
        feats, _ = features(model, batches)
    return feats.numpy()


def _sizes_and_thumbprints(items: list[Path], paths: list[str], tiny: int) -> tuple[list, np.ndarray]:
    "Photos that decode but are small, and every photo's `thumbprint` (JPEGs decoded at reduced scale: quick)."
    from PIL import Image

    from .duplicates import thumbprint

    out, thumbs = [], []
    for p, rel in zip(items, paths):
        with Image.open(p) as im:
            w, h = im.size
            if min(w, h) < tiny:
                out.append(clean_find.finding(rel, "tiny", 1 - (min(w, h) - MIN_SIDE) / max(tiny - MIN_SIDE, 1),
                                              note=f"{w}x{h} px"))  # fmt: skip
            im.draft("RGB", (64, 64))
            try:
                thumbs.append(thumbprint(im))
            except (OSError, ValueError):  # a mode Pillow cannot turn grey directly (16-bit, CMYK, ...)
                thumbs.append(thumbprint(open_image(p, min_side=1)))
    return out, np.array(thumbs)


def _pet_probability(model: Any, feats: np.ndarray, task: str, vocab: list[str]) -> np.ndarray | None:
    "ImageNet's probability of 'a cat or a dog' per photo, where the verdict's `imagenet` gate applies, else None."
    from . import verdict

    clf = model[0].source_classifier
    if clf is None or not is_pet_model(vocab, task):
        return None
    return verdict.pet_probability(feats, *(t.float().cpu().numpy() for t in clf))


def _counts(findings: list[clean_find.Finding]) -> dict[str, int]:
    return {k: sum(f["issue"] == k for f in findings) for k in clean_find.ISSUES}


def write_issues(path: str | os.PathLike, findings: list[clean_find.Finding]) -> Path:
    "issues.csv, atomically: COLUMNS, one row per finding, `action` empty for the person to fill."

    def _write(p: Path) -> None:
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows({**r, "group": r.get("group", ""), "action": r.get("action", "")} for r in findings)

    return atomic_write(path, _write)


def summary(findings: list[clean_find.Finding], info: dict[str, Any], out: Path) -> str:
    "The one screen a person reads: counts per issue, where the files are, and the next command."
    c = info["counts"]
    lines = [f"catdog-clean: {info['n_photos']} photos in {info['folder']} ({info['seconds']:.0f} s)"]
    words = dict(unreadable="do not decode", tiny="are small", duplicate="are near-duplicates (copies)",
                 label="may have the wrong label", not_pet="may not be a cat or a dog",
                 outlier="are far from every class")  # fmt: skip
    lines += [f"  {c[k]:5d} {words[k]}" for k in clean_find.ISSUES if c[k] or k in ("label", "duplicate")]
    if info.get("leaked_groups"):
        lines.append(f"  {info['leaked_groups']:5d} duplicate groups straddle train and valid (leakage)")
    if not findings:
        lines.append("  nothing to fix.")
        return "\n".join(lines)
    lines += [f"  findings: {out / ISSUES_CSV}", f"  look at them: {out / SHEET}",
              f"next: fill the action column (keep, relabel:CLASS, remove), or catdog-clean --ui --out {out}; then",
              f"      catdog-clean --apply {out / ISSUES_CSV}  (moves, never deletes; --undo puts back)"]  # fmt: skip
    return "\n".join(lines)


def run(cfg: CleanConfig, model: Any = None) -> tuple[list[clean_find.Finding], dict[str, Any], Path]:
    "Check `cfg.data` and write issues.csv, the contact sheet and clean.json into the out folder."
    from .clean_sheet import write_sheet

    if not cfg.data:
        raise DataError("--data is required: the folder (or CSV) of photos to check")
    findings, info = check(cfg, model)
    out = Path(cfg.out) if cfg.out else default_out(cfg.data)
    write_issues(out / ISSUES_CSV, findings)
    write_sheet(out / SHEET, findings, info)
    write_json(out / INFO, {**info, "config": asdict(cfg)})
    return findings, info, out


def main(argv: list[str] | None = None) -> int:
    "`catdog-clean --data DIR` | `--apply PLAN.csv` | `--undo MANIFEST` | `--ui --out DIR`."
    p = build_parser(CleanConfig, description="Find wrong labels, copies, strangers and broken files; fix them.")
    cfg = CleanConfig(**vars(p.parse_args(argv)))
    try:
        if cfg.undo:
            from .clean_apply import undo

            print(undo(cfg.undo))
        elif cfg.apply:
            from .clean_apply import apply_plan

            print(apply_plan(cfg.apply, data=cfg.data))
        elif cfg.ui:
            from .clean_ui import launch

            launch(Path(cfg.out) if cfg.out else default_out(cfg.data or p.error("--ui needs --out or --data")))
        else:
            findings, info, out = run(cfg)
            print(summary(findings, info, out))
    except CatdogError as e:
        return error("catdog-clean", f"error: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
