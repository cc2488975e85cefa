""" "Not a cat or a dog": temperature scaling, the OOD score and threshold (ood.py), and their trip through the export.

The session model is tiny and untrained, so it cannot tell a rocket from a beagle: these tests check the mechanics.
benchmarks/ood.py measures the real rates on a trained model.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PETS
from safetensors.torch import load_file, save_file

from catdog_fastai import load_predictor, ood, verdict
from catdog_fastai.model import build_model

NOT_PETS = Path(__file__).parent / "data" / "not_pets"  # real photos from skimage.data, public domain / CC0


def _overconfident(n: int = 2000, k: int = 5, true_t: float = 3.0, seed: int = 0):
    "Logits of a model that is right as often as softmax(z) says, multiplied by `true_t` (overconfident)."
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g) * 2
    y = torch.multinomial(z.softmax(1), 1, generator=g)[:, 0]  # labels drawn from the calibrated probabilities
    return z * true_t, y


def test_fit_temperature_lowers_nll_and_finds_the_scale():
    logits, y = _overconfident()
    t = ood.fit_temperature(logits, y)
    nll = torch.nn.functional.cross_entropy
    assert nll(logits / t, y) < nll(logits, y) - 0.1
    assert 2.6 < t < 3.4  # the overconfidence put in
    for other in (t * 0.8, t * 1.25):  # a minimum, not just better than 1
        assert nll(logits / t, y) <= nll(logits / other, y)


def test_ece_falls_after_temperature_scaling():
    logits, y = _overconfident()
    t = ood.fit_temperature(logits, y)
    before, after = ood.ece(logits.softmax(1), y), ood.ece((logits / t).softmax(1), y)
    assert before > 0.1 and after < 0.03
    certain = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    assert ood.ece(certain.softmax(1), torch.tensor([0, 1])) < 1e-6  # 100 % sure and right: no gap
    assert ood.ece(certain.softmax(1), torch.tensor([1, 0])) > 0.99  # 100 % sure and wrong: the whole gap


def test_mean_distance_is_zero_on_a_class_and_larger_away():
    feats = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 0], [0, 3.0, 0]])
    means = ood.class_means(feats, torch.tensor([0, 0, 1, 1]), 3)
    assert torch.allclose(means[:2], torch.eye(3)[:2]) and means[2].abs().sum() == 0  # a class with no photo
    d = verdict.mean_distance(np.array([[5.0, 0, 0], [1.0, 1.0, 0], [0, 0, 1.0]]), means.numpy())
    assert d[0] < 1e-6 < d[1] < d[2]


def test_energy_is_higher_for_flat_logits():
    e = verdict.energy(np.array([[8.0, 0, 0], [1.0, 1.0, 1.0]]), temperature=1.0)
    assert e[1] > e[0]


def test_calibration_fills_every_field():
    logits, y = _overconfident(n=300, k=4)
    entry = ood.calibration(logits, y)
    assert set(entry) == {"temperature", "n_valid", "ece_before", "ece_after"}
    assert entry["ece_after"] < entry["ece_before"] and entry["n_valid"] == 300


def test_hard_views_are_low_resolution_and_gray():
    x = torch.rand(2, 3, 48, 48) * 2 - 1  # normalised with mean = std = 0.5
    mean = std = torch.full((1, 3, 1, 1), 0.5)
    low_res, gray = ood.hard_views(x, mean, std)
    assert low_res.shape == gray.shape == x.shape
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])  # one channel, thrice
    detail = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().mean()  # noqa: E731
    assert detail(low_res) < detail(x) / 2  # the fine detail is gone


def test_forward_is_the_models_own_forward():
    for arch, size in (("test_efficientnet", 64), ("test_vit", 160)):  # a CNN feature map, and pooled ViT features
        model = build_model(arch, 3).eval()
        x = torch.randn(2, 3, size, size)
        logits, pooled = ood.forward(model, x)
        assert torch.allclose(logits, model(x), atol=1e-6) and pooled.ndim == 2


def test_export_carries_temperature_gate_and_class_means(breeds_model):
    meta = json.loads((breeds_model / "model.json").read_text())
    assert meta["ood"]["temperature"] > 0 and meta["verdict"]["gate"] == "features"
    means = load_file(str(breeds_model / "model.safetensors"))[ood.MEANS_KEY]
    assert means.shape[0] == len(meta["vocab"])
    report = json.loads((breeds_model / "report.json").read_text())
    assert {"ece_before", "ece_after", "temperature"} <= set(report["calibration"])
    assert report["verdict"]["threshold"] == meta["verdict"]["threshold"]


def test_threshold_flags_about_the_stated_share_of_validation_photos(breeds_model):
    "Re-scoring the export's validation photos through the pickle-free predictor flags at most about 1 - keep."
    from conftest import tiny_cfg

    from catdog_fastai.sources import find_data
    from catdog_fastai.splits import split_indices

    cfg = tiny_cfg(breeds_model, task="breeds")
    found = find_data(PETS, "breeds", cfg.split)
    _, valid = split_indices(found.items, found.labels, PETS, split=cfg.split, valid_pct=cfg.valid_pct, seed=cfg.seed)
    pred = load_predictor(breeds_model)
    assert len(valid) == pred.meta.ood.n_valid and 3 * len(valid) == pred.rule.n_valid
    flagged = [r.unknown for r in pred.predict_batch([found.items[i] for i in valid])]
    assert sum(flagged) <= round(len(valid) * (1 - pred.rule.keep)) + 2


def test_verdict_follows_the_threshold(breeds_model):
    pred = load_predictor(breeds_model)
    photo = NOT_PETS / "rocket.jpg"
    score = pred.predict(photo).ood_score
    pred.rule = dataclasses.replace(pred.rule, threshold=score - 1e-6)
    r = pred.predict(photo)
    assert r.unknown is True and r.verdict == "unknown"
    pred.rule = dataclasses.replace(pred.rule, threshold=score + 1e-6)
    r = pred.predict(photo)
    assert r.unknown is False and r.verdict in ("known", "unsure")


def test_not_pets_fixture_is_real_and_small():
    photos = sorted(NOT_PETS.glob("*.jpg"))
    assert len(photos) >= 8 and sum(p.stat().st_size for p in photos) < 300_000
    text = (NOT_PETS / "ATTRIBUTION.md").read_text()
    assert all(p.name in text for p in photos)


@pytest.fixture()
def old_export(breeds_model, tmp_path):
    "The session export as a version without OOD detection wrote it: no `ood` entry, no class means."
    out = tmp_path / "old"
    shutil.copytree(breeds_model, out)
    meta = json.loads((out / "model.json").read_text())
    del meta["ood"], meta["verdict"], meta["metrics"]["calibration"]  # no calibration anywhere, as before 0.4
    sd = {k: v for k, v in load_file(str(out / "model.safetensors")).items() if not k.startswith("ood.")}
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    meta.pop("weights_sha256")
    (out / "model.json").write_text(json.dumps(meta))
    return out


def test_old_export_without_ood_fields_still_predicts(old_export, breeds_model):
    old, new = load_predictor(old_export), load_predictor(breeds_model)
    photo = PETS / "Bengal_1.jpg"
    p = old.predict(photo)
    assert p.unknown is None and p.ood_score is None and old.temperature == 1.0
    assert p == new.predict(photo, calibrated=False)  # the same labels and plain probabilities
    assert old.predict(photo, calibrated=True) == p  # no temperature: calibrated is plain
    assert old.describe(p).startswith(p.species[0][0].capitalize())  # cat or dog first, and no verdict
