"""Every awkward file a person might upload, made on the fly: the table the bad-input tests run through.

`OK` cases are real photos in odd encodings that must be converted and predicted; `BAD` cases must give a clear
message (an `ImageError`) and never a traceback.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO = Path(__file__).parent / "data" / "pets" / "Bengal_1.jpg"


def _photo() -> Image.Image:
    return Image.open(PHOTO).convert("RGB")


def _save(img: Image.Image, path: Path, fmt: str, **kw) -> Path:
    img.save(path, format=fmt, **kw)
    return path


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def ok_cases(d: Path) -> dict[str, Path]:
    "Name -> file that must load as an RGB photo."
    im = _photo()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    frames = [im, im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    rgba = im.convert("RGBA")
    rgba.putalpha(128)
    arr16 = (np.asarray(im.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return {
        "jpeg": _save(im, d / "plain.jpg", "JPEG"),
        "gif_named_jpg": _save(im.convert("P"), d / "gif_named.jpg", "GIF"),
        "animated_gif": _save(frames[0], d / "animated.gif", "GIF", save_all=True, append_images=frames[1:]),
        "rgba_png": _save(rgba, d / "rgba.png", "PNG"),
        "rgba_png_named_jpg": _save(rgba, d / "rgba_named.jpg", "PNG"),
        "palette_transparent_png": _save(im.convert("P"), d / "palette.png", "PNG", transparency=0),
        "grayscale_jpeg": _save(im.convert("L"), d / "gray.jpg", "JPEG"),
        "la_png": _save(im.convert("LA"), d / "la.png", "PNG"),
        "bilevel_png": _save(im.convert("1"), d / "bw.png", "PNG"),
        "png16": _save(Image.fromarray(arr16), d / "sixteen.png", "PNG"),
        "cmyk_jpeg": _save(im.convert("CMYK"), d / "cmyk.jpg", "JPEG"),
        "exif_rotated_jpeg": _save(im, d / "sideways.jpg", "JPEG", exif=exif.tobytes()),
        "webp": _save(im, d / "photo.webp", "WEBP"),
        "bmp": _save(im, d / "photo.bmp", "BMP"),
        "tiff": _save(im, d / "photo.tiff", "TIFF"),
        "progressive_jpeg": _save(im, d / "progressive.jpg", "JPEG", progressive=True),
    }


def bad_cases(d: Path) -> dict[str, Path]:
    "Name -> file that must be refused with a clear ImageError."
    good = io.BytesIO()
    _photo().save(good, format="JPEG")
    data = good.getvalue()
    (d / "text.jpg").write_text("this is not a photo\n" * 20)
    (d / "empty.jpg").write_bytes(b"")
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "header_only.jpg").write_bytes(data[:200])
    (d / "random.png").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "page.png").write_text("<html><body>not an image</body></html>")
    (d / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"></svg>')
    (d / "pdf.jpg").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    (d / "zip.jpg").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    Image.new("1", (8000, 6000)).save(d / "bomb.png", format="PNG")  # 48 Mpx of zeros: a few KB on disk
    png = io.BytesIO()
    _photo().save(png, format="PNG")
    (d / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 3])
    bad_crc = bytearray(png.getvalue())
    bad_crc[40:60] = b"\xff" * 20  # scribble over image data: the zlib stream and CRCs no longer match
    (d / "corrupt.png").write_bytes(bytes(bad_crc))
    gif = io.BytesIO()
    _photo().convert("P").save(gif, format="GIF")
    (d / "truncated.gif").write_bytes(gif.getvalue()[:100])
    (d / "elf.jpg").write_bytes(b"\x7fELF\x02\x01\x01" + b"\x00" * 200)
    (d / "data.json").write_text('{"label": "cat"}')
    (d / "mp4.jpg").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    (d / "nulls.png").write_bytes(b"\x00" * 5000)
    (d / "jpeg_magic_only.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    (d / "sliver.png").write_bytes(_png_bytes(Image.new("RGB", (2000, 8), "white")))
    Image.new("RGB", (12, 12), "red").save(d / "tiny.png", format="PNG")
    (d / "a_folder.jpg").mkdir()
    return {
        "text_named_jpg": d / "text.jpg",
        "zero_bytes": d / "empty.jpg",
        "truncated_jpeg": d / "truncated.jpg",
        "jpeg_header_only": d / "header_only.jpg",
        "random_bytes": d / "random.png",
        "html_named_png": d / "page.png",
        "svg": d / "drawing.svg",
        "pdf_named_jpg": d / "pdf.jpg",
        "zip_named_jpg": d / "zip.jpg",
        "decompression_bomb": d / "bomb.png",
        "under_32px": d / "tiny.png",
        "thin_sliver": d / "sliver.png",
        "truncated_png": d / "truncated.png",
        "corrupt_png_data": d / "corrupt.png",
        "truncated_gif": d / "truncated.gif",
        "executable_named_jpg": d / "elf.jpg",
        "json_file": d / "data.json",
        "video_named_jpg": d / "mp4.jpg",
        "null_bytes_png": d / "nulls.png",
        "jpeg_magic_only": d / "jpeg_magic_only.jpg",
        "folder": d / "a_folder.jpg",
        "missing_file": d / "does_not_exist.jpg",
    }


# Python objects that are not images at all (the Python API's own bad input)
BAD_OBJECTS = {
    "none": None,
    "int": 42,
    "list": [1, 2, 3],
    "empty_bytes": b"",
    "text_bytes": b"hello, world",
    "empty_array": np.zeros((0, 0, 3), np.uint8),
    "1d_array": np.zeros(100, np.uint8),
    "5_channel_array": np.zeros((64, 64, 5), np.uint8),
    "nan_array": np.full((64, 64, 3), np.nan, np.float32),
}


def _names() -> tuple[list[str], list[str]]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return list(ok_cases(Path(d))), list(bad_cases(Path(d)))


OK_NAMES, BAD_NAMES = _names()  # for pytest.mark.parametrize
