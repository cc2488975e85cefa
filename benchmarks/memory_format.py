"""channels_last against the default (NCHW) memory format: one training step and one forward pass, per backbone.

    python benchmarks/memory_format.py [--archs tf_efficientnet_lite0 resnet18 ...] [--bs 32] [--n 6]

Why: catdog-train and the predictor put the model in channels_last on every device, not only on a GPU (where
tensor cores want it); this measures whether that pays on the machine at hand. Random weights and inputs (the
speed of a convolution does not depend on its values), fp32, 224 px; the same weights in both formats, each with
its own optimizer, timed call by call in turn so machine noise hits both alike; medians. Training step = forward,
cross-entropy, backward, AdamW step.
"""

from __future__ import annotations

import copy
import warnings

import bench
import timm
import torch

FORMATS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}
ARCHS = ["tf_efficientnet_lite0", "resnet18", "resnet50", "convnext_nano", "mobilenetv3_large_100"]


def measure(arch: str, bs: int, n: int) -> dict[str, dict[str, dict]]:
    "Timings of a training step, a batched forward and a one-image forward, for each memory format."
    torch.manual_seed(0)
    base = timm.create_model(arch, num_classes=37)
    y = torch.randint(0, 37, (bs,))
    fns: dict[str, dict] = {}
    for name, fmt in FORMATS.items():
        model = copy.deepcopy(base).to(memory_format=fmt)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        x, x1 = torch.randn(bs, 3, 224, 224).to(memory_format=fmt), torch.randn(1, 3, 224, 224).to(memory_format=fmt)

        def step(model=model, opt=opt, x=x) -> None:
            model.train()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        @torch.inference_mode()
        def forward(inp: torch.Tensor, model=model) -> torch.Tensor:
            model.eval()
            return model(inp)

        fns[name] = dict(train=step, eval=lambda f=forward, x=x: f(x), eval1=lambda f=forward, x1=x1: f(x1))
    out: dict[str, dict[str, dict]] = {f: {} for f in FORMATS}
    for kind, calls in (("train", n), ("eval", n), ("eval1", 5 * n)):
        t = bench.time_fns({f: fns[f][kind] for f in FORMATS}, calls)
        for f in FORMATS:
            out[f][kind] = t[f].as_dict()
    return out


def main() -> None:
    ap = bench.parser(__doc__, "memory-format")
    ap.add_argument("--archs", nargs="+", default=ARCHS)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--n", type=int, default=6, help="timed calls per format (one-image forward: 5x as many)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    m = bench.machine()
    print(f"{bench.describe(m)}\nbatch {args.bs}, 224 px, fp32; medians of {args.n} calls in turn")
    print(f"{'arch':24} {'train step NCHW -> CL':>26} {'forward bs ' + str(args.bs):>22} {'forward bs 1':>22}")
    rows = []
    for arch in args.archs:
        r = measure(arch, args.bs, args.n)
        rows.append(dict(arch=arch, **r))
        a, b = r["NCHW"], r["channels_last"]
        cells = [
            f"{a[k]['median_s'] * 1000:6.1f} -> {b[k]['median_s'] * 1000:6.1f} "
            f"{a[k]['median_s'] / b[k]['median_s']:4.2f}x"
            for k in ("train", "eval", "eval1")
        ]
        print(f"{arch:24} {cells[0]:>26} {cells[1]:>22} {cells[2]:>22}   (ms)", flush=True)
        out = bench.save("memory-format", rows, args, m)  # after every arch: a stopped run keeps what it measured
    print(f"results: {out}")


if __name__ == "__main__":
    main()
