"""The harness every script in `benchmarks/` uses: timing, the machine it ran on, and JSON results.

It lives beside the scripts, not in the package: users who pip install catdog_fastai get no benchmark code. Scripts
run as `python benchmarks/x.py` find it on their path, and pytest adds `benchmarks/` (pyproject's `pythonpath`).

Modelled on timm's `benchmark.py`: warm-up calls first, the GPU synchronised before each clock read, medians with
their spread, and one JSON file per benchmark that records the command, its arguments, the machine (CPU or GPU,
cores, memory, library versions, commit) and the figures, so a number in BENCHMARKS.md can be traced and re-run.

    timings = time_fns({"raw": lambda: model(x), "ours": lambda: pred.predict(photo)}, n=50)
    save("inference", {"raw_ms": timings["raw"].median_ms, ...}, args)   # benchmarks/results/inference-cpu.json

Functions timed against each other are called in turn (`time_fns`), so machine noise hits every side alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from catdog_fastai.files import write_json
from catdog_fastai.meta import versions

RESULTS = Path(__file__).resolve().parent / "results"  # benchmarks/results, wherever the script is run from
LIBRARIES = ("torchvision", "gradio", "numpy")  # besides the ones an export records


def timestamp(sync: bool = False) -> float:
    "A clock read (seconds); with `sync`, after the GPU has finished its queued work, so GPU time is counted."
    if sync and torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


@dataclass(frozen=True)
class Timing:
    "Seconds of repeated runs of one thing, summarised by the median (robust to the odd slow run) and its spread."

    samples: tuple[float, ...]

    def __post_init__(self):
        if not self.samples:
            raise ValueError("a Timing needs at least one sample")

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def median_ms(self) -> float:
        return self.median * 1000

    @property
    def p95(self) -> float:
        "95th percentile (nearest rank): the slow end a user also meets."
        s = sorted(self.samples)
        return s[min(len(s) - 1, max(0, -(-95 * len(s) // 100) - 1))]

    def per_second(self, items: int) -> float:
        "Throughput when each run handles `items` (images per second from seconds per batch)."
        return items / self.median

    def as_dict(self) -> dict[str, Any]:
        s = self.samples
        return dict(
            median_s=self.median,
            p95_s=self.p95,
            min_s=min(s),
            mean_s=statistics.mean(s),
            stdev_s=statistics.stdev(s) if len(s) > 1 else 0.0,
            n=len(s),
            samples_s=list(s),
        )


def time_fns(fns: dict[str, Callable[[], Any]], n: int, warmup: int = 1, sync: bool = True) -> dict[str, Timing]:
    """Time each function `n` times, calling them in turn (a, b, a, b, ...) after `warmup` rounds, so noise and
    thermal drift fall on all of them alike. With `sync`, queued GPU work is inside each timing."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(n):
        for name, fn in fns.items():
            t = timestamp(sync)
            fn()
            samples[name].append(timestamp(sync) - t)
    return {k: Timing(tuple(v)) for k, v in samples.items()}


def time_fn(fn: Callable[[], Any], n: int, warmup: int = 1, sync: bool = True) -> Timing:
    "Seconds of `n` calls of `fn` after `warmup` calls."
    return time_fns({"fn": fn}, n, warmup, sync)["fn"]


def time_iter(items: Iterable[Any], n: int, skip: int = 1) -> Timing:
    """Seconds per `next()` of an iterator (a DataLoader's batches), over at most `n` items after the first `skip`
    (worker start-up, first-touch caches)."""
    it = iter(items)
    for _ in range(skip):
        next(it)
    samples = []
    for _ in range(n):
        t = timestamp()
        try:
            next(it)
        except StopIteration:
            break
        samples.append(timestamp() - t)
    return Timing(tuple(samples))


def time_command(code: str, n: int = 3) -> Timing:
    "Wall seconds of `python -c code` in a fresh process, start to exit: what a user waits for a cold start."
    return time_fn(lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True), n, warmup=0)


def cold_starts(codes: dict[str, str], repeats: int = 3) -> dict[str, dict[str, Any]]:
    "`time_command` for each named snippet (process start to its first prediction), printed on one line."
    res = {k: time_command(code, repeats).as_dict() for k, code in codes.items()}
    print("cold start to first prediction: " + " | ".join(f"{k} {v['median_s']:.2f} s" for k, v in res.items()))
    return res


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def _commit() -> str | None:
    "The repository's commit, '+' if the work tree has changes; None outside a git checkout."
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=root, capture_output=True, text=True)
    except OSError:
        return None
    return sha.stdout.strip() + ("+" if dirty.stdout.strip() else "") if sha.returncode == 0 else None


def machine() -> dict[str, Any]:
    "What a figure depends on besides the code: processor, cores, memory, GPU, library versions, commit, date."
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return dict(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        cpu=_cpu_model(),
        cpu_cores=cores,
        memory_gb=round(m, 1) if (m := _memory_gb()) else None,
        torch_threads=torch.get_num_threads(),
        gpu=gpu,
        cuda=torch.version.cuda if gpu else None,
        platform=platform.platform(),
        versions=versions(*LIBRARIES),
        commit=_commit(),
    )


def describe(m: dict[str, Any]) -> str:
    "One line for the top of a benchmark's output."
    v = m["versions"]
    where = f"{m['gpu']}, " if m.get("gpu") else ""
    mem = f", {m['memory_gb']:.0f} GB" if m.get("memory_gb") else ""
    libs = ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "timm", "fastai") if k in v)
    return f"{where}{m['cpu']}, {m['cpu_cores']} cores{mem}, {m['torch_threads']} torch threads; {libs}"


def device_tag(m: dict[str, Any]) -> str:
    "Short name of where `machine()` record `m` was measured, for file names: 'cpu', or the GPU model ('h100', ...)."
    gpu = m["gpu"]
    if not gpu:
        return "cpu"
    hit = re.search(r"\b([A-Z]{0,2}\d{2,4}[A-Z]?)\b", gpu.upper())
    return hit.group(1).lower() if hit else "gpu"


def parser(doc: str | None, name: str) -> argparse.ArgumentParser:
    "An argument parser showing the script's docstring, with the `--json` option every benchmark shares."
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--json",
        type=Path,
        help=f"where to write the results (default: benchmarks/results/{name}-<cpu|gpu model>.json)",
    )
    return ap


def results_path(name: str, m: dict[str, Any], json: str | os.PathLike | None = None) -> Path:
    "`json` if given, else `benchmarks/results/{name}-{device}.json`: what a result is, and where it was measured."
    return Path(json) if json else RESULTS / f"{name}-{device_tag(m)}.json"


def save(name: str, results: Any, args: argparse.Namespace | dict[str, Any], m: dict[str, Any] | None = None) -> Path:
    """Write `results` with the command, its arguments and the machine to `args.json` or
    `benchmarks/results/{name}-{device}.json` (atomically: an interrupted run leaves the last complete file)."""
    m = m or machine()
    opts = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    out = results_path(name, m, opts.get("json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(
        benchmark=name,
        command=shlex.join(["python", *sys.argv]),
        args=opts,
        machine=m,
        results=results,
    )
    write_json(out, doc)
    return out
