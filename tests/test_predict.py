"""The pickle-free serving path: `load_predictor`, `Predictor.predict/predict_batch`, `catdog-predict`."""

import csv
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from badfiles import BAD_NAMES, BAD_OBJECTS, OK_NAMES, bad_cases, ok_cases
from conftest import PETS
from PIL import Image

from catdog_fastai import ImageError, UnsafeModelError, load_predictor
from catdog_fastai.predict import main as predict_main

PHOTO = PETS / "Bengal_1.jpg"


@pytest.fixture(scope="module")
def pred(breeds_model):
    return load_predictor(breeds_model)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    return ok_cases(d), bad_cases(d)


def test_predictor_runs_channels_last(pred):
    "Faster on the CPU (BENCHMARKS.md); `test_safe_predictor_matches_fastai_predict` checks the numbers agree."
    convs = [p for p in pred.model.parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)


def test_predict_returns_top_k_best_first(pred):
    top = pred.predict(PHOTO, top_k=5)
    assert len(top) == 5 and all(lab in pred.vocab for lab, _ in top)
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True)
    full = pred.predict(PHOTO, top_k=None)
    assert len(full) == 37 and abs(sum(p for _, p in full) - 1) < 1e-5 and full[:5] == top


def test_every_input_kind_gives_the_same_answer(pred):
    ref = pred.predict(PHOTO)
    img = Image.open(PHOTO)
    for x in (str(PHOTO), PHOTO, PHOTO.read_bytes(), img, np.asarray(img.convert("RGB"))):
        got = pred.predict(x)
        assert [lab for lab, _ in got] == [lab for lab, _ in ref]
        assert np.allclose([p for _, p in got], [p for _, p in ref], atol=1e-6)


def test_predict_batch_equals_predict(pred):
    files = sorted(PETS.glob("*.jpg"))[:7]
    batch = pred.predict_batch(files, top_k=3, bs=3)
    for f, b in zip(files, batch, strict=True):
        single = pred.predict(f, top_k=3)
        assert [lab for lab, _ in b] == [lab for lab, _ in single]
        assert np.allclose([p for _, p in b], [p for _, p in single], atol=1e-5)
    assert pred.predict_batch([]) == []


@pytest.mark.parametrize("name", OK_NAMES)
def test_awkward_files_are_predicted(pred, files, name):
    top = pred.predict(files[0][name], top_k=1)
    assert top[0][0] in pred.vocab and 0 < top[0][1] <= 1


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_files_give_a_clear_error(pred, files, name):
    with pytest.raises(ImageError):
        pred.predict(files[1][name])


@pytest.mark.parametrize("name", list(BAD_OBJECTS))
def test_bad_objects_give_a_clear_error(pred, name):
    with pytest.raises(ImageError):
        pred.predict(BAD_OBJECTS[name])


def test_batch_error_names_the_bad_item(pred, files):
    with pytest.raises(ImageError, match="image 1:"):
        pred.predict_batch([PHOTO, files[1]["text_named_jpg"], PHOTO])


def test_predictor_is_cpu_and_needs_no_fastai(breeds_model):
    code = (
        "import sys\n"
        "from catdog_fastai import load_predictor\n"
        f"p = load_predictor({str(breeds_model)!r}, device='cpu')\n"
        f"print(p.predict({str(PHOTO)!r})[0][0] in p.vocab, 'fastai' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False"]


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # runs on unpickling: creates the marker file


def test_malicious_pickle_is_not_executed_by_default(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pkl"
    torch.save({"x": _Evil(str(marker))}, evil, pickle_module=pickle)
    with pytest.raises(UnsafeModelError, match="arbitrary code"):
        load_predictor(evil)
    assert not marker.exists()
    assert predict_main([str(PHOTO), "--model", str(evil)]) == 2
    assert not marker.exists()


def test_trusted_pickle_loads_the_same_model(breeds_model, pred):
    trusted = load_predictor(breeds_model / "model.pkl", trusted=True)
    x = pred.preprocess(PHOTO)[None]
    assert torch.allclose(trusted.probs(x), pred.probs(x), atol=1e-5)


def test_predict_cli_folder_to_csv(breeds_model, tmp_path, files, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for f in sorted(PETS.glob("*.jpg"))[:4]:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "broken.jpg").write_text("nope")
    out = tmp_path / "preds.csv"
    rc = predict_main([str(folder), str(PHOTO), "--model", str(breeds_model), "--csv", str(out), "--top-k", "2"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "broken.jpg: skipped" in captured.err and "1 of 6 files could not be read" in captured.err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and set(rows[0]) == {"path", "label1", "prob1", "label2", "prob2"}
    assert all(float(r["prob1"]) >= float(r["prob2"]) for r in rows)


def test_predict_cli_missing_model_is_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "catdog_fastai.predict", str(PHOTO), "--model", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "train one" in r.stderr and "Traceback" not in r.stderr


def test_predict_cli_reports_every_bad_file_and_goes_on(breeds_model, files, capsys):
    bad = [p for p in files[1].values() if p.is_file()]  # folders and missing paths are not files to list
    assert len(bad) >= 20
    rc = predict_main([*map(str, bad), str(PHOTO), "--model", str(breeds_model)])
    out, err = capsys.readouterr()
    assert rc == 0 and str(PHOTO) in out  # the good photo is still predicted
    for p in bad:
        assert f"{p}: skipped: " in err, p.name
    assert f"{len(bad)} of {len(bad) + 1} files could not be read" in err
    assert "Traceback" not in err
    assert predict_main([*map(str, bad), "--model", str(breeds_model)]) == 1  # nothing usable: failure status


def test_predict_cli_empty_folder(breeds_model, tmp_path, capsys):
    assert predict_main([str(tmp_path), "--model", str(breeds_model)]) == 2
    assert "no images found" in capsys.readouterr().err
