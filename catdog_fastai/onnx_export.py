"""`model.onnx`: the exported network as an ONNX graph, for `load_predictor(backend="onnxruntime")`.

The graph takes the normalised image batch ("image", float32, N x 3 x size x size, N dynamic) and returns the
logits and the pooled features ("logits", "pooled"): the verdict's gate reads the pooled features, so a
prediction from ONNX Runtime is the same as one from torch, verdict included. It is traced with torch's
TorchScript-based exporter (seconds on a CPU, and no extra packages), checked against torch on a random batch when
onnxruntime is installed, and recorded in model.json's `onnx` entry (opset, exporter versions, checksum). An
architecture the exporter cannot trace leaves the rest of the export as it is, with a one-line warning.

`write_onnx` is what `export.py` calls when catdog-train writes an export; `add_onnx` adds the graph to an
existing export, for `catdog-export DIR --onnx` (the command is `export_cli.py`). torch is imported only to trace.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .backends import OUTPUTS, OnnxBackend, available, forward, load_safe
from .card import CARD, write_card
from .errors import ExportError
from .files import atomic_write, sha256
from .meta import ONNX, ModelMeta, OnnxGraph, versions, write_meta

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger("catdog_fastai")

OPSET = 18
PARITY_ATOL = 1e-3  # a traced graph that differs from torch by more than this is not kept (seen: ~1e-6)


def _logits_and_pooled(model: nn.Sequential) -> nn.Module:
    "`backends.forward` as a module (the graph's two outputs); defined on first use, so torch is imported to trace."
    import torch

    class LogitsAndPooled(torch.nn.Module):
        def __init__(self, model: nn.Sequential):
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return forward(self.model, x)

    return LogitsAndPooled(model)


def write_onnx(model: nn.Module, meta: ModelMeta, folder: str | Path) -> OnnxGraph | None:
    """Trace `model` (left untouched: a CPU float32 copy in eval mode is traced) into `folder/model.onnx`,
    atomically, and return model.json's `onnx` entry; on failure, warn in one line naming the architecture,
    remove any older model.onnx there, and return None."""
    import torch

    path = Path(folder) / ONNX
    net = _logits_and_pooled(copy.deepcopy(model).float().cpu()).eval()
    x = torch.randn(2, 3, meta.size, meta.size, generator=torch.Generator().manual_seed(0))
    try:
        atomic_write(path, lambda p: _trace(net, x, p))
        diff = _check(net, x, path)
    except Exception as e:  # noqa: BLE001 - any exporter failure means "no graph", never a lost export
        path.unlink(missing_ok=True)
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        log.warning("model.onnx not written: torch.onnx cannot export %s (%s)", meta.arch, reason)
        return None
    return OnnxGraph(
        file=ONNX,
        opset=OPSET,
        exporter="torch.onnx (TorchScript)",
        input="image",
        outputs=list(OUTPUTS),
        dynamic_batch=True,
        max_abs_diff=diff,
        sha256=sha256(path),
        versions=versions("onnx", "onnxruntime"),
    )


def _trace(net: nn.Module, x: torch.Tensor, path: Path) -> None:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings say nothing to a user
        torch.onnx.export(
            net,
            (x,),
            str(path),
            input_names=["image"],
            output_names=list(OUTPUTS),
            dynamic_axes={"image": {0: "batch"}, **{o: {0: "batch"} for o in OUTPUTS}},
            opset_version=OPSET,
            dynamo=False,
        )


def _check(net: nn.Module, x: torch.Tensor, path: Path) -> float | None:
    "The largest difference between torch and ONNX Runtime on `x` (None without onnxruntime); raises past tolerance."
    import torch

    if not available("onnxruntime"):
        return None
    with torch.no_grad():
        want = [t.numpy() for t in net(x)]
    got = OnnxBackend(path, threads=1)(x.numpy())
    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    if not diff <= PARITY_ATOL:
        raise ExportError(f"ONNX Runtime differs from torch by {diff:.2g} on a test batch")
    return diff


def add_onnx(folder: str | Path) -> ModelMeta:
    "Add (or replace) `model.onnx` in an existing export and record it in its model.json."
    folder = Path(folder)
    model, meta = load_safe(folder)
    entry = write_onnx(model, meta, folder)
    if entry is None:
        raise ExportError(f"torch.onnx cannot export {meta.arch}; the export in {folder} is unchanged")
    meta = dataclasses.replace(meta, onnx=entry)
    write_meta(folder, meta)
    if (folder / CARD).is_file():
        write_card(folder)  # the card lists the export's files: now with model.onnx
    return meta
