"""Accuracy that holds on every breed: recipes compared by stratified k-fold cross-validation over a Pets folder.

    python benchmarks/accuracy.py --data ../shared/data/pets-dev/images \\
        --weights ../shared/weights/tf_efficientnet_lite0.in1k.safetensors --epochs 4 --seeds 0 \\
        --recipes ours course

The protocol. Every breed's photos are dealt into `--folds` folds (`folds.cv_folds`, a seeded StratifiedKFold;
pets-dev's 5-photo breeds put exactly one photo in each of 5 folds, the 195-photo breeds 39), so every photo is held
out exactly once. For each fold and seed, every recipe trains on the other folds and watches the held-out fold as its
validation set (no training photo is spent on validation, and all recipes see the same photos); its class
probabilities for the held-out photos are then scored with every breed weighing the same:

- `breeds_bal`: balanced breed accuracy, the mean over breeds of per-breed recall;
- `catdog_bal`: cat/dog accuracy with every breed weighing the same (from the breed the model predicts), and
  `catdog_sum_bal` from the species whose breeds hold the most probability;
- plain accuracies beside them, which the three 195-photo breeds dominate.

Each recipe is scored as trained and with free post-hoc variants of its probabilities: `+tta` (mean with the
mirror image's) and `+posthoc_la` (divided by the training prior, Menon et al. 2021, tau = 1). Figures are mean +/-
standard error over folds x seeds; `diff` is the paired difference to `--baseline` on the same fold and seed.
For the epoch rule, each catdog_fastai run also reports how far the last epoch's held-out balanced accuracy is
from the best epoch's (chosen with hindsight) and how often a McNemar test could tell the two apart.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import tempfile
import warnings
from pathlib import Path

import bench
import torch
from folds import cv_folds, group_folds
from recipes import run, variant
from views import ACCURACY_VIEWS, DEGRADATIONS

from catdog_fastai import TrainConfig
from catdog_fastai.labels import breed, breed_is_cat
from catdog_fastai.metrics import best_epoch, export_epoch, mcnemar_p, scores
from catdog_fastai.sources import find_images


def make_folds(src: Path, dst: Path, k: int, seed: int, groups: list[int] | None = None) -> list[Path]:
    """Symlink fold f of `src` as dst/fold{f}/valid and the other folds as dst/fold{f}/train; with `groups`
    (near-duplicates), each group whole in one fold."""
    items, _ = find_images(src)
    labels = [breed(p) for p in items]
    fold = cv_folds(labels, k, seed) if groups is None else group_folds(labels, groups, k, seed)
    roots = []
    for f in range(k):
        root = dst / f"fold{f}"
        for part in ("train", "valid"):
            (root / part).mkdir(parents=True)
        for p, g in zip(items, fold):
            (root / ("valid" if g == f else "train") / p.name).symlink_to(p.resolve())
        roots.append(root)
    return roots


def score_probs(files: list[str], vocab: list[str], probs: torch.Tensor, task: str) -> dict[str, float]:
    "Balanced and plain scores of one set of probabilities (see the module docstring for the names)."
    top1 = [vocab[i] for i in probs.argmax(1).tolist()]
    s = scores(files, top1, task)
    res = {"catdog_bal": s["catdog_balanced_accuracy"], "catdog_acc": s["catdog_accuracy"]}
    if task == "breeds":
        res.update(breeds_bal=s["breeds_balanced_accuracy"], breeds_acc=s["breeds_accuracy"])
        cat = torch.tensor([breed_is_cat(v) for v in vocab])
        species = ["cat" if c else "dog" for c in (probs[:, cat].sum(1) > probs[:, ~cat].sum(1)).tolist()]
        res["catdog_sum_bal"] = scores(files, species, "catdog")["catdog_balanced_accuracy"]
    return res


def score_run(r: dict) -> dict[str, dict[str, float]]:
    """Scores of a run as trained, of its post-hoc variants and, for catdog_fastai's recipes, of its degraded
    views (`name@view`) and WiSE-FT mixes (`name~wise0.5`)."""
    prior = torch.tensor(r["counts"], dtype=torch.float32).clamp_min(1)
    prior = prior / prior.sum()
    variants = {"": r["probs"], "+tta": (r["probs"] + r["probs_flip"]) / 2}
    for name in list(variants):
        adj = variants[name] / prior
        variants[name + "+posthoc_la"] = adj / adj.sum(1, keepdim=True)
    for view, p in r.get("views", {}).items():
        if view.split("~")[0] in (*ACCURACY_VIEWS, "clean") and view != "clean":
            name = view.split("~")[1] if "~" in view else ""
            variants[("~" + name if name else "") + ("" if view.startswith("clean") else "@" + view.split("~")[0])] = p
    return {r["recipe"] + v: score_probs(r["files"], r["vocab"], p, r["task"]) for v, p in variants.items()}


def auroc(inside: list[float], outside: list[float]) -> float:
    "P(an outside photo scores higher than an inside one), ties counting half."
    if not inside or not outside:
        return float("nan")
    pairs = [(o > i) + 0.5 * (o == i) for o in outside for i in inside]
    return sum(pairs) / len(pairs)


def verdict_stats(r: dict) -> dict[str, float]:
    """The three answers on this fold: the share of held-out photos called unknown (and unsure), every breed
    weighing the same, as they are and on each degraded view; species accuracy on the photos not called unknown;
    the share of each `--ood-photos` category called unknown (cats_dogs: not called unknown); and AUROC of the
    unknown-score between held-out photos and other photos."""
    groups = [breed(f) for f in r["files"]]
    out: dict[str, float] = {}

    def balanced_share(flags: list[bool]) -> float:
        by = {}
        for g, f in zip(groups, flags):
            by.setdefault(g, []).append(f)
        return statistics.mean(statistics.mean(v) for v in by.values())

    for view, vs in r["verdicts"].items():
        out[f"unknown_bal@{view}"] = balanced_share([v == "unknown" for v, _ in vs])
        out[f"unsure_bal@{view}"] = balanced_share([v == "unsure" for v, _ in vs])
    degraded = [k for k in DEGRADATIONS if f"unknown_bal@{k}" in out]
    out["unknown_bal@degraded_mean"] = statistics.mean(out[f"unknown_bal@{k}"] for k in degraded) if degraded else 0
    if r["task"] == "breeds":
        cat = torch.tensor([breed_is_cat(v) for v in r["vocab"]])
        p = r["views"]["clean"]
        said = ["cat" if c else "dog" for c in (p[:, cat].sum(1) > p[:, ~cat].sum(1)).tolist()]
        kept = [i for i, (v, _) in enumerate(r["verdicts"]["clean"]) if v != "unknown"]
        truth = ["cat" if breed_is_cat(groups[i]) else "dog" for i in kept]
        out["species_acc_not_unknown"] = sum(said[i] == t for i, t in zip(kept, truth)) / max(1, len(kept))
    out.update(known_stats(r, groups))
    inside = [s for _, s in r["verdicts"]["clean"] if s is not None]
    for cat_name, vs in r["ood"].items():
        if cat_name == "cats_dogs":
            out["cats_dogs_not_unknown"] = statistics.mean(v != "unknown" for v, _, _ in vs) if vs else float("nan")
        else:
            out[f"flagged@{cat_name}"] = statistics.mean(v == "unknown" for v, _, _ in vs) if vs else float("nan")
    others = [s for c, vs in r["ood"].items() if c in ("animals", "other") for _, s, _ in vs if s is not None]
    out["auroc_pets_vs_animals_other"] = auroc(inside, others)
    return out


def known_rows(r: dict, view: str = "clean") -> list[tuple[float, bool, str, str]]:
    """(top probability, right?, breed, verdict) of every held-out photo as it is (or as `view`): the risk-coverage
    curve's rows."""
    p = r["views"][view]
    top, idx = p.max(1)
    truth = [breed(f) if r["task"] == "breeds" else ("cat" if breed_is_cat(breed(f)) else "dog") for f in r["files"]]
    return [
        (float(t), r["vocab"][int(i)] == y, breed(f), v)
        for t, i, y, f, (v, _) in zip(top, idx, truth, r["files"], r["verdicts"][view])
    ]


