"""Real ImageNet weights on real Pets photos (`CATDOG_SHARED=../shared pytest -m slow`, or `--shared=PATH`).

A few minutes on a 2-core CPU: one frozen and one unfrozen epoch of tf_efficientnet_lite0 on the 755 photos of
pets-dev, then the export is scored through `catdog-evaluate`'s code path.
"""

from pathlib import Path

import pytest

from catdog_fastai import TrainConfig, load_predictor
from catdog_fastai.evaluate import evaluate_folder
from catdog_fastai.train import train_model

pytestmark = pytest.mark.slow


def test_real_weights_fine_tune_far_above_chance(shared, tmp_path):
    cfg = TrainConfig(
        data=str(shared / "data/pets-dev/images"),
        task="breeds",
        arch="tf_efficientnet_lite0",
        weights=str(shared / "weights/tf_efficientnet_lite0.in1k.safetensors"),
        epochs=1,
        freeze_epochs=1,
        split="stratified",
        out=str(tmp_path),
        pkl=False,
    )
    summary = train_model(cfg)
    assert summary["valid_accuracy"] > 0.5  # chance is 1/37 = 0.027
    assert summary["valid_catdog_accuracy"] > 0.85  # chance 0.5
    assert summary["valid_balanced_accuracy"] > 0.15  # every breed weighs the same: 34 of 37 have 1 valid photo
    pred = load_predictor(tmp_path)
    assert pred.predict(shared / "data/pets-dev/images/Abyssinian_5.jpg")[0][0] in pred.vocab  # the RGBA PNG quirk
    # the three answers with the real backbone: ImageNet's own classifier decides "is it a cat or a dog at all"
    assert pred.rule.gate == "imagenet" and summary["baseline_balanced_accuracy"] > 0.5
    repo = Path(__file__).parent.parent
    pets = pred.predict_batch(sorted((repo / "examples").glob("*.jpg")), calibrated=True)
    assert all(r.verdict != "unknown" for r in pets), [pred.describe(r) for r in pets]
    others = pred.predict_batch([repo / "tests/data/not_pets" / f for f in ("rocket.jpg", "coffee.jpg", "coins.jpg")])
    assert all(r.verdict == "unknown" for r in others), [pred.describe(r) for r in others]
    # ONNX Runtime answers as torch does with the real backbone and the ImageNet gate, on Pets photos and others
    photos = [*sorted((repo / "examples").glob("*.jpg")), *sorted((repo / "tests/data/not_pets").glob("*.jpg"))]
    assert pred.backend.name == "onnxruntime"
    a, b = load_predictor(tmp_path, backend="torch").predict_batch(photos), pred.predict_batch(photos)
    assert [r.verdict for r in a] == [r.verdict for r in b] and [r[0][0] for r in a] == [r[0][0] for r in b]
    assert max(abs(x.ood_score - y.ood_score) for x, y in zip(a, b)) < 1e-4
    assert max(abs(p - q) for x, y in zip(a, b) for (_, p), (_, q) in zip(x, y)) < 1e-4
    res = evaluate_folder(tmp_path, shared / "data/pets-dev/images")
    assert res["n"] == 755 and res["breeds_accuracy"] > 0.5 and res["catdog_accuracy"] > 0.85
    assert res["breeds_balanced_accuracy"] > 0.3 and len(res["confusion_matrix"]["labels"]) == 37


def test_the_readme_recipe_with_real_weights(shared, tmp_path):
    "catdog-train's defaults (the README command): tf_efficientnet_lite2 at 224 px, the training-free export."
    cfg = TrainConfig(
        data=str(shared / "data/pets-dev/images"),
        task="breeds",
        weights=str(shared / "weights/tf_efficientnet_lite2.in1k.safetensors"),
        out=str(tmp_path),
        pkl=False,
    )
    summary = train_model(cfg)
    assert cfg.arch == "tf_efficientnet_lite2" and summary["history"] == []  # nothing trained
    assert summary["valid_balanced_accuracy"] > 0.6 and summary["valid_catdog_accuracy"] > 0.95
    assert "all labelled photos" in summary["exported_means"]
