"""Your own photos: one subfolder per class (train/ and valid/ optional) or a CSV, built at test time from the
fixture photos under names that are not Pets names, so every label must come from the folder or the CSV."""

import pickle
import shutil
from pathlib import Path

import pytest
from conftest import PETS, tiny_cfg

from catdog_fastai.data import get_dls
from catdog_fastai.errors import DataError
from catdog_fastai.sources import find_data

PHOTOS = sorted(PETS.glob("*.jpg"))
BEARS = ("black", "grizzly", "teddy")


def _photos(folder: Path, n: int, start: int = 0) -> list[Path]:
    "`n` fixture photos copied into `folder` as img001.jpg, img002.jpg, ... (names that carry no label)."
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        dst = folder / f"img{i + 1:03d}.jpg"
        shutil.copy(PHOTOS[(start + i) % len(PHOTOS)], dst)
        out.append(dst)
    return out


def bears(root: Path, n: dict[str, int] | int = 6) -> Path:
    "fastbook's bears as class folders: root/grizzly/img001.jpg, ...; `n` photos per class."
    counts = n if isinstance(n, dict) else dict.fromkeys(BEARS, n)
    for k, (cls, m) in enumerate(counts.items()):
        _photos(root / cls, m, start=10 * k)
    return root


def bears_split(root: Path) -> Path:
    "The train/valid variant: root/train/grizzly/..., root/valid/grizzly/... (GrandparentSplitter's layout)."
    bears(root / "train", 4)
    for k, cls in enumerate(BEARS):
        _photos(root / "valid" / cls, 2, start=60 + 10 * k)
    return root


def bears_csv(root: Path, is_valid: list[str] | None = None, header: str = "file,label") -> Path:
    "root/labels.csv listing photos/imgNNN.jpg with a bear label each (and is_valid when given)."
    files = _photos(root / "photos", 9)
    rows = [header + (",is_valid" if is_valid else "")]
    for i, f in enumerate(files):
        rows.append(f"photos/{f.name},{BEARS[i % 3]}" + (f",{is_valid[i]}" if is_valid else ""))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def test_labels_are_the_class_folder_names(tmp_path):
    root = bears(tmp_path / "bears")
    found = find_data(root)
    assert found.layout == "folders" and found.is_valid is None
    assert found.labels == [p.parent.name for p in found.items] and set(found.labels) == set(BEARS)
    dls = get_dls(tiny_cfg(tmp_path / "out", data=str(root)))
    assert list(dls.vocab) == sorted(BEARS)
    assert {Path(p).parent.name for p in dls.valid_ds.items} == set(BEARS)  # stratified: every class validated


def test_train_and_valid_folders_are_the_split(tmp_path):
    root = bears_split(tmp_path / "bears")
    dls = get_dls(tiny_cfg(tmp_path / "out", data=str(root), split="random"))  # the data's own split wins
    assert {Path(p).parent.parent.name for p in dls.train_ds.items} == {"train"}
    assert {Path(p).parent.parent.name for p in dls.valid_ds.items} == {"valid"}
    assert len(dls.valid_ds) == 6 and list(dls.vocab) == sorted(BEARS)


def test_pets_names_in_train_and_valid_are_split_without_the_flag(tmp_path):
    root = tmp_path / "pets"
    for i, p in enumerate(PHOTOS):
        (root / ("valid" if i % 3 == 0 else "train")).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, root / ("valid" if i % 3 == 0 else "train") / p.name)
    found = find_data(root, task="breeds")
    assert found.layout == "pets" and sum(found.is_valid) == len(list((root / "valid").iterdir()))
    assert found.labels[0] == found.items[0].stem.rsplit("_", 1)[0]


def test_csv_labels_relative_to_its_folder(tmp_path, monkeypatch):
    csv = bears_csv(tmp_path / "data")
    monkeypatch.chdir(tmp_path)  # file names are relative to the CSV, not to the working directory
    assert find_data(csv).layout == "csv"
    dls = get_dls(tiny_cfg(tmp_path / "out", data=str(csv)))
    assert list(dls.vocab) == sorted(BEARS)
    assert {Path(p).parent for p in dls.train_ds.items} == {tmp_path / "data" / "photos"}
    assert {dls.vocab[int(y)] for _, y in dls.valid_ds} == set(BEARS)  # stratified: every class validated


def test_csv_is_valid_column_is_the_split(tmp_path):
    flags = ["False", "0", "True", "false", "1", "FALSE", "0", "0", "TRUE"]
    csv = bears_csv(tmp_path / "data", is_valid=flags)
    found = find_data(csv)
    assert found.is_valid == [f.lower() in ("true", "1") for f in flags]
    assert pickle.loads(pickle.dumps(found.get_y)).labels == {}  # model.pkl carries no list of training files
    dls = get_dls(tiny_cfg(tmp_path / "out", data=str(csv)))
    assert sorted(Path(p).name for p in dls.valid_ds.items) == ["img003.jpg", "img005.jpg", "img009.jpg"]


def _one_class(root):
    _photos(root / "grizzly", 4)


def _single_photo(root):
    bears(root, {"grizzly": 3, "black": 3, "teddy": 1})


