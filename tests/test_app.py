"""The Gradio app through its API (`gradio_client`), against `app.py` launched on localhost."""

from pathlib import Path

import pytest
from badfiles import BAD_NAMES, OK_NAMES, bad_cases, ok_cases
from conftest import PETS, start_app
from gradio_client import Client, handle_file

from catdog_fastai import load_predictor

PHOTO = PETS / "Bengal_1.jpg"
NOT_AN_IMAGE = "is not an image file (or a format Pillow cannot read)"


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    return ok_cases(d), bad_cases(d)


def test_predict_endpoint_serves_the_models_prediction(client, breeds_model):
    "The label is the answer in words, cat or dog first for a breed model; then its breeds, calibrated."
    res = client.predict(handle_file(str(PHOTO)), api_name="/predict")
    pred = load_predictor(breeds_model)
    want = pred.predict(PHOTO, top_k=3)  # the default: the calibrated figures, the same as the app's
    assert res["label"] == pred.describe(want)
    if want.verdict != "unknown":
        assert res["label"].startswith(want.species[0][0].capitalize() + " (")
    got = [(c["label"], c["confidence"]) for c in res["confidences"]]
    assert [lab for lab, _ in got] == [lab for lab, _ in want]
    assert all(abs(a - b) < 1e-4 for (_, a), (_, b) in zip(got, want))


@pytest.mark.parametrize(
    "change, verdict",
    [
        (dict(threshold=-1.0), "unknown"),  # every photo exceeds it
        (dict(threshold=10.0, known_min_prob=1.01), "unsure"),  # no photo reaches the bar
    ],
)
def test_predict_endpoint_says_unknown_and_unsure(breeds_model, tmp_path, change, verdict):
    "The endpoint's label is the verdict in words (`verdict.describe`), and the classes are still listed."
    import json
    import shutil

    model = tmp_path / "strict"
    shutil.copytree(breeds_model, model)
    meta = json.loads((model / "model.json").read_text())
    meta["verdict"].update(change)
    (model / "model.json").write_text(json.dumps(meta))
    proc, url = start_app(model, tmp_path / "app.log")
    try:
        res = Client(url, verbose=False).predict(handle_file(str(PHOTO)), api_name="/predict")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    strict = load_predictor(model)
    p = strict.predict(PHOTO)
    assert p.verdict == verdict and res["label"] == strict.describe(p)
    if verdict == "unknown":
        assert res["label"].startswith("This doesn't look like a cat or a dog")
    assert len(res["confidences"]) == 3 and all(c["label"] in meta["vocab"] for c in res["confidences"])


def test_explain_endpoint_returns_a_heatmap(client, breeds_model):
    import numpy as np
    from PIL import Image

    from catdog_fastai.images import center_crop_resize, open_image

    client.predict(handle_file(str(PHOTO)), api_name="/predict")
    img, note = client.predict(handle_file(str(PHOTO)), api_name="/explain")
    assert "pushed the model" in note
    size = load_predictor(breeds_model).size
    heat = np.asarray(Image.open(img).convert("RGB"), dtype=np.float32)
    photo = np.asarray(center_crop_resize(open_image(PHOTO), size), dtype=np.float32)
    assert heat.shape == (size, size, 3)  # the model's view of the photo
    assert heat.std() > 10  # not a blank or uniform image
    assert np.abs(heat - photo).mean() > 5  # the heatmap is blended in: not the photo itself


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n not in ("folder", "missing_file")])
def test_bad_uploads_get_a_clear_message_and_the_app_keeps_serving(client, files, name):
    res = client.predict(handle_file(str(files[1][name])), api_name="/predict")
    assert res["label"].startswith("Can't use this file: ") and res["confidences"] == [], res
    assert client.predict(handle_file(str(PHOTO)), api_name="/predict")["label"]


def test_concurrent_uploads_share_a_pass_and_each_gets_its_own_answer(client, files, breeds_model):
    "Submitted together, they are answered in batches; the bad file's answer is its own, the others are right."
    pred = load_predictor(breeds_model)
    paths = [PHOTO, files[1]["text_named_jpg"], PETS / "beagle_10.jpg", PETS / "pug_16.jpg"] * 2
    jobs = [client.submit(handle_file(str(p)), api_name="/predict") for p in paths]
    for p, job in zip(paths, jobs):
        res = job.result(timeout=60)
        if p == files[1]["text_named_jpg"]:
            assert res["label"] == f"Can't use this file: '{p.name}' {NOT_AN_IMAGE}"
        else:
            assert res["label"] == pred.describe(pred.predict(p, top_k=3))


