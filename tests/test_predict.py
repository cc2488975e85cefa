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

from catdog_fastai import ExportError, ImageError, UnsafeModelError, load_predictor
from catdog_fastai.predict_cli import main as predict_main

PHOTO = PETS / "Bengal_1.jpg"


@pytest.fixture(scope="module")
def pred(breeds_model):
    return load_predictor(breeds_model)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    return ok_cases(d), bad_cases(d)


def test_torch_predictor_runs_channels_last(breeds_model):
    "Faster on the CPU (BENCHMARKS.md); `test_safe_predictor_matches_fastai_predict` checks the numbers agree."
    convs = [p for p in load_predictor(breeds_model, backend="torch").model.parameters() if p.ndim == 4]
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


def test_prediction_is_still_a_plain_list_with_a_verdict(pred):
    p = pred.predict(PHOTO, top_k=3)
    assert isinstance(p, list) and p == [tuple(t) for t in p] and len(p) == 3
    label, prob = p[0]  # unpacks as before
    assert isinstance(p.unknown, bool) and isinstance(p.ood_score, float)
    assert "unknown=" in repr(p)


def test_species_adds_up_the_breeds(pred):
    from catdog_fastai.labels import breed_is_cat

    p = pred.predict(PHOTO, top_k=None)
    cat = sum(q for lab, q in p if breed_is_cat(lab))
    assert dict(p.species) == pytest.approx({"cat": cat, "dog": 1 - cat}, abs=1e-5)
    assert p.species[0][1] >= p.species[1][1] and pred.predict(PHOTO, top_k=1).species == p.species
    assert pred.describe(p).startswith(f"{p.species[0][0].capitalize()} (")


def test_calibrated_probabilities_divide_the_logits_by_the_temperature(pred):
    x = pred.preprocess(PHOTO)[None]
    logits, _ = pred.outputs(x)
    cal = pred.predict(PHOTO, top_k=None, calibrated=True)
    want = torch.from_numpy(logits[0] / pred.temperature).softmax(0)
    assert [lab for lab, _ in cal] == [lab for lab, _ in pred.predict(PHOTO, top_k=None)]  # same order
    assert all(abs(q - float(want[pred.vocab.index(lab)])) < 1e-6 for lab, q in cal)
    assert pred.predict(PHOTO, calibrated=False).unknown == pred.predict(PHOTO).unknown


