"""Each rule written once (issue #31): the names a choice flag accepts are the names its owning module implements,
and the run state `--resume` reads back is a typed record with a clear error when a checkpoint's is damaged."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from conftest import tiny_cfg

from catdog_fastai import labels, loggers, losses, model, optim
from catdog_fastai.callbacks import CHECKPOINT, ResumePoint, RunState
from catdog_fastai.config import TrainConfig, build_parser
from catdog_fastai.errors import ResumeError
from catdog_fastai.train import main, new_state, schedule

OWNERS = {  # TrainConfig field -> the names the module that implements it knows
    "task": labels.TASKS,
    "head": model.HEADS,
    "sampling": tuple(losses.SAMPLING_POWER),
    "logger": loggers.LOGGERS,
    "opt": tuple(optim.OPT_FUNCS),
}


def _choices() -> dict[str, tuple[str, ...]]:
    return {f.name: f.metadata["choices"] for f in dataclasses.fields(TrainConfig) if "choices" in f.metadata}


@pytest.mark.parametrize("name", OWNERS)
def test_a_config_choice_is_exactly_what_its_module_implements(name):
    choices = _choices()[name]
    assert len(set(choices)) == len(choices) and sorted(choices) == sorted(OWNERS[name])


@pytest.mark.parametrize("name", OWNERS)
def test_train_help_offers_exactly_the_implemented_choices(name):
    action = next(a for a in build_parser()._actions if a.dest == name)
    assert sorted(action.choices) == sorted(OWNERS[name])
    assert getattr(TrainConfig(), name) in action.choices  # the default is one of them


def test_every_head_and_sampling_named_is_built():
    for kind in model.HEADS:
        assert model.create_head(8, 3, kind=kind)(torch.randn(2, 8, 2, 2)).shape == (2, 3)
    for sampling in losses.SAMPLING_POWER:
        assert len(losses.sampled_counts([1, 4], sampling)) == 2


def test_the_config_and_its_choices_import_no_training_library():
    code = (
        "import sys, catdog_fastai.config as c; c.build_parser(); "
        "print([m for m in ('torch', 'timm', 'fastai') if m in sys.modules])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def _state_after_one_epoch() -> RunState:
    cfg = TrainConfig(epochs=2, freeze_epochs=1)
    state = new_state(1e-3, schedule(cfg, 1e-3))
    state.record(dict(phase="frozen", epoch=0, global_epoch=0, valid_loss=0.5), [True, False, True])
    return state


def _save_checkpoint(out, state) -> None:
    "A checkpoint as `Checkpointer` writes it, as far as `ResumePoint.load` and `.state` read it."
    torch.save(dict(config=tiny_cfg(out).to_dict(), state=state), out / CHECKPOINT)


def test_run_state_survives_the_checkpoint(tmp_path):
    state = _state_after_one_epoch()
    assert (state.phases, state.total, state.done) == (["frozen", "unfrozen"], 3, 1)
    _save_checkpoint(tmp_path, state.to_dict())
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)["state"]  # a plain dict: no class needed to load
    assert type(saved) is dict
    _, resume = ResumePoint.load(tiny_cfg(tmp_path, resume=True))
    assert resume.state == state
    assert resume.state is resume.state  # read once: training records into the object it resumes from


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda d: d.pop("done"), "missing done"),
        (lambda d: d.update(lr="fast"), "lr is str"),
        (lambda d: d.update(total=True), "total is bool"),
        (lambda d: d["history"].append({}), "1 epochs done of 3, with 2 history rows"),
    ],
)
def test_a_malformed_run_state_is_refused_naming_what_is_wrong(change, why):
    d = _state_after_one_epoch().to_dict()
    change(d)
    with pytest.raises(ResumeError, match=f"run state in x.pth is malformed \\({why}"):
        RunState.from_dict(d, "x.pth")
    with pytest.raises(ResumeError, match="a list where a dict"):
        RunState.from_dict([], "x.pth")


def test_resume_from_a_checkpoint_without_run_state_is_one_line(tmp_path, capsys):
    _save_checkpoint(tmp_path, {})
    assert main(["--out", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "run state in" in err and "missing lr, phases, total, done, history, correct" in err
    assert "start again without --resume" in err and "Traceback" not in err


def test_every_file_an_export_holds_is_named_once_in_files(breeds_model):
    from catdog_fastai import files

    assert len(set(files.EXPORT_FILES)) == len(files.EXPORT_FILES)
    written = {p.name for p in breeds_model.iterdir()}
    assert written <= set(files.EXPORT_FILES), written - set(files.EXPORT_FILES)
    assert {files.WEIGHTS, files.META, files.ONNX, files.REPORT, files.CARD, files.HISTORY} <= written


@pytest.mark.parametrize(
    "vocab, task, pets, species",
    [
        (["Abyssinian", "beagle"], "breeds", True, True),
        (["cat", "dog"], "catdog", True, False),
        (["cat", "dog"], "folders", True, False),  # your own folders called cat and dog
        (["Abyssinian", "beagle"], "folders", False, False),  # breed-like folder names are not Pets names
        (["black", "grizzly", "teddy"], "csv", False, False),  # lowercase, like dog breeds
    ],
)
def test_what_a_models_labels_are_is_decided_in_labels(vocab, task, pets, species):
    assert labels.is_pet_model(vocab, task) is pets and labels.has_species(vocab, task) is species
    assert labels.model_task("breeds", "pets") == "breeds" and labels.model_task("breeds", "folders") == "folders"


def test_the_rule_is_worded_once_for_the_card_and_the_training_summary():
    from pathlib import Path

    from catdog_fastai import evaluate, ood, verdict
    from catdog_fastai.card import model_card
    from catdog_fastai.meta import Rule

    rule = Rule(gate="features", threshold=0.25, keep=0.98, known_min_prob=0.6, views=list(ood.HARD_VIEWS), n_valid=9)
    said = verdict.when_unknown(rule)
    assert "(threshold 0.2500, fitted on the validation photos, each also at a third of its resolution and in " in said
    assert "grayscale, 9 views in all, to let 98% through" in said and said.startswith(verdict.GATES["features"])
    summary = dict(n_valid=3, n_classes=2, valid_accuracy=1.0, valid_balanced_accuracy=1.0, per_class={},
                   n_valid_per_class={}, few_valid_classes=[])  # fmt: skip
    lines = evaluate._summary_lines(summary, rule, [], Path("out"))
    assert f"answers: unknown when {said}; unsure when no class reaches 60%" in lines
    meta = dict(arch="resnet18", vocab=["cat", "dog"], size=64, verdict=rule.to_json())
    assert verdict.when_unknown(rule, ": about 2% of real photos of its classes are flagged too, by design") in (
        model_card(meta)
    )


def test_few_photo_classes_get_one_sentence_on_the_card_in_the_log_and_from_catdog_evaluate():
    import copy
    from pathlib import Path

    from test_card import META, REPORT

    from catdog_fastai import evaluate, evaluate_cli
    from catdog_fastai.card import model_card
    from catdog_fastai.meta import FEW_VALID, few_photos_note

    said = few_photos_note(2, 5)
    assert said == (
        f"2 of 5 classes have fewer than {FEW_VALID} validation photos, so their recall (and the balanced accuracy) "
        "moves by 20 points or more with a single photo"
    )
    assert f"{said}: read these figures as rough." in model_card(copy.deepcopy(META), REPORT)
    summary = dict(n_valid=3, n_classes=5, valid_accuracy=1.0, valid_balanced_accuracy=1.0, per_class={},
                   n_valid_per_class={}, few_valid_classes=["a", "b"])  # fmt: skip
    assert any(
        line.startswith(f"{said}: read them as rough.") for line in evaluate._summary_lines(summary, None, [], Path())
    )
    res = dict(model="m", data="d", n=3, n_per_class={"a": 1, "b": 2}, task="breeds", trained_on={}, accuracy=1.0,
               balanced_accuracy=1.0, per_class={"a": 1.0, "b": 1.0}, few_photo_classes=["a", "b"])  # fmt: skip
    assert few_photos_note(2, photos="photos here") in evaluate_cli.report_table(res)