def test_the_batched_function_answers_each_upload(breeds_model, files, tmp_path):
    "In process: one call with four uploads, one unreadable and one missing, gives four answers in order."
    from catdog_fastai.app import build_demo

    demo = build_demo(breeds_model)
    fn = next(f for f in demo.fns.values() if f.api_name == "predict")
    assert fn.batch and fn.max_batch_size >= 8
    (labels,) = fn.fn([str(PHOTO), str(files[1]["text_named_jpg"]), None, {"path": str(PETS / "pug_16.jpg")}])
    pred = load_predictor(breeds_model)
    assert labels[0]["label"] == pred.describe(pred.predict(PHOTO))
    bad = files[1]["text_named_jpg"].name
    assert labels[1]["label"] == f"Can't use this file: '{bad}' {NOT_AN_IMAGE}" and labels[1]["confidences"] == []
    assert labels[2]["label"].startswith("Can't use this file: Upload a photo first")
    assert labels[3]["confidences"][0]["label"] == pred.predict(PETS / "pug_16.jpg")[0][0]
    assert len(labels) == 4


def test_one_photo_gets_the_same_probabilities_everywhere(client, breeds_model, tmp_path):
    "load_predictor().predict, predict_batch, predict_each, catdog-predict's CSV, the page and /predict agree."
    import csv

    from catdog_fastai.app import page_answer
    from catdog_fastai.predict_cli import main as predict_main

    photos = [PHOTO, PETS / "pug_16.jpg"]
    for backend in ("onnxruntime", "torch"):
        pred = load_predictor(breeds_model, backend=backend)
        out = tmp_path / f"{backend}.csv"
        args = [*map(str, photos), "--model", str(breeds_model), "--csv", str(out), "--backend", backend]
        assert predict_main(args) == 0
        rows = list(csv.DictReader(out.open()))
        for photo, row in zip(photos, rows, strict=True):
            want = pred.predict(photo, top_k=3)
            paths = {
                "predict_batch": pred.predict_batch([photo], top_k=3)[0],
                "predict_each": pred.predict_each([photo], top_k=3)[0],
                "catdog-predict": [(row[f"label{i}"], float(row[f"prob{i}"])) for i in (1, 2, 3)],
                "/predict": [(c["label"], c["confidence"]) for c in client.predict(handle_file(str(photo)),
                                                                                    api_name="/predict")["confidences"]],
                "page": [(c["label"], c["confidence"]) for c in page_answer(pred, want)[1]["confidences"]],
            }  # fmt: skip
            for name, got in paths.items():
                assert [lab for lab, _ in got] == [lab for lab, _ in want], (backend, name)
                assert all(abs(a - b) < 1e-4 for (_, a), (_, b) in zip(got, want)), (backend, name, got, want)
            assert row["species"] == want.species[0][0] and abs(float(row["species_prob"]) - want.species[0][1]) < 1e-5


def test_the_page_says_cat_or_dog_plainly_with_the_breed_below(breeds_model):
    "The headline is the species as a person says it; the method (breeds added up) stays on the model card."
    from catdog_fastai.app import page_answer, pct
    from catdog_fastai.predict import Prediction

    pred = load_predictor(breeds_model)
    known = Prediction([("Bengal", 0.994), ("Persian", 0.004)], False, 0.1, [("cat", 0.9996), ("dog", 0.0004)], "known")
    headline, label, note = page_answer(pred, known)
    assert (headline, label["label"], note) == ("### Cat (100 %)", "Bengal (99 %)", "")
    assert [c["label"] for c in label["confidences"]] == ["Bengal", "Persian"] and "added up" not in headline
    unsure = Prediction([("beagle", 0.41), ("basset_hound", 0.3)], False, 0.1, [("dog", 0.97), ("cat", 0.03)], "unsure")
    headline, label, note = page_answer(pred, unsure)
    assert headline == "### Dog (97 %)" and label["label"] == "beagle or basset_hound? (41 %, 30 %)"
    unknown = Prediction([("pug", 0.2), ("boxer", 0.1)], True, 9.0, [("dog", 0.6), ("cat", 0.4)], "unknown")
    headline, label, _ = page_answer(pred, unknown)
    assert headline == "### This doesn't look like a cat or a dog" and label["label"].startswith("Closest: pug (20 %)")
    headline, label, note = page_answer(pred, ValueError("not an image"))
    assert "Can't use this file" in headline and label["label"] == "not an image" and note
    assert pct(0.5) == "50 %"


@pytest.mark.parametrize("name", OK_NAMES)
def test_awkward_but_valid_uploads_are_predicted(client, files, name):
    res = client.predict(handle_file(str(files[0][name])), api_name="/predict")
    assert res["label"] and len(res["confidences"]) == 3


