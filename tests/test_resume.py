"""Interrupted training: Ctrl-C / SIGTERM mid-epoch leaves a resumable checkpoint; --resume finishes the schedule."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import PETS, TINY_ARGS, tiny_cfg
from fastai.callback.core import Callback
from safetensors.torch import load_file

from catdog_fastai.callbacks import CHECKPOINT
from catdog_fastai.train import train_model


class InterruptAt(Callback):
    "Raise KeyboardInterrupt (what Ctrl-C and our SIGTERM handler do) at a batch of a phase's given epoch."

    def __init__(self, epoch: int, batch: int = 2):
        self.at = (epoch, batch)

    def after_batch(self):
        if self.training and (self.epoch, self.iter) == self.at:
            raise KeyboardInterrupt


def _weights(d):
    return load_file(str(d / "model.safetensors"))


def test_resume_after_interrupt_matches_an_uninterrupted_run(tmp_path):
    kw = dict(task="breeds", epochs=2, freeze_epochs=1, pkl=False)
    ref = tmp_path / "ref"
    train_model(tiny_cfg(ref, **kw))

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_model(tiny_cfg(out, **kw), cbs=[InterruptAt(epoch=1)])  # mid second unfrozen epoch
    assert (out / CHECKPOINT).is_file() and not (out / "model.safetensors").exists()
    ckpt = torch.load(out / CHECKPOINT, weights_only=False)
    assert (ckpt["phase"], ckpt["epoch"]) == (1, 0)  # last completed: unfrozen epoch 1
    train_model(tiny_cfg(out, **kw, resume=True))

    a, b = _weights(ref), _weights(out)
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    print("largest weight difference after resume:", worst)
    assert worst < 1e-4, worst
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [r["phase"] for r in rows] == ["frozen", "unfrozen", "unfrozen"]  # each epoch once


def test_resume_without_checkpoint_says_so(tmp_path, capsys):
    from catdog_fastai.train import main

    assert main(["--data", str(PETS), "--out", str(tmp_path), "--resume", "--no-pretrained"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_sigterm_leaves_a_resumable_run(tmp_path):
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
