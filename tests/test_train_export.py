"""Training, the report and the export, on a tiny model trained once per session (`breeds_model`)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PETS, SMALL, tiny_cfg

from catdog_fastai import ExportError, load_predictor
from catdog_fastai.config import OPTIMIZERS
from catdog_fastai.export import load_safe, save_weights
from catdog_fastai.files import atomic_write
from catdog_fastai.meta import META, WEIGHTS, ModelMeta, read_meta, stamped, write_meta
from catdog_fastai.model import ModelError, build_model, check_arch
from catdog_fastai.train import train_model


def save_safe(model: torch.nn.Module, meta: ModelMeta, out: Path) -> ModelMeta:
    "A bare model exported as `export.export` writes a trained one: model.safetensors, then model.json vouching for it."
    meta = stamped(meta, save_weights(model, out))
    write_meta(out, meta)
    return meta


def test_training_writes_report_history_and_both_exports(breeds_model):
    for f in (
        "model.safetensors",
        "model.json",
        "model.pkl",
        "history.csv",
        "report.json",
        "confusion_matrix.png",
        "top_losses.png",
        "train_config.json",
    ):
        assert (breeds_model / f).stat().st_size > 0, f
    assert not (breeds_model / "checkpoint.pth").exists()  # removed once the export is written
    rows = list(csv.DictReader((breeds_model / "history.csv").open()))
    assert [r["phase"] for r in rows] == ["frozen", "unfrozen"]
    assert all(float(r["train_loss"]) > 0 and 0 <= float(r["accuracy"]) <= 1 for r in rows)
    assert all(0 <= float(r["balanced_accuracy"]) <= 1 for r in rows)
    meta = read_meta(breeds_model)
    assert meta.arch == "test_efficientnet" and meta.task == "breeds" and len(meta.vocab) == 37
    assert meta.size == 64 and meta.config.epochs == 1 and "torch" in meta.versions
    report = json.loads((breeds_model / "report.json").read_text())
    assert report["n_classes"] == 37 and 0 <= report["valid_catdog_accuracy"] <= 1
    assert 0 <= report["valid_balanced_accuracy"] <= 1 and 0 <= report["valid_catdog_balanced_accuracy"] <= 1
    for k in ("valid_accuracy", "valid_balanced_accuracy", "valid_catdog_balanced_accuracy"):
        assert getattr(meta.metrics, k) == report[k]
    # the default stratified split validates every breed, on 1 of the fixture's 3 photos: too few to trust alone
    assert sum(report["n_valid_per_class"].values()) == report["n_valid"] == 37
    assert len(report["few_valid_classes"]) == 37 and "per_class" not in meta.metrics.to_json()
    assert meta.metrics.exported_epoch == 2  # one-cycle's last epoch, by default


def test_load_learner_in_a_fresh_process_that_imported_nothing_of_ours(breeds_model):
    code = (
        "import sys, warnings; warnings.simplefilter('ignore')\n"
        "from fastai.learner import load_learner\n"
        "assert not any(m.startswith('catdog_fastai') for m in sys.modules)\n"
        f"learn = load_learner({str(breeds_model / 'model.pkl')!r})\n"
        "from pathlib import Path\n"
        f"label, idx, probs = learn.predict(Path({str(PETS / 'Bengal_1.jpg')!r}))\n"
        f"label2, _, probs2 = learn.predict({str(PETS / 'Bengal_1.jpg')!r})  # a plain str, as fastbook does\n"
        "print(len(learn.dls.vocab), round(float(probs.sum()), 4), label in learn.dls.vocab, label2 == label,"
        " bool((probs2 - probs).abs().max() < 1e-6))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["37", "1.0", "True", "True", "True"]


def test_safe_predictor_matches_fastai_predict(breeds_model):
    from fastai.learner import load_learner

    learn = load_learner(breeds_model / "model.pkl")
    for backend in ("torch", "onnxruntime"):
        pred = load_predictor(breeds_model, backend=backend)  # one view, as learn.predict; TTA: test_predict.py
        assert pred.vocab == list(learn.dls.vocab)
        for f in sorted(PETS.glob("*.jpg"))[::10]:  # includes the GIF and the RGBA PNG named .jpg
            with learn.no_bar():
                _, _, probs = learn.predict(f)
            ours = pred.probs(pred.preprocess(f)[None])[0]
            assert np.allclose(probs.numpy(), ours, atol=1e-4), (backend, f.name)


def test_export_is_model_agnostic_vit(tmp_path):
    "A ViT-style backbone (no feature map: timm pools) goes through build, save, load."
    model = build_model("test_vit", 3)
    out = model(torch.randn(2, 3, 160, 160))
    assert out.shape == (2, 3)
    save_safe(
        model,
        ModelMeta(arch="test_vit", task="breeds", vocab=["a", "b", "c"], size=160, mean=[0.5] * 3, std=[0.5] * 3),
        tmp_path,
    )
    loaded, _ = load_safe(tmp_path)
    x = torch.randn(1, 3, 160, 160)
    assert torch.allclose(model.eval()(x), loaded(x), atol=1e-5)


def test_unknown_arch_suggests_close_names():
    with pytest.raises(ModelError, match="Did you mean.*resnet18"):
        check_arch("resnet_18")


def test_weights_file_that_does_not_fit(tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "w.safetensors"
    save_file({"conv_stem.weight": torch.zeros(1)}, str(bad))
    with pytest.raises(ModelError, match="does not fit"):
        build_model("test_efficientnet", 2, weights=str(bad))
    with pytest.raises(ModelError, match="not found"):
        build_model("test_efficientnet", 2, weights=str(tmp_path / "missing.safetensors"))


def test_offline_hub_weights_fail_fast_with_the_fix(no_network):
    import time

    t = time.perf_counter()
    with pytest.raises(ModelError, match="--weights FILE"):
        build_model("resnet18", 2, pretrained=True)
    assert time.perf_counter() - t < 10  # not the Hub client's minute of retries


def _copy_export(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in (WEIGHTS, META):
        (dst / f).write_bytes((src / f).read_bytes())
    return dst


def test_mismatched_or_foreign_exports_are_refused(breeds_model, tmp_path):
    d = _copy_export(breeds_model, tmp_path / "a")
    meta = json.loads((d / META).read_text())
    (d / META).write_text(json.dumps({**meta, "format_version": 99, "versions": {"catdog_fastai": "9.9"}}))
    with pytest.raises(ExportError, match="format 99.*catdog_fastai.*9.9"):
        load_predictor(d)
    (d / META).write_text(json.dumps({**meta, "vocab": ["a", "b"], "weights_sha256": None}))
    with pytest.raises(ExportError, match="shape mismatch"):
        load_predictor(d)
    (d / META).write_text(json.dumps({**meta, "arch": "test_resnet", "weights_sha256": None}))
    with pytest.raises(ExportError, match="does not fit test_resnet"):
        load_predictor(d)
    (d / META).write_text(json.dumps(meta))
    (d / WEIGHTS).write_bytes((d / WEIGHTS).read_bytes()[:1000])
    with pytest.raises(ExportError, match="checksum"):
        load_predictor(d)
    (d / META).write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        load_predictor(d)
    with pytest.raises(ExportError, match="train one"):
        load_predictor(tmp_path / "nothing")


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous good export")

    def crash(p: Path):
        p.write_bytes(b"half a fi")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, crash)
    assert target.read_bytes() == b"previous good export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left behind


def test_failed_export_keeps_the_previous_export(breeds_model, tmp_path, monkeypatch):
    import catdog_fastai.export as ex

    d = _copy_export(breeds_model, tmp_path / "e")
    before = {f: (d / f).read_bytes() for f in (WEIGHTS, META)}

    def full_disk(sd, path, metadata=None):
        Path(path).write_bytes(b"\0" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ex, "save_file", full_disk)
    model, meta = load_safe(d)
    with pytest.raises(OSError):
        save_safe(model, meta, d)
    assert {f: (d / f).read_bytes() for f in (WEIGHTS, META)} == before
    assert sorted(p.name for p in d.iterdir()) == sorted(before)
    load_predictor(d)  # still loads


def test_train_cli_help_shows_defaults(capsys):
    from catdog_fastai.train import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for flag in ("--arch", "--weights", "--task", "--split", "--lr", "--opt", "--resume", "--valid-pct"):
        assert flag in out
    assert "(default: tf_efficientnet_lite2)" in " ".join(out.split())  # argparse wraps lines at any space
    assert "--onnx" in out and "--logit-adjust" in out and "--export-epoch" in out


def test_train_cli_groups_flags_under_one_title_each():
    from catdog_fastai.config import build_parser

    titles = [g.title for g in build_parser()._action_groups]
    assert sorted(titles) == sorted(["positional arguments", "options", "data", "model", "train", "output"])


def test_export_epoch_best_exports_what_the_rule_picks(tmp_path, monkeypatch):
    from catdog_fastai import train
    from catdog_fastai.metrics import best_epoch

    picked = []

    def most_hits(hits, rule):  # the 'best' rule without its significance test, so this run can exercise it
        picked.append((hits, rule))
        return best_epoch(hits)

    monkeypatch.setattr(train, "export_epoch", most_hits)
    s = train_model(tiny_cfg(tmp_path, task="catdog", export_epoch="best", epochs=2, **SMALL))
    ((hits, rule),) = picked
    assert rule == "best" and len(hits) == 3 and all(len(h) == s["n_valid"] for h in hits)
    assert s["valid_hits"] == hits
    e = most_hits(hits, rule)
    assert s["exported_epoch"] == e + 1
    assert s["valid_accuracy"] == pytest.approx(s["history"][e]["accuracy"])  # that epoch's weights were exported
    assert sum(hits[e]) / len(hits[e]) == pytest.approx(s["history"][e]["accuracy"])
    assert not (tmp_path / "best.pth").exists()


def test_default_exports_the_last_epoch_without_keeping_a_best_copy(tmp_path, monkeypatch):
    saved = []
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, p, *a, **k: saved.append(Path(p).name) or real_save(obj, p, *a, **k))
    s = train_model(tiny_cfg(tmp_path, task="catdog", **SMALL))
    assert s["exported_epoch"] == 2 and s["valid_accuracy"] == pytest.approx(s["history"][-1]["accuracy"])
    assert saved and not any(".best.pth" in n for n in saved)


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--lr", "fast"], "--lr must be a number"),
        (["--bs", "0"], "--bs must be at least 1"),
        (["--opt", "adamax"], "invalid choice"),
        (["--valid-pct", "1.5"], "--valid-pct"),
    ],
)
def test_train_cli_rejects_bad_arguments(args, msg, capsys):
    from catdog_fastai.train import main

    with pytest.raises(SystemExit) as e:  # argparse's exit: usage and the message, no traceback
        main(args)
    assert e.value.code == 2 and msg in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--data", "MISSING"], "data folder not found"),
        (["--data", str(PETS), "--arch", "resnet_18", "--no-pretrained"], "Did you mean"),
    ],
)
def test_train_cli_errors_are_one_clear_line(tmp_path, capsys, args, msg):
    from catdog_fastai.train import main

    args = [str(tmp_path / a) if a == "MISSING" else a for a in args]
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("catdog-train: error: ") and err.count("\n") == 1 and msg in err, err


def test_train_cli_offline_default_download(tmp_path, no_network, monkeypatch, capsys):
    "No --data and no network: one line that names the fix, no traceback."
    from fastai.data.external import fastai_cfg

    from catdog_fastai.train import main

    monkeypatch.setenv("FASTAI_HOME", str(tmp_path / "fastai"))  # no cached copy of Pets
    fastai_cfg.cache_clear()  # fastai reads FASTAI_HOME once per process
    try:
        assert main(["--out", str(tmp_path / "o"), "--no-pretrained"]) == 2
    finally:
        fastai_cfg.cache_clear()  # the next caller reads the real FASTAI_HOME again
    err = capsys.readouterr().err
    assert "could not download Oxford-IIIT Pets" in err and "--data DIR" in err and err.count("\n") == 1
    assert "../shared" not in err  # no path of this repo's own machines


def test_unwritable_out_is_reported(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    from catdog_fastai.errors import CatdogError, OutputError, ResumeError
    from catdog_fastai.train import main

    assert main(["--data", str(PETS), "--no-pretrained", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("catdog-train: error: --out ") and "is not writable" in err and "\n" not in err
    assert issubclass(OutputError, CatdogError) and issubclass(ResumeError, CatdogError)
    assert not issubclass(OutputError, ExportError)  # an output folder is not an export problem


def test_every_error_a_person_can_fix_has_one_root():
    "Every exception class the package defines, found by importing each of its modules, derives from CatdogError."
    import importlib
    import inspect
    import pkgutil

    import catdog_fastai
    from catdog_fastai.errors import CatdogError

    defined = {}
    for m in pkgutil.iter_modules(catdog_fastai.__path__):
        module = importlib.import_module(f"catdog_fastai.{m.name}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                defined[f"{m.name}.{name}"] = cls
    assert {"errors.DataError", "model.ModelError", "distributed.LaunchError", "images.ImageError"} <= set(defined)
    assert [name for name, cls in defined.items() if not issubclass(cls, CatdogError)] == []


def test_tiny_catdog_run_through_the_api(tmp_path):
    from catdog_fastai import train_model

    summary = train_model(tiny_cfg(tmp_path, task="catdog", epochs=0, freeze_epochs=1, pkl=False, **SMALL))
    assert summary["n_classes"] == 2 and not (tmp_path / "model.pkl").exists()
    p = load_predictor(tmp_path)
    top = p.predict(PETS / "Bengal_1.jpg", top_k=None)
    assert [lab for lab, _ in sorted(top)] == ["cat", "dog"] and abs(sum(pr for _, pr in top) - 1) < 1e-5


def test_lr_auto_runs_lr_find_and_saves_its_plot(tmp_path, caplog, monkeypatch):
    import logging
    from functools import partialmethod

    from fastai.learner import Learner

    from catdog_fastai import train_model

    monkeypatch.setattr(Learner, "lr_find", partialmethod(Learner.lr_find, num_it=25))  # not 100: our wiring is tested
    with caplog.at_level(logging.INFO, logger="catdog_fastai"):
        train_model(tiny_cfg(tmp_path, task="catdog", lr="auto", epochs=0, freeze_epochs=1, pkl=False, **SMALL))
    assert (tmp_path / "lr_find.png").stat().st_size > 1000
    assert "lr_find suggests lr =" in caplog.text
    meta = read_meta(tmp_path)
    assert meta.config.lr == "auto"


@pytest.mark.parametrize("opt", [o for o in OPTIMIZERS if o != "adam"])  # adam: the next test
def test_every_optimizer_trains(tmp_path, opt):
    from catdog_fastai.data import get_dls
    from catdog_fastai.train import get_learner

    cfg = tiny_cfg(tmp_path, task="catdog", opt=opt)
    learn = get_learner(get_dls(cfg), cfg)
    before = [p.detach().clone() for p in learn.model[1].parameters()]
    with learn.no_bar():
        learn.fit_one_cycle(1, 1e-2)
    after = list(learn.model[1].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # the head's weights moved
    assert all(torch.isfinite(a).all() for a in after)
    assert type(learn.opt).__name__ in ("Optimizer", "Lookahead")  # fastai's own; adam: see below


def test_adam_is_fastais_adam_run_by_torch_adamw(tmp_path):
    "Same hyper-parameters as fastai's Adam, one-cycle momentum and discriminative rates reach torch's AdamW."
    from catdog_fastai.data import get_dls
    from catdog_fastai.train import get_learner

    cfg = tiny_cfg(tmp_path, task="catdog", wd=0.05)
    learn = get_learner(get_dls(cfg), cfg)
    learn.unfreeze()
    with learn.no_bar():
        learn.fit_one_cycle(1, slice(1e-4, 1e-2))
    opt = learn.opt.opt
    assert isinstance(opt, torch.optim.AdamW)
    body, head = opt.param_groups
    assert body["weight_decay"] == head["weight_decay"] == 0.05  # --wd, set by fit
    assert body["eps"] == 1e-5 and body["betas"][1] == 0.99
    assert body["lr"] < head["lr"]  # discriminative rates survived the wrapper
    assert 0.85 <= body["betas"][0] <= 0.95  # momentum scheduled by fit_one_cycle
    assert len(opt.state) > 0  # it actually stepped


def test_loss_on_device_records_the_same_losses_as_fastai(tmp_path):
    "The GPU-only callback, run here on the CPU: same smoothed losses as fastai's recorder, as CPU tensors."
    from fastai.torch_core import set_seed

    from catdog_fastai.callbacks import LossOnDevice
    from catdog_fastai.data import get_dls
    from catdog_fastai.train import get_learner

    losses = []
    for cbs in ([], [LossOnDevice()]):
        set_seed(0, reproducible=True)
        cfg = tiny_cfg(tmp_path, task="catdog")
        learn = get_learner(get_dls(cfg), cfg)
        with learn.no_bar():
            learn.fit_one_cycle(1, 1e-3, cbs=cbs)
        losses.append(torch.stack(learn.recorder.losses))
        assert type(learn.recorder.smooth_loss).__name__ == "AvgSmoothLoss"  # restored after the fit
    assert losses[1].device.type == "cpu" and len(losses[1]) == len(losses[0]) > 0
    assert torch.allclose(losses[0], losses[1], atol=1e-6)


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_on_the_cpu_keeps_fp32(tmp_path, channels_last):
    "channels_last (faster on the CPU too) changes the memory format only: fastai's default would add fp16 AMP."
    from fastai.callback.fp16 import MixedPrecision

    from catdog_fastai.data import get_dls
    from catdog_fastai.train import get_learner

    cfg = tiny_cfg(tmp_path, task="catdog", channels_last=channels_last)
    learn = get_learner(get_dls(cfg), cfg)
    with learn.no_bar():
        learn.fit(1, 1e-3)
    assert not any(isinstance(cb, MixedPrecision) for cb in learn.cbs)
    conv = next(p for p in learn.model.parameters() if p.ndim == 4)
    assert conv.dtype == torch.float32
    assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert conv.is_contiguous() != channels_last


def test_loss_takes_out_the_prior_the_sampling_leaves(tmp_path):
    from catdog_fastai.data import get_dls
    from catdog_fastai.losses import LogitAdjustedLoss
    from catdog_fastai.train import class_counts, get_learner

    cfg = tiny_cfg(tmp_path, task="catdog")  # the fixture has more dogs (25 breeds) than cats (12)
    learn = get_learner(get_dls(cfg), cfg)
    counts = class_counts(learn.dls)
    assert counts[1] > counts[0] and sum(counts) == len(learn.dls.train_ds)
    assert isinstance(learn.loss_func, LogitAdjustedLoss)
    assert learn.loss_func.adjust[1] > learn.loss_func.adjust[0]  # log prior: dogs more likely in training
    cfg = tiny_cfg(tmp_path, task="catdog", sampling="balanced")
    adjust = get_learner(get_dls(cfg), cfg).loss_func.adjust
    assert torch.allclose(adjust, adjust[0].expand_as(adjust))  # classes drawn equally: a constant, i.e. plain CE


def test_model_json_is_one_typed_record_and_old_ones_read():
    "`ModelMeta` round-trips through JSON; a stored 0.4.1 model.json reads with defaults for the newer fields."
    old = json.loads((Path(__file__).parent / "data" / "export-0.4.1" / META).read_text())
    meta = ModelMeta.from_json(old)
    assert meta.head == "fastai" and meta.onnx is None and meta.ood.temperature == old["ood"]["temperature"]
    assert meta.verdict.threshold == old["ood"]["threshold"] and meta.verdict.known_min_prob is None  # upgraded
    assert meta.metrics.extra["calibration"]["score"] == "mean_distance" and meta.n_classes == 37
    assert ModelMeta.from_json(meta.to_json()) == meta
    assert meta.to_json()["ood"] == old["ood"]  # keys this version does not type are written back as they were
    assert "onnx" not in meta.to_json() and meta.to_json()["format_version"] == 1
    with pytest.raises(ExportError, match="export format 2"):
        ModelMeta.from_json({**old, "format_version": 2})
    with pytest.raises(ExportError, match="lacks vocab"):
        ModelMeta.from_json({k: v for k, v in old.items() if k != "vocab"})
    with pytest.raises(ExportError, match="malformed field"):
        ModelMeta.from_json({**old, "size": "large"})


def test_the_closing_lines_name_the_files_written(tmp_path):
    from catdog_fastai.train import where_it_went

    cfg = tiny_cfg(tmp_path, pkl=False)
    assert "model.onnx" not in where_it_went(cfg, tmp_path, tmp_path / "README.md")[0]
    (tmp_path / "model.onnx").write_bytes(b"graph")
    first = where_it_went(cfg, tmp_path, tmp_path / "README.md")[0]
    assert f"{tmp_path}/model.onnx (ONNX Runtime)" in first and "model.pkl" not in first
