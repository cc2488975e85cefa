"""Running `catdog-train` under `torchrun` or `accelerate launch` (DDP through fastai's Accelerate integration).

    torchrun --nproc_per_node 4 -m catdog_fastai.train --bs 128 ...
    accelerate launch --num_processes 4 -m catdog_fastai.train --bs 128 ...

The launcher starts the processes; fastai's `learn.distrib_ctx()` wraps the model in DistributedDataParallel and
shards each epoch across ranks. `--bs` stays the *global* batch (each rank takes bs / world size), so a recipe's
learning rate means the same on one process or many. Only rank 0 logs, checkpoints and exports.

Two upstream assumptions are relaxed so the same code also runs on CPUs over gloo (how CI tests it): fastai's
`DistributedDL` broadcasts its sample order as a CUDA tensor (NCCL-only), and SyncBatchNorm needs CUDA.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from fastai.distributed import DistributedDL
from fastai.learner import Learner
from fastai.torch_core import num_distrib, rank_distrib

from .errors import CatdogError


def _broadcast(self: DistributedDL, t: list[int], rank: int) -> list[int]:
    "fastai's `DistributedDL._broadcast`, on the device the process group's backend needs (CPU for gloo)."
    device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(t, dtype=torch.long, device=device)
    torch.distributed.broadcast(tensor, rank)
    return tensor.cpu().tolist()


DistributedDL._broadcast = _broadcast


class LaunchError(CatdogError):
    """Settings that cannot work under the launcher; the message names the flag."""


def world_size() -> int:
    "Number of processes started by the launcher (1 when run directly)."
    return max(1, num_distrib())


def rank() -> int:
    "This process's rank (0 when run directly)."
    return rank_distrib()


def is_main() -> bool:
    "Whether this process logs, checkpoints and exports."
    return rank() == 0


def per_rank_bs(bs: int) -> int:
    "The share of the global batch `bs` that each rank loads."
    n = world_size()
    if bs % n:
        raise LaunchError(f"--bs {bs} must be divisible by the number of processes ({n})")
    return bs // n


@contextlib.contextmanager
def distrib(learn: Learner) -> Iterator[Learner]:
    "`learn.distrib_ctx()` under a launcher (SyncBatchNorm on GPU only), else nothing."
    if world_size() == 1:
        yield learn
        return
    if not torch.cuda.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    with learn.distrib_ctx(sync_bn=torch.cuda.is_available()):
        yield learn


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    "The plain model inside a DistributedDataParallel wrapper (state_dict keys without 'module.')."
    return getattr(model, "module", model)


def base_dl(dl):  # noqa: ANN001, ANN201 - any fastai DataLoader
    "The loader inside fastai's `DistributedDL` (which has no RNG of its own), else `dl`."
    return dl.dl if isinstance(dl, DistributedDL) else dl


def finish() -> bool:
    """Wait for every rank, then leave the process group; True on the rank that goes on to report and export.

    Afterwards this process counts as a single process (WORLD_SIZE=1), so fastai's `get_preds` in the report
    no longer tries to gather predictions from ranks that have already exited.
    """
    if world_size() > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    main = is_main()
    os.environ["WORLD_SIZE"] = "1"
    return main
