"""The forward pass behind a `Predictor`: eager PyTorch or ONNX Runtime, each giving the same two arrays.

A backend takes a normalised float32 batch (N, 3, size, size) as NumPy and returns (logits, pooled features) as
NumPy: everything before (decoding, cropping, normalising) and after (softmax, calibration, the verdict) is the
`Predictor`'s own NumPy code, so the two backends differ only in who multiplies the matrices.

- `TorchBackend`: the model rebuilt from model.safetensors (`load_safe`: timm + torch); needed for Grad-CAM and GPUs.
- `OnnxBackend`: `model.onnx` in ONNX Runtime; needs neither torch nor timm nor fastai, and on the CPU runs the
  same pass in about a third of the time (BENCHMARKS.md).

Neither library is imported until a backend is built, so `import catdog_fastai` works with either one alone. This is
the serving side of the package: it imports nothing from training or export (the torch backend needs only the
network's definition, `model.py`), so a serving install and a Space (`space.py`) carry no training code.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .errors import ExportError
from .meta import EXTRA_PREFIX, MIXED_UP, WEIGHTS, ModelMeta, read_meta, verify, versions

BACKENDS = ("auto", "torch", "onnxruntime")
OUTPUTS = ("logits", "pooled")  # the ONNX graph's output names, in this order; its input is "image"
TRAIN_INSTALL = "pip install 'catdog_fastai[train]'"  # what brings torch, timm and fastai (from a clone: -e '.[train]')


class Backend(Protocol):
    name: str

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def available(name: str) -> bool:
    "Whether a library can be imported here, without importing it (a finder that refuses it counts as absent)."
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing(*names: str) -> list[str]:
    "The libraries among `names` that cannot be imported here (none imported)."
    return [n for n in names if not available(n)]


def needs_training_stack(what: str, names: tuple[str, ...] = ("torch", "timm", "fastai")) -> str | None:
    """The one line to print when `what` (a command) needs libraries the serving install leaves out; None when they
    are all here. One line, not an ImportError's traceback: the fix is an install command."""
    gone = missing(*names)
    if not gone:
        return None
    return f"{what} needs {', '.join(gone)}, which the serving install leaves out: {TRAIN_INSTALL}"


def forward(model: Any, x: Any) -> tuple[Any, Any]:
    """(logits, pooled features) of `model.Sequential(body, head)` in one pass: the same computation as `model(x)`,
    stopped once to keep the head's input (the pooled feature map: averaged for the cosine head, concat-pooled for
    fastai's; a ViT's pooled features). The ONNX graph's two outputs and the torch backend's; training's too.

    Where the body has a `gate_size` other than the input's (a model trained small, with the `imagenet` gate:
    `verdict.gate_size`), the pooled features are those of a second pass over the photo enlarged to that size,
    which are what the unknown gate reads."""
    body, head = model[0], model[1]
    n_pool = 2 if body.needs_pool else 0  # a pooling layer + Flatten open the head of a CNN
    pooled = head[:n_pool](body(x))
    logits = head[n_pool:](pooled)
    gate_size = getattr(body, "gate_size", None)
    if gate_size and gate_size != x.shape[-1]:
        from torch.nn.functional import interpolate

        pooled = head[:n_pool](body(interpolate(x, size=(gate_size, gate_size), mode="bilinear")))
    return logits, pooled


def load_safe(path: str | os.PathLike, device: str | Any = "cpu") -> tuple[Any, ModelMeta]:
    """Rebuild the model from `model.json` and load `model.safetensors` into it, checking the checksum and every
    key and shape (torch + timm: the torch backend's loader, and `catdog-export --onnx`'s)."""
    gone = missing("torch", "timm")
    if gone:
        raise ExportError(
            f"the torch backend needs {' and '.join(gone)} ({TRAIN_INSTALL}); without them serve model.onnx with "
            "backend='onnxruntime'"
        )
    from safetensors.torch import load_file

    from .model import ModelError, build_model  # the network's definition: torch + timm, no fastai

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta = read_meta(folder)
    wpath = folder / WEIGHTS
    if not wpath.is_file():
        raise ExportError(f"{wpath} is missing; the export in {folder} is incomplete")
    verify(wpath, meta.weights_sha256, MIXED_UP)
    try:
        model = build_model(meta.arch, meta.n_classes, pretrained=False, head=meta.head)
    except ModelError as e:
        raise ExportError(f"{e} (the export was made with {meta.versions}, running {versions()})") from None
    try:
        sd = load_file(str(wpath), device="cpu")
    except Exception as e:  # safetensors raises its own error types for damaged headers
        raise ExportError(f"{wpath} is not a readable safetensors file ({e})") from None
    sd = {k: v for k, v in sd.items() if not k.startswith(EXTRA_PREFIX)}  # not weights: see `meta.read_extras`
    want = model.state_dict()
    absent, extra = sorted(set(want) - set(sd)), sorted(set(sd) - set(want))
    bad = [k for k in set(want) & set(sd) if want[k].shape != sd[k].shape]
    if absent or extra or bad:
        detail = "; ".join(
            s
            for s in (
                f"missing {absent[:3]}" if absent else "",
                f"unexpected {extra[:3]}" if extra else "",
                f"shape mismatch {bad[:3]}" if bad else "",
            )
            if s
        )
        raise ExportError(
            f"{wpath} does not fit {meta.arch} with {meta.n_classes} classes ({detail}). Exported with "
            f"{meta.versions}, running {versions()}."
        )
    model.load_state_dict(sd)
    model[0].gate_size = meta.verdict.gate_size if meta.verdict else None
    return model.to(device).eval(), meta


class TorchBackend:
    """A torch model (`model.Sequential(body, head)`) in eval mode, channels_last (faster convolutions on the CPU
    too: BENCHMARKS.md)."""

    name = "torch"

    def __init__(self, model: Any, device: str | Any = "cpu"):
        import torch

        self._torch, self._forward = torch, forward
        self.device = torch.device(device)
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            logits, pooled = self._forward(self.model, torch.from_numpy(x).to(self.device, non_blocking=True))
        return logits.float().cpu().numpy(), pooled.float().cpu().numpy()


class OnnxBackend:
    """`model.onnx` in an ONNX Runtime session. `threads`: intra-op threads (default: ONNX Runtime's, one per
    physical core, as torch's default). On a GPU build of ONNX Runtime, `device="cuda"` uses CUDA."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, device: str = "cpu"):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own error types for unreadable graphs
            raise ExportError(f"{path} cannot be loaded by ONNX Runtime ({e}); re-run catdog-export --onnx") from None
        names = [o.name for o in self.session.get_outputs()]
        if names[: len(OUTPUTS)] != list(OUTPUTS):
            raise ExportError(f"{path} returns {names}, not {list(OUTPUTS)}: re-run catdog-export --onnx")
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, pooled = self.session.run(list(OUTPUTS), {self.input: np.ascontiguousarray(x, dtype=np.float32)})
        return logits, pooled
