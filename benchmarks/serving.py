"""Serving speed, torch against ONNX Runtime, on the same export, photos, machine and thread count, in one run.

    python benchmarks/serving.py --model models [--images ../shared/data/pets-dev/images] [--threads 2]

Each backend is timed in its own fresh process (a thread pool that has just run keeps spinning for a moment, so
two libraries timed in turn in one process slow each other down), the two alternating `--repeats` times; the
figures are the medians over those runs of each run's median:
- the forward pass alone at batch sizes 1, 8 and 32 (`Predictor.backend`);
- `Predictor.predict(path)` per photo, decoding included (one view);
- `Predictor.predict_batch` throughput at bs 32, decoding included;
- `catdog-predict` on a folder of `--folder-n` photos (process start to exit: start-up and loading included);
- cold start to the first prediction.
torch runs channels_last with `torch.set_num_threads(threads)`; ONNX Runtime with `threads` intra-op threads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from statistics import median

import bench
import numpy as np

BACKENDS = ("torch", "onnxruntime")


def measure(backend: str, model: str, images: str, threads: int, n: int) -> dict:
    "One backend's in-process figures (seconds), in this process."
    import torch

    from catdog_fastai import load_predictor

    torch.set_num_threads(threads)
    files = sorted(Path(images).glob("*.jpg"))
    pred = load_predictor(model, device="cpu", backend=backend, threads=threads)
    out: dict = {}
    for bs in (1, 8, 32):
        x = pred.normalize(np.stack([pred.preprocess(f) for f in files[:bs]]))
        out[f"forward_bs{bs}_s"] = bench.time_fn(lambda x=x: pred.backend(x), n=max(5, n // bs), warmup=2).median
    out["predict_s"] = bench.time_fn(lambda: pred.predict(files[0]), n=n, warmup=3).median
    out["decode_crop_s"] = bench.time_fn(lambda: pred.preprocess(files[0]), n=n).median
    out["predict_batch_img_s"] = 32 / bench.time_fn(lambda: pred.predict_batch(files[:32], bs=32), n=5).median
    return out


def folder_run(backend: str, folder: str, model: str) -> float:
    "Wall seconds of `catdog-predict FOLDER` with one backend, process start to exit."
    cli = Path(sys.executable).parent / "catdog-predict"
    t0 = time.perf_counter()
    subprocess.run([str(cli), folder, "--model", model, "--backend", backend], check=True, capture_output=True)
    return time.perf_counter() - t0


def child(args: list[str]) -> dict:
    r = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = bench.parser(__doc__, "serving")
    ap.add_argument("--model", default="models")
    ap.add_argument("--images", default="../shared/data/pets-dev/images")
    ap.add_argument("--threads", type=int, default=None, help="threads per backend (default: torch's default)")
    ap.add_argument("--n", type=int, default=40, help="timed calls per single-photo figure")
    ap.add_argument("--folder-n", type=int, default=500, help="photos for the catdog-predict figure")
    ap.add_argument("--repeats", type=int, default=2, help="fresh processes per backend, alternating")
    ap.add_argument("--cold-repeats", type=int, default=3)
    ap.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)  # one backend's figures, as JSON
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.child:
        print(json.dumps(measure(args.child, args.model, args.images, args.threads, args.n)))
        return
    import torch

    threads = args.threads or torch.get_num_threads()
    m = bench.machine()
    print(f"{bench.describe(m)}\nmodel {args.model}, one view, {threads} threads per backend, {args.repeats} runs each")
    base = ["--model", args.model, "--images", args.images, "--threads", str(threads), "--n", str(args.n)]
    runs: dict[str, list[dict]] = {b: [] for b in BACKENDS}
    for _ in range(args.repeats):
        for b in BACKENDS:
            runs[b].append(child([*base, "--child", b]))
    fig = {b: {k: median(r[k] for r in runs[b]) for k in runs[b][0]} for b in BACKENDS}
    res: dict = dict(threads=threads, runs=runs, medians=fig)
    t, o = fig["torch"], fig["onnxruntime"]
    for bs in (1, 8, 32):
        k = f"forward_bs{bs}_s"
        tk, ok = t[k] * 1e3, o[k] * 1e3
        print(f"forward, batch {bs:2d}: torch {tk:7.1f} ms | onnxruntime {ok:7.1f} ms | {ok / tk:.2f}x the time")
    res["predict_ratio"] = o["predict_s"] / t["predict_s"]
    res["predict_batch_speedup"] = o["predict_batch_img_s"] / t["predict_batch_img_s"]
    print(
        f"predict(path), decoding included: torch {t['predict_s'] * 1e3:.1f} ms | onnxruntime "
        f"{o['predict_s'] * 1e3:.1f} ms | {res['predict_ratio']:.2f}x the time (decode + crop: "
        f"{t['decode_crop_s'] * 1e3:.1f} ms)"
    )
    print(
        f"predict_batch, bs 32: torch {t['predict_batch_img_s']:.1f} img/s | onnxruntime "
        f"{o['predict_batch_img_s']:.1f} img/s | {res['predict_batch_speedup']:.2f}x the throughput"
    )
    files = sorted(Path(args.images).glob("*.jpg"))[: args.folder_n]
    with tempfile.TemporaryDirectory() as d:
        for f in files:
            (Path(d) / f.name).symlink_to(f.resolve())
        walls = {b: [] for b in BACKENDS}
        for _ in range(args.repeats):
            for b in BACKENDS:
                walls[b].append(folder_run(b, d, args.model))
    res["catdog_predict_folder"] = dict(
        photos=len(files), wall_s=walls, median_s={b: median(w) for b, w in walls.items()}
    )
    ms = res["catdog_predict_folder"]["median_s"]
    print(
        f"catdog-predict on {len(files)} photos, process start to exit: torch {ms['torch']:.1f} s | onnxruntime "
        f"{ms['onnxruntime']:.1f} s | {ms['onnxruntime'] / ms['torch']:.2f}x the time"
    )
    first = f"predict({str(files[0])!r})"
    cold = {
        b: f"from catdog_fastai import load_predictor\nload_predictor({args.model!r}, backend={b!r}).{first}"
        for b in BACKENDS
    }
    res["cold_start"] = bench.cold_starts(cold, args.cold_repeats)
    print(f"results: {bench.save('serving', res, args, m)}")


if __name__ == "__main__":
    main()