def _nested(root):
    bears(root, 3)
    _photos(root / "grizzly" / "old", 2)


def _mixed(root):
    bears(root, 3)
    shutil.copy(PHOTOS[0], root / PHOTOS[0].name)  # a Pets-named photo beside the class folders


def _extra_beside_split(root):
    bears_split(root)
    _photos(root / "test" / "grizzly", 2)


def _split_layouts_differ(root):
    bears(root / "train", 3)
    (root / "valid").mkdir()
    for p in PHOTOS[:4]:
        shutil.copy(p, root / "valid" / p.name)


@pytest.mark.parametrize(
    "build,message",
    [
        (_one_class, r"only one class \('grizzly'\) in .*bears: a classifier needs at least two"),
        (_single_photo, r"1 class\(es\) in .*bears with a single photo \(teddy\): each class needs at least 2"),
        (_nested, r"grizzly/old is a folder inside the class folder grizzly: expected the photos"),
        (_mixed, r"bears mixes photos \(Abyssinian_1\.jpg, \.\.\.\) with class folders \(black, grizzly, teddy\)"),
        (_extra_beside_split, r"has train/ and valid/ beside other photos or folders \(test\)"),
        (_split_layouts_differ, r"train holds class folder names but .*valid holds Oxford-IIIT Pets file names"),
    ],
)
def test_folder_errors_say_what_was_expected(tmp_path, build, message):
    root = tmp_path / "bears"
    build(root)
    with pytest.raises(DataError, match=message):
        get_dls(tiny_cfg(tmp_path / "out", data=str(root)))


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda t: t.replace("file,label", "path,label"), r"labels\.csv has no file column: expected a header row"),
        (
            lambda t: t.replace("photos/img002.jpg", "photos/gone.jpg"),
            r"1 of 9 files .* do not exist, e\.g\. photos/gone",
        ),
        (lambda t: t.replace(",True\n", ",maybe\n", 1), r"is_valid must be True/False or 1/0, got 'maybe' on line 4"),
        (lambda t: t.replace("img002.jpg", "img001.jpg"), r"lists photos/img001\.jpg more than once"),
        (lambda t: t.replace(",grizzly,", ",,"), r"line 3 has an empty file or label"),
    ],
)
def test_csv_errors_say_what_was_expected(tmp_path, edit, message):
    csv = bears_csv(tmp_path / "data", is_valid=["False", "False", "True"] * 3)
    csv.write_text(edit(csv.read_text()))
    with pytest.raises(DataError, match=message):
        get_dls(tiny_cfg(tmp_path / "out", data=str(csv)))


def test_imbalance_is_a_warning_naming_the_smallest_classes(tmp_path, caplog):
    get_dls(tiny_cfg(tmp_path / "out", data=str(bears(tmp_path / "even", 4))))
    assert "imbalanced" not in caplog.text
    root = bears(tmp_path / "uneven", {"grizzly": 10, "black": 2, "teddy": 4})
    get_dls(tiny_cfg(tmp_path / "out", data=str(root)))
    assert "imbalanced classes in" in caplog.text and "largest has 10 photos" in caplog.text
    assert "black (2)" in caplog.text and "teddy" not in caplog.text.split("imbalanced")[-1]


@pytest.fixture(scope="module")
def bears_model(tmp_path_factory):
    "A 3-class export trained once on class folders with a train/valid split (tiny model, seconds)."
    from catdog_fastai.train import train_model

    tmp = tmp_path_factory.mktemp("own")
    root = bears_split(tmp / "bears")
    train_model(tiny_cfg(tmp / "out", data=str(root)))
    return tmp / "out", root


def test_train_export_predict_and_evaluate_on_class_folders(bears_model, capsys):
    from catdog_fastai.evaluate import evaluate_folder
    from catdog_fastai.predict import load_predictor
    from catdog_fastai.predict_cli import main as predict_main

    out, root = bears_model
    pred = load_predictor(out)
    assert pred.vocab == sorted(BEARS)
    assert pred.predict(root / "valid" / "teddy" / "img001.jpg", top_k=1)[0][0] in BEARS
    res = evaluate_folder(out, root)  # the data's own split: only valid/ is scored
    assert res["labels_from"] == "folders" and res["n"] == 6
    assert res["n_per_class"] == dict.fromkeys(BEARS, 2) and "catdog_accuracy" not in res
    assert 0 <= res["balanced_accuracy"] <= 1 and res["confusion_matrix"]["labels"] == sorted(BEARS)
    assert evaluate_folder(out, root / "train")["n"] == 12
    assert predict_main([str(root / "valid"), "--model", str(out), "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    answers = [line.split("\t")[1] for line in lines]  # the three answers: a bear class, unsure, or unknown
    named = [a.split(" (")[0].split(" or ")[0].rstrip("?") for a in answers]  # "grizzly (91 %)", "black or teddy? ..."
    said = [n in BEARS or a.startswith(pred.unknown_text()) for n, a in zip(named, answers)]
    assert len(lines) == 6 and all(said), answers
    assert pred.unknown_text() == "This doesn't look like any of this model's classes"
