"""`model.onnx`: the exported network as an ONNX graph, for `load_predictor(backend="onnxruntime")`.

    catdog-export models --onnx        (adds model.onnx to an export made without it, or by an older version)

The graph takes the normalised image batch ("image", float32, N x 3 x size x size, N dynamic) and returns the
logits and the pooled features ("logits", "pooled"): the verdict's gate reads the pooled features, so a
prediction from ONNX Runtime is the same as one from torch, verdict included. It is traced with torch's
TorchScript-based exporter (seconds on a CPU, and no extra packages), checked against torch on a random batch when
onnxruntime is installed, and recorded in model.json's `onnx` entry (opset, exporter versions, checksum). An
architecture the exporter cannot trace leaves the rest of the export as it is, with a one-line warning.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .backends import OUTPUTS, available
from .errors import CatdogError, ExportError
from .files import atomic_write, sha256
from .meta import ONNX, ModelMeta, versions, write_meta

log = logging.getLogger("catdog_fastai")

OPSET = 18
PARITY_ATOL = 1e-3  # a traced graph that differs from torch by more than this is not kept (seen: ~1e-6)


class _LogitsAndPooled(nn.Module):
    "`ood.forward` as a module: the graph's two outputs."

    def __init__(self, model: nn.Sequential):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from .ood import forward

        return forward(self.model, x)


def write_onnx(model: nn.Module, meta: ModelMeta, folder: str | Path) -> dict[str, Any] | None:
    """Trace `model` (left untouched: a CPU float32 copy in eval mode is traced) into `folder/model.onnx`,
    atomically, and return model.json's `onnx` entry; on failure, warn in one line naming the architecture,
    remove any older model.onnx there, and return None."""
    path = Path(folder) / ONNX
    net = _LogitsAndPooled(copy.deepcopy(model).float().cpu()).eval()
    x = torch.randn(2, 3, meta.size, meta.size, generator=torch.Generator().manual_seed(0))
    try:
        atomic_write(path, lambda p: _trace(net, x, p))
        diff = _check(net, x, path)
    except Exception as e:  # noqa: BLE001 - any exporter failure means "no graph", never a lost export
        path.unlink(missing_ok=True)
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        log.warning("model.onnx not written: torch.onnx cannot export %s (%s)", meta.arch, reason)
        return None
    return dict(
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
    if not available("onnxruntime"):
        return None
    from .backends import OnnxBackend

    with torch.no_grad():
        want = [t.numpy() for t in net(x)]
    got = OnnxBackend(path, threads=1)(x.numpy())
    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    if not diff <= PARITY_ATOL:
        raise ExportError(f"ONNX Runtime differs from torch by {diff:.2g} on a test batch")
    return diff


def add_onnx(folder: str | Path) -> ModelMeta:
    "Add (or replace) `model.onnx` in an existing export and record it in its model.json."
    from .card import CARD, write_card
    from .export import load_safe

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


def main(argv: list[str] | None = None) -> int:
    "`catdog-export DIR --onnx`."
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    ap = argparse.ArgumentParser(description="Add formats to an existing export folder (made by catdog-train).")
    ap.add_argument("model", help="export folder (model.safetensors + model.json)")
    ap.add_argument("--onnx", action="store_true", help="write model.onnx for ONNX Runtime and record it in model.json")
    args = ap.parse_args(argv)
    if not args.onnx:
        ap.error("say what to add: --onnx")
    try:
        meta = add_onnx(args.model)
    except CatdogError as e:
        print(f"catdog-export: {e}", file=sys.stderr)
        return 2
    entry = meta.onnx or {}
    print(f"{Path(args.model) / ONNX}: opset {entry['opset']}, largest gap to torch {entry['max_abs_diff']}")
    print(f"serve it without torch: load_predictor({args.model!r}, backend='onnxruntime')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