def known_stats(r: dict, groups: list[str]) -> dict[str, float]:
    """The known answers out of fold, every breed weighing the same: how often they are right and what share of the
    held-out photos get one, as they are and per degraded view."""
    w = {g: 1 / groups.count(g) for g in set(groups)}
    out = {}
    degraded = [v for v in r["verdicts"] if v in DEGRADATIONS and v in ACCURACY_VIEWS and v in r["views"]]
    for view in ("clean", *degraded):
        known = [(hit, w[b]) for _, hit, b, v in known_rows(r, view) if v == "known"]
        at = "" if view == "clean" else f"@{view}"
        out[f"known_precision_bal{at}"] = sum(h * x for h, x in known) / max(1e-12, sum(x for _, x in known))
        out[f"known_coverage_bal{at}"] = sum(x for _, x in known) / len(w)
    return out


def epoch_rule(r: dict) -> dict | None:
    "Last epoch vs the best one in hindsight, on the held-out fold; None for recipes without a per-epoch log."
    hist, correct = r["history"], r.get("valid_hits")
    if not hist or not correct:
        return None
    bal = [h["balanced_accuracy"] for h in hist]
    best = best_epoch(correct)
    return dict(
        last_bal=bal[-1],
        best_bal=max(bal),
        best_epoch=bal.index(max(bal)) + 1,
        epochs=len(bal),
        mcnemar_p_best_vs_last=mcnemar_p(correct[best], correct[-1]),
        rule_best_picks=export_epoch(correct, "best") + 1,
    )


