from pathlib import Path

import numpy as np
import pytest
from badfiles import BAD_NAMES, BAD_OBJECTS, OK_NAMES, bad_cases, ok_cases
from PIL import Image

from catdog_fastai.images import ImageError, center_crop_resize, check_image_file, open_image

PETS = Path(__file__).parent / "data" / "pets"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    return ok_cases(d), bad_cases(d)


def test_dataset_quirks_load_as_rgb():
    gif, rgba = PETS / "Abyssinian_34.jpg", PETS / "Abyssinian_5.jpg"
    assert Image.open(gif).format == "GIF" and Image.open(rgba).mode == "RGBA"  # the quirks are really there
    for f in (gif, rgba):
        img = open_image(f)
        assert img.mode == "RGB" and min(img.size) >= 32


@pytest.mark.parametrize("name", OK_NAMES)
def test_awkward_but_valid_files_become_rgb(files, name):
    img = open_image(files[0][name])
    assert img.mode == "RGB"
    assert img.size in {(128, 85), (85, 128)}, img.size


def test_exif_orientation_is_applied(files):
    w, h = Image.open(files[0]["exif_rotated_jpeg"]).size
    assert open_image(files[0]["exif_rotated_jpeg"]).size == (h, w)


def test_16bit_png_is_scaled_not_clipped(files):
    a = np.asarray(open_image(files[0]["png16"]))
    ref = np.asarray(Image.open(files[0]["jpeg"]).convert("L"))
    assert a.max() < 256 and abs(int(a[..., 0].mean()) - int(ref.mean())) <= 3  # not a white page


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_files_raise_a_clear_error(files, name):
    path = files[1][name]
    with pytest.raises(ImageError) as e:
        open_image(path)
    msg = str(e.value)
    assert path.name in msg and "Traceback" not in msg
    if path.exists() and path.is_file():
        assert check_image_file(path) is not None or name == "truncated_jpeg"


def test_truncated_jpeg_is_caught_by_the_dataset_check(files):
    assert check_image_file(files[1]["truncated_jpeg"]) is not None
    assert check_image_file(PETS / "Bengal_1.jpg") is None


@pytest.mark.parametrize("name", list(BAD_OBJECTS))
def test_bad_objects_raise_a_clear_error(name):
    with pytest.raises(ImageError):
        open_image(BAD_OBJECTS[name])


def test_bytes_pil_and_arrays_agree():
    path = PETS / "Bengal_1.jpg"
    ref = np.asarray(open_image(path))
    assert np.array_equal(np.asarray(open_image(path.read_bytes())), ref)
    assert np.array_equal(np.asarray(open_image(Image.open(path))), ref)
    assert np.array_equal(np.asarray(open_image(ref)), ref)
    assert np.array_equal(np.asarray(open_image(ref.astype(np.float32) / 255)), ref)
    assert np.array_equal(np.asarray(open_image(np.moveaxis(ref, -1, 0))), ref)  # CHW


def test_center_crop_resize_is_square_and_central():
    img = Image.new("RGB", (300, 100), "black")
    img.paste((255, 0, 0), (100, 0, 200, 100))  # red centre square
    out = np.asarray(center_crop_resize(img, 50))
    assert out.shape == (50, 50, 3) and (out[2:-2, 2:-2, 0] > 250).all() and out[..., 1].max() == 0
