"""The item transform of presizing (fastbook ch. 5), `Presize`.

Each training item is first cropped at random to a large `presize` square on the CPU, then the batch is warped,
rotated, zoomed, lit and resized to `size` in one interpolation on the device (`aug_transforms`, in `data.get_dls`).
The validation set gets the deterministic `images.center_crop_resize` view, the same function the predictor uses.
"""

from __future__ import annotations

import random

from fastai.vision.augment import RandTransform
from fastai.vision.core import PILImage
from PIL import Image

from .images import center_crop_resize


class Presize(RandTransform):
    """Training: a random square crop (>= `min_scale` of the short side) resized to `presize`.

    Validation: the centre crop at the final `size`, so the batch transforms have nothing left to resample.
    """

    order, split_idx = 1, None

    def __init__(self, size: int, presize: int, min_scale: float = 0.75):
        super().__init__(p=1.0)
        self.size, self.presize, self.min_scale = size, presize, min_scale

    def before_call(self, b, split_idx: int | None) -> None:  # noqa: ANN001
        super().before_call(b, split_idx)
        self.valid = bool(split_idx)
        self.scale, self.px, self.py = random.uniform(self.min_scale, 1.0), random.random(), random.random()

    def encodes(self, x: PILImage) -> PILImage:
        if self.valid:
            return type(x)(center_crop_resize(x, self.size))
        w, h = x.size
        s = max(1, int(min(w, h) * self.scale))
        left, top = int((w - s) * self.px), int((h - s) * self.py)
        box = (left, top, left + s, top + s)
        return type(x)(x.resize((self.presize, self.presize), Image.Resampling.BILINEAR, box=box))
