"""channels_last against the default (NCHW) memory format: one training step and one forward pass, per backbone.

    python benchmarks/memory_format.py [--archs tf_efficientnet_lite0 resnet18 ...] [--bs 32] [--repeats 5]

Why: catdog-train and the predictor put the model in channels_last on every device, not only on a GPU (where
tensor cores want it); this measures whether that pays on the machine at hand. Random weights and inputs (the
speed of a convolution does not depend on its values), fp32, 224 px, the formats interleaved repeat by repeat so
machine noise hits both alike; medians. Training step = forward, cross-entropy, backward, AdamW step.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import timm
import torch

FORMATS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


def seconds(fn, n: int) -> float:
    "Mean seconds of `n` calls after one warm-up call."
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def measure(arch: str, bs: int, repeats: int, n: int) -> dict[str, dict[str, float]]:
    "Median seconds per training step, batched forward and single-image forward, for each memory format."
    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=37)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y, x1 = torch.randn(bs, 3, 224, 224), torch.randint(0, 37, (bs,)), torch.randn(1, 3, 224, 224)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.inference_mode()
    def forward(inp):
        return model(inp)

    ts: dict[str, dict[str, list[float]]] = {f: {"train": [], "eval": [], "eval1": []} for f in FORMATS}
    for _ in range(repeats):
        for name, fmt in FORMATS.items():
            model.to(memory_format=fmt).train()
            ts[name]["train"].append(seconds(step, n))
            model.eval()
            ts[name]["eval"].append(seconds(lambda: forward(x), n))
            ts[name]["eval1"].append(seconds(lambda: forward(x1), 5 * n))
    return {f: {k: statistics.median(v) for k, v in d.items()} for f, d in ts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--archs",
        nargs="+",
        default=["tf_efficientnet_lite0", "resnet18", "resnet50", "convnext_nano", "mobilenetv3_large_100"],
    )
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=2, help="calls per timing")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    dev = f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    print(f"{dev}; batch {args.bs}, 224 px, fp32; medians of {args.repeats} interleaved repeats")
    print(f"{'arch':24} {'train step NCHW -> CL':>26} {'forward bs ' + str(args.bs):>22} {'forward bs 1':>22}")
    for arch in args.archs:
        m = measure(arch, args.bs, args.repeats, args.n)
        a, b = m["NCHW"], m["channels_last"]
        cells = [
            f"{a[k] * s:6.1f} -> {b[k] * s:6.1f} {a[k] / b[k]:4.2f}x"
            for k, s in (("train", 1000), ("eval", 1000), ("eval1", 1000))
        ]
        print(f"{arch:24} {cells[0]:>26} {cells[1]:>22} {cells[2]:>22}   (ms)", flush=True)


if __name__ == "__main__":
    main()
