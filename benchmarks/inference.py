"""Inference speed of the pickle-free predictor (torch backend) against a raw forward and fastai's `learn.predict`.

torch against ONNX Runtime: `serving.py`.

    python benchmarks/inference.py --model models [--images ../shared/data/pets-dev/images] [--n 50] [--tta]

All timings in one process, same model, same thread count, calls interleaved, medians over `--n` runs. Cold start
is measured in fresh subprocesses: process start to first prediction, for `load_predictor` (safe pair) and
`load_learner` (pkl). `--tta` times the predictor as `load_predictor` serves it by default (the photo and its mirror
image); without it, one view, which is what the raw forward does.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import bench
import torch

from catdog_fastai import load_predictor


def main() -> None:
    ap = bench.parser(__doc__, "inference")
    ap.add_argument("--model", default="models")
    ap.add_argument("--images", default="../shared/data/pets-dev/images")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--cold-repeats", type=int, default=3, help="fresh processes per cold-start figure")
    ap.add_argument("--tta", action="store_true", help="time the predictor with mirror-image TTA (2 views)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    m = bench.machine()
    files = sorted(Path(args.images).glob("*.jpg"))[: max(args.bs, 8)]
    photo = files[0]
    pred = load_predictor(args.model, device="cpu", tta=args.tta, backend="torch")
    model = pred.model
    print(f"{bench.describe(m)}\nmodel {pred.meta.arch} at {pred.size} px, {'2 views (TTA)' if args.tta else '1 view'}")
    res: dict = dict(arch=pred.meta.arch, size=pred.size, tta=args.tta)

    def tensor(f: Path) -> torch.Tensor:
        return torch.from_numpy(pred.normalize(pred.preprocess(f)[None]))

    def raw_forward(x: torch.Tensor, net: torch.nn.Module = model) -> torch.Tensor:
        with torch.inference_mode():
            return net(x)

    x1 = tensor(photo)
    nchw = copy.deepcopy(model).to(memory_format=torch.contiguous_format)  # the model as timm builds it
    t = bench.time_fns(
        {
            "raw_forward": lambda: raw_forward(x1),
            "predict": lambda: pred.predict(photo),
            "raw_forward_nchw": lambda: raw_forward(x1, nchw),
        },
        n=args.n,
        warmup=3,
    )
    res["one_image"] = {k: v.as_dict() for k, v in t.items()} | dict(
        ratio=t["predict"].median / t["raw_forward"].median
    )
    print(
        f"one image: raw forward {t['raw_forward'].median_ms:.1f} ms | Predictor.predict(path) "
        f"{t['predict'].median_ms:.1f} ms | ratio {res['one_image']['ratio']:.3f} | raw forward of the NCHW model "
        f"{t['raw_forward_nchw'].median_ms:.1f} ms (the predictor runs channels_last)"
    )

    xb = torch.cat([tensor(f) for f in files[: args.bs]])
    t = bench.time_fns(
        {
            "raw_forward": lambda: raw_forward(xb),
            "predict_batch": lambda: pred.predict_batch(files[: args.bs], bs=args.bs),
        },
        n=max(5, args.n // 10),
    )
    img_s = {k: v.per_second(args.bs) for k, v in t.items()}
    res["batch"] = {k: v.as_dict() | dict(img_s=img_s[k]) for k, v in t.items()} | dict(
        bs=args.bs, ratio=img_s["predict_batch"] / img_s["raw_forward"]
    )
    print(
        f"batch of {args.bs}: raw {img_s['raw_forward']:.1f} img/s | predict_batch {img_s['predict_batch']:.1f} img/s "
        f"| ratio {res['batch']['ratio']:.3f}"
    )

    pkl = Path(args.model) / "model.pkl"
    cold = {
        "load_predictor": "from catdog_fastai import load_predictor\n"
        f"load_predictor({args.model!r}, backend='torch').predict({str(photo)!r})"
    }
    if pkl.is_file():
        import fastai.callback.progress  # noqa: F401 - patches Learner.no_bar
        from fastai.learner import load_learner

        learn = load_learner(pkl)

        def quiet() -> None:
            with learn.no_bar():
                learn.predict(photo)

        t = bench.time_fns(
            {
                "learn_predict": lambda: learn.predict(photo),
                "learn_predict_no_bar": quiet,
                "predict": lambda: pred.predict(photo),
            },
            n=max(5, args.n // 2),
        )
        res["fastai"] = {k: v.as_dict() for k, v in t.items()}
        ours = t["predict"].median
        print(
            f"fastai learn.predict: {t['learn_predict'].median_ms:.1f} ms with its progress bar, "
            f"{t['learn_predict_no_bar'].median_ms:.1f} ms in no_bar() | Predictor.predict ({ours * 1000:.1f} ms, same "
            f"loop) is {t['learn_predict'].median / ours:.2f}x / {t['learn_predict_no_bar'].median / ours:.2f}x faster"
        )
        cold["load_learner"] = (
            "import warnings; warnings.simplefilter('ignore'); from pathlib import Path\n"
            "import fastai.callback.progress\nfrom fastai.learner import load_learner\n"
            f"learn = load_learner({str(pkl)!r})\n"
            f"with learn.no_bar(): learn.predict(Path({str(photo)!r}))"
        )
    res["cold_start"] = bench.cold_starts(cold, args.cold_repeats)
    print(f"results: {bench.save('inference' + ('-tta' if args.tta else ''), res, args, m)}")


if __name__ == "__main__":
    main()
