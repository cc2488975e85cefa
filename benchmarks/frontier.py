"""The accuracy/time frontier: what each backbone gets with no training, and what a user waits for.

    python benchmarks/frontier.py --data ../shared/data/pets-dev/images --weights-dir ../shared/weights
    python benchmarks/frontier.py --times free tuned     # also time catdog-train per point (minutes each)

For every point (a timm backbone at a resolution, by default each EfficientNet-Lite in `--weights-dir` at its own
size) it measures, on the same folds:

- **the training-free start**: the nearest class mean of the pretrained features (`catdog_fastai.prototypes`; the
  model `catdog-train --epochs 0 --freeze-epochs 0` exports), out of fold under group-aware stratified k-fold
  cross-validation: near-duplicate photos (`catdog_fastai.duplicates`, judged on the first point's pretrained
  features) stay in one fold, so a copy of a held-out photo never sits in its class mean. Balanced breed accuracy
  (every breed weighs the same) beside plain accuracy, cat/dog from the summed species probability, and the same on
  degraded copies (`views.ACCURACY_VIEWS`);
- the most that a known/unsure line on the top probability could cover with 97 % of its known answers right (every
  breed weighing the same), chosen in hindsight on the held-out photos (`known_ceiling`): no line fitted on other
  photos does better, so it says whether a target precision and coverage fit the point at all;
- with `--times`: the wall time of the README command for the point (`free`: training-free; `tuned`: the default
  1 + 4 epochs), all points run in turn so machine noise hits them alike, and the time per photo served by ONNX
  Runtime from that export (`load_predictor(..., backend="onnxruntime")`, one photo at a time).

The fine-tuned recipe's accuracy comes from `accuracy.py` (`--tuned RESULTS.json`, runs named `ours`); the plot
(`--plot`) puts every point on balanced accuracy against training minutes.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench
import numpy as np
import torch
from accuracy import mean_se, risk_coverage, score_probs
from folds import group_folds
from views import ACCURACY_VIEWS, DEGRADATIONS

from catdog_fastai import verdict
from catdog_fastai.duplicates import near_duplicate_groups
from catdog_fastai.images import open_image
from catdog_fastai.labels import breed
from catdog_fastai.model import build_model
from catdog_fastai.prototypes import class_means, photo_features, similarities
from catdog_fastai.sources import find_images

NATIVE = {"tf_efficientnet_lite0": 224, "tf_efficientnet_lite1": 240, "tf_efficientnet_lite2": 260}
BASELINE = "tf_efficientnet_lite0@224"  # 0.6's default: the time and serving budgets are multiples of its figures
SCALE = 16.0  # the cosine head's logit scale (model.CosineClassifier): probabilities as the export serves them
VIEWS = ("clean", "flip", *ACCURACY_VIEWS)
CACHE_DIR = Path(tempfile.gettempdir()) / "catdog-frontier"  # features by backbone, size and photo list


def parse_point(spec: str) -> tuple[str, int]:
    "ARCH@SIZE, or ARCH alone for its native size."
    arch, _, size = spec.partition("@")
    return arch, int(size) if size else NATIVE[arch]


def gflops(arch: str, size: int) -> float:
    """Floating-point operations of one photo's forward pass (torch's FlopCounterMode; multiply-adds count two): the
    serving cost of a point, free of the timing noise of a shared machine."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(arch, 37, head="cosine").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def weights_file(weights_dir: Path, arch: str) -> Path:
    return weights_dir / f"{arch}.in1k.safetensors"


def point_features(arch: str, size: int, weights: Path, photos: list[Path], cache: Path) -> dict[str, torch.Tensor]:
    """Pretrained pooled features of every photo for each of `VIEWS`, cached on disk by point and photo list."""
    key = hashlib.sha256("\n".join(str(p) for p in photos).encode()).hexdigest()[:12]
    path = cache / f"{arch}@{size}-{key}.pt"
    if path.is_file():
        return torch.load(path)
    model = build_model(arch, 2, weights=str(weights), head="cosine").eval()
    imgs = [open_image(p) for p in photos]
    fns = {"clean": None, **{v: DEGRADATIONS[v] for v in ACCURACY_VIEWS}}
    feats = {v: photo_features(model, imgs, size, view=fn) for v, fn in fns.items()}
    feats["flip"] = photo_features(model, [im.transpose(0) for im in imgs], size)  # PIL FLIP_LEFT_RIGHT
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(feats, path)
    return feats


