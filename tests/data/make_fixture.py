"""Rebuild tests/data/pets from ../shared/data/pets-dev (run from the repo root; kept for provenance).

Three photos per breed (111) plus the dataset's two format quirks, shrunk to 128 px on the long side.
Each file keeps its real format: Abyssinian_34.jpg stays a GIF and Abyssinian_5.jpg an RGBA PNG.
"""

import re
import sys
from pathlib import Path

from PIL import Image

src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/pets-dev/images")
dst = Path(__file__).parent / "pets"
dst.mkdir(exist_ok=True)
by_breed: dict[str, list[Path]] = {}
for p in sorted(src.glob("*.jpg"), key=lambda p: (p.stem.rsplit("_", 1)[0], int(p.stem.rsplit("_", 1)[1]))):
    by_breed.setdefault(re.sub(r"_\d+$", "", p.stem), []).append(p)
keep = [p for ps in by_breed.values() for p in ps[:3]] + [src / "Abyssinian_34.jpg", src / "Abyssinian_5.jpg"]
for p in keep:
    with Image.open(p) as im:
        fmt = im.format
        im.thumbnail((128, 128))
        im.save(dst / p.name, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
print(len(keep), "files ->", dst)
