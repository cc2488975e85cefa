"""Real ImageNet weights on real Pets photos (`CATDOG_SHARED=../shared pytest -m slow`, or `--shared=PATH`).

A few minutes on a 2-core CPU: one frozen and one unfrozen epoch of tf_efficientnet_lite0 on the 755 photos of
pets-dev, then the export is scored through `catdog-evaluate`'s code path.
"""

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
    res = evaluate_folder(tmp_path, shared / "data/pets-dev/images")
    assert res["n"] == 755 and res["breeds_accuracy"] > 0.5 and res["catdog_accuracy"] > 0.85
    assert res["breeds_balanced_accuracy"] > 0.3 and len(res["confusion_matrix"]["labels"]) == 37