def mean_se(xs: list[float]) -> tuple[float, float]:
    m = statistics.mean(xs)
    return m, (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def summarise(rows: list[dict], baseline: str) -> list[str]:
    "The table: mean +/- SE over folds x seeds, and the paired difference to the baseline."
    names = list(dict.fromkeys(r["name"] for r in rows))
    keys = [k for k in ("breeds_bal", "catdog_bal", "catdog_sum_bal", "breeds_acc", "catdog_acc") if k in rows[0]]
    base = {(r["fold"], r["seed"]): r for r in rows if r["name"] == baseline}
    lines = [f"{'recipe':28} {'n':>3} " + " ".join(f"{k:>17}" for k in keys) + f"   diff {keys[0]} vs {baseline}"]
    for name in names:
        rs = [r for r in rows if r["name"] == name]
        cells = []
        for k in keys:
            m, se = mean_se([r[k] for r in rs])
            cells.append(f"{m:8.3f} +/- {se:5.3f}")
        paired = [r[keys[0]] - base[(r["fold"], r["seed"])][keys[0]] for r in rs if (r["fold"], r["seed"]) in base]
        diff = ""
        if paired and name != baseline:
            m, se = mean_se(paired)
            diff = f"   {m:+.3f} +/- {se:.3f} ({m / se:+.1f} SE)" if se and se == se else f"   {m:+.3f}"
        lines.append(f"{name:28} {len(rs):3} " + " ".join(f"{c:>17}" for c in cells) + diff)
    return lines


def summarise_verdicts(log: list[dict]) -> list[str]:
    "One line per recipe and figure of `verdict_stats`: mean +/- SE over folds x seeds."
    lines = []
    for recipe in dict.fromkeys(v["recipe"] for v in log):
        vs = [v for v in log if v["recipe"] == recipe]
        for k in vs[0]:
            if k in ("recipe", "fold", "seed"):
                continue
            xs = [v[k] for v in vs if v.get(k) == v.get(k)]
            if xs:
                m, se = mean_se(xs)
                lines.append(f"{recipe:16} {k:34} {m:.3f} +/- {se:.3f}  (n {len(xs)})")
    return lines


def main() -> None:
    ap = bench.parser(__doc__, "accuracy-cv-<task>")
    ap.add_argument("--data", default="../shared/data/pets-dev/images")
    ap.add_argument("--weights", default="../shared/weights/tf_efficientnet_lite0.in1k.safetensors")
    ap.add_argument("--epochs", type=int, default=4, help="unfrozen epochs, after one frozen epoch (catdog-train's)")
    ap.add_argument("--folds", type=int, default=5, help="k of the k-fold split (5: one photo per 5-photo breed)")
    ap.add_argument("--run-folds", type=int, nargs="+", help="run only these folds (default: all)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--task", default="breeds", choices=["breeds", "catdog"])
    ap.add_argument(
        "--recipes",
        nargs="+",
        default=["ours", "course"],
        help="ours, course, timm, timm+cl, or a variant of ours (benchmarks/recipes.py): ours-la (plain "
        "cross-entropy), ours+best, ours+ep8, ours+res288, ours+ls, ours+mixup, ours+cutmix, ours+ema, ...",
    )
    ap.add_argument("--baseline", default="course", help="recipe the paired differences are taken against")
    ap.add_argument("--workers", type=int, default=-1, help="DataLoader workers for every recipe (-1: auto)")
    ap.add_argument(
        "--ood-photos",
        help="a folder of photos that are not Pets photos, one subfolder per category (animals, other, drawings, "
        "big_cats, cats_dogs: benchmarks/photos.py makes it); each catdog_fastai run's verdicts on them are scored",
    )
    ap.add_argument("--append", action="store_true", help="add to the runs already in --json (same folds and seeds)")
    ap.add_argument(
        "--arch", default=TrainConfig.arch, help="backbone of catdog_fastai's recipes (default: catdog-train's)"
    )
    ap.add_argument("--size", type=int, default=TrainConfig.size, help="their image size (default: catdog-train's)")
    ap.add_argument(
        "--group-weights",
        default="../shared/weights/tf_efficientnet_lite0.in1k.safetensors",
        help="near-duplicates judged on this backbone's pretrained features stay in one fold; 'none': plain folds",
    )
    ap.add_argument("--plot-known", type=Path, help="write the risk-coverage plot of the known answers here (PNG)")
    args = ap.parse_args()
    import recipes

    recipes.WORKERS, recipes.ARCH, recipes.SIZE = args.workers, args.arch, args.size
    if args.ood_photos:
        from catdog_fastai.images import IMAGE_EXTS

        recipes.OOD_PHOTOS = {
            d.name: sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTS)
            for d in sorted(Path(args.ood_photos).iterdir())
            if d.is_dir()
        }
    for name in args.recipes:
        if name.startswith("ours") or name == "prototype":
            variant(name, args.epochs)  # fail now on a misspelt variant, not after an hour of training
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING)
    m = bench.machine()
    name = f"accuracy-cv-{args.task}"
    out = bench.results_path(name, m, args.json)
    old = json.loads(out.read_text())["results"] if args.append and out.is_file() else dict(runs=[], epochs=[])
    rows: list[dict] = old["runs"]
    epochs_log: list[dict] = old["epochs"]
    verdicts_log: list[dict] = old.get("verdicts", [])
    known_log: list[dict] = old.get("known", [])
    with tempfile.TemporaryDirectory() as tmp:
        groups = near_duplicates(Path(args.data), args.group_weights)
        folds = make_folds(Path(args.data), Path(tmp) / "folds", args.folds, seed=1234, groups=groups)
        run_folds = args.run_folds if args.run_folds is not None else list(range(args.folds))
        print(
            f"{args.folds}-fold CV of {args.data} (running folds {run_folds}); {args.arch}, {args.size} px, batch 32, "
            f"1 frozen + {args.epochs} epochs\n{bench.describe(m)}",
            flush=True,
        )
        for seed in args.seeds:
            for f in run_folds:
                for recipe in args.recipes:
                    if any(x["recipe"] == recipe and x["fold"] == f and x["seed"] == seed for x in rows):
                        continue  # --append: already in the results
                    if recipe == "prototype" and seed != args.seeds[0]:  # no training, no randomness: same figures
                        first = [x for x in rows + verdicts_log if x["recipe"] == recipe and x["seed"] == args.seeds[0]]
                        done = [dict(x, seed=seed) for x in first]
                        rows += [x for x in done if x["fold"] == f and "name" in x]
                        verdicts_log += [x for x in done if x["fold"] == f and "name" not in x]
                        continue
                    t0 = bench.timestamp(sync=True)
                    r = run(recipe, folds[f], args, seed, args.task, Path(tmp) / f"f{f}")
                    for name, sc in score_run(r).items():
                        rows.append(dict(name=name, recipe=recipe, fold=f, seed=seed, img_s=r["img_s"], **sc))
                    if "verdicts" in r:
                        verdicts_log.append(dict(recipe=recipe, fold=f, seed=seed, **verdict_stats(r)))
                        known_log.append(dict(recipe=recipe, fold=f, seed=seed, rows=known_rows(r)))
                    rule = epoch_rule(r)
                    if rule:
                        epochs_log.append(dict(recipe=recipe, fold=f, seed=seed, **rule))
                    s = next(x for x in rows if x["name"] == recipe and x["fold"] == f and x["seed"] == seed)
                    print(
                        f"seed {seed} fold {f} {recipe:12}: breeds_bal {s.get('breeds_bal', float('nan')):.3f} "
                        f"catdog_bal {s['catdog_bal']:.3f}  train {r['img_s']:.1f} img/s  "
                        f"({(bench.timestamp(sync=True) - t0) / 60:.1f} min)",
                        flush=True,
                    )
                    out = bench.save(
                        name,
                        dict(runs=rows, epochs=epochs_log, verdicts=verdicts_log, known=known_log),
                        vars(args) | dict(json=out),
                        m,
                    )
    print(f"\nmean +/- standard error over folds x seeds ({bench.describe(m)})")
    print("\n".join(summarise(rows, args.baseline)))
    if epochs_log:
        gap = [e["best_bal"] - e["last_bal"] for e in epochs_log]
        told = sum(e["mcnemar_p_best_vs_last"] < 0.05 for e in epochs_log)
        print(
            f"\nepoch rule ({len(epochs_log)} runs): held-out balanced accuracy of the best epoch in hindsight minus "
            f"the last: mean {statistics.mean(gap):+.3f}, max {max(gap):+.3f}; best epoch = last in "
            f"{sum(e['best_epoch'] == e['epochs'] for e in epochs_log)} runs; McNemar p < 0.05 in {told} runs"
        )
    if verdicts_log:
        print("\nthe three answers (mean +/- SE over folds x seeds; shares of held-out photos, every breed the same):")
        print("\n".join(summarise_verdicts(verdicts_log)))
    if args.plot_known and known_log:
        plot_known(known_log, args.plot_known)
    print(f"results: {out}")


