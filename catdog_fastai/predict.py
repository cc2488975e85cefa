"""Predict from an export without fastai and without pickle: `load_predictor('models/').predict('cat.jpg')`.

The serving path is decode (`images.open_image`) -> centre crop + resize (`images.center_crop_resize`, the
validation view used in training) -> normalise -> forward (`backends.py`: ONNX Runtime or torch) -> softmax, plus
the verdict (`verdict.py`: known, unsure, or not one of the model's classes at all) and, for Pets breed models, cat
or dog with the breeds' probabilities summed. Everything but the forward pass is NumPy and Pillow, the same code
for both backends, so they see identical pixels and give the same answer. It reads `model.safetensors` /
`model.onnx`, which cannot run code; `model.pkl` is read only when the caller says the file is trusted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import logging
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import verdict
from .backends import BACKENDS, Backend, OnnxBackend, TorchBackend, available
from .errors import ExportError
from .files import atomic_write
from .images import IMAGE_EXTS, ImageError, ImageInput, center_crop_resize, open_image
from .labels import breed_is_cat, is_pets_vocab
from .meta import MIXED_UP, ONNX, PKL, WEIGHTS, ModelMeta, read_extras, read_meta, verify

log = logging.getLogger("catdog_fastai")


class Prediction(list):
    """(label, probability) pairs, best first: a plain list, so it compares, indexes and unpacks as it always did.

    It also carries the verdict on the whole photo (`verdict.py`):
    - `verdict`: "known" (one class clearly), "unsure" (one of the classes, for Pets breed models a cat or a dog,
      but no class clearly) or "unknown" (none of them: not a cat or a dog). Exports made before the
      unsure answer existed give known or unknown only; those made before OOD detection, always known.
    - `unknown`: `verdict == "unknown"`, kept for compatibility; None for exports without OOD detection.
    - `ood_score`: higher = less like the model's classes (None with `unknown`).
    - `species`: for Pets breed models, `[('cat', p), ('dog', 1 - p)]` best first, p summed over that species'
      breeds (all of them, not only the top k); None for other models.
    """

    def __init__(
        self,
        pairs: Iterable[tuple[str, float]] = (),
        unknown: bool | None = None,
        ood_score: float | None = None,
        species: list[tuple[str, float]] | None = None,
        verdict: str = verdict.KNOWN,
    ):
        super().__init__(pairs)
        self.unknown, self.ood_score, self.species, self.verdict = unknown, ood_score, species, verdict

    def __repr__(self) -> str:
        v = f"verdict={self.verdict!r}, unknown={self.unknown}, ood_score={self.ood_score}, species={self.species}"
        return f"Prediction({list.__repr__(self)}, {v})"


class UnsafeModelError(ExportError):
    """Raised instead of unpickling a file nobody said was trusted."""


class Predictor:
    """An export's forward pass (`backend`: torch or ONNX Runtime) plus the preprocessing it was trained with and
    what model.json says about its answers. `predict` one image, `predict_each`/`predict_batch` many.

    Probabilities are the model's softmax unless `calibrated=True`, which divides the logits by the temperature
    fitted on the validation photos (`ood.calibration`): the figures to show people. The verdict and the species
    are the same either way; the verdict reads the calibrated figures. `tta=True` also looks at each photo's
    mirror image and averages the two softmaxes: a second forward pass for no measurable gain (BENCHMARKS.md §1),
    so it is off by default. Without it the probabilities are fastai's `learn.predict`.
    """

    def __init__(
        self, backend: Backend, meta: ModelMeta, extras: dict[str, np.ndarray] | None = None, tta: bool = False
    ):
        self.backend, self.meta, self.tta = backend, meta, tta
        self.vocab: list[str] = list(meta.vocab)
        self.size = meta.size
        mean, std = (np.array(v, dtype=np.float32).reshape(1, 3, 1, 1) for v in (meta.mean, meta.std))
        self._scale, self._shift = 1 / (255 * std), -mean / std  # (x / 255 - mean) / std in one multiply-add
        extras = {k: np.asarray(v, dtype=np.float32) for k, v in (extras or {}).items()}
        self.ood: dict[str, Any] | None = meta.ood
        self.temperature = float(self.ood["temperature"]) if self.ood else 1.0
        self._means = extras.get(verdict.MEANS_KEY)
        self._imagenet = (extras.get(verdict.IMAGENET_WEIGHT), extras.get(verdict.IMAGENET_BIAS))
        self.rule = _verdict_rule(meta, self._means, self._imagenet)
        pets_breeds = meta.task == "breeds" and is_pets_vocab(self.vocab)
        self._is_cat = np.array([breed_is_cat(v) for v in self.vocab]) if pets_breeds else None

    def __repr__(self) -> str:
        m = self.meta
        return f"Predictor({m.arch}, task={m.task}, {len(self.vocab)} classes, {self.size}px, {self.backend.name})"

    @property
    def model(self) -> Any:
        "The torch model (torch backend only: Grad-CAM and fine surgery need it)."
        if not isinstance(self.backend, TorchBackend):
            raise AttributeError(f"a {self.backend.name} predictor has no torch model: load it with backend='torch'")
        return self.backend.model

    @property
    def can_tell_unsure(self) -> bool:
        "False for exports made before the unsure answer: their verdict is known or unknown only."
        return self.rule is not None and self.rule.get("known_min_prob") is not None

    @property
    def has_species(self) -> bool:
        "True for Pets breed models, whose predictions say cat or dog first."
        return self._is_cat is not None

    def preprocess(self, x: ImageInput) -> np.ndarray:
        "An image (path, bytes, PIL, numpy) as a uint8 (3, size, size) array."
        img = center_crop_resize(open_image(x), self.size)
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        "A uint8 (N, 3, size, size) batch from `preprocess` as the model's input: float32, normalised."
        return np.asarray(batch, dtype=np.float32) * self._scale + self._shift

    def unknown_scores(self, logits: np.ndarray, pooled: np.ndarray) -> np.ndarray | None:
        "Each photo's score for the unknown verdict (higher = less like the classes); None without a gate."
        if self.rule is None:
            return None
        if self.rule["gate"] == "imagenet":
            return 1 - verdict.pet_probability(pooled, *self._imagenet)
        if self.rule["gate"] == "energy":  # exports made before 0.5 may have it
            return verdict.energy(logits, self.temperature)
        return verdict.mean_distance(pooled, self._means)

    def outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        "Logits and unknown-scores (None for exports without a gate) for a uint8 (N, 3, size, size) batch."
        x = self.normalize(batch)
        n = len(x)
        logits, pooled = self.backend(np.concatenate([x, x[..., ::-1]]) if self.tta else x)
        with _one_blas_thread():
            scores = self.unknown_scores(logits[:n], pooled[:n])
        if self.tta:  # the log of the two views' mean softmax: softmax of it is that mean
            logits = np.logaddexp(_log_softmax(logits[:n]), _log_softmax(logits[n:])) - math.log(2)
        return logits.astype(np.float32), scores

    def probs(self, batch: np.ndarray) -> np.ndarray:
        "Class probabilities (the model's plain softmax, as fastai's `learn.predict`) for a uint8 batch."
        return _softmax(self.outputs(batch)[0])

    def _top(self, p: np.ndarray, top_k: int | None) -> list[tuple[str, float]]:
        k = len(self.vocab) if top_k is None else max(1, min(top_k, len(self.vocab)))
        return [(self.vocab[i], float(p[i])) for i in np.argsort(-p, kind="stable")[:k]]

    def _species(self, p: np.ndarray) -> list[tuple[str, float]] | None:
        if self._is_cat is None:
            return None
        cat = float(p[self._is_cat].sum())
        return sorted([("cat", cat), ("dog", 1 - cat)], key=lambda kv: -kv[1])

    def _results(self, batch: np.ndarray, top_k: int | None, calibrated: bool) -> list[Prediction]:
        logits, scores = self.outputs(batch)
        cal = _softmax(logits / self.temperature)
        probs = cal if calibrated else _softmax(logits)
        out = []
        for i, p in enumerate(probs):
            score = None if scores is None else float(scores[i])
            v = verdict.decide(float(cal[i].max()), score, self.rule)
            unknown = None if score is None else v == verdict.UNKNOWN
            out.append(Prediction(self._top(p, top_k), unknown, score, self._species(p), v))
        return out

    def predict(self, x: ImageInput, top_k: int | None = 3, calibrated: bool = False) -> Prediction:
        "Labels with probabilities, best first (`top_k=None` for all classes), and the verdict (`Prediction`)."
        return self._results(self.preprocess(x)[None], top_k, calibrated)[0]

    def predict_each(
        self, xs: Iterable[ImageInput], top_k: int | None = 3, bs: int = 32, calibrated: bool = False
    ) -> list[Prediction | ImageError]:
        "`predict` for many images, `bs` per forward pass; an unreadable image gets its `ImageError` in its place."
        xs = list(xs)
        out: list[Prediction | ImageError] = []
        for i in range(0, len(xs), bs):
            chunk = [self._try_preprocess(x) for x in xs[i : i + bs]]
            good = [t for t in chunk if isinstance(t, np.ndarray)]
            results = iter(self._results(np.stack(good), top_k, calibrated) if good else [])
            out += [next(results) if isinstance(t, np.ndarray) else t for t in chunk]
        return out

    def predict_batch(
        self, xs: Iterable[ImageInput], top_k: int | None = 3, bs: int = 32, calibrated: bool = False
    ) -> list[Prediction]:
        "`predict` for many images, run `bs` at a time. Raises `ImageError` naming the first bad image."
        out = self.predict_each(xs, top_k, bs, calibrated)
        for j, r in enumerate(out):
            if isinstance(r, ImageError):
                raise ImageError(f"image {j}: {r}")
        return out  # type: ignore[return-value] - no ImageError left

    def _try_preprocess(self, x: ImageInput) -> np.ndarray | ImageError:
        try:
            return self.preprocess(x)
        except ImageError as e:
            return e

    def describe(self, p: Prediction) -> str:
        "The one line a person reads: the verdict, species first for Pets breed models (`verdict.describe`)."
        return verdict.describe(p, self.is_pet_model)

    def unknown_text(self) -> str:
        "What the unknown verdict says for this model: cat or dog for Pets models, else its own classes."
        return verdict.unknown_text(self.is_pet_model)

    @property
    def is_pet_model(self) -> bool:
        'Cat/dog and Pets breed models, whose unknown answer is "not a cat or a dog".'
        return verdict.is_pet_model(self.vocab, self.meta.task)


@functools.cache
def _blas() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """NumPy's BLAS on one thread for the gate's matrix product: a second thread pool beside the backend's, on a
    few cores, made one prediction 2x slower (BENCHMARKS.md §3); one thread does it in under a millisecond."""
    controller = _blas()
    return controller.limit(limits=1, user_api="blas") if controller else contextlib.nullcontext()


def _softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(_log_softmax(logits))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    return x - verdict.logsumexp(x)[:, None]


def _verdict_rule(
    meta: ModelMeta, means: np.ndarray | None, imagenet: tuple[np.ndarray | None, np.ndarray | None]
) -> dict[str, Any] | None:
    """model.json's `verdict` entry, or for exports made before it the `ood` entry's threshold (known or unknown
    only); None, with a warning, where the tensors the gate needs are missing."""
    rule = verdict.read_rule(meta.verdict, meta.ood)
    if rule is None:
        return None
    needs = {"imagenet": any(t is None for t in imagenet), "features": means is None}.get(rule["gate"], False)
    if needs:
        log.warning(
            "model.json has a %s gate but model.safetensors lacks its tensors: no unknown verdict", rule["gate"]
        )
        return None
    return rule


def _torch_device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _onnx_file(folder: Path, meta: ModelMeta) -> Path | None:
    "The export's model.onnx when model.json vouches for it (same checksum); None when there is none."
    path = folder / ONNX
    if meta.onnx is None or not path.is_file():
        return None
    return verify(path, meta.onnx.get("sha256"), f"re-run catdog-export {folder} --onnx")


def _choose(backend: str, onnx: Path | None, device: str | None) -> str:
    """`auto`: ONNX Runtime where the export has model.onnx and onnxruntime is installed (unless a GPU is asked
    for), else torch."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend != "auto":
        return backend
    wants_gpu = device is not None and str(device).startswith("cuda")
    if onnx is not None and available("onnxruntime") and not wants_gpu:
        return "onnxruntime"
    if available("torch"):
        return "torch"
    raise ExportError(
        "this export needs torch (pip install catdog_fastai), or model.onnx and onnxruntime "
        "(catdog-export DIR --onnx, then pip install onnxruntime)"
    )


