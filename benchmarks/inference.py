"""Inference speed of the pickle-free predictor against a raw forward and fastai's `learn.predict`.

    python benchmarks/inference.py --model models [--images ../shared/data/pets-dev/images] [--n 50]

All timings in one process, same model, same thread count, medians over `--n` runs. Cold start is measured in
fresh subprocesses: process start to first prediction, for `load_predictor` (safe pair) and `load_learner` (pkl).
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from catdog_fastai import load_predictor


def median_ms(*fns, n: int, warmup: int = 3) -> list[float]:
    "Median milliseconds of each function, run interleaved so machine noise hits them alike."
    for _ in range(warmup):
        for fn in fns:
            fn()
    ts: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for t_list, fn in zip(ts, fns):
            t = time.perf_counter()
            fn()
            t_list.append(time.perf_counter() - t)
    return [statistics.median(t) * 1000 for t in ts]


def cold_start(code: str, repeats: int = 3) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models")
    ap.add_argument("--images", default="../shared/data/pets-dev/images")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False, help="mirror-image TTA (2 views)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    files = sorted(Path(args.images).glob("*.jpg"))[: max(args.bs, 8)]
    photo = files[0]
    pred = load_predictor(args.model, device="cpu", tta=args.tta)
    model = pred.model
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; model {pred.meta['arch']} at {pred.size}px"
    )

    x1 = (pred.preprocess(photo)[None].float() / 255 - pred._mean) / pred._std

    def raw_forward(x, m=model):
        with torch.inference_mode():
            return m(x)

    nchw = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # the model as timm builds it
    raw1, ours1, nchw1 = median_ms(
        lambda: raw_forward(x1), lambda: pred.predict(photo), lambda: raw_forward(x1, nchw), n=args.n
    )
    print(
        f"single image: raw forward {raw1:.1f} ms | Predictor.predict(path) {ours1:.1f} ms | "
        f"ratio {ours1 / raw1:.3f} (target <= 1.15) | raw forward of the NCHW model {nchw1:.1f} ms "
        f"(the predictor runs channels_last)"
    )

    xb = torch.cat([(pred.preprocess(f)[None].float() / 255 - pred._mean) / pred._std for f in files[: args.bs]])
    nb = max(5, args.n // 10)
    rawb, oursb = median_ms(
        lambda: raw_forward(xb), lambda: pred.predict_batch(files[: args.bs], bs=args.bs), n=nb, warmup=1
    )
    raw_tp, ours_tp = args.bs / rawb * 1000, args.bs / oursb * 1000
    print(
        f"batch of {args.bs}: raw {raw_tp:.1f} img/s | predict_batch {ours_tp:.1f} img/s | "
        f"ratio {ours_tp / raw_tp:.3f} (target >= 0.9)"
    )

    pkl = Path(args.model) / "model.pkl"
    if pkl.is_file():
        import fastai.callback.progress  # noqa: F401 - patches Learner.no_bar
        from fastai.learner import load_learner

        learn = load_learner(pkl)

        def quiet():
            with learn.no_bar():
                learn.predict(photo)

        fa_bar, fa_quiet, ours1b = median_ms(
            lambda: learn.predict(photo), quiet, lambda: pred.predict(photo), n=max(5, args.n // 2)
        )
        print(
            f"fastai learn.predict: {fa_bar:.1f} ms with its progress bar, {fa_quiet:.1f} ms in no_bar() | "
            f"Predictor.predict ({ours1b:.1f} ms, same loop) is {fa_bar / ours1b:.2f}x / "
            f"{fa_quiet / ours1b:.2f}x faster"
        )
        cold_pkl = cold_start(
            "import warnings; warnings.simplefilter('ignore'); from pathlib import Path\n"
            "import fastai.callback.progress\nfrom fastai.learner import load_learner\n"
            f"learn = load_learner({str(pkl)!r})\n"
            f"with learn.no_bar(): learn.predict(Path({str(photo)!r}))"
        )
    else:
        cold_pkl = float("nan")
    cold_safe = cold_start(
        f"from catdog_fastai import load_predictor\nload_predictor({args.model!r}).predict({str(photo)!r})"
    )
    print(f"cold start to first prediction: load_predictor {cold_safe:.2f} s | load_learner {cold_pkl:.2f} s")


if __name__ == "__main__":
    main()