def near_duplicates(data: Path, weights: str) -> list[int] | None:
    "Near-duplicate group of each photo of `data` (`catdog_fastai.duplicates`), or None for `--group-weights none`."
    if weights == "none":
        return None
    import frontier

    from catdog_fastai.duplicates import near_duplicate_groups

    photos = sorted(find_images(data)[0])
    arch = Path(weights).name.split(".")[0]
    feats = frontier.point_features(arch, frontier.NATIVE.get(arch, 224), Path(weights), photos, frontier.CACHE_DIR)
    groups = near_duplicate_groups(feats["clean"].numpy())
    print(f"near-duplicate groups ({arch} features): {len(groups) - int(groups.max()) - 1} photos merged")
    return groups.tolist()


def risk_coverage(rows: list[list]) -> tuple[list[float], list[float]]:
    """Coverage and accuracy of the photos answered above each bar on the top probability, every breed weighing the
    same: the curve a known/unsure line picks one point of."""
    n = {}
    for _, _, b, _ in rows:
        n[b] = n.get(b, 0) + 1
    ranked = sorted(rows, key=lambda r: -r[0])
    total = sum(1 / n[b] for _, _, b, _ in ranked)
    cov, acc, w_sum, hit_sum = [], [], 0.0, 0.0
    for _, hit, b, _ in ranked:
        w_sum += 1 / n[b]
        hit_sum += hit / n[b]
        cov.append(w_sum / total)
        acc.append(hit_sum / w_sum)
    return cov, acc


def plot_known(known_log: list[dict], path: Path) -> None:
    "Risk-coverage curves per recipe (rows of every fold and seed), with each recipe's known answers marked."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for recipe in dict.fromkeys(k["recipe"] for k in known_log):
        rows = [row for k in known_log if k["recipe"] == recipe for row in k["rows"]]
        cov, acc = risk_coverage(rows)
        (line,) = ax.plot(cov, acc, label=recipe)
        n = {b: sum(r[2] == b for r in rows) for b in {r[2] for r in rows}}
        known = [(r[1], 1 / n[r[2]]) for r in rows if r[3] == "known"]
        if known:
            w = sum(x for _, x in known)
            ax.plot(w / len(n), sum(h * x for h, x in known) / w, "o", color=line.get_color())
    ax.axhline(0.97, ls=":", color="gray")
    ax.set_xlabel("coverage: share of held-out photos answered (every breed the same)")
    ax.set_ylabel("accuracy of those answers")
    ax.set_title("Risk-coverage, out of fold (dot: the known answers)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