def _from_pickle(path: Path, device: str | None, tta: bool) -> Predictor:
    from fastai.learner import load_learner

    device = _torch_device(device)
    learn = load_learner(path, cpu=device == "cpu")
    if (path.parent / "model.json").is_file():
        meta = read_meta(path.parent)
    elif isinstance(getattr(learn, "catdog_meta", None), dict):  # exports before 0.6 carried it inside the pickle
        meta = ModelMeta.from_json(learn.catdog_meta, str(path))
    else:
        raise ExportError(f"{path} is a fastai export without catdog_fastai's model.json beside it; use load_learner")
    return Predictor(TorchBackend(learn.model, device), meta, read_extras(path), tta)


def load_predictor(
    path: str | os.PathLike = "models",
    trusted: bool = False,
    device: str | None = None,
    tta: bool = False,
    backend: str = "auto",
    threads: int | None = None,
) -> Predictor:
    """Load an export folder (or a file in it) for prediction.

    `backend`: "onnxruntime" runs `model.onnx` (no torch needed), "torch" rebuilds the network from
    `model.safetensors`, "auto" (default) takes ONNX Runtime when the export has `model.onnx` and onnxruntime is
    installed, else torch. Both give the same predictions (to about 1e-6). `threads`: ONNX Runtime's intra-op
    threads (torch: `torch.set_num_threads`). A `.pkl` path is loaded (with torch and fastai) only with
    `trusted=True`: unpickling runs whatever code the file contains. `tta`: average each photo with its mirror
    image (see `Predictor`).
    """
    path = Path(path).expanduser()
    if path.suffix == ".pkl":
        if not trusted:
            raise UnsafeModelError(
                f"refusing to load {path}: a .pkl file can run arbitrary code when loaded. Load the pickle-free "
                f"export in {path.parent} instead (model.safetensors + model.json), or pass trusted=True if you "
                "made this file yourself."
            )
        return _from_pickle(path, device, tta)
    if not path.exists():
        raise ExportError(f"no model at {path}: train one with `catdog-train --out {path}`")
    folder = path if path.is_dir() else path.parent
    meta = read_meta(folder)
    onnx = _onnx_file(folder, meta)
    chosen = _choose(backend, onnx, device)
    if chosen == "onnxruntime":
        if onnx is None:
            raise ExportError(f"{folder} has no {ONNX}: add it with `catdog-export {folder} --onnx`")
        verify(folder / WEIGHTS, meta.weights_sha256, MIXED_UP)  # the gate's arrays come from it
        engine: Backend = OnnxBackend(onnx, threads, device or "cpu")
    else:
        from .export import load_safe

        device = _torch_device(device)
        model, meta = load_safe(folder, device=device)
        engine = TorchBackend(model, device)
    return Predictor(engine, meta, read_extras(folder), tta)


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
    ap.add_argument("--backend", choices=BACKENDS, default="auto", help="forward pass: ONNX Runtime or torch")
    args = ap.parse_args(argv)
    if args.top_k < 1 or args.bs < 1:
        ap.error("--top-k and --bs must be at least 1")
    try:
        model_path = Path(args.model)
        if args.trust_pickle and model_path.is_dir() and (model_path / PKL).is_file():
            model_path = model_path / PKL
        pred = load_predictor(model_path, trusted=args.trust_pickle, backend=args.backend)
    except ExportError as e:
        print(f"catdog-predict: {e}", file=sys.stderr)
        return 2
    files = _expand(args.paths)
    if not files:
        print("catdog-predict: no images found in " + " ".join(args.paths), file=sys.stderr)
        return 2
    results = pred.predict_each(files, top_k=args.top_k, bs=args.bs, calibrated=True)
    failed = 0
    for f, r in zip(files, results):
        if isinstance(r, ImageError):
            failed += 1
            print(f"{f}: skipped: {r}", file=sys.stderr)
        else:
            print(f"{f}\t{pred.describe(r)}")
    if args.csv:
        write_csv(args.csv, table(pred, [str(f) for f in files], results, args.top_k))
    if failed:
        print(f"catdog-predict: {failed} of {len(files)} files could not be read", file=sys.stderr)
    return 1 if failed == len(files) else 0


