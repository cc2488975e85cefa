"""Which backbone by default? Speed of candidate timm models on this machine, same process, same settings.

    python benchmarks/backbones.py [--archs tf_efficientnet_lite0 tf_efficientnet_lite1 ...] [--size 224]

For each: parameters, median latency of one image through the whole classifier (inference), and training
throughput (forward + backward + Adam step) at batch 16, all at the same image size and in the memory format
catdog-train and the predictor use (channels_last). Weights do not change speed, so this needs no downloads;
accuracy comes from `benchmarks/accuracy.py` and catdog-train runs.
"""

from __future__ import annotations

import torch

from catdog_fastai import benchmark as bench
from catdog_fastai.model import build_model

ARCHS = [
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
    "resnet18",
    "resnet50",
    "convnext_nano",
    "mobilenetv3_large_100",
]


def measure(arch: str, size: int, n: int, bs: int = 16) -> dict:
    "Millions of parameters, one-image latency and training images/s at batch `bs` for `arch`."
    model = build_model(arch, 37).to(memory_format=torch.channels_last)
    x1 = torch.randn(1, 3, size, size).to(memory_format=torch.channels_last)
    model.eval()
    with torch.inference_mode():
        latency = bench.time_fn(lambda: model(x1), n, warmup=2)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    xb, yb = torch.randn(bs, 3, size, size).to(memory_format=torch.channels_last), torch.randint(0, 37, (bs,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    train = bench.time_fn(step, max(3, n // 4))
    return dict(
        arch=arch,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        latency=latency.as_dict(),
        train_step=train.as_dict(),
        train_img_s=train.per_second(bs),
    )


def main() -> None:
    ap = bench.parser(__doc__, "backbones")
    ap.add_argument("--archs", nargs="+", default=ARCHS)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    m = bench.machine()
    print(f"{bench.describe(m)}\n{args.size} px, 37 classes, channels_last, fp32")
    print(f"{'arch':24} {'params':>8} {'1-image ms':>11} {'train img/s':>12}")
    rows = []
    for arch in args.archs:
        r = measure(arch, args.size, args.n)
        rows.append(r)
        print(
            f"{arch:24} {r['params_m']:7.1f}M {r['latency']['median_s'] * 1000:11.1f} {r['train_img_s']:12.1f}",
            flush=True,
        )
        out = bench.save("backbones", rows, args, m)  # after every arch: a stopped run keeps what it measured
    print(f"results: {out}")


if __name__ == "__main__":
    main()
