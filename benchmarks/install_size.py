"""Installed size of a serving-only environment: the torch path against the ONNX Runtime path.

    python benchmarks/install_size.py

Each path is a list of top-level requirements (what the README tells a serving-only user to install, besides
catdog_fastai itself, which both share); the script follows their requirements recursively through the installed
distributions (environment markers evaluated, extras not taken) and adds up the bytes of every file each
distribution installed, as its RECORD lists them. This environment's versions are the ones measured.
"""

from __future__ import annotations

import os
import re
from importlib import metadata

import bench
from packaging.markers import default_environment
from packaging.requirements import Requirement

PATHS = {
    "torch": ["torch", "timm", "safetensors", "pillow", "numpy", "threadpoolctl"],
    "onnxruntime": ["onnxruntime", "safetensors", "pillow", "numpy", "threadpoolctl"],
}


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(names: list[str]) -> set[str]:
    "The installed distributions `names` need, themselves included."
    env = default_environment() | {"extra": ""}
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = _key(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here: an optional platform dependency
        seen.add(name)
        for r in map(Requirement, dist.requires or []):
            if r.marker is None or r.marker.evaluate(env):
                todo.append(r.name)
    return seen


def size_mb(name: str) -> float:
    "The bytes of the files a distribution installed, in MB."
    dist = metadata.distribution(name)
    total = 0
    for f in dist.files or []:
        p = dist.locate_file(f)
        if os.path.isfile(p):
            total += os.path.getsize(p)
    return total / 1e6


def main() -> None:
    ap = bench.parser(__doc__, "install-size")
    args = ap.parse_args()
    m = bench.machine()
    print(bench.describe(m))
    res: dict = {}
    for path, names in PATHS.items():
        dists = sorted(closure(names))
        sizes = {d: round(size_mb(d), 1) for d in dists}
        res[path] = dict(requirements=names, distributions=sizes, total_mb=round(sum(sizes.values()), 1))
        top = ", ".join(f"{d} {mb:.0f}" for d, mb in sorted(sizes.items(), key=lambda kv: -kv[1])[:4])
        print(f"{path} path: {res[path]['total_mb']:.0f} MB in {len(dists)} distributions (largest: {top} MB)")
    res["ratio"] = res["onnxruntime"]["total_mb"] / res["torch"]["total_mb"]
    print(f"ONNX Runtime path / torch path: {res['ratio']:.3f}")
    print(f"results: {bench.save('install-size', res, args, m)}")


if __name__ == "__main__":
    main()
