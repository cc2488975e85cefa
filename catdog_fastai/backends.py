"""The forward pass behind a `Predictor`: eager PyTorch or ONNX Runtime, each giving the same two arrays.

A backend takes a normalised float32 batch (N, 3, size, size) as NumPy and returns (logits, pooled features) as
NumPy: everything before (decoding, cropping, normalising) and after (softmax, calibration, the verdict) is the
`Predictor`'s own NumPy code, so the two backends differ only in who multiplies the matrices.

- `TorchBackend`: the model rebuilt from model.safetensors (timm + torch); needed for Grad-CAM and GPUs.
- `OnnxBackend`: `model.onnx` in ONNX Runtime; needs neither torch nor timm nor fastai, and on the CPU runs the
  same pass in about a third of the time (BENCHMARKS.md).

Neither library is imported until a backend is built, so `import catdog_fastai` works with either one alone.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Protocol

import numpy as np

from .errors import ExportError

BACKENDS = ("auto", "torch", "onnxruntime")
OUTPUTS = ("logits", "pooled")  # the ONNX graph's output names, in this order; its input is "image"


class Backend(Protocol):
    name: str

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def available(name: str) -> bool:
    "Whether a library can be imported here, without importing it."
    return importlib.util.find_spec(name) is not None


class TorchBackend:
    """A torch model (`model.Sequential(body, head)`) in eval mode, channels_last (faster convolutions on the CPU
    too: BENCHMARKS.md)."""

    name = "torch"

    def __init__(self, model: Any, device: str | Any = "cpu"):
        import torch

        from .ood import forward

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
