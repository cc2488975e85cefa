"""Everyday degradations of a photo, for measuring what a model does with photos worse than its training photos.

Each takes and returns an RGB PIL image: the photo a person might upload, before the predictor's own crop and
resize. The first three are the ones BENCHMARKS.md §1 reports accuracy on; all of them are in §2's unknown rates.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image, ImageFilter

from catdog_fastai.images import MIN_SIDE


def long_side(px: int) -> Callable[[Image.Image], Image.Image]:
    "Shrink so the long side is `px`, the short side kept at 32 px or more (smaller is refused as no photo at all)."

    def shrink(img: Image.Image) -> Image.Image:
        scale = max(px / max(img.size), MIN_SIDE / min(img.size))
        return img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)

    return shrink


def jpeg(quality: int) -> Callable[[Image.Image], Image.Image]:
    def recompress(img: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    return recompress


def center_crop(frac: float) -> Callable[[Image.Image], Image.Image]:
    def crop(img: Image.Image) -> Image.Image:
        w, h = round(img.width * frac), round(img.height * frac)
        left, top = (img.width - w) // 2, (img.height - h) // 2
        return img.crop((left, top, left + w, top + h))

    return crop


DEGRADATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "long96": long_side(96),
    "jpeg20": jpeg(20),
    "gray": lambda img: img.convert("L").convert("RGB"),
    "long64": long_side(64),
    "long128": long_side(128),
    "crop60": center_crop(0.6),
    "blur": lambda img: img.filter(ImageFilter.GaussianBlur(1.5)),
}
ACCURACY_VIEWS = ("long96", "jpeg20", "gray")  # BENCHMARKS.md §1
