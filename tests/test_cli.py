"""The commands as a person meets them: options built one way (`cli.py`), `--help` that documents every option and
setting, a table and a summary instead of a wall of JSON, progress only on a terminal, a warning when the photos
were trained on, and one line instead of a traceback where torch is missing."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest
from conftest import PETS

from catdog_fastai import cli
from catdog_fastai.app import AppOptions
from catdog_fastai.config import TrainConfig, parse_config
from catdog_fastai.evaluate_cli import EvaluateOptions
from catdog_fastai.evaluate_cli import main as evaluate_main
from catdog_fastai.export_cli import ExportOptions
from catdog_fastai.predict_cli import PredictOptions
from catdog_fastai.predict_cli import main as predict_main


@dataclass
class _Opts:
    paths: list[str] = cli.option(None, "photos", "input", positional=True, nargs="+")
    model: str = cli.option("models", "export folder", "model", env="CATDOG_TEST_MODEL")
    bs: int = cli.option(32, "batch", "model", env="CATDOG_TEST_BS")
    share: bool = cli.option(False, "share", "server")


def test_options_come_from_a_dataclass_with_env_defaults(monkeypatch):
    assert cli.parse(_Opts, ["a.jpg"]) == _Opts(["a.jpg"], "models", 32, False)
    monkeypatch.setenv("CATDOG_TEST_MODEL", "elsewhere")
    monkeypatch.setenv("CATDOG_TEST_BS", "8")
    assert cli.parse(_Opts, ["a.jpg", "--share"]) == _Opts(["a.jpg"], "elsewhere", 8, True)
    assert cli.parse(_Opts, ["a.jpg", "--model", "flag"]).model == "flag"  # a flag wins over the environment
    text = " ".join(cli.build_parser(_Opts).format_help().split())  # argparse wraps lines at the terminal width
    assert "[env CATDOG_TEST_MODEL]" in text and "(default: elsewhere)" in text and "model:" in text


def test_train_config_is_built_the_same_way():
    "catdog-train's parser is `cli.build_parser` over `TrainConfig`; parse_config still validates."
    cfg = parse_config(["--task", "breeds", "--no-pkl", "--epochs", "2"])
    assert isinstance(cfg, TrainConfig) and (cfg.task, cfg.pkl, cfg.epochs) == ("breeds", False, 2)
    with pytest.raises(SystemExit):
        parse_config(["--lr", "nope"])


@pytest.mark.parametrize(
    "cls, prog, want",
    [
        (AppOptions, "catdog-app", ["--share", "--port", "--host", "--threads", "--max-batch", "--concurrency"]),
        (PredictOptions, "catdog-predict", ["--top-k", "--csv", "--backend", "--threads", "--trust-pickle"]),
        (EvaluateOptions, "catdog-evaluate", ["--data", "--json", "--unseen", "--backend"]),
        (ExportOptions, "catdog-export", ["--onnx", "--space", "--examples", "--push"]),
    ],
)
def test_help_documents_every_option_and_setting(cls, prog, want):
    p = cli.build_parser(cls, prog=prog)
    text = p.format_help()
    assert all(w in text for w in want), text
    undocumented = [a.dest for a in p._actions if a.dest != "help" and not (a.help or "").strip()]
    assert undocumented == []


def test_catdog_app_help_names_the_environment_settings(capsys):
    from catdog_fastai.app import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("CATDOG_MODEL", "CATDOG_THREADS", "CATDOG_MAX_BATCH", "CATDOG_CONCURRENCY", "GRADIO_SERVER_PORT"):
        assert name in out, name
    assert "--share" in out and "gradio.live" in out and "gradio app.py" in out


def test_catdog_predict_ends_with_a_summary_and_no_bar_in_logs(breeds_model, capsys):
    photos = sorted(PETS.glob("*.jpg"))[:40]
    assert predict_main([*map(str, photos), "--model", str(breeds_model), "--bs", "8", "--top-k", "2"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 40 and all(line.count("\t") == 2 for line in lines)  # path, answer, the top 2
    assert "catdog-predict: 40 photos in " in err and "photos/s" in err
    assert "cat " in err or "dog " in err
    assert "predicting" not in err and "\r" not in err  # stderr is not a terminal here: no progress bar


def test_catdog_evaluate_prints_a_table_and_warns_about_training_photos(breeds_model, capsys, tmp_path):
    "The fixture model trained on 80 % of PETS: scoring PETS says so; --unseen scores only the rest."
    assert evaluate_main(["--model", str(breeds_model), "--data", str(PETS), "--json", str(tmp_path / "r.json")]) == 0
    out, err = capsys.readouterr()
    assert "accuracy" in out and "balanced" in out and "recall" in out and "{" not in out
    res = json.loads((tmp_path / "r.json").read_text())
    n_train = res["trained_on"]["n"]
    assert 0.6 * res["n"] < n_train < res["n"]  # the validation fifth was not trained on
    assert f"WARNING: {n_train} of these {res['n']} photos were in the model's training split" in err
    assert evaluate_main(["--model", str(breeds_model), "--data", str(PETS), "--json", "--unseen"]) == 0
    out, err = capsys.readouterr()
    unseen = json.loads(out)  # --json alone: JSON on stdout instead of the table
    assert unseen["n"] == res["n"] - n_train and unseen["trained_on"] == dict(n=0, left_out=n_train, how=unseen[
        "trained_on"]["how"]) and "WARNING" not in err  # fmt: skip


_NO_TORCH = """
import sys
sys.modules.update(torch=None, timm=None, fastai=None)  # not installed, as in the serving install
from catdog_fastai import cli, load_predictor
from catdog_fastai.predict_cli import main as predict
codes = [cli.train(['--help']), cli.evaluate(['--data', 'x']), predict([sys.argv[2], '--model', sys.argv[1],
         '--backend', 'torch'])]
p = load_predictor(sys.argv[1])  # ONNX Runtime serves without them
print(codes, p.backend.name, p.predict(sys.argv[2])[0][0] in p.vocab)
"""


def test_without_torch_every_command_says_in_one_line_what_it_needs(breeds_model):
    r = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, str(breeds_model), str(PETS / "Bengal_1.jpg")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0] == "[2, 2, 2] onnxruntime True"
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and len(lines) == 3, r.stderr
    assert lines[0].startswith("catdog-train needs torch, timm, fastai") and "pip install" in lines[0]
    assert lines[1].startswith("catdog-evaluate needs torch, fastai") and "pip install" in lines[1]
    assert lines[2].startswith("catdog-predict: backend='torch' needs torch and timm") and "pip install" in lines[2]
