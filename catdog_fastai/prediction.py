"""What one photo's prediction is (`Prediction`), and the NumPy arithmetic from logits to probabilities that
`Predictor` uses for both backends. NumPy only."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import verdict


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


@functools.cache
def _blas() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def one_blas_thread() -> contextlib.AbstractContextManager:
    """NumPy's BLAS on one thread for the gate's matrix product: a second thread pool beside the backend's, on a
    few cores, made one prediction 2x slower (BENCHMARKS.md §3); one thread does it in under a millisecond."""
    controller = _blas()
    return controller.limit(limits=1, user_api="blas") if controller else contextlib.nullcontext()


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    return x - verdict.logsumexp(x)[:, None]
