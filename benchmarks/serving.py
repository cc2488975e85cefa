"""Serving speed, torch against ONNX Runtime, on the same export, photos, machine and thread count, in one run.

    python benchmarks/serving.py --model models [--images ../shared/data/pets-dev/images] [--threads 2]

- forward pass alone at batch sizes 1, 8 and 32 (`Predictor.backend`, the two backends called in turn);
- `Predictor.predict(path)` per photo, decoding included (one view);
- `Predictor.predict_batch` throughput at bs 32, decoding included;
- `catdog-predict` on a folder of `--folder-n` photos, each backend in a fresh process (start-up and loading
  included: what a user waits for), the two run in turn `--repeats` times;
- cold start to the first prediction, fresh processes.
torch runs channels_last with `torch.set_num_threads(threads)`; ONNX Runtime with `threads` intra-op threads.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import bench
import numpy as np
import torch

from catdog_fastai import load_predictor

BACKENDS = ("torch", "onnxruntime")


def main() -> None:
    ap = bench.parser(__doc__, "serving")
    ap.add_argument("--model", default="models")
    ap.add_argument("--images", default="../shared/data/pets-dev/images")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--n", type=int, default=40, help="timed calls per single-photo figure")
    ap.add_argument("--folder-n", type=int, default=500, help="photos for the catdog-predict figure")
    ap.add_argument("--repeats", type=int, default=2, help="catdog-predict runs per backend")
    ap.add_argument("--cold-repeats", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    m = bench.machine()
    files = sorted(Path(args.images).glob("*.jpg"))
    preds = {b: load_predictor(args.model, device="cpu", backend=b, threads=args.threads) for b in BACKENDS}
    meta = preds["torch"].meta
    print(f"{bench.describe(m)}\nmodel {meta.arch} at {meta.size} px, one view, {args.threads} threads per backend")
    res: dict = dict(arch=meta.arch, size=meta.size, threads=args.threads)

    forward = {}
    for bs in (1, 8, 32):
        x = preds["torch"].normalize(np.stack([preds["torch"].preprocess(f) for f in files[:bs]]))
        t = bench.time_fns(
            {b: (lambda b=b, x=x: preds[b].backend(x)) for b in BACKENDS}, n=max(5, args.n // bs), warmup=2
        )
        forward[bs] = {b: t[b].as_dict() | dict(img_s=t[b].per_second(bs)) for b in BACKENDS}
        forward[bs]["ratio"] = t["onnxruntime"].median / t["torch"].median
        print(
            f"forward, batch {bs:2d}: torch {t['torch'].median_ms:7.1f} ms | onnxruntime "
            f"{t['onnxruntime'].median_ms:7.1f} ms | {forward[bs]['ratio']:.2f}x the time"
        )
    res["forward"] = forward

    photo = files[0]
    t = bench.time_fns({b: (lambda b=b: preds[b].predict(photo)) for b in BACKENDS}, n=args.n, warmup=3)
    res["predict"] = {b: t[b].as_dict() for b in BACKENDS} | dict(ratio=t["onnxruntime"].median / t["torch"].median)
    print(
        f"predict(path), decoding included: torch {t['torch'].median_ms:.1f} ms | onnxruntime "
        f"{t['onnxruntime'].median_ms:.1f} ms | {res['predict']['ratio']:.2f}x the time"
    )
    decode = bench.time_fn(lambda: preds["torch"].preprocess(photo), n=args.n)
    res["decode_crop_ms"] = decode.median_ms
    print(f"  of which decode + crop + resize: {decode.median_ms:.1f} ms")

    batch = files[:32]
    t = bench.time_fns({b: (lambda b=b: preds[b].predict_batch(batch, bs=32)) for b in BACKENDS}, n=5)
    img_s = {b: t[b].per_second(32) for b in BACKENDS}
    res["predict_batch"] = {b: t[b].as_dict() | dict(img_s=img_s[b]) for b in BACKENDS} | dict(
        bs=32, speedup=img_s["onnxruntime"] / img_s["torch"]
    )
    print(
        f"predict_batch, bs 32: torch {img_s['torch']:.1f} img/s | onnxruntime {img_s['onnxruntime']:.1f} img/s | "
        f"{res['predict_batch']['speedup']:.2f}x the throughput"
    )

    with tempfile.TemporaryDirectory() as d:
        for f in files[: args.folder_n]:
            (Path(d) / f.name).symlink_to(f.resolve())
        n = len(list(Path(d).iterdir()))
        cli = Path(sys.executable).parent / "catdog-predict"
        walls: dict[str, list[float]] = {b: [] for b in BACKENDS}
        for _ in range(args.repeats):
            for b in BACKENDS:
                t0 = time.perf_counter()
                subprocess.run([str(cli), d, "--model", args.model, "--backend", b], check=True, capture_output=True)
                walls[b].append(time.perf_counter() - t0)
    res["catdog_predict_folder"] = {
        b: dict(photos=n, wall_s=walls[b], median_s=float(np.median(walls[b]))) for b in BACKENDS
    }
    ratio = res["catdog_predict_folder"]["onnxruntime"]["median_s"] / res["catdog_predict_folder"]["torch"]["median_s"]
    res["catdog_predict_folder"]["ratio"] = ratio
    print(
        f"catdog-predict on {n} photos, process start to exit: torch "
        f"{res['catdog_predict_folder']['torch']['median_s']:.1f} s | onnxruntime "
        f"{res['catdog_predict_folder']['onnxruntime']['median_s']:.1f} s | {ratio:.2f}x the time"
    )

    cold = {
        b: "from catdog_fastai import load_predictor\n"
        f"load_predictor({args.model!r}, backend={b!r}).predict({str(photo)!r})"
        for b in BACKENDS
    }
    res["cold_start"] = bench.cold_starts(cold, args.cold_repeats)
    print(f"results: {bench.save('serving', res, args, m)}")


if __name__ == "__main__":
    main()
