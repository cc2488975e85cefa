"""Two processes on the CPU (gloo) under torchrun: both train, end identical, and only rank 0 writes."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PETS, TINY, TINY_ARGS, tiny_cfg
from test_resume import InterruptAt

from catdog_fastai.callbacks import CHECKPOINT
from catdog_fastai.train import train_model

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _run(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    return subprocess.run(TORCHRUN + args, capture_output=True, text=True, timeout=300, env=env, **kw)


def test_two_ranks_train_identically_and_export_once(tmp_path):
    out, probe = tmp_path / "out", tmp_path / "probe"
    probe.mkdir()
    r = _run([str(Path(__file__).parent / "distrib_probe.py"), str(out), str(probe)])
    assert r.returncode == 0, r.stderr[-3000:]
    records = [json.loads((probe / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert all(rec["batches"] > 0 for rec in records)  # both ranks ran training steps
    assert records[0]["weights"] == records[1]["weights"]  # DDP kept them identical
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("model.")) == ["model.json", "model.safetensors"]
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 2  # written once, by rank 0


def test_cli_under_torchrun_logs_once(tmp_path):
    out = tmp_path / "out"
    r = _run(
        [
            "-m",
            "catdog_fastai.train",
            "--data",
            str(PETS),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--freeze-epochs",
            "1",
            "--no-pkl",
            *TINY_ARGS,
            "--bs",
            str(TINY["bs"]),  # as before TINY_ARGS was shared: global batch 16, 8 per rank
        ]
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("epoch 1/2") == 1 and r.stdout.count("model card: ") == 1
    assert (out / "model.safetensors").is_file() and not (out / CHECKPOINT).exists()


def test_resume_under_torchrun(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        train_model(tiny_cfg(out, task="breeds", epochs=2, freeze_epochs=1, pkl=False), cbs=[InterruptAt(epoch=1)])
    r = _run(["-m", "catdog_fastai.train", "--out", str(out), "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming at unfrozen epoch 2 of 3" in r.stdout
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(x["global_epoch"]) for x in rows] == [0, 1, 2]
    assert (out / "model.safetensors").is_file()
