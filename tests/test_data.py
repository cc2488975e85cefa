import shutil
from collections import Counter
from pathlib import Path

import pytest
from conftest import PETS, tiny_cfg
from PIL import Image

from catdog_fastai import TrainConfig
from catdog_fastai.cache import ImageCache
from catdog_fastai.data import get_dls
from catdog_fastai.errors import DataError
from catdog_fastai.labels import breed, cat_or_dog, is_cat, label_func
from catdog_fastai.sources import download_pets, find_images, image_dir
from catdog_fastai.splits import split_indices


@pytest.mark.parametrize(
    "name,b,cat",
    [
        ("Abyssinian_34.jpg", "Abyssinian", True),
        ("great_pyrenees_12.jpg", "great_pyrenees", False),
        ("British_Shorthair_7.jpg", "British_Shorthair", True),
        ("/a/b/staffordshire_bull_terrier_100.jpg", "staffordshire_bull_terrier", False),
    ],
)
def test_labels_from_file_names(name, b, cat):
    assert breed(name) == b and is_cat(name) is cat and cat_or_dog(Path(name)) == ("cat" if cat else "dog")


def test_fixture_has_all_37_breeds_and_both_species():
    items, skipped = find_images(PETS)
    assert not skipped
    assert len({breed(p) for p in items}) == 37
    assert {cat_or_dog(p) for p in items} == {"cat", "dog"}


def test_bad_names_and_tasks_are_refused():
    with pytest.raises(ValueError, match="Breed_N"):
        breed("IMG_0001x.jpg.bak")
    with pytest.raises(ValueError, match="unknown task"):
        label_func("dogs")


def test_quirky_and_broken_files_are_skipped_and_counted(pets_copy):
    (pets_copy / "Abyssinian_999.jpg").write_text("not a jpeg")
    (pets_copy / "beagle_999.jpg").write_bytes((PETS / "beagle_10.jpg").read_bytes()[:300])  # truncated
    (pets_copy / "Abyssinian_101.mat").write_bytes(b"MATLAB 5.0")  # the real dataset has these among the images
    (pets_copy / "notes.jpg").write_bytes((PETS / "beagle_10.jpg").read_bytes())  # not Breed_N
    Image.new("RGB", (20, 20)).save(pets_copy / "pug_998.jpg")  # under 32 px
    Image.new("1", (9000, 6000)).save(pets_copy / "pug_999.png")  # 54 Mpx: a decompression bomb, not a pet
    items, skipped = find_images(pets_copy)
    assert len(items) == 113
    assert set(skipped) == {"Abyssinian_999.jpg", "beagle_999.jpg", "notes.jpg", "pug_998.jpg", "pug_999.png"}
    assert "Abyssinian_101.mat" not in skipped  # ignored, not an image


def test_missing_empty_and_unnamed_folders(tmp_path):
    with pytest.raises(DataError, match="not found"):
        image_dir(tmp_path / "nope")
    with pytest.raises(DataError, match="no image files"):
        find_images(tmp_path)
    shutil.copy(PETS / "beagle_10.jpg", tmp_path / "photo-0001.jpg")
    with pytest.raises(DataError, match="Breed_N"):
        find_images(tmp_path)
    shutil.copy(PETS / "beagle_10.jpg", tmp_path / "IMG_0001.jpg")  # Breed_N-shaped, but one "breed" only
    with pytest.raises(DataError, match="only one class"):
        get_dls(tiny_cfg(tmp_path, data=str(tmp_path), task="breeds"))


def test_pets_shaped_folder_uses_images_subfolder(tmp_path):
    (tmp_path / "images").mkdir()
    assert image_dir(tmp_path) == tmp_path / "images"
    assert image_dir(PETS) == PETS


def _labels(items):
    return [breed(p) for p in items]


def _split(items, labels, root, **kw):
    "`split_indices` with catdog-train's defaults for what a test does not name."
    d = TrainConfig()
    return split_indices(items, labels, root, **{"split": d.split, "valid_pct": d.valid_pct, "seed": d.seed, **kw})