def test_predict_returns_the_calibrated_figures_and_the_softmax_by_name(pred):
    "The default is what catdog-predict and the app show; the model's plain softmax is `calibrated=False`/`probs`."
    assert pred.temperature != 1.0  # the fixture model has a fitted temperature: the two figures differ
    x = pred.preprocess(PHOTO)[None]
    default, cal = pred.predict(PHOTO, top_k=None), pred.predict(PHOTO, top_k=None, calibrated=True)
    plain = pred.predict(PHOTO, top_k=None, calibrated=False)
    assert default == cal and default.species == cal.species and default != plain
    order = [pred.vocab.index(lab) for lab, _ in plain]
    assert np.allclose([q for _, q in plain], pred.probs(x)[0][order])
    order = [pred.vocab.index(lab) for lab, _ in cal]
    assert np.allclose([q for _, q in cal], pred.probs(x, calibrated=True)[0][order])
    for many in (pred.predict_batch([PHOTO], top_k=None)[0], pred.predict_each([PHOTO], top_k=None)[0]):
        assert np.allclose([q for _, q in many], [q for _, q in default], atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_threads_are_honoured_by_both_backends(breeds_model, backend):
    before = torch.get_num_threads()
    try:
        p = load_predictor(breeds_model, backend=backend, threads=1)
        if backend == "torch":
            assert torch.get_num_threads() == 1  # process-wide, as torch.set_num_threads is (documented)
        else:
            assert p.backend.session.get_session_options().intra_op_num_threads == 1
    finally:
        torch.set_num_threads(before)


def test_torch_backend_without_torch_says_what_to_install(breeds_model, monkeypatch, capsys):
    "One line naming the install, not a bare ModuleNotFoundError; the CLI prints it and exits 2."
    from catdog_fastai import predict

    monkeypatch.setattr(predict, "missing", lambda *names: [n for n in names if n in ("torch", "timm")])
    with pytest.raises(ExportError, match=r"backend='torch' needs torch and timm.*pip install") as e:
        load_predictor(breeds_model, backend="torch")
    assert "\n" not in str(e.value)
    assert predict_main([str(PHOTO), "--model", str(breeds_model), "--backend", "torch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("catdog-predict: backend='torch' needs") and len(err.splitlines()) == 1


def test_predict_each_keeps_going_past_bad_files(pred, files):
    res = pred.predict_each([PHOTO, files[1]["text_named_jpg"], PHOTO], bs=2)
    single = pred.predict(PHOTO)
    assert isinstance(res[1], ImageError) and len(res) == 3
    for r in (res[0], res[2]):
        assert [lab for lab, _ in r] == [lab for lab, _ in single] and abs(r[0][1] - single[0][1]) < 1e-5


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
    assert trusted.backend.name == "torch" and np.allclose(trusted.probs(x), pred.probs(x), atol=1e-5)


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
    cols = [
        "path",
        "verdict",
        "answer",
        "unknown",
        "ood_score",
        "species",
        "species_prob",
        "label1",
        "prob1",
        "label2",
        "prob2",
        "error",
    ]
    assert len(rows) == 6 and list(rows[0]) == cols
    ok = [r for r in rows if not r["error"]]
    assert len(ok) == 5 and all(float(r["prob1"]) >= float(r["prob2"]) for r in ok)
    assert all(r["unknown"] in ("true", "false") and float(r["ood_score"]) >= 0 for r in ok)
    assert all(r["verdict"] in ("known", "unsure", "unknown") for r in ok)
    assert all((r["verdict"] == "unknown") == (r["unknown"] == "true") for r in ok)
    assert all(r["species"] in ("cat", "dog") and float(r["species_prob"]) >= 0.5 for r in ok)
    (bad,) = [r for r in rows if r["error"]]
    assert bad["path"].endswith("broken.jpg") and bad["unknown"] == "" and bad["label1"] == ""
    p = load_predictor(breeds_model).predict(PHOTO, top_k=2, calibrated=True)  # the CSV shows calibrated figures
    (row,) = [r for r in ok if r["path"] == str(PHOTO)]
    assert row["label1"] == p[0][0] and abs(float(row["prob1"]) - p[0][1]) < 1e-5
    assert row["unknown"] == str(p.unknown).lower() and abs(float(row["ood_score"]) - p.ood_score) < 1e-5
    assert row["verdict"] == p.verdict and row["answer"] == load_predictor(breeds_model).describe(p)


def test_predict_cli_predicts_in_batches(breeds_model, monkeypatch, capsys):
    "`--bs` photos per forward pass, not one at a time."
    from catdog_fastai.predict import Predictor

    sizes = []
    outputs = Predictor.outputs
    monkeypatch.setattr(Predictor, "outputs", lambda self, b: sizes.append(len(b)) or outputs(self, b))
    photos = sorted(PETS.glob("*.jpg"))[:7]
    assert predict_main([*map(str, photos), "--model", str(breeds_model), "--bs", "3"]) == 0
    assert sizes == [3, 3, 1]
    out = capsys.readouterr().out
    assert all(str(p) in out for p in photos)


def test_predict_cli_missing_model_is_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "catdog_fastai.predict_cli", str(PHOTO), "--model", str(tmp_path / "x")],
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


def test_tta_averages_the_photo_and_its_mirror_image(breeds_model):
    one_view = load_predictor(breeds_model)  # the default: one view
    tta = load_predictor(breeds_model, tta=True)
    x = np.stack([one_view.preprocess(f) for f in (PHOTO, PETS / "pug_16.jpg")])
    expected = (one_view.probs(x) + one_view.probs(x[..., ::-1])) / 2
    assert np.allclose(tta.probs(x), expected, atol=1e-5)
    assert not np.allclose(one_view.probs(x), expected, atol=1e-5)  # the mirror image changes the answer
    same_view = [r.ood_score for r in one_view.predict_batch([PHOTO])]  # the verdict looks at the photo as it is
    assert [r.ood_score for r in tta.predict_batch([PHOTO])] == pytest.approx(same_view, abs=1e-5)
