"""Which backbone by default? Speed of candidate timm models on this machine, same process, same settings.

    python benchmarks/backbones.py [--archs tf_efficientnet_lite0 tf_efficientnet_lite1 ...] [--size 224]

For each: parameters, median latency of one image through the whole classifier (inference), and training
throughput (forward + backward + Adam step) at batch 16, all at the same image size. Weights do not change
speed, so this needs no downloads; accuracy comes from `benchmarks/accuracy.py` and catdog-train runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from catdog_fastai.model import build_model


def median_s(fn, n: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def measure(arch: str, size: int, n: int) -> tuple[float, float, float]:
    "(millions of parameters, one-image latency in ms, training images/s at batch 16) for `arch`."
    model = build_model(arch, 37)
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    x1 = torch.randn(1, 3, size, size)
    model.eval()
    with torch.inference_mode():
        lat = median_s(lambda: model(x1), n) * 1000
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    xb, yb = torch.randn(16, 3, size, size), torch.randint(0, 37, (16,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return n_params, lat, 16 / median_s(step, max(3, n // 4), warmup=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--archs",
        nargs="+",
        default=[
            "tf_efficientnet_lite0",
            "tf_efficientnet_lite1",
            "tf_efficientnet_lite2",
            "resnet18",
            "resnet50",
            "convnext_nano",
            "mobilenetv3_large_100",
        ],
    )
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    print(f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, {args.size}px, 37 classes")
    print(f"{'arch':24} {'params':>8} {'1-image ms':>11} {'train img/s':>12}")
    for arch in args.archs:
        n_params, lat, tput = measure(arch, args.size, args.n)
        print(f"{arch:24} {n_params:7.1f}M {lat:11.1f} {tput:12.1f}", flush=True)


if __name__ == "__main__":
    main()
