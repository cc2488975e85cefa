"""Predict from an export without fastai and without pickle: `load_predictor('models/').predict('cat.jpg')`.

The serving path is decode (`images.open_image`) -> centre crop + resize (`images.center_crop_resize`, the
validation view used in training) -> normalise -> forward -> softmax. It imports torch, timm and PIL only, so it
starts fast, and it reads `model.safetensors`, which cannot run code. `model.pkl` is read only when the caller
says the file is trusted.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .export import PKL, ExportError, load_safe
from .images import IMAGE_EXTS, ImageError, ImageInput, center_crop_resize, open_image

Prediction = list[tuple[str, float]]  # (label, probability), best first


class UnsafeModelError(ExportError):
    """Raised instead of unpickling a file nobody said was trusted."""


class Predictor:
    """A model plus the preprocessing it was trained with. `predict` one image, `predict_batch` many."""

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], device: str | torch.device = "cpu"):
        # channels_last: faster convolutions on the CPU too (lite0: 1.3x per photo, 1.8x per batch; BENCHMARKS.md)
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.meta, self.device = meta, torch.device(device)
        self.vocab: list[str] = [str(v) for v in meta["vocab"]]
        self.size = int(meta["size"])
        self._mean = torch.tensor(meta["mean"], dtype=torch.float32).view(1, 3, 1, 1).to(self.device)
        self._std = torch.tensor(meta["std"], dtype=torch.float32).view(1, 3, 1, 1).to(self.device)

    def __repr__(self) -> str:
        return f"Predictor({self.meta['arch']}, task={self.meta.get('task')}, {len(self.vocab)} classes, {self.size}px)"

    def preprocess(self, x: ImageInput) -> torch.Tensor:
        "An image (path, bytes, PIL, numpy) as a uint8 (3, size, size) tensor."
        img = center_crop_resize(open_image(x), self.size)
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)

    @torch.inference_mode()
    def probs(self, batch: torch.Tensor) -> torch.Tensor:
        "Class probabilities for a uint8 (N, 3, size, size) batch."
        x = (batch.to(self.device, non_blocking=True).float().div_(255) - self._mean) / self._std
        return self.model(x).float().softmax(dim=1).cpu()

    def _top(self, p: torch.Tensor, top_k: int | None) -> Prediction:
        k = len(self.vocab) if top_k is None else max(1, min(top_k, len(self.vocab)))
        vals, idxs = p.topk(k)
        return [(self.vocab[i], float(v)) for v, i in zip(vals.tolist(), idxs.tolist())]

    def predict(self, x: ImageInput, top_k: int | None = 3) -> Prediction:
        "Labels with probabilities, best first (`top_k=None` for all classes)."
        return self._top(self.probs(self.preprocess(x)[None])[0], top_k)

    def predict_batch(self, xs: Iterable[ImageInput], top_k: int | None = 3, bs: int = 32) -> list[Prediction]:
        "`predict` for many images, run `bs` at a time. Raises `ImageError` naming the first bad image."
        xs = list(xs) if not isinstance(xs, list) else xs
        out: list[Prediction] = []
        for i in range(0, len(xs), bs):
            chunk = []
            for j, x in enumerate(xs[i : i + bs], start=i):
                try:
                    chunk.append(self.preprocess(x))
                except ImageError as e:
                    raise ImageError(f"image {j}: {e}") from None
            out += [self._top(p, top_k) for p in self.probs(torch.stack(chunk))]
        return out


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _from_pickle(path: Path, device: str) -> Predictor:
    from fastai.learner import load_learner

    learn = load_learner(path, cpu=device == "cpu")
    meta = getattr(learn, "catdog_meta", None)
    if meta is None:
        raise ExportError(f"{path} is a fastai export without catdog_fastai metadata; use load_learner directly")
    return Predictor(learn.model.to(device), meta, device)


def load_predictor(path: str | os.PathLike = "models", trusted: bool = False, device: str | None = None) -> Predictor:
    """Load an export folder (or a file in it) for prediction.

    By default reads the pickle-free pair `model.safetensors` + `model.json`. A `.pkl` path is loaded only with
    `trusted=True`: unpickling runs whatever code the file contains.
    """
    path = Path(path).expanduser()
    device = device or _default_device()
    if path.suffix == ".pkl":
        if not trusted:
            raise UnsafeModelError(
                f"refusing to load {path}: a .pkl file can run arbitrary code when loaded. Load the pickle-free "
                f"export in {path.parent} instead (model.safetensors + model.json), or pass trusted=True if you "
                "made this file yourself."
            )
        return _from_pickle(path, device)
    if not path.exists():
        raise ExportError(f"no model at {path}: train one with `catdog-train --out {path}`")
    model, meta = load_safe(path, device=device)
    return Predictor(model, meta, device)


def _expand(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        else:
            files.append(p)
    return files


def main(argv: list[str] | None = None) -> int:
    "`catdog-predict PATHS_OR_DIRS --model DIR [--csv out.csv] [--top-k 3]`."
    ap = argparse.ArgumentParser(
        description="Predict the class of photos (cat/dog, breed, or your own classes) with an exported model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("paths", nargs="+", help="image files and/or folders of images")
    ap.add_argument("--model", default=os.environ.get("CATDOG_MODEL", "models"), help="export folder")
    ap.add_argument("--top-k", type=int, default=3, help="labels to show per image")
    ap.add_argument("--csv", help="also write the predictions to this CSV file")
    ap.add_argument("--bs", type=int, default=32, help="images per forward pass")
    ap.add_argument("--trust-pickle", action="store_true", help="allow --model to be a model.pkl (runs its code)")
    args = ap.parse_args(argv)
    if args.top_k < 1 or args.bs < 1:
        ap.error("--top-k and --bs must be at least 1")
    try:
        model_path = Path(args.model)
        if args.trust_pickle and model_path.is_dir() and (model_path / PKL).is_file():
            model_path = model_path / PKL
        pred = load_predictor(model_path, trusted=args.trust_pickle)
    except ExportError as e:
        print(f"catdog-predict: {e}", file=sys.stderr)
        return 2
    files = _expand(args.paths)
    if not files:
        print("catdog-predict: no images found in " + " ".join(args.paths), file=sys.stderr)
        return 2
    from tqdm import tqdm  # already installed with timm (huggingface_hub); lighter than fastprogress

    rows, failed = [], 0
    for f in tqdm(files, disable=not sys.stderr.isatty(), leave=False, unit="img"):
        try:
            top = pred.predict(f, top_k=args.top_k)
        except ImageError as e:
            failed += 1
            print(f"{f}: skipped: {e}", file=sys.stderr)
            continue
        rows.append((str(f), top))
        print(f"{f}\t" + "  ".join(f"{lab} {p:.3f}" for lab, p in top))
    if args.csv:
        from .export import atomic_write

        def _write(p: Path) -> None:
            with open(p, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["path"] + [c for i in range(1, args.top_k + 1) for c in (f"label{i}", f"prob{i}")])
                for path, top in rows:
                    w.writerow([path] + [c for lab, p in top for c in (lab, f"{p:.6f}")])

        atomic_write(args.csv, _write)
    if failed:
        print(f"catdog-predict: {failed} of {len(files)} files could not be read", file=sys.stderr)
    return 1 if failed and not rows else 0


if __name__ == "__main__":
    sys.exit(main())
