"""Photos decoded once per run and kept in RAM (`--cache`), instead of decoded again every epoch.

An optional speed-up with its own memory budget, so it sits apart from the DataBlock (`data.py`) that uses it as its
`get_x`. It needs no fastai: numpy, PIL and `images.open_image`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .images import ImageError, center_crop_resize, open_image


class ImageCache:
    """Photos decoded once per run and kept in RAM, so no epoch after the first pays for JPEG decoding again.

    Without a cache, every photo is decoded again every epoch. The cache pays only where decoding, not the model,
    sets the pace (few CPU cores per GPU), and it holds every photo in memory, so it is off by default (`--cache`
    turns it on). Training photos are kept with their short side shrunk to `presize` (the random crop happens
    after); validation photos are kept as their final `center_crop_resize` view, so validation sees exactly the
    pixels the predictor sees. Used as the DataBlock's `get_x`: a cached item comes back
    as a PIL image, any other as its path, and `PetImage.create` accepts both. It pickles empty, so an export never
    carries photos, and DataLoader workers started by fork read the parent's copy without duplicating it.
    """

    def __init__(self) -> None:
        self.views: dict[Path, np.ndarray] = {}

    def __getstate__(self) -> dict:
        return {"views": {}}

    def __call__(self, fn: Path) -> Path | Image.Image:
        a = self.views.get(fn)
        return fn if a is None else Image.fromarray(a)

    def fill(self, train: list[Path], valid: list[Path], size: int, presize: int, budget: int) -> int:
        "Decode the photos (in threads; PIL releases the GIL) until `budget` bytes are used; returns that size."

        def view(job: tuple[Path, bool]) -> np.ndarray | None:
            p, is_valid = job
            try:
                img = open_image(p)
            except ImageError:
                return None  # the normal path reports it when the item is loaded
            if is_valid:
                return np.asarray(center_crop_resize(img, size))
            w, h = img.size
            if min(w, h) > presize:
                k = presize / min(w, h)
                img = img.resize((max(presize, round(w * k)), max(presize, round(h * k))), Image.Resampling.BILINEAR)
            return np.asarray(img)

        jobs = [(p, True) for p in valid] + [(p, False) for p in train]
        used = 0
        with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as ex:
            for (p, _), a in zip(jobs, ex.map(view, jobs)):
                if a is not None and used + a.nbytes <= budget:
                    self.views[p] = a
                    used += a.nbytes
        return used


def available_memory() -> int:
    "Bytes of memory available to this process (Linux MemAvailable), or 0 when it cannot be told."
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
