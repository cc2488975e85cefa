"""Near-duplicates kept on one side of catdog-train's split, every labelled photo in a training-free export, and the
known/unsure line fitted to a target precision."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PETS, SMALL, tiny_cfg
from PIL import Image

from catdog_fastai import verdict
from catdog_fastai.labels import breed
from catdog_fastai.predict import Prediction
from catdog_fastai.splits import leaked_groups, split_indices
from catdog_fastai.train import train_model


def _split(labels, groups, seed=0, pct=0.2, split="stratified"):
    items = [Path(f"{y}_{i}.jpg") for i, y in enumerate(labels)]
    return split_indices(items, labels, Path("."), split=split, valid_pct=pct, seed=seed, groups=groups)


@pytest.mark.parametrize("split", ["stratified", "random"])
def test_split_keeps_each_near_duplicate_group_on_one_side(split):
    labels = ["a"] * 20 + ["b"] * 20
    groups = [i // 4 for i in range(40)]  # ten groups of four
    for seed in range(10):
        train, valid = _split(labels, groups, seed, split=split)
        assert sorted(train + valid) == list(range(40))
        assert leaked_groups(groups, train, valid) == 0
        assert valid  # whole groups still fill the validation share


def test_without_groups_the_split_is_what_it_always_was():
    labels = [breed(p) for p in sorted(PETS.glob("*.jpg"))]
    singletons = list(range(len(labels)))
    for seed in (0, 42):
        assert _split(labels, None, seed) == _split(labels, singletons, seed)


def test_leaked_groups_counts_groups_on_both_sides():
    groups = [0, 0, 1, 1, 2]
    assert leaked_groups(groups, train=[0, 2, 3], valid=[1, 4]) == 1
    assert leaked_groups(groups, train=[0, 1], valid=[2, 3, 4]) == 0


def test_fit_known_reaches_the_target_on_its_rows_every_class_weighing_the_same():
    rng = np.random.default_rng(0)
    n, k = 600, 4
    y = rng.integers(0, k, n)
    conf = rng.uniform(0.3, 1.0, n)
    right = rng.uniform(size=n) < conf  # the more confident, the more often right
    top = np.where(right, y, (y + 1) % k)
    probs = np.full((n, k), 0.0)
    probs[np.arange(n), top] = conf
    probs[np.arange(n), (top + 1) % k] = 1 - conf
    entry = verdict.fit_known(probs, y, target=0.9)
    bar = entry["known_min_prob"]
    known = probs.max(1) >= bar
    w = 1 / np.bincount(y)[y]
    precision = (w * known * (probs.argmax(1) == y)).sum() / (w * known).sum()
    assert precision >= 0.9 and entry["valid_known_precision"] == pytest.approx(precision)
    assert 0.5 <= bar < 1 and 0 < entry["valid_known_coverage"] < 1
    lower = probs.max(1) >= bar - 0.05  # a lower bar would miss the target
    assert (w * lower * (probs.argmax(1) == y)).sum() / (w * lower).sum() < 0.9
    assert verdict.fit_known(probs, y, target=0.6)["known_min_prob"] < bar  # an easier target: a lower bar


def test_fit_known_never_goes_below_half_and_takes_the_most_precise_bar_when_none_reaches():
    right = np.array([[0.9, 0.1], [0.1, 0.9]])
    assert verdict.fit_known(right, [0, 1], 0.97)["known_min_prob"] == verdict.KNOWN_MIN_PROB
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    entry = verdict.fit_known(probs, [0, 1, 0], 0.99)  # the top row is right, the second wrong
    assert entry["known_min_prob"] == pytest.approx(0.85) and entry["valid_known_precision"] == 1.0


def test_left_out_similarities_are_the_class_means_without_the_photo_and_its_copies():
    from catdog_fastai.prototypes import class_means, left_out_similarities, similarities

    torch.manual_seed(0)
    n, k = 12, 3
    feats = torch.randn(2 * n, 8)  # 12 photos, then their mirror images
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2])
    y[-2:] = 1  # class 2 keeps one photo: nothing is left to score it against
    groups = np.arange(n)
    groups[1] = groups[0]  # photos 0 and 1 are copies of one another
    sims, kept = left_out_similarities(feats, y, k, groups)
    assert kept.tolist() == list(range(n - 3)) + [n - 2, n - 1]  # all but photo 9, alone in class 2
    for row, i in enumerate(kept.tolist()):
        out = {i, 1 - i} if i in (0, 1) else {i}  # the photo, and its copy
        rest = [j for j in range(n) if j not in out]
        means = class_means(feats[rest + [j + n for j in rest]], torch.cat([y[rest], y[rest]]), k)
        want = similarities(feats[i : i + 1], means)[0]
        assert torch.allclose(sims[row, y[i]], want[y[i]], atol=1e-6)  # its own class: without it
        other = [c for c in range(k) if c != y[i] and (y[rest] == c).any()]
        full = similarities(feats[i : i + 1], class_means(feats, torch.cat([y, y]), k))[0]
        assert torch.allclose(sims[row, other], full[other], atol=1e-6)  # the others: every photo
    assert not torch.allclose(sims[0, 0], left_out_similarities(feats, y, k)[0][0, 0])  # the copy counts


def test_unsure_names_what_the_model_is_torn_between():
    p = Prediction([("beagle", 0.41), ("basset_hound", 0.30)], species=[("dog", 0.95), ("cat", 0.05)])
    p.verdict = verdict.UNSURE
    assert verdict.describe(p, pets=True) == "Dog (95 %) — beagle or basset_hound? (41 %, 30 %)"
    q = Prediction([("grizzly", 0.48), ("black", 0.40)], verdict=verdict.UNSURE)
    assert verdict.describe(q, pets=False) == "grizzly or black? (48 %, 40 %)"


@pytest.fixture(scope="module")
def pets_with_copies(tmp_path_factory) -> Path:
    "The fixture photos plus a re-encoded copy of one photo of each of three breeds."
    root = tmp_path_factory.mktemp("dups")
    shutil.copytree(PETS, root / "images")
    for src in sorted(PETS.glob("*.jpg"))[:3]:
        Image.open(src).convert("RGB").save(root / "images" / f"{src.stem}9{src.suffix}", quality=60)
    return root / "images"


def test_training_free_export_puts_every_labelled_photo_in_the_class_means(pets_with_copies, tmp_path, caplog):
    from catdog_fastai.meta import read_meta
    from catdog_fastai.model import CosineClassifier
    from catdog_fastai.predict import load_predictor
    from catdog_fastai.prototypes import class_means, photo_features

    cfg = tiny_cfg(tmp_path, data=str(pets_with_copies), task="breeds", epochs=0, freeze_epochs=0, pkl=False, **SMALL)
    with caplog.at_level(logging.INFO, logger="catdog_fastai"):
        summary = train_model(cfg)
    assert "all labelled photos" in summary["exported_means"]
    model = load_predictor(tmp_path, backend="torch").model
    head = model[1][-1]
    assert isinstance(head, CosineClassifier)
    photos = sorted(pets_with_copies.glob("*.jpg"))
    meta = read_meta(tmp_path)
    y = torch.tensor([meta.vocab.index(breed(p)) for p in photos])
    feats = photo_features(model, photos, meta.size, mirror=True)
    every = class_means(feats, torch.cat([y, y]), len(meta.vocab))
    cos = torch.nn.functional.cosine_similarity(head.weight.detach().float(), every, dim=1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-4)  # each row: the mean of all of its class's photos
    assert meta.verdict.known_target == 0.97 and meta.verdict.known_min_prob >= verdict.KNOWN_MIN_PROB
    # the known line: fitted on every labelled photo, each left out of its class mean, not the validation photos
    assert meta.verdict.known_fitted_on == verdict.LEFT_OUT
    assert summary["n_valid"] < meta.verdict.n_known_fit <= len(photos)


def test_a_split_the_data_brings_stays_out_of_the_class_means(tmp_path):
    root = tmp_path / "data"
    for i, p in enumerate(sorted(PETS.glob("*.jpg"))):
        part = root / ("valid" if i % 3 == 0 else "train")
        part.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, part / p.name)
    cfg = tiny_cfg(tmp_path / "out", data=str(root), task="breeds", epochs=0, freeze_epochs=0, pkl=False, **SMALL)
    summary = train_model(cfg)
    assert "exported_means" not in summary  # train/ and valid/ may be someone's test set: not learnt from
    from catdog_fastai.meta import read_meta

    rule = read_meta(tmp_path / "out").verdict
    assert rule.known_fitted_on == verdict.LEFT_OUT and rule.n_known_fit <= len(list((root / "train").iterdir()))


def test_a_trained_export_fits_the_known_line_on_its_validation_photos_and_their_views(breeds_model):
    from catdog_fastai.meta import read_meta

    rule = read_meta(breeds_model).verdict
    assert rule.known_fitted_on == verdict.VALIDATION and rule.n_known_fit == rule.n_valid  # photos x views