def training_free_cv(
    feats: dict[str, torch.Tensor], files: list[str], fold: np.ndarray
) -> tuple[list[dict[str, float]], torch.Tensor]:
    """One row of scores per fold: class means of the other folds' photos and their mirror images, held-out views;
    and every photo's class probabilities from the fold that held it out (as they are)."""
    labels = [breed(f) for f in files]
    vocab = sorted(set(labels))
    y = torch.tensor([vocab.index(v) for v in labels])
    rows = []
    held_out = torch.zeros(len(files), len(vocab))
    for f in range(int(fold.max()) + 1):
        train, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        tr = torch.from_numpy(train)
        means = class_means(torch.cat([feats["clean"][tr], feats["flip"][tr]]), torch.cat([y[tr], y[tr]]), len(vocab))
        held_files = [files[i] for i in held]
        row: dict[str, float] = {"fold": f, "n_held": len(held)}
        for view in ("clean", *ACCURACY_VIEWS):
            probs = (SCALE * similarities(feats[view][torch.from_numpy(held)], means)).float().softmax(1)
            if view == "clean":
                held_out[torch.from_numpy(held)] = probs
            for k, v in score_probs(held_files, vocab, probs, "breeds").items():
                row[k if view == "clean" else f"{k}@{view}"] = v
        row["breeds_bal@degraded_mean"] = statistics.mean(row[f"breeds_bal@{v}"] for v in ACCURACY_VIEWS)
        rows.append(row)
    return rows, held_out


def known_ceiling(probs: torch.Tensor, files: list[str], target: float = 0.97) -> dict[str, float]:
    """The most a known/unsure line on the top probability could cover at `target` precision, every breed weighing
    the same: `verdict.fit_known` run in hindsight on the held-out photos themselves (no fitted line does better on
    them); and the precision of the most confident 75 %."""
    labels = [breed(f) for f in files]
    y = [sorted(set(labels)).index(v) for v in labels]
    top, hit = probs.max(1).values.tolist(), (probs.argmax(1).numpy() == np.array(y)).tolist()
    covered, right = risk_coverage([[t, h, b, None] for t, h, b in zip(top, hit, labels)])
    best = verdict.fit_known(probs.numpy(), y, target)
    return dict(
        target=target,
        coverage=best["valid_known_coverage"],
        precision=best["valid_known_precision"],
        precision_at_75=right[int(np.searchsorted(covered, 0.75))],
    )


README_RECIPES = {"free": ["--epochs", "0", "--freeze-epochs", "0"], "tuned": ["--epochs", "4", "--freeze-epochs", "1"]}


