"""Which backbone by default? Speed of candidate timm models on this machine, same process, same settings.

    python benchmarks/backbones.py [--archs tf_efficientnet_lite0 tf_efficientnet_lite1 ...] [--size 224]

For each: parameters, median latency of one image through the whole classifier (inference), and training
throughput (forward + backward + AdamW step) at batch 16, all at the same image size and in the memory format
catdog-train and the predictor use (channels_last); the models are timed in turn, call by call. Weights do not
change speed, so this needs no downloads; accuracy comes from `benchmarks/accuracy.py` and catdog-train runs.
"""

from __future__ import annotations

import bench
import torch

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


def measure(archs: list[str], size: int, n: int, bs: int = 16) -> list[dict]:
    """Millions of parameters, one-image latency and training images/s at batch `bs`, for every arch. The archs
    are timed call by call in turn (all models built first), so a slow spell of the machine hits them alike."""
    models = {a: build_model(a, 37).to(memory_format=torch.channels_last) for a in archs}
    x1 = torch.randn(1, 3, size, size).to(memory_format=torch.channels_last)
    xb, yb = torch.randn(bs, 3, size, size).to(memory_format=torch.channels_last), torch.randint(0, 37, (bs,))

    @torch.inference_mode()
    def forward(model: torch.nn.Module) -> torch.Tensor:
        model.eval()
        return model(x1)

    def step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        model.train()
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    latency = bench.time_fns({a: lambda m=m: forward(m) for a, m in models.items()}, n, warmup=2)
    opts = {a: torch.optim.AdamW(m.parameters(), lr=1e-4) for a, m in models.items()}
    train = bench.time_fns({a: lambda m=m, o=opts[a]: step(m, o) for a, m in models.items()}, max(3, n // 4))
    return [
        dict(
            arch=a,
            params_m=sum(p.numel() for p in m.parameters()) / 1e6,
            latency=latency[a].as_dict(),
            train_step=train[a].as_dict(),
            train_img_s=train[a].per_second(bs),
        )
        for a, m in models.items()
    ]


def main() -> None:
    ap = bench.parser(__doc__, "backbones")
    ap.add_argument("--archs", nargs="+", default=ARCHS)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    m = bench.machine()
    print(f"{bench.describe(m)}\n{args.size} px, 37 classes, channels_last, fp32")
    print(f"{'arch':24} {'params':>8} {'1-image ms':>11} {'train img/s':>12}")
    rows = measure(args.archs, args.size, args.n)
    for r in rows:
        print(f"{r['arch']:24} {r['params_m']:7.1f}M {r['latency']['median_s'] * 1000:11.1f} {r['train_img_s']:12.1f}")
    print(f"results: {bench.save('backbones', rows, args, m)}")


if __name__ == "__main__":
    main()
