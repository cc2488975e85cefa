"""The Gradio app through its API (`gradio_client`), against `app.py` launched on localhost."""

from pathlib import Path

import pytest
from badfiles import BAD_NAMES, OK_NAMES, bad_cases, ok_cases
from conftest import PETS, start_app
from gradio_client import Client, handle_file

from catdog_fastai import load_predictor

PHOTO = PETS / "Bengal_1.jpg"


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    return ok_cases(d), bad_cases(d)


def test_predict_endpoint_serves_the_models_prediction(client, breeds_model):
    res = client.predict(handle_file(str(PHOTO)), api_name="/predict")
    want = load_predictor(breeds_model).predict(PHOTO, top_k=3)
    assert res["label"] == want[0][0]
    got = [(c["label"], c["confidence"]) for c in res["confidences"]]
    assert [lab for lab, _ in got] == [lab for lab, _ in want]
    assert all(abs(a - b) < 1e-4 for (_, a), (_, b) in zip(got, want))


def test_explain_endpoint_returns_a_heatmap(client):
    client.predict(handle_file(str(PHOTO)), api_name="/predict")
    img, note = client.predict(handle_file(str(PHOTO)), api_name="/explain")
    assert Path(img).is_file() and "pushed the model" in note


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n not in ("folder", "missing_file")])
def test_bad_uploads_get_a_clear_message_and_the_app_keeps_serving(client, files, name):
    with pytest.raises(Exception) as e:
        client.predict(handle_file(str(files[1][name])), api_name="/predict")
    assert "Can't use this file" in str(e.value), str(e.value)
    assert client.predict(handle_file(str(PHOTO)), api_name="/predict")["label"]


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


def test_batch_endpoint_returns_a_table_and_csv(client, files):
    paths = [PHOTO, PETS / "beagle_10.jpg", files[1]["text_named_jpg"]]
    table, csv_path = client.predict([handle_file(str(p)) for p in paths], api_name="/predict_batch")
    rows = table["data"]
    assert [r[0] for r in rows] == [p.name for p in paths]
    assert rows[0][1] and rows[2][3].startswith("error:")
    text = Path(csv_path).read_text().splitlines()
    assert text[0] == "file,label,probability,runners-up" and len(text) == 4


def test_empty_batch_gets_a_message(client):
    with pytest.raises(Exception, match="Choose one or more photos"):
        client.predict([], api_name="/predict_batch")


def test_app_without_a_model_starts_and_explains(tmp_path):
    import urllib.request

    proc, url = start_app(tmp_path / "no_model", tmp_path / "app.log")
    try:
        config = urllib.request.urlopen(url + "/config", timeout=10).read().decode()
        assert "No model yet" in config and "catdog-train" in config
        with pytest.raises(Exception, match="No model is loaded"):
            Client(url, verbose=False).predict(handle_file(str(PHOTO)), api_name="/predict")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_app_import_makes_no_network_call(no_network, monkeypatch, tmp_path):
    import importlib.util
    import sys

    monkeypatch.setenv("CATDOG_MODEL", str(tmp_path))
    spec = importlib.util.spec_from_file_location("app_under_test", Path(__file__).parent.parent / "app.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["app_under_test"] = mod
    spec.loader.exec_module(mod)  # would raise: every socket connection fails in this test
    assert mod.demo is not None


def test_model_card_shows_balanced_accuracy_beside_plain(breeds_model, monkeypatch, tmp_path):
    import importlib.util
    import sys

    monkeypatch.setenv("CATDOG_MODEL", str(tmp_path))
    spec = importlib.util.spec_from_file_location("app_card", Path(__file__).parent.parent / "app.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["app_card"] = mod
    spec.loader.exec_module(mod)
    pred = load_predictor(breeds_model)
    m = pred.meta["metrics"]
    card = mod.model_card(pred)
    assert f"Validation accuracy:** {m['valid_accuracy']:.1%}" in card
    assert f"balanced (every class weighs the same): {m['valid_balanced_accuracy']:.1%}" in card
    assert f"every breed weighing the same: {m['valid_catdog_balanced_accuracy']:.1%}" in card
    assert "37 classes have fewer than 5 validation photos" in card
