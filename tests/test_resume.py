"""Interrupted training: Ctrl-C / SIGTERM mid-epoch leaves a resumable checkpoint; --resume finishes the schedule,
bit-identical on the CPU to a run that was never interrupted."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import PETS, SMALL, TINY_ARGS
from fastai.callback.core import Callback
from safetensors.torch import load_file

import catdog_fastai.train as train_mod
from catdog_fastai.callbacks import CHECKPOINT
from catdog_fastai.train import main


class InterruptAt(Callback):
    "Raise KeyboardInterrupt (what Ctrl-C and our SIGTERM handler do) at a batch of a phase's given epoch."

    def __init__(self, epoch: int, batch: int = 2):
        self.at = (epoch, batch)

    def after_batch(self):
        if self.training and (self.epoch, self.iter) == self.at:
            raise KeyboardInterrupt


class SigtermAt(InterruptAt):
    "Send this process a real SIGTERM instead: catdog-train's handler turns it into KeyboardInterrupt."

    def after_batch(self):
        if self.training and (self.epoch, self.iter) == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises as soon as Python checks for signals, well before this ends


def _history(d):
    "history.csv without its timings, which differ from run to run."
    rows = list(csv.DictReader((d / "history.csv").open()))
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_img_per_s")} for r in rows]


def test_sigterm_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    "catdog-train in-process: SIGTERM mid-epoch, then `--out OUT --resume` alone finishes the schedule exactly."
    small = ["--size", str(SMALL["size"]), "--presize", str(SMALL["presize"])]  # after TINY_ARGS: these win
    args = ["--data", str(PETS), "--task", "catdog", *TINY_ARGS, *small, "--epochs", "2", "--freeze-epochs", "1"]
    args += ["--bs", "16", "--no-pkl"]
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert main([*args, "--out", str(ref)]) == 0

    signal.signal(signal.SIGTERM, lambda *_: pytest.fail("catdog-train left SIGTERM unhandled"))  # not our death
    monkeypatch.setattr(train_mod, "logger_callbacks", lambda *a, **k: [SigtermAt(epoch=1)])  # 2nd unfrozen epoch
    assert main([*args, "--out", str(out)]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert f"catdog-train --out {out} --resume" in err and "Traceback" not in err
    assert (out / CHECKPOINT).is_file() and not (out / "model.safetensors").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    assert (ckpt["phase"], ckpt["epoch"]) == (1, 0)  # last completed: unfrozen epoch 1

    assert main(["--out", str(out), "--resume"]) == 0  # the settings come from the checkpoint
    assert "resuming at unfrozen epoch 2 of 3" in capsys.readouterr().out
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []  # every weight, bit for bit
    assert _history(out) == _history(ref)  # every epoch once, with the same losses and metrics to the last digit
    assert [r["phase"] for r in _history(out)] == ["frozen", "unfrozen", "unfrozen"]
    assert not (out / CHECKPOINT).exists()


def test_resume_without_checkpoint_says_so(tmp_path, capsys):
    assert main(["--data", str(PETS), "--out", str(tmp_path), "--resume", "--no-pretrained"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


@pytest.mark.e2e
def test_sigterm_leaves_a_resumable_run(tmp_path):
    "The real thing: `kill` a catdog-train process mid-epoch, then resume it in another."
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "catdog_fastai.train",
        "--data",
        str(PETS),
        "--out",
        str(out),
        "--task",
        "breeds",
        *TINY_ARGS,
        "--bs",
        "4",
        "--epochs",
        "3",
        "--freeze-epochs",
        "1",
        "--no-pkl",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    for line in proc.stdout:  # wait until the first epoch is checkpointed, then stop it mid-epoch
        if line.startswith("epoch 1/4") or time.time() > deadline:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    assert (out / CHECKPOINT).is_file() and not (out / "model.safetensors").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    r = subprocess.run(
        [sys.executable, "-m", "catdog_fastai.train", "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert r.returncode == 0, r.stderr
    assert "resuming at" in r.stdout and (out / "model.safetensors").is_file()
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 4 and [int(r["global_epoch"]) for r in rows] == [0, 1, 2, 3]
