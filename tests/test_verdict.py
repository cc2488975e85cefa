"""The three answers (known, unsure, unknown): the rule on hand-made scores, the sentence, the gate's arithmetic,
exports made before the rule, and odd photos."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PETS
from PIL import Image

from catdog_fastai import load_predictor, verdict
from catdog_fastai.meta import Rule
from catdog_fastai.predict import Prediction

RULE = Rule(gate="features", threshold=0.5, known_min_prob=0.5)


@pytest.mark.parametrize(
    "top, score, expected",
    [
        (0.9, 0.1, "known"),
        (0.5, 0.1, "known"),  # at the bar: known
        (0.49, 0.1, "unsure"),
        (0.9, 0.51, "unknown"),  # a confident class does not rescue a photo the gate rejects
        (0.1, 0.5, "unsure"),  # at the threshold: still in
    ],
)
def test_decide_on_hand_made_scores(top, score, expected):
    assert verdict.decide(top, score, RULE) == expected


def test_decide_without_a_rule_or_without_the_unsure_bar():
    assert verdict.decide(0.1, 0.9, None) == "known"  # no gate at all: every photo is one of the classes
    old = dataclasses.replace(RULE, known_min_prob=None)  # an export from before the unsure answer
    assert verdict.decide(0.1, 0.1, old) == "known" and verdict.decide(0.9, 0.9, old) == "unknown"


def test_balanced_quantile_weighs_every_class_the_same():
    # class 0: 98 photos scoring 0; class 1: 2 photos scoring 1. Plain 90 % quantile: 0; class-balanced: 1.
    scores = torch.tensor([0.0] * 98 + [1.0] * 2)
    groups = [0] * 98 + [1] * 2
    assert float(torch.quantile(scores, 0.9)) == 0.0
    assert verdict.balanced_quantile(scores, groups, 0.9) == 1.0
    assert verdict.balanced_quantile(scores, groups, 0.4) == 0.0


def test_pet_probability_is_imagenets_mass_on_dogs_and_cats():
    nf = 8
    weight, bias = torch.zeros(1000, nf), torch.zeros(1000)
    weight[207, 0] = 20.0  # a golden retriever feature
    weight[281, 1] = 20.0  # a tabby feature
    weight[500, 2] = 20.0  # a cliff dwelling feature
    feats = torch.eye(3, nf)
    p = verdict.pet_probability(feats, weight, bias)
    assert p[0] > 0.99 and p[1] > 0.99 and p[2] < 0.01
    concat = torch.cat([torch.zeros(3, nf), feats], 1)  # a fastai head's [max, average] input: reads the average
    assert np.allclose(verdict.pet_probability(concat, weight, bias), p)


def _pred(pairs, v, species=None):
    return Prediction(pairs, unknown=v == "unknown", ood_score=0.1, species=species, verdict=v)


def test_describe_says_the_three_answers():
    breeds = [("beagle", 0.41), ("basset_hound", 0.30), ("pug", 0.1)]
    dog = [("dog", 0.95), ("cat", 0.05)]
    assert verdict.describe(_pred(breeds, "known", dog), True) == "Dog (95 %) — beagle (41 %)"
    assert verdict.describe(_pred(breeds, "unsure", dog), True) == "Dog (95 %) — beagle or basset_hound? (41 %, 30 %)"
    assert verdict.describe(_pred(breeds, "unknown", dog), True) == (
        "This doesn't look like a cat or a dog (closest: beagle 41 %, basset_hound 30 %)"
    )
    bears = [("grizzly", 0.48), ("black", 0.40), ("teddy", 0.12)]
    assert verdict.describe(_pred(bears, "unsure"), False) == "grizzly or black? (48 %, 40 %)"
    assert verdict.describe(_pred(bears, "known"), False) == "grizzly (48 %)"
    assert verdict.describe(_pred(bears[:1], "unsure"), False) == "grizzly? (48 %)"  # top_k=1: still a question
    assert verdict.describe(_pred(bears, "unknown"), False).startswith("This doesn't look like any of this model's")
    assert verdict.describe(_pred([("cat", 0.97), ("dog", 0.03)], "known"), True) == "cat (97 %)"


def test_export_carries_the_rule_and_its_tensors(breeds_model):
    meta = json.loads((breeds_model / "model.json").read_text())
    rule = meta["verdict"]
    assert rule["gate"] == "features"  # pretrained=False: no ImageNet classifier to keep
    assert rule["known_min_prob"] == verdict.KNOWN_MIN_PROB and rule["keep"] == verdict.KEEP
    assert rule["n_valid"] == 3 * meta["metrics"]["n_valid"]  # each photo, at low resolution and in grayscale
    pred = load_predictor(breeds_model)
    assert pred.can_tell_unsure and pred.rule == Rule.from_json(rule) and pred.rule.to_json() == rule


def _old_export(breeds_model, tmp_path, drop):
    old = tmp_path / "old"
    shutil.copytree(breeds_model, old)
    meta = json.loads((old / "model.json").read_text())
    for k in drop:
        meta.pop(k, None)
    (old / "model.json").write_text(json.dumps(meta))
    return old


def test_a_stored_0_4_export_loads_and_says_known_or_unknown():
    "A real 0.4.1 export (fastai head, an `ood` threshold, no `verdict` entry) still loads and predicts."
    old = Path(__file__).parent / "data" / "export-0.4.1"  # made by catdog_fastai 0.4.1 from the fixture photos
    pred = load_predictor(old)
    assert pred.meta.versions["catdog_fastai"] == "0.4.1" and pred.meta.onnx is None
    assert pred.meta.head == "fastai"  # fields added since then take their defaults
    assert pred.meta.verdict == Rule(gate="features", threshold=pred.meta.ood.extra["threshold"], keep=0.97)
    assert not pred.can_tell_unsure and pred.rule is pred.meta.verdict  # its `ood` threshold, upgraded on reading
    rs = pred.predict_batch(sorted(PETS.glob("*.jpg"))[:12], calibrated=True)
    assert {r.verdict for r in rs} <= {"known", "unknown"}
    assert all(r.unknown == (r.ood_score > pred.rule.threshold) for r in rs)  # its own threshold still decides
    assert all(pred.describe(r).startswith(("Cat (", "Dog (", "This doesn't look like a cat or a dog")) for r in rs)


def test_an_export_without_any_gate_calls_everything_known(breeds_model, tmp_path):
    pred = load_predictor(_old_export(breeds_model, tmp_path, ["verdict", "ood"]))
    r = pred.predict(PETS / "Bengal_1.jpg")
    assert r.verdict == "known" and r.unknown is None and r.ood_score is None
    assert pred.describe(r).startswith(("Cat (", "Dog ("))


@pytest.mark.parametrize("size", [(32, 32), (2000, 40), (40, 900)])
def test_tiny_or_odd_photos_get_a_verdict(breeds_model, tmp_path, size):
    """A tiny photo or a long strip is read as the square cut from its middle: its probabilities are those of that
    square alone (the red sides reach in only through the resampling filter's edge pixels), far closer than those
    of the whole strip squashed square; and its verdict is the export's rule on its own scores."""
    s = min(size)
    square = Image.fromarray(np.random.default_rng(0).integers(0, 256, (s, s, 3), dtype=np.uint8))
    strip = Image.new("RGB", size, (255, 0, 0))
    strip.paste(square, ((size[0] - s) // 2, (size[1] - s) // 2))
    strip.save(tmp_path / "odd.png")
    p = load_predictor(breeds_model)
    r = p.predict(tmp_path / "odd.png", top_k=None)
    assert len(r) == len(p.vocab) and sum(q for _, q in r) == pytest.approx(1, abs=1e-5)
    assert r.verdict == verdict.decide(r[0][1], r.ood_score, p.rule)

    def probs(img):
        return np.array([q for _, q in sorted(p.predict(img, top_k=None, calibrated=False))])

    gap = np.abs(probs(strip) - probs(square)).max()
    squashed = np.abs(probs(strip.resize((s, s))) - probs(square)).max()
    assert gap < 1e-6 if size[0] == size[1] else gap < squashed / 10


def test_fit_gate_keeps_the_stated_share_of_every_class():
    # class 0: 50 photos scoring 0..0.49; class 1: 5 photos scoring 0.9..0.94; keep 80 % of each class's weight
    scores = torch.tensor([i / 100 for i in range(50)] + [0.9 + i / 100 for i in range(5)])
    targets = [0] * 50 + [1] * 5
    rule = verdict.fit_gate(scores, targets, "features", ["as it is"], keep=0.8)
    assert rule["views"] == ["as it is"] and rule["n_valid"] == 55
    flagged = scores > rule["threshold"]
    share = [float(flagged[:50].double().mean()), float(flagged[50:].double().mean())]
    assert rule["valid_unknown_rate"] == pytest.approx(sum(share) / 2)
    assert 0.1 <= rule["valid_unknown_rate"] <= 0.3  # about 1 - keep, class-balanced
