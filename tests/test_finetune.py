"""Fine-tuning that starts from what the backbone knows: the imprinted cosine head, frozen BatchNorm statistics,
WiSE-FT, the training-free baseline in the report, and `--epochs 0 --freeze-epochs 0`."""

import json
import logging

import pytest
import torch
from conftest import SMALL, tiny_cfg
from torch import nn

from catdog_fastai import prototypes
from catdog_fastai.config import TrainConfig
from catdog_fastai.data import find, get_dls
from catdog_fastai.model import CosineClassifier, build_model, wise_ft
from catdog_fastai.start import start_from_pretrained, starting_features
from catdog_fastai.train import get_learner, get_model, train_model


@pytest.fixture(scope="module")
def learner(tmp_path_factory):
    cfg = tiny_cfg(tmp_path_factory.mktemp("ft"), task="breeds")
    found = find(cfg)
    model = get_model(cfg, len(set(found.labels)))
    feats = starting_features(model, found, cfg, torch.device("cpu"))
    learn = get_learner(get_dls(cfg, found=found), cfg, model)
    return learn, start_from_pretrained(learn, feats, found)


def test_the_cosine_head_starts_at_the_class_means(learner):
    learn, _ = learner
    train = learn.dls.test_dl(learn.dls.train.items, with_labels=True)
    feats, targs = prototypes.features(learn.model, train, mirror=True)
    means = prototypes.class_means(feats, targs, len(learn.dls.vocab))
    head = learn.model[1][-1]
    assert isinstance(head, CosineClassifier)
    cos = nn.functional.cosine_similarity(head.weight.detach().cpu(), means, dim=1)
    assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5)  # each row points at its class's mean


def test_before_the_first_step_the_model_is_the_nearest_class_mean(learner):
    learn, baseline = learner
    feats, targs = prototypes.features(learn.model, learn.dls.valid)
    train = learn.dls.test_dl(learn.dls.train.items, with_labels=True)
    means = prototypes.class_means(*prototypes.features(learn.model, train, mirror=True), len(learn.dls.vocab))
    learn.model.eval()
    with torch.no_grad():
        logits = torch.cat([learn.model(x).cpu() for x, _ in learn.dls.valid])
    assert torch.equal(logits.argmax(1), prototypes.nearest_mean(feats, means))
    hits = (prototypes.nearest_mean(feats, means) == targs).double().mean()
    assert baseline["accuracy"] == pytest.approx(float(hits))


def test_wise_ft_mixes_the_weights():
    start = build_model("test_efficientnet", 3, head="cosine")
    tuned = build_model("test_efficientnet", 3, head="cosine")
    s0 = {k: v.clone() for k, v in start.state_dict().items()}
    s1 = {k: v.clone() for k, v in tuned.state_dict().items()}
    wise_ft(tuned, s0, 0.25)
    for k, v in tuned.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, 0.75 * s0[k] + 0.25 * s1[k], atol=1e-6), k
    tuned.load_state_dict(s1)
    assert all(torch.equal(v, s1[k]) for k, v in wise_ft(tuned, s0, 1.0).state_dict().items())


def _bn_stats(model):
    return {k: v.clone() for k, v in model[0].state_dict().items() if "running_" in k}


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_frozen_bn_keeps_the_pretrained_statistics(tmp_path, monkeypatch, freeze_bn):
    import catdog_fastai.train as train_mod

    seen = {}
    real = train_mod.start_from_pretrained

    def spy(learn, *args):
        out = real(learn, *args)
        seen["before"] = _bn_stats(learn.model)
        seen["model"] = learn.model
        return out

    monkeypatch.setattr(train_mod, "start_from_pretrained", spy)
    train_model(tiny_cfg(tmp_path, task="catdog", freeze_bn=freeze_bn, wise=1.0, pkl=False, epochs=0, **SMALL))
    after = _bn_stats(seen["model"])
    same = all(torch.equal(seen["before"][k].cpu(), after[k].cpu()) for k in after)
    assert same == freeze_bn