def test_upload_over_the_size_limit_is_refused(client, tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(PHOTO.read_bytes() + b"\0" * (11 * 1024 * 1024))
    with pytest.raises(Exception) as e:
        client.predict(handle_file(str(big)), api_name="/predict")
    assert "maximum file size" in str(e.value) or "limit" in str(e.value), str(e.value)
    assert client.predict(handle_file(str(PHOTO)), api_name="/predict")["label"]


def test_batch_endpoint_returns_a_table_and_csv(client, files, breeds_model, tmp_path):
    "The same columns as `catdog-predict --csv`, from the same writer."
    import csv

    from catdog_fastai.predict_cli import main as predict_main

    paths = [PHOTO, PETS / "beagle_10.jpg", files[1]["text_named_jpg"]]
    table, csv_path = client.predict([handle_file(str(p)) for p in paths], api_name="/predict_batch")
    rows = list(csv.DictReader(Path(csv_path).open()))
    assert [r["path"] for r in rows] == [p.name for p in paths] == [r[0] for r in table["data"]]
    assert rows[0]["species"] in ("cat", "dog") and rows[0]["unknown"] in ("true", "false")
    assert rows[2]["error"] and not rows[2]["label1"]
    one = client.predict(handle_file(str(paths[1])), api_name="/predict")  # batched = one photo at a time
    assert rows[1]["label1"] == one["confidences"][0]["label"]
    cli_csv = tmp_path / "cli.csv"
    assert predict_main([str(PHOTO), "--model", str(breeds_model), "--csv", str(cli_csv)]) == 0
    assert Path(csv_path).read_text().splitlines()[0] == cli_csv.read_text().splitlines()[0]
    assert table["headers"] == cli_csv.read_text().splitlines()[0].split(",")


def test_empty_batch_gets_a_message(client):
    with pytest.raises(Exception, match="Choose one or more photos"):
        client.predict([], api_name="/predict_batch")


def test_app_without_a_model_starts_and_explains(tmp_path):
    import urllib.request

    proc, url = start_app(tmp_path / "no_model", tmp_path / "app.log")
    try:
        config = urllib.request.urlopen(url + "/config", timeout=10).read().decode()
        assert "No model yet" in config and "catdog-train" in config and "../shared" not in config
        with pytest.raises(Exception, match="No model is loaded"):
            Client(url, verbose=False).predict(handle_file(str(PHOTO)), api_name="/predict")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_app_import_builds_nothing_and_makes_no_network_call(no_network, monkeypatch, tmp_path):
    "Importing app.py loads no model; `demo` (what `gradio app.py` asks for) is the page, built once, offline."
    import importlib.util
    import sys

    monkeypatch.setenv("CATDOG_MODEL", str(tmp_path))
    spec = importlib.util.spec_from_file_location("app_under_test", Path(__file__).parent.parent / "app.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["app_under_test"] = mod
    spec.loader.exec_module(mod)  # would raise: every socket connection fails in this test
    assert "demo" not in vars(mod)
    page = mod.demo.get_config_file()
    text = str(page["components"])
    assert "No model yet" in text and "catdog-train" in text and mod.demo is mod.demo


def test_model_card_tab_shows_the_exports_card(breeds_model, monkeypatch, tmp_path):
    "The app's model card is the README.md beside the export, less its YAML: figures, every class, the answers."

    from catdog_fastai.app import model_card

    pred = load_predictor(breeds_model)
    m = pred.meta.metrics
    card = model_card(breeds_model)
    assert (breeds_model / "README.md").read_text().endswith(card) and not card.startswith("---")
    assert f"accuracy **{m.valid_accuracy:.4f}**" in card
    assert f"balanced accuracy **{m.valid_balanced_accuracy:.4f}**" in card
    assert all(v in card for v in pred.vocab)
    assert pred.unknown_text() in card


def test_the_heatmap_says_it_needs_torch_where_torch_is_missing(breeds_model, monkeypatch):
    "Serving without torch still answers; the Grad-CAM slot says why it is empty instead of failing."
    from catdog_fastai import app as app_module

    pred = load_predictor(breeds_model, backend="onnxruntime")
    explain = app_module._Explainer(pred, breeds_model)
    img, note = explain(str(PHOTO))  # torch is here: a heatmap from a torch predictor loaded on first use
    assert img is not None and "pushed the model" in note and explain.torch_pred.backend.name == "torch"
    monkeypatch.setattr(app_module, "available", lambda name: name not in ("torch", "timm"))
    assert app_module._Explainer(pred, breeds_model)(str(PHOTO)) == (None, app_module.NO_TORCH)


def test_catdog_app_is_installed_with_the_package(capsys):
    "`catdog-app` (pyproject's console script) is `catdog_fastai.app:main`; its help names the options."
    from importlib.metadata import entry_points

    from catdog_fastai.app import main

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "catdog-app"]
    assert ep.value == "catdog_fastai.app:main"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "--model" in out and "--share" in out and "CATDOG_MODEL" in out  # test_cli.py checks every option