def test_random_split_is_seeded_and_keeps_every_valid_class_in_train():
    items, _ = find_images(PETS)
    labels = _labels(items)
    t1, v1 = _split(items, labels, PETS, valid_pct=0.3, seed=1)
    t2, v2 = _split(items, labels, PETS, valid_pct=0.3, seed=1)
    assert (t1, v1) == (t2, v2) and not set(t1) & set(v1) and len(t1) + len(v1) == len(items)
    assert {labels[i] for i in v1} <= {labels[i] for i in t1}
    t3, v3 = _split(items, labels, PETS, valid_pct=0.3, seed=2)
    assert v3 != v1


def test_stratified_split_puts_every_breed_in_validation():
    items, _ = find_images(PETS)
    labels = _labels(items)
    _, valid = _split(items, labels, PETS, split="stratified", valid_pct=0.34)
    assert {labels[i] for i in valid} == set(labels)


def test_class_with_one_image_stays_in_training(pets_copy, caplog):
    for p in pets_copy.glob("Birman_*"):
        p.unlink()
    shutil.copy(PETS / "Birman_15.jpg", pets_copy / "Birman_15.jpg")
    items, _ = find_images(pets_copy)
    labels = _labels(items)
    train, valid = _split(items, labels, pets_copy, split="stratified", valid_pct=0.5)
    birman = labels.index("Birman")
    assert birman in train and birman not in valid
    assert "single image" in caplog.text


def _fake_pets_root(tmp_path, pets_copy, broken=False):
    root = tmp_path / "pets"
    root.mkdir()
    shutil.move(str(pets_copy), root / "images")
    ann = root / "annotations"
    ann.mkdir()
    stems = sorted(p.stem for p in (root / "images").glob("*.jpg"))
    test = stems[::4]
    (ann / "trainval.txt").write_text("".join(f"{s} 1 1 1\n" for s in stems if s not in test))
    (ann / "test.txt").write_text(
        "# comment\n" + "".join(f"{s} 1 1 1\n" for s in test) + ("garbage!\n" if broken else "")
    )
    return root, set(test)


def test_official_split_reads_annotations(tmp_path, pets_copy):
    root, test = _fake_pets_root(tmp_path, pets_copy)
    items, _ = find_images(image_dir(root))
    train, valid = _split(items, _labels(items), root, split="official")
    assert {items[i].stem for i in valid} == test
    assert not {items[i].stem for i in train} & test


def test_broken_annotations_say_where(tmp_path, pets_copy):
    root, _ = _fake_pets_root(tmp_path, pets_copy, broken=True)
    items, _ = find_images(image_dir(root))
    with pytest.raises(DataError, match=r"test\.txt:\d+"):
        _split(items, _labels(items), root, split="official")
    with pytest.raises(DataError, match="needs"):
        _split(items, _labels(items), PETS, split="official")


def test_dls_batches_have_the_right_shape_and_vocab():
    dls = get_dls(tiny_cfg(PETS, task="catdog"))
    assert list(dls.vocab) == ["cat", "dog"]
    xb, yb = dls.one_batch()
    assert xb.shape == (16, 3, 64, 64) and yb.shape == (16,)
    xv, _ = dls.valid.one_batch()
    assert xv.shape[1:] == (3, 64, 64)


def test_offline_download_fails_fast_with_the_fix(no_network, monkeypatch, tmp_path):
    monkeypatch.setenv("FASTAI_HOME", str(tmp_path))  # no cached copy of Pets
    with pytest.raises(DataError) as e:
        download_pets()
    assert "--data DIR" in str(e.value) and "could not download" in str(e.value)


def test_image_cache_gives_the_same_batches_as_decoding_every_epoch():
    "Validation pixels are identical with and without the cache; training crops come from the shrunk photo."
    import torch

    cached, plain = (get_dls(tiny_cfg(PETS, task="breeds", cache=c)) for c in (True, False))
    cache = cached.image_cache
    assert isinstance(cache, ImageCache) and len(cache.views) == len(find_images(PETS)[0])
    assert plain.image_cache.views == {}  # the default: nothing decoded ahead
    xc, yc = cached.valid.one_batch()
    xp, yp = plain.valid.one_batch()
    assert torch.equal(yc, yp) and torch.equal(xc, xp)
    for p in cached.train.items[:5]:
        a = cache.views[p]
        assert min(a.shape[:2]) <= 80 and a.shape[2] == 3  # short side shrunk to --presize 80


