"""Training throughput: `catdog-train` against a plain PyTorch + timm loop and the fastai course recipe.

    python benchmarks/throughput.py --copies 10 --epochs 2

Same model (`tf_efficientnet_lite0`), batch size 32, 224 px, precision (bf16 autocast on a GPU, fp32 on a CPU),
DataLoader workers (catdog-train's automatic count for the machine) and photos, in one process, recipe after
recipe. The photos are a Pets-sized folder: `--copies` symlinked copies of pets-dev under new Pets names (10
copies = 7,550 photos, about the real dataset's 7,349), so an epoch is long enough to time. Figures: images per
second over the unfrozen epochs (the whole network learning, as in `accuracy.py`), and the wall time of the
whole training call, which includes model creation, the frozen epoch, validation and catdog-train's one-off
decoding of the photos into RAM.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import warnings
from pathlib import Path

import bench
from recipes import ARCH, run, workers

from catdog_fastai.labels import breed


def replicate(src: Path, dst: Path, copies: int) -> Path:
    """`copies` symlinks of every Breed_N photo in `src`, named Breed_{N + 100000 k} so they stay Pets names, laid
    out as dst/train (4 photos in 5) and dst/valid (the 5th), the folder layout every recipe reads."""
    for part in ("train", "valid"):
        (dst / part).mkdir(parents=True)
    for i, p in enumerate(sorted(src.iterdir())):
        if p.suffix.lower() != ".jpg":
            continue
        n = int(p.stem.rsplit("_", 1)[1])
        for k in range(copies):
            part = "valid" if (i + k) % 5 == 0 else "train"
            (dst / part / f"{breed(p)}_{n + 100000 * k}{p.suffix}").symlink_to(p.resolve())
    return dst


def main() -> None:
    ap = bench.parser(__doc__, "throughput")
    ap.add_argument("--data", default="../shared/data/pets-dev/images")
    ap.add_argument("--weights", default="../shared/weights/tf_efficientnet_lite0.in1k.safetensors")
    ap.add_argument("--copies", type=int, default=10, help="copies of the data folder (10 = Pets-sized)")
    ap.add_argument("--epochs", type=int, default=2, help="unfrozen epochs (after one frozen / warm-up epoch)")
    ap.add_argument("--recipes", nargs="+", default=["ours", "timm", "course", "ours-v0.1"])
    ap.add_argument("--repeats", type=int, default=1, help="run the whole list this many times (medians)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING, format="  %(message)s")
    logging.getLogger("catdog_fastai").setLevel(logging.INFO)  # catdog-train's own lines: decoding, epochs

    m = bench.machine()
    with tempfile.TemporaryDirectory() as tmp:
        data = replicate(Path(args.data), Path(tmp) / "images", args.copies)
        n_photos = sum(1 for _ in data.rglob("*.jpg"))
        print(
            f"{bench.describe(m)}\n{n_photos} photos (80 % trained on), {ARCH}, 224 px, batch 32, "
            f"1 + {args.epochs} epochs; workers {workers()}",
            flush=True,
        )
        rs: dict[str, list[dict]] = {r: [] for r in args.recipes}
        for rep in range(args.repeats):
            for recipe in args.recipes:
                try:
                    r = run(recipe, data, args, seed=rep, task="breeds", tmp=Path(tmp), score=False)
                except Exception as e:  # noqa: BLE001 - report and go on with the other recipes
                    print(f"{recipe:13} failed: {type(e).__name__}: {e}", flush=True)
                    continue
                rs[recipe].append(dict(seed=rep, img_s=r["img_s"], wall_s=r["minutes"] * 60))
                print(
                    f"{recipe:13} {r['img_s']:7.1f} img/s (unfrozen epochs)   whole call {r['minutes'] * 60:6.1f} s",
                    flush=True,
                )
    summary = {
        k: dict(img_s=statistics.median(r["img_s"] for r in v), wall_s=statistics.median(r["wall_s"] for r in v))
        for k, v in rs.items()
        if v
    }
    base = summary.get("timm")
    print("\nmedians" + (" and ratio to the plain timm loop" if base else ""))
    for recipe, s in summary.items():
        if base:
            s.update(img_s_ratio=s["img_s"] / base["img_s"], wall_ratio=s["wall_s"] / base["wall_s"])
        ratio = f"  {s['img_s_ratio']:.2f}x" if base else ""
        print(f"{recipe:13} {s['img_s']:7.1f} img/s{ratio}   whole call {s['wall_s']:6.1f} s")
    res = dict(photos=n_photos, workers=workers(), runs=rs, medians=summary)
    print(f"results: {bench.save('throughput', res, args, m)}")


if __name__ == "__main__":
    main()
