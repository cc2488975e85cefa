"""catdog_fastai: fast.ai lesson 1 (cats vs dogs, 37 breeds) as dependable software.

Serving (`load_predictor`) needs NumPy, Pillow and safetensors, plus ONNX Runtime or torch + timm for the forward
pass; training names (`get_dls`, `get_learner`, `train`) import fastai on first use, so
`from catdog_fastai import load_predictor` stays quick and works without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import TrainConfig
from .errors import CatdogError, DataError, ExportError
from .images import ImageError, open_image
from .labels import breed, cat_or_dog, is_cat
from .predict import Prediction, Predictor, UnsafeModelError, load_predictor

__version__ = "0.8.1"

_LAZY = {  # name -> module: these import fastai
    "get_dls": "data",
    "PetImage": "data",
    "get_learner": "train",
    "train_model": "train",
    "report": "evaluate",
    "evaluate_folder": "evaluate",
}

__all__ = [
    "TrainConfig",
    "ExportError",
    "ImageError",
    "open_image",
    "breed",
    "cat_or_dog",
    "is_cat",
    "Predictor",
    "Prediction",
    "CatdogError",
    "DataError",
    "UnsafeModelError",
    "load_predictor",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
