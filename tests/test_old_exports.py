"""Exports made by 0.4.1, 0.5.0 and 0.6.0 (stored in tests/data) load, answer as they did, and get a card.

model.json is brought up to date in one place (`meta.upgrade`); these are the files it exists for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import PETS

from catdog_fastai import load_predictor
from catdog_fastai.card import folder_card
from catdog_fastai.meta import ModelMeta, read_meta

DATA = Path(__file__).parent / "data"
VERSIONS = ("0.4.1", "0.5.0", "0.6.0")
PHOTOS = sorted(PETS.glob("*.jpg"))[:6]  # the photos answers.json was made on


@pytest.mark.parametrize("version", VERSIONS)
def test_an_old_model_json_reads_typed_and_writes_back_what_it_read(version):
    path = DATA / f"export-{version}" / "model.json"
    raw = json.loads(path.read_text())
    meta = read_meta(path)
    assert meta.versions["catdog_fastai"] == version and meta.ood is not None and meta.verdict is not None
    assert meta.verdict.known_target is None  # before 0.7 the known/unsure bar was not fitted
    assert meta.verdict.known_min_prob == (None if version == "0.4.1" else 0.5)
    assert (meta.onnx is not None) == (version == "0.6.0")
    assert ModelMeta.from_json(meta.to_json()) == meta
    for key in ("ood", "onnx", "metrics", "config"):  # nothing it held is lost when it is written again
        assert meta.to_json().get(key) == raw.get(key)


@pytest.mark.parametrize("version", ("0.5.0", "0.6.0"))
@pytest.mark.parametrize("backend", ("torch", "auto"))
def test_an_old_export_answers_as_it_did(version, backend):
    folder = DATA / f"export-{version}"
    then = json.loads((folder / "answers.json").read_text())["answers"]
    pred = load_predictor(folder, backend=backend)
    for calibrated in (False, True):
        now = pred.predict_batch(PHOTOS, top_k=None, calibrated=calibrated)
        for r, old in zip(now, then[str(calibrated)]):
            assert [lab for lab, _ in r] == [lab for lab, _ in old["top"]]
            assert np.allclose([q for _, q in r], [q for _, q in old["top"]], atol=1e-5)
            assert r.verdict == old["verdict"] and r.unknown == old["unknown"]


@pytest.mark.parametrize("version", VERSIONS)
def test_an_old_export_gets_a_card_that_says_its_rule_is_older(version, tmp_path):
    folder = shutil.copytree(DATA / f"export-{version}", tmp_path / "old")
    card = folder_card(folder)
    limits = card.split("## Limits")[1]
    assert "farther from every class's mean" in limits and "?" not in card
    if version == "0.4.1":
        assert "Unsure" not in limits  # known or unknown only
    else:
        assert "`known_min_prob` 0.50: fixed at 0.5 (older export)" in limits
        assert "a third of its resolution and in grayscale" in limits  # fitted on the degraded views too


def test_a_missing_export_is_named_as_the_person_gave_it(tmp_path):
    from catdog_fastai.errors import ExportError

    with pytest.raises(ExportError, match=f"^{tmp_path / 'nope'} does not exist: train a model first"):
        read_meta(tmp_path / "nope")
    with pytest.raises(ExportError, match=f"^no model.json in {tmp_path}: train a model first"):
        read_meta(tmp_path)
    with pytest.raises(ExportError, match=f"^{tmp_path / 'model.json'} does not exist"):
        read_meta(tmp_path / "model.json")


def test_records_kept_for_display_keep_a_value_that_does_not_fit_and_serving_entries_refuse_one(tmp_path):
    from catdog_fastai.errors import ExportError

    raw = json.loads((DATA / "export-0.6.0" / "model.json").read_text())
    raw["config"]["lr"], raw["metrics"]["n_valid"] = 0.002, "37"  # hand-edited: a float lr, a string count
    meta = ModelMeta.from_json(raw)
    assert meta.config.lr is None and meta.config.seed == raw["config"]["seed"] and meta.metrics.n_valid is None
    assert meta.to_json()["config"] == raw["config"] and meta.to_json()["metrics"] == raw["metrics"]  # as they were
    raw["verdict"]["threshold"] = "high"
    with pytest.raises(ExportError, match=r"malformed field \(verdict: threshold = 'high' is not a float\)"):
        ModelMeta.from_json(raw)