def table(
    pred: Predictor, names: Sequence[str], results: Sequence[Prediction | Exception], top_k: int
) -> list[list[str]]:
    """The one CSV schema of `catdog-predict --csv` and the app's batch tab, header first: path, verdict (known,
    unsure, unknown), answer (`Predictor.describe`), unknown (true/false, empty for exports without OOD detection;
    kept for compatibility), ood_score, for Pets breed models species and species_prob, label1, prob1, ...
    (calibrated probabilities), and error (why a file could not be read)."""
    top_k = min(top_k, len(pred.vocab))
    header = [
        "path",
        "verdict",
        "answer",
        "unknown",
        "ood_score",
        *(["species", "species_prob"] if pred.has_species else []),
    ]
    header += [c for i in range(1, top_k + 1) for c in (f"label{i}", f"prob{i}")] + ["error"]
    rows = [header]
    for name, r in zip(names, results):
        if not isinstance(r, Prediction):
            rows.append([name] + [""] * (len(header) - 2) + [str(getattr(r, "message", r))])
            continue
        row = [
            name,
            r.verdict,
            pred.describe(r),
            "" if r.unknown is None else str(r.unknown).lower(),
            _num(r.ood_score),
        ]
        row += [r.species[0][0], _num(r.species[0][1])] if r.species else []
        row += [c for lab, q in r for c in (lab, _num(q))]
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
