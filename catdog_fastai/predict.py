"""Predict from an export without fastai and without pickle: `load_predictor('models/').predict('cat.jpg')`.

The serving path is decode (`images.open_image`) -> centre crop + resize (`images.center_crop_resize`, the
validation view used in training) -> normalise -> forward (`backends.py`: ONNX Runtime or torch) -> softmax, plus
the verdict (`verdict.py`: known, unsure, or not one of the model's classes at all) and, for Pets breed models, cat
or dog with the breeds' probabilities summed. Everything but the forward pass is NumPy and Pillow, the same code
for both backends, so they see identical pixels and give the same answer. It reads `model.safetensors` /
`model.onnx`, which cannot run code; `model.pkl` is read only when the caller says the file is trusted.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from . import verdict
from .backends import BACKENDS, TRAIN_INSTALL, Backend, OnnxBackend, TorchBackend, available, missing
from .errors import ExportError
from .images import ImageError, ImageInput, center_crop_resize, open_image
from .labels import breed_is_cat, has_species, is_pet_model
from .meta import META, MIXED_UP, ONNX, WEIGHTS, ModelMeta, Rule, read_extras, read_meta, verify
from .prediction import Prediction, log_softmax, one_blas_thread, softmax

log = logging.getLogger("catdog_fastai")


class UnsafeModelError(ExportError):
    """Raised instead of unpickling a file nobody said was trusted."""


class Predictor:
    """An export's forward pass (`backend`: torch or ONNX Runtime) plus the preprocessing it was trained with and
    what model.json says about its answers. `predict` one image, `predict_each`/`predict_batch` many.

    Probabilities are calibrated: the logits divided by the temperature fitted on the validation photos
    (`ood.calibration`), so that "90 %" is right about 90 % of the time. They are the figures `catdog-predict`, the
    app and its `/predict` endpoint show, so one photo gets one number whichever way it is asked. The model's plain
    softmax (what fastai's `learn.predict` returns) stays available by name: `calibrated=False`, and `probs`. The
    verdict and the species are the same either way; the verdict reads the calibrated figures.
    `tta=True` also looks at each photo's mirror image and averages the two softmaxes: a second forward pass for no
    measurable gain (BENCHMARKS.md §1), so it is off by default.
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
        self.temperature = meta.ood.temperature if meta.ood else 1.0
        self._means = extras.get(verdict.MEANS_KEY)
        self._imagenet = (extras.get(verdict.IMAGENET_WEIGHT), extras.get(verdict.IMAGENET_BIAS))
        self.rule = _usable_rule(meta.verdict, self._means, self._imagenet)
        self._is_cat = np.array([breed_is_cat(v) for v in self.vocab]) if has_species(self.vocab, meta.task) else None

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
        return self.rule is not None and self.rule.known_min_prob is not None

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
        if self.rule.gate == "imagenet":
            return 1 - verdict.pet_probability(pooled, *self._imagenet)
        if self.rule.gate == "energy":  # exports made before 0.5 may have it
            return verdict.energy(logits, self.temperature)
        return verdict.mean_distance(pooled, self._means)

    def outputs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        "Logits and unknown-scores (None for exports without a gate) for a uint8 (N, 3, size, size) batch."
        x = self.normalize(batch)
        n = len(x)
        logits, pooled = self.backend(np.concatenate([x, x[..., ::-1]]) if self.tta else x)
        with one_blas_thread():
            scores = self.unknown_scores(logits[:n], pooled[:n])
        if self.tta:  # the log of the two views' mean softmax: softmax of it is that mean
            logits = np.logaddexp(log_softmax(logits[:n]), log_softmax(logits[n:])) - math.log(2)
        return logits.astype(np.float32), scores

    def probs(self, batch: np.ndarray, calibrated: bool = False) -> np.ndarray:
        """Class probabilities for a uint8 batch: the model's plain softmax by default, as fastai's `learn.predict`
        (a low-level view for checking the export against fastai); `calibrated=True` for `predict`'s figures."""
        logits = self.outputs(batch)[0]
        return softmax(logits / self.temperature if calibrated else logits)

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
        cal = softmax(logits / self.temperature)
        probs = cal if calibrated else softmax(logits)
        out = []
        for i, p in enumerate(probs):
            score = None if scores is None else float(scores[i])
            v = verdict.decide(float(cal[i].max()), score, self.rule)
            unknown = None if score is None else v == verdict.UNKNOWN
            out.append(Prediction(self._top(p, top_k), unknown, score, self._species(p), v))
        return out

    def predict(self, x: ImageInput, top_k: int | None = 3, calibrated: bool = True) -> Prediction:
        """Labels with probabilities (calibrated; `calibrated=False`: the plain softmax), best first (`top_k=None`
        for all classes), and the verdict (`Prediction`)."""
        return self._results(self.preprocess(x)[None], top_k, calibrated)[0]

    def predict_each(
        self, xs: Iterable[ImageInput], top_k: int | None = 3, bs: int = 32, calibrated: bool = True
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
        self, xs: Iterable[ImageInput], top_k: int | None = 3, bs: int = 32, calibrated: bool = True
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
        return is_pet_model(self.vocab, self.meta.task)


def _usable_rule(
    rule: Rule | None, means: np.ndarray | None, imagenet: tuple[np.ndarray | None, np.ndarray | None]
) -> Rule | None:
    """model.json's rule (`meta.Rule`: older exports' upgraded when read); None, with a warning, where the tensors
    its gate needs are missing from model.safetensors."""
    if rule is None:
        return None
    if {"imagenet": any(t is None for t in imagenet), "features": means is None}.get(rule.gate, False):
        log.warning("model.json has a %s gate but model.safetensors lacks its tensors: no unknown verdict", rule.gate)
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
    return verify(path, meta.onnx.sha256, f"re-run catdog-export {folder} --onnx")


def _choose(backend: str, onnx: Path | None, device: str | None) -> str:
    """`auto`: ONNX Runtime where the export has model.onnx and onnxruntime is installed (unless a GPU is asked
    for), else torch."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "torch" and missing("torch", "timm"):
        raise ExportError(
            f"backend='torch' needs {' and '.join(missing('torch', 'timm'))}, which are not installed here: "
            f"{TRAIN_INSTALL}; or serve model.onnx with backend='onnxruntime'"
        )
    if backend != "auto":
        return backend
    wants_gpu = device is not None and str(device).startswith("cuda")
    if onnx is not None and available("onnxruntime") and not wants_gpu:
        return "onnxruntime"
    if available("torch"):
        return "torch"
    raise ExportError(
        "this export needs torch and timm (pip install 'catdog_fastai[train]'), or model.onnx and onnxruntime "
        "(catdog-export DIR --onnx, then pip install onnxruntime)"
    )


def _torch_threads(threads: int | None) -> None:
    """`torch.set_num_threads(threads)`: torch's intra-op pool is one per process, so this sets it for the whole
    process (as `torch.set_num_threads` itself does) and leaves it set; None leaves torch's default."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _from_pickle(path: Path, device: str | None, tta: bool, threads: int | None = None) -> Predictor:
    gone = missing("torch", "fastai")
    if gone:
        raise ExportError(f"loading {path.name} needs {' and '.join(gone)}: {TRAIN_INSTALL}")
    from fastai.learner import load_learner

    device = _torch_device(device)
    _torch_threads(threads)
    learn = load_learner(path, cpu=device == "cpu")
    if (path.parent / META).is_file():
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
    installed, else torch. Both give the same predictions (to about 1e-6). `threads`: the forward pass's CPU
    threads: ONNX Runtime's intra-op threads for this predictor; for torch, `torch.set_num_threads(threads)`, which
    is process-wide and stays set (torch has one pool per process). None: the backend's default. A `.pkl` path is
    loaded (with torch and fastai) only with `trusted=True`: unpickling runs whatever code the file contains.
    `tta`: average each photo with its mirror image (see `Predictor`).
    """
    path = Path(path).expanduser()
    if path.suffix == ".pkl":
        if not trusted:
            raise UnsafeModelError(
                f"refusing to load {path}: a .pkl file can run arbitrary code when loaded. Load the pickle-free "
                f"export in {path.parent} instead (model.safetensors + model.json), or pass trusted=True if you "
                "made this file yourself."
            )
        return _from_pickle(path, device, tta, threads)
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
        from .backends import load_safe  # the serving side's loader: torch + timm, nothing from training

        device = _torch_device(device)
        model, meta = load_safe(folder, device=device)
        _torch_threads(threads)
        engine = TorchBackend(model, device)
    return Predictor(engine, meta, read_extras(folder), tta)
