"""Decode any photo a person might hand us into an RGB PIL image, or say clearly why we can't.

One decoder for training, `catdog-predict`, the Python API and the web app, so that a photo is seen the same way
everywhere: EXIF orientation applied, palette/alpha/16-bit/CMYK/grayscale converted to 8-bit RGB, animated files
reduced to their first frame, and decompression bombs refused before they are decoded.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import CatdogError

MAX_PIXELS = 40_000_000  # ~ 8000 x 5000; larger is almost certainly a decompression bomb, not a pet photo
MIN_SIDE = 32  # smaller images carry no usable signal and break some backbones' strides
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")

ImageInput = str | os.PathLike | bytes | bytearray | Image.Image | np.ndarray


class ImageError(CatdogError):
    """A file or object that is not a usable photo; the message says why in plain words."""


def _to_rgb(img: Image.Image) -> Image.Image:
    "Convert any PIL mode to 8-bit RGB; transparent areas become white, 16-bit data is scaled, not clipped."
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img if img.mode == "RGB" else img.convert("RGB")


def _from_array(a: np.ndarray) -> Image.Image:
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # CHW -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ImageError(f"an image array must be HxW, HxWx3 or HxWx4; got shape {tuple(a.shape)}")
    if a.size == 0:
        raise ImageError("the image array is empty")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                raise ImageError("the image array contains NaN or infinite values")
            a = a * 255.0 if a.max() <= 1.0 else a
        elif a.dtype == np.uint16:
            a = a / 257.0
        elif a.dtype == np.bool_:
            a = a * 255
        a = np.clip(a, 0, 255).round().astype(np.uint8)
    return Image.fromarray(a)


def open_image(x: ImageInput, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> Image.Image:
    """Return `x` (a path, bytes, PIL image or numpy array) as an upright RGB `PIL.Image`.

    Raises `ImageError` with a message meant for the person who supplied the file; never a raw PIL traceback.
    """
    name = "the image"
    if isinstance(x, np.ndarray):
        img = _from_array(x)
    elif isinstance(x, Image.Image):
        img = x
    else:
        if isinstance(x, (bytes, bytearray)):
            if len(x) == 0:
                raise ImageError("the file is empty (0 bytes)")
            src: object = io.BytesIO(bytes(x))
        elif isinstance(x, (str, os.PathLike)):
            p = Path(x)
            name = f"'{p.name}'"
            if not p.exists():
                raise ImageError(f"{name} does not exist ({p})")
            if p.is_dir():
                raise ImageError(f"{name} is a folder, not an image file")
            if p.stat().st_size == 0:
                raise ImageError(f"{name} is empty (0 bytes)")
            src = p
        else:
            raise ImageError(
                f"cannot read an image from a {type(x).__name__}; give a file path, bytes, a PIL image or a numpy array"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(src)  # type: ignore[arg-type]
                if img.width * img.height > max_pixels:
                    raise ImageError(
                        f"{name} is {img.width}x{img.height} pixels, over the limit of {max_pixels:,}: "
                        "refused as a possible decompression bomb; resize it first"
                    )
                img.load()
        except ImageError:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            if isinstance(e, UnidentifiedImageError):
                raise ImageError(f"{name} is not an image file (or a format Pillow cannot read)") from None
            raise ImageError(f"{name} is too large to decode safely (decompression bomb guard)") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"{name} is damaged or truncated and cannot be decoded ({e})") from None
    if img.width * img.height > max_pixels:
        raise ImageError(f"{name} is {img.width}x{img.height} pixels, over the limit of {max_pixels:,}")
    if min(img.size) < min_side:
        raise ImageError(f"{name} is only {img.width}x{img.height} pixels; at least {min_side} px a side is needed")
    img = ImageOps.exif_transpose(img) or img
    return _to_rgb(img)


def check_image_file(path: str | os.PathLike) -> str | None:
    """Return None if `path` decodes as a usable image, else the reason it does not.

    Decodes at reduced scale (JPEG draft mode), so a whole dataset is checked in seconds while still catching
    truncated files, which a header-only `verify()` misses.
    """
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                return f"{img.width}x{img.height} pixels is over the {MAX_PIXELS:,} limit"
            if min(img.size) < MIN_SIDE:
                return f"only {img.width}x{img.height} pixels"
            img.draft("RGB", (64, 64))
            img.load()
    except Exception as e:  # noqa: BLE001 - any failure means "skip this file", and we report why
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return None


def center_crop_resize(img: Image.Image, size: int) -> Image.Image:
    """Centre square crop of the short side, resized to `size` x `size` (bilinear).

    This is the validation/inference view of a photo: `data.Presize` uses it for the validation set and
    `predict.Predictor` for every prediction, so the model sees identical pixels in both.
    """
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + s, top + s))