def time_readme_command(
    points: list[tuple[str, int]], recipes: list[str], photos: list[Path], args, tmp: Path
) -> dict[str, dict]:
    """Wall seconds of `catdog-train` for each point and recipe, run in turn (a fresh process each: what a user
    waits for), and the median ms per photo that export serves through ONNX Runtime."""
    from catdog_fastai.predict import load_predictor

    exe = Path(sys.executable).with_name("catdog-train")
    photos = photos[:: max(1, len(photos) // 40)][:40]  # the served photos, spread over the folder
    out: dict[str, dict] = {}
    for r in range(args.repeats):
        for recipe in recipes:
            for arch, size in points:
                name = f"{arch}@{size}:{recipe}"
                dst = tmp / f"{arch}-{size}-{recipe}-{r}"
                cmd = [str(exe), "--data", args.data, "--task", "breeds", "--arch", arch, "--size", str(size)]
                cmd += ["--weights", str(weights_file(Path(args.weights_dir), arch)), "--out", str(dst)]
                cmd += README_RECIPES[recipe]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                secs = time.perf_counter() - t0
                pred = load_predictor(dst, backend="onnxruntime", threads=2)
                imgs = [open_image(p) for p in photos]
                serve = bench.time_iter((pred.predict(im) for im in imgs), n=len(imgs) - 1)
                entry = out.setdefault(name, dict(arch=arch, size=size, recipe=recipe, train_s=[], serve_ms=[]))
                entry["train_s"].append(secs)
                entry["serve_ms"].append(serve.median_ms)
                print(f"{name:32} catdog-train {secs:6.1f} s   served {serve.median_ms:5.1f} ms/photo", flush=True)
    return out


def tuned_rows(path: Path | None) -> dict[str, list[dict]]:
    "accuracy.py's runs of the default recipe (`ours`), by the backbone and size it ran with (ARCH@SIZE)."

    if path is None or not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    point = f"{doc['args'].get('arch') or 'tf_efficientnet_lite0'}@{doc['args'].get('size') or 224}"
    return {point: [r for r in doc["results"]["runs"] if r["name"] in ("ours", "prototype")]}


def plot(results: dict, path: Path) -> None:
    "Balanced breed accuracy against README-command minutes, one point per backbone and recipe."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = dict(zip(results["points"], plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    for name, p in results["points"].items():
        for recipe, marker in (("free", "o"), ("tuned", "s")):
            acc = p.get(f"{recipe}_breeds_bal")
            t = results["times"].get(f"{name}:{recipe}", {}).get("train_s")
            if acc is None or not t:
                continue
            x = statistics.median(t) / 60
            ax.errorbar(x, acc[0], yerr=acc[1], fmt=marker, capsize=3, color=colors[name])
            ax.annotate(f"{name.replace('tf_efficientnet_', '')} {recipe}", (x, acc[0]),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)  # fmt: skip
    today = results["times"].get(f"{BASELINE}:tuned", {}).get("train_s")
    if today:
        ax.axvline(1.3 * statistics.median(today) / 60, ls=":", color="gray")
        ax.annotate("1.3x the lite0 recipe", (1.3 * statistics.median(today) / 60, ax.get_ylim()[0]),
                    textcoords="offset points", xytext=(-4, 4), fontsize=8, rotation=90, ha="right")  # fmt: skip
    ax.set_xlabel("README command, minutes (2-core CPU)")
    ax.set_ylabel("balanced breed accuracy, out of fold")
    ax.set_title("Accuracy against training time (pets-dev, group-aware 5-fold)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = bench.parser(__doc__, "frontier")
    ap.add_argument("--data", default="../shared/data/pets-dev/images")
    ap.add_argument("--weights-dir", default="../shared/weights")
    ap.add_argument("--points", nargs="+", default=[f"{a}@{s}" for a, s in NATIVE.items()], help="ARCH[@SIZE]")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--fold-seed", type=int, default=1234, help="seed of the fold deal (accuracy.py's)")
    ap.add_argument("--times", nargs="*", default=[], choices=list(README_RECIPES), help="time catdog-train")
    ap.add_argument("--repeats", type=int, default=1, help="timing rounds (each runs every point in turn)")
    ap.add_argument("--tuned", type=Path, nargs="*", default=[], help="accuracy.py results with `ours` runs")
    ap.add_argument("--plot", type=Path, help="write the frontier plot here (PNG)")
    ap.add_argument(
        "--append", action="store_true", help="keep the timings already in --json (each records its own run)"
    )
    ap.add_argument("--cache", type=Path, default=CACHE_DIR)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    m = bench.machine()
    photos = sorted(find_images(Path(args.data))[0])
    files = [str(p) for p in photos]
    points = [parse_point(s) for s in args.points]
    print(f"{len(photos)} photos, {args.folds}-fold group-aware CV; {bench.describe(m)}", flush=True)

    feats = {}
    for arch, size in points:
        t0 = time.perf_counter()
        feats[(arch, size)] = point_features(arch, size, weights_file(Path(args.weights_dir), arch), photos, args.cache)
        print(f"features {arch}@{size}: {time.perf_counter() - t0:.0f} s", flush=True)
    first = feats[points[0]]["clean"].numpy()
    groups = near_duplicate_groups(first)
    n_groups = int(groups.max()) + 1
    in_groups = int(sum(np.bincount(groups)[np.bincount(groups) > 1]))
    print(f"near-duplicate groups: {len(groups) - n_groups} photos merged; {in_groups} photos in groups of 2+")
    fold = np.array(group_folds([breed(f) for f in files], groups, args.folds, args.fold_seed))

    results: dict = dict(
        photos=len(photos),
        duplicate_groups=dict(photos_in_groups=in_groups, groups_of_2_or_more=int((np.bincount(groups) > 1).sum())),
        points={},
        times={},
    )
    keys = (
        "breeds_bal",
        "breeds_acc",
        "catdog_bal",  # the species of the top breed
        "catdog_sum_bal",  # the species whose breeds hold the most probability
        "breeds_bal@degraded_mean",
        *(f"breeds_bal@{v}" for v in ACCURACY_VIEWS),
    )
    base_rows = None
    for arch, size in points:
        rows, held_out = training_free_cv(feats[(arch, size)], files, fold)
        name = f"{arch}@{size}"
        entry: dict = {"folds": rows, "gflops": gflops(arch, size), "known_ceiling": known_ceiling(held_out, files)}
        for k in keys:
            entry[f"free_{k}"] = mean_se([r[k] for r in rows])
        if base_rows is None:
            base_rows = rows
        else:
            entry["free_breeds_bal_paired_vs_first"] = mean_se(
                [r["breeds_bal"] - b["breeds_bal"] for r, b in zip(rows, base_rows)]
            )
        for tuned_point, runs in (kv for p in args.tuned for kv in tuned_rows(p).items()):
            if tuned_point == f"{arch}@{size}":
                ours = [r for r in runs if r["name"] == "ours"]
                entry["tuned_breeds_bal"] = mean_se([r["breeds_bal"] for r in ours])
        results["points"][name] = entry
        m_, se = entry["free_breeds_bal"]
        print(
            f"{name:28} training-free: breeds_bal {m_:.3f} +/- {se:.3f}  "
            f"cat/dog {entry['free_catdog_sum_bal'][0]:.3f}  "
            f"degraded {entry['free_breeds_bal@degraded_mean'][0]:.3f}  {entry['gflops']:.2f} GFLOPs/photo  "
            f"97 %-right known answers could cover at most {entry['known_ceiling']['coverage']:.3f}",
            flush=True,
        )
    out_path = bench.results_path("frontier", m, args.json)
    if args.append and out_path.is_file():
        results["times"] = json.loads(out_path.read_text())["results"].get("times", {})
    if args.times:
        with tempfile.TemporaryDirectory() as tmp:
            timed = time_readme_command(points, args.times, photos, args, Path(tmp))
        run = dict(command=" ".join(sys.argv), date=m["date"], commit=m.get("commit"))
        results["times"].update({k: dict(v, run=run) for k, v in timed.items()})
    out = bench.save("frontier", results, args, m)
    if args.plot:
        plot(results, args.plot)
    print(f"results: {out}")


if __name__ == "__main__":
    main()
