"""A model trained small still tells non-pets apart: the `imagenet` gate reads each photo enlarged to 224 px."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PETS, SMALL, tiny_cfg

from catdog_fastai import verdict
from catdog_fastai.backends import forward
from catdog_fastai.meta import read_meta
from catdog_fastai.predict import load_predictor
from catdog_fastai.train import train_model

PHOTOS = sorted(PETS.glob("*.jpg"))[:4]


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training-free cat/dog export at 32 px from test_efficientnet weights that keep a 1000-class classifier,
    so its gate is `imagenet`."""
    import timm
    from safetensors.torch import save_file

    tmp = tmp_path_factory.mktemp("small_gate")
    torch.manual_seed(0)
    save_file(timm.create_model("test_efficientnet", num_classes=1000).state_dict(), str(tmp / "w.safetensors"))
    weights = str(tmp / "w.safetensors")
    train_model(tiny_cfg(tmp / "out", task="catdog", epochs=0, freeze_epochs=0, pkl=False, weights=weights, **SMALL))
    return tmp / "out"


def test_gate_size_only_where_the_model_is_smaller_than_imagenets():
    assert verdict.gate_size("imagenet", 128) == verdict.GATE_SIZE == 224
    assert verdict.gate_size("imagenet", 224) is None and verdict.gate_size("imagenet", 260) is None
    assert verdict.gate_size("features", 128) is None  # class means come from the model's own size


def test_a_small_model_reads_its_gate_at_224_px(small_model):
    meta = read_meta(small_model)
    assert meta.size == SMALL["size"] and meta.verdict.gate == "imagenet" and meta.verdict.gate_size == 224
    pred = load_predictor(small_model, backend="torch")
    assert pred.model[0].gate_size == 224
    batch = np.stack([pred.preprocess(p) for p in PHOTOS])
    x = torch.from_numpy(pred.normalize(batch))
    big = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear")
    with torch.no_grad():
        logits, pooled = forward(pred.model, x)
        _, pooled_big = forward(pred.model, big)
        plain = pred.model(x)
    assert torch.allclose(logits, plain, atol=1e-5)  # the answer is still the 32 px pass
    assert torch.allclose(pooled, pooled_big, atol=1e-5)  # the gate's features are the enlarged photo's
    want = 1 - verdict.pet_probability(pooled_big.numpy(), *pred._imagenet)
    assert np.allclose(pred.outputs(batch)[1], want, atol=1e-5)


def test_onnx_runtime_reads_the_gate_at_224_px_too(small_model):
    pytest.importorskip("onnxruntime")
    ort, pt = load_predictor(small_model, backend="onnxruntime"), load_predictor(small_model, backend="torch")
    a, b = ort.predict_batch(PHOTOS, top_k=None), pt.predict_batch(PHOTOS, top_k=None)
    assert np.allclose([r.ood_score for r in a], [r.ood_score for r in b], atol=1e-4)
    assert [r.verdict for r in a] == [r.verdict for r in b]


def test_the_features_gate_reads_the_classifying_pass(breeds_model):
    assert read_meta(breeds_model).verdict.gate_size is None
    assert load_predictor(breeds_model, backend="torch").model[0].gate_size is None