def test_report_and_summary_set_the_baseline_beside_fine_tuning(breeds_model, caplog):
    report = json.loads((breeds_model / "report.json").read_text())
    assert 0 <= report["baseline_balanced_accuracy"] <= 1
    from catdog_fastai.evaluate import baseline_line

    better = dict(valid_balanced_accuracy=0.9, baseline_balanced_accuracy=0.8)
    assert baseline_line(better).startswith("fine-tuning added +0.1000 balanced accuracy to the pretrained")
    worse = dict(valid_balanced_accuracy=0.6, baseline_balanced_accuracy=0.8)
    assert baseline_line(worse).startswith("fine-tuning came out WORSE than no training: -0.2000")


def test_zero_epochs_exports_the_training_free_baseline(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="catdog_fastai"):
        summary = train_model(tiny_cfg(tmp_path, task="catdog", epochs=0, freeze_epochs=0, pkl=False, **SMALL))
    assert summary["valid_balanced_accuracy"] == summary["baseline_balanced_accuracy"]
    assert summary["exported_epoch"] == 0 and "no training (--epochs 0 --freeze-epochs 0)" in caplog.text
    assert "fine-tuning added" not in caplog.text and summary["trained"] is False
    with pytest.raises(ValueError, match="only the cosine head is a classifier"):
        TrainConfig(epochs=0, freeze_epochs=0, head="fastai").validate()


def test_weights_files_with_and_without_imagenets_classifier(tmp_path):
    import timm
    from safetensors.torch import save_file

    with_clf = timm.create_model("test_efficientnet", num_classes=1000)
    save_file(with_clf.state_dict(), str(tmp_path / "full.safetensors"))
    model = build_model("test_efficientnet", 3, weights=str(tmp_path / "full.safetensors"), head="cosine")
    weight, bias = model[0].source_classifier  # kept: it reads exactly the pooled features
    assert torch.equal(weight, with_clf.get_classifier().weight) and bias.shape == (1000,)
    body_only = timm.create_model("test_efficientnet", num_classes=0)
    save_file(body_only.state_dict(), str(tmp_path / "body.safetensors"))
    model = build_model("test_efficientnet", 3, weights=str(tmp_path / "body.safetensors"))  # 0.4 accepted it too
    assert model[0].source_classifier is None
    assert all(torch.equal(v, body_only.state_dict()[k]) for k, v in model[0].model.state_dict().items())


def test_a_class_without_training_photos_keeps_its_random_start():
    head = CosineClassifier(4, 3)
    before = head.weight.detach().clone()
    head.imprint(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0], [0, 2.0, 0, 0]]))
    assert torch.equal(head.weight[1], before[1]) and head.weight[0, 0] == 2.0 and head.weight[2, 1] == 2.0


def test_resuming_a_run_from_before_0_5_keeps_its_head(tmp_path):
    from catdog_fastai.callbacks import CHECKPOINT, ResumePoint

    old = {k: v for k, v in tiny_cfg(tmp_path).to_dict().items() if k not in ("head", "freeze_bn", "wise", "logger")}
    torch.save(dict(config=old, state={}), tmp_path / CHECKPOINT)
    cfg, _ = ResumePoint.load(tiny_cfg(tmp_path, resume=True))
    assert (cfg.head, cfg.freeze_bn, cfg.wise) == ("fastai", False, 1.0)


def test_wise_needs_the_cosine_head():
    with pytest.raises(ValueError, match="--head cosine"):
        TrainConfig(wise=0.5, head="fastai").validate()
    TrainConfig(wise=0.5).validate()


def test_a_foreign_readme_in_out_is_refused_before_training(tmp_path):
    from catdog_fastai.card import CardError

    (tmp_path / "README.md").write_text("# my project\n")
    with pytest.raises(CardError, match="not a catdog_fastai model card"):
        train_model(tiny_cfg(tmp_path, task="catdog"))
    assert not (tmp_path / "model.json").exists() and (tmp_path / "README.md").read_text() == "# my project\n"