def test_image_cache_never_travels_in_a_pickle_and_respects_its_budget(pets_copy):
    import pickle

    items, _ = find_images(pets_copy)
    cache = ImageCache()
    used = cache.fill(items[:10], items[10:15], size=64, presize=80, budget=10**9)
    assert len(cache.views) == 15 and used == sum(a.nbytes for a in cache.views.values())
    assert pickle.loads(pickle.dumps(cache)).views == {}  # exports stay small and carry no photos
    small = ImageCache()
    assert small.fill(items[:10], [], size=64, presize=80, budget=40_000) <= 40_000
    assert 0 < len(small.views) < 10
    (pets_copy / items[0].name).write_bytes(b"gone bad after the check")
    again = ImageCache()
    again.fill(items[:3], [], size=64, presize=80, budget=10**9)
    assert items[0] not in again.views and len(again.views) == 2  # left to the normal path, which reports it
    assert again(items[0]) == items[0]


def test_default_split_is_stratified_so_every_breed_is_validated():
    "With catdog-train's defaults, pets-dev's shape (3 breeds of 195 photos, 34 of 5) validates every breed."
    labels = [f"big{b}" for b in range(3) for _ in range(195)] + [f"small{b}" for b in range(34) for _ in range(5)]
    items = [Path(f"{y}_{i}.jpg") for i, y in enumerate(labels)]
    train, valid = _split(items, labels, Path("."))  # split, valid_pct and seed as TrainConfig() has them
    per_breed = Counter(labels[i] for i in valid)
    assert set(per_breed) == set(labels) and not set(train) & set(valid)
    assert all(per_breed[f"small{b}"] == 1 for b in range(34)) and all(per_breed[f"big{b}"] == 39 for b in range(3))


def test_folders_split_reads_train_and_valid_subfolders(tmp_path):
    root = tmp_path / "data"
    for part in ("train", "valid"):
        (root / part).mkdir(parents=True)
    for i, p in enumerate(sorted(PETS.glob("*.jpg"))):
        shutil.copy(p, root / ("valid" if i % 3 == 0 else "train") / p.name)
    dls = get_dls(tiny_cfg(tmp_path / "out", data=str(root), split="folders", task="catdog"))
    assert {Path(f).parent.name for f in dls.train_ds.items} == {"train"}
    assert {Path(f).parent.name for f in dls.valid_ds.items} == {"valid"}
    assert len(dls.valid_ds) == len(list((root / "valid").iterdir()))
    shutil.rmtree(root / "valid")
    with pytest.raises(DataError, match="--split folders needs .*valid"):
        get_dls(tiny_cfg(tmp_path / "out", data=str(root), split="folders"))


def test_balanced_sampling_draws_every_class_about_equally(tmp_path):
    import numpy as np

    root = tmp_path / "pets"
    root.mkdir()
    for p in sorted(PETS.glob("*.jpg")):  # 3 photos per breed; Bengal made 10x as big with copies
        shutil.copy(p, root / p.name)
        if p.name.startswith("Bengal_"):
            for k in range(1, 10):
                shutil.copy(p, root / f"Bengal_{1000 * k + int(p.stem.split('_')[1])}.jpg")
    share = {}
    for sampling in ("instance", "balanced"):
        dls = get_dls(tiny_cfg(tmp_path / "out", data=str(root), task="breeds", sampling=sampling))
        np.random.seed(0)  # fastai's WeightedDL draws with numpy's global RNG
        idxs = [i for _ in range(20) for i in dls.train.get_idxs()]
        share[sampling] = np.mean([breed(dls.train_ds.items[i]) == "Bengal" for i in idxs])
        assert len(idxs) == 20 * len(dls.train_ds)  # an epoch is as long either way
    assert share["instance"] > 0.18  # 24 of ~96 training photos
    assert share["balanced"] < 0.06  # about 1 draw in 37, like every other breed
