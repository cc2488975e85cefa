"""How well `catdog-clean` finds what it claims to find, on real photos, and how long it takes.

    nice -n 5 python benchmarks/clean.py --shared ../shared --out benchmarks/results/clean-cpu.json

- label noise: pets-dev with 5 % of labels flipped at random (10 seeded repeats), breeds (to another breed) and
  cat/dog (to the other species): recall of the top-k list (k = number flipped), precision/recall along the
  ranking, what cleanlab's `find_label_issues` returns, and its false alarms on the data as is;
- duplicates: copies of pets-dev photos re-encoded at JPEG q30, resized to half, cropped by 10 % and mirrored:
  their similarity to the original (recall at the threshold), against the most similar pair of distinct photos of
  different breeds (no false group), and the groups on pets-dev as is;
- not a cat or a dog: ImageNet's cat-or-dog probability on pets-dev and on tests/data/not_pets;
- time: `catdog-clean --data pets-dev` in a fresh process, cold start included.

Features are computed once per run (the flips are matrix products on them).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from catdog_fastai import clean, clean_find
from catdog_fastai.duplicates import (
    PIXEL_THRESHOLD,
    THRESHOLD,
    near_duplicate_groups,
    similar_pairs,
    thumbprint,
    unit_rows,
)
from catdog_fastai.files import write_json
from catdog_fastai.labels import breed, cat_or_dog
from catdog_fastai.verdict import pet_probability

ROOT = Path(__file__).resolve().parents[1]


def variants(im: Image.Image) -> dict[str, Image.Image]:
    "The copies a folder of downloaded photos holds: re-encoded, resized, cropped, mirrored."
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=30)
    w, h = im.size
    dx, dy = w // 20, h // 20  # 10 % of each side in all: 5 % off each edge
    return dict(
        jpeg_q30=Image.open(io.BytesIO(buf.getvalue())).convert("RGB"),
        half=im.resize((max(w // 2, 32), max(h // 2, 32)), Image.Resampling.BILINEAR),
        crop10=im.crop((dx, dy, w - dx, h - dy)),
        mirror=ImageOps.mirror(im),
    )


def flip_labels(y: np.ndarray, n_classes: int, frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    "Labels with `frac` of them moved to another class at random; returns (noisy labels, flipped indices)."
    k = round(frac * len(y))
    idx = rng.choice(len(y), k, replace=False)
    noisy = y.copy()
    noisy[idx] = (y[idx] + rng.integers(1, n_classes, k)) % n_classes
    return noisy, idx


def label_noise(feats: np.ndarray, y: np.ndarray, vocab: list[str], groups: np.ndarray, repeats: int) -> dict:
    "Top-k recall, cleanlab's list and the precision/recall curve over `repeats` seeded 5 % flips."
    paths = [str(i) for i in range(len(y))]
    runs, curve_p, curve_r = [], [], []
    cuts = [0.5, 1, 1.5, 2, 3]  # list lengths, in multiples of k
    for seed in range(repeats):
        noisy, flipped = flip_labels(y, len(vocab), 0.05, np.random.default_rng(seed))
        probs, _ = clean_find.label_probs(feats, noisy, len(vocab), groups)
        order = np.argsort(clean_find.label_quality(probs, noisy), kind="stable")
        k, truth = len(flipped), set(flipped.tolist())
        found = [int(p) for p in (f["path"] for f in clean_find.label_findings(paths, probs, noisy, vocab))]
        hits = [len(truth & set(order[: max(1, round(c * k))].tolist())) for c in cuts]
        curve_p.append([h / max(1, round(c * k)) for h, c in zip(hits, cuts)])
        curve_r.append([h / k for h in hits])
        runs.append(dict(seed=seed, k=k, topk_recall=hits[1] / k, cleanlab_listed=len(found),
                         cleanlab_precision=len(truth & set(found)) / max(1, len(found)),
                         cleanlab_recall=len(truth & set(found)) / k))  # fmt: skip
    probs, _ = clean_find.label_probs(feats, y, len(vocab), groups)
    clean_alarms = len(clean_find.label_findings(paths, probs, y, vocab))
    mean = lambda key: float(np.mean([r[key] for r in runs]))  # noqa: E731
    return dict(
        topk_recall_mean=mean("topk_recall"), topk_recall_min=min(r["topk_recall"] for r in runs),
        cleanlab_precision_mean=mean("cleanlab_precision"), cleanlab_recall_mean=mean("cleanlab_recall"),
        clean_data_false_alarms=clean_alarms,
        curve=dict(list_length_in_k=cuts, precision=np.mean(curve_p, 0).round(3).tolist(),
                   recall=np.mean(curve_r, 0).round(3).tolist()),
        runs=runs,
    )  # fmt: skip


def duplicates(model, photos: list[Path], feats: np.ndarray, labels: list[str], n_copies: int, size: int) -> dict:
    "Similarity of each kind of copy to its original, against the closest distinct photos of different breeds."
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(photos), min(n_copies, len(photos)), replace=False).tolist())
    kinds: dict[str, list[float]] = {}
    copies = [(i, k, v) for i in pick for k, v in variants(Image.open(photos[i]).convert("RGB")).items()]
    vfeats = unit_rows(clean._features(model, [v for _, _, v in copies], size, 32))
    unit = unit_rows(feats)
    for (i, k, _), f in zip(copies, vfeats):
        kinds.setdefault(k, []).append(float(f @ unit[i]))
    sims = unit @ unit.T
    diff = np.array(labels)[:, None] != np.array(labels)[None, :]
    cross = float(np.where(diff, sims, -1).max())
    same = np.where(~diff, sims, -1)
    np.fill_diagonal(same, -1)
    lowest_copy = min(min(v) for v in kinds.values())
    thumbs = np.array([thumbprint(Image.open(p).convert("RGB")) for p in photos])
    vthumbs = np.array([thumbprint(v) for _, _, v in copies])
    pairs = similar_pairs(feats, THRESHOLD, thumbs)
    groups = near_duplicate_groups(feats, THRESHOLD, thumbs)
    # each copy, added to the whole folder (the copies of other photos with it), must join its original's group
    allg = near_duplicate_groups(np.concatenate([feats, vfeats]), THRESHOLD, np.concatenate([thumbs, vthumbs]))
    joined = {k: [] for k in kinds}
    for j, (i, k, _) in enumerate(copies):
        joined[k].append(allg[len(feats) + j] == allg[i])
    return dict(
        threshold=THRESHOLD, pixel_threshold=PIXEL_THRESHOLD, copies_of=len(pick),
        recall_by_kind={k: float(np.mean(v)) for k, v in joined.items()},
        recall=float(np.mean([x for v in joined.values() for x in v])),
        feature_only_recall_by_kind={k: float(np.mean(np.array(v) >= THRESHOLD)) for k, v in kinds.items()},
        lowest_similarity_by_kind={k: round(min(v), 4) for k, v in kinds.items()},
        lowest_copy_similarity=round(lowest_copy, 4),
        highest_different_breed_similarity=round(cross, 4),
        false_groups_across_breeds=int(sum(labels[int(i)] != labels[int(j)] for i, j, _ in pairs)),
        pets_dev_pairs_above=len(pairs),
        pets_dev_groups=int((np.bincount(groups) > 1).sum()),
        pets_dev_same_breed_pairs_above_0_9=int((same >= 0.9).sum() // 2),
    )  # fmt: skip


def not_pets(model, feats: np.ndarray, size: int) -> dict:
    "ImageNet's cat-or-dog probability on Pets photos and on photos of other things."
    clf = [t.float().numpy() for t in model[0].source_classifier]
    others = sorted((ROOT / "tests" / "data" / "not_pets").glob("*.jpg"))
    p_pets = pet_probability(feats, *clf)
    p_other = pet_probability(clean._features(model, others, size, 32), *clf)
    cut = clean_find.NOT_PET_MAX
    return dict(
        not_pet_max=cut, pets_flagged=int((p_pets < cut).sum()), n_pets=len(p_pets),
        pets_quantiles={q: round(float(np.quantile(p_pets, q)), 4) for q in (0.01, 0.02, 0.05, 0.1)},
        others_flagged=int((p_other < cut).sum()), n_others=len(p_other),
        others={p.name: round(float(v), 4) for p, v in zip(others, p_other)},
    )  # fmt: skip


def timed_cli(data: Path, weights: Path, size: int) -> dict:
    "`catdog-clean` in a fresh process: imports, model load, checks, issues.csv and the contact sheet."
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "catdog-clean-bench"
    cmd = [sys.executable, "-m", "catdog_fastai.clean", "--data", str(data), "--weights", str(weights),
           "--out", str(out), "--size", str(size)]  # fmt: skip
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return dict(seconds=round(time.perf_counter() - t, 1), summary=res.stdout.strip().splitlines(),
                load_average_before=os.getloadavg()[0])  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.environ.get("CATDOG_SHARED", str(ROOT.parent / "shared")))
    ap.add_argument("--arch", default="tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--copies", type=int, default=150, help="pets-dev photos to copy 4 ways")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "clean-cpu.json"))
    ap.add_argument("--no-time", action="store_true", help="skip the cold-start timing run")
    args = ap.parse_args()
    shared = Path(args.shared)
    data, weights = shared / "data" / "pets-dev" / "images", shared / "weights" / f"{args.arch}.in1k.safetensors"
    load0 = os.getloadavg()[0]
    timing = None if args.no_time else timed_cli(data, weights, args.size)  # first: the cold start, nothing cached
    model = clean.load_backbone(args.arch, str(weights))
    photos = sorted(p for p in data.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    t = time.perf_counter()
    feats = clean._features(model, photos, args.size, 32)
    feat_s = time.perf_counter() - t
    breeds = [breed(p) for p in photos]
    groups = near_duplicate_groups(feats, THRESHOLD)
    result = dict(machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared)",
                  arch=args.arch, size=args.size, n_photos=len(photos), feature_seconds=round(feat_s, 1),
                  load_average_at_start=load0, time=timing)  # fmt: skip
    for task, labels in (("breeds", breeds), ("catdog", [cat_or_dog(p) for p in photos])):
        vocab = sorted(set(labels))
        y = np.array([vocab.index(v) for v in labels])
        result[f"label_noise_{task}"] = label_noise(feats, y, vocab, groups, args.repeats)
    result["duplicates"] = duplicates(model, photos, feats, breeds, args.copies, args.size)
    result["not_pet"] = not_pets(model, feats, args.size)
    write_json(args.out, result)
    brief = {k: v for k, v in result.items() if not k.startswith("label_noise")}
    print({k: {kk: vv for kk, vv in result[k].items() if kk not in ("runs",)} for k in result if "label" in k})
    print(brief)


if __name__ == "__main__":
    main()
