"""Two processes on the CPU (gloo) under torchrun: both train, end identical, and only rank 0 writes (e2e: each
run starts three Pythons); in the default run, the pieces that make that so, in this process."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import PETS, TINY, TINY_ARGS, tiny_cfg
from fastai.distributed import DistributedDL
from test_resume import InterruptAt

from catdog_fastai.callbacks import CHECKPOINT, Checkpointer
from catdog_fastai.distributed import LaunchError, finish, is_main, per_rank_bs, rank
from catdog_fastai.train import new_state, schedule, train_model

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
TESTS = Path(__file__).parent


def _run(args, **kw):
    path = os.pathsep.join([str(TESTS), str(TESTS.parent / "benchmarks")])  # conftest imports benchmarks/appcheck
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    return subprocess.run(TORCHRUN + args, capture_output=True, text=True, timeout=300, env=env, **kw)


@pytest.fixture()
def second_rank(monkeypatch):
    "The environment torchrun gives the second of two processes (fastai's rank_distrib and num_distrib read it)."
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")


def test_the_global_batch_is_split_across_ranks(second_rank):
    assert (rank(), is_main(), per_rank_bs(16)) == (1, False, 8)
    with pytest.raises(LaunchError, match="--bs 15 must be divisible by the number of processes \\(2\\)"):
        per_rank_bs(15)


def test_other_ranks_write_no_checkpoint_or_history(second_rank, tmp_path):
    cfg = tiny_cfg(tmp_path)
    cb = Checkpointer(cfg, 0, new_state(1e-3, schedule(cfg, 1e-3)), quiet_bar=True)
    cb.trained = True  # as after a trained epoch; rank 0 would now log and write
    cb.after_epoch()
    assert list(tmp_path.iterdir()) == []


def test_finish_leaves_one_process_to_report(second_rank):
    assert finish() is False and os.environ["WORLD_SIZE"] == "1"  # the report's get_preds gathers nothing


def test_lr_auto_is_refused_before_the_launcher_starts_training(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LaunchError, match="--lr auto"):
        train_model(tiny_cfg(tmp_path, lr="auto"))


def test_sample_order_is_broadcast_on_the_cpu_over_gloo(tmp_path):
    "fastai broadcasts each epoch's order as a CUDA tensor (NCCL only); ours uses the CPU for gloo."
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert DistributedDL._broadcast(None, [3, 1, 2], 0) == [3, 1, 2]
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.e2e
def test_two_ranks_train_identically_and_export_once(tmp_path):
    out, probe = tmp_path / "out", tmp_path / "probe"
    probe.mkdir()
    r = _run([str(Path(__file__).parent / "distrib_probe.py"), str(out), str(probe)])
    assert r.returncode == 0, r.stderr[-3000:]
    records = [json.loads((probe / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert all(rec["batches"] > 0 for rec in records)  # both ranks ran training steps
    assert records[0]["weights"] == records[1]["weights"]  # DDP kept them identical
    exported = sorted(p.name for p in out.iterdir() if p.name.startswith("model."))
    assert exported == ["model.json", "model.onnx", "model.safetensors"]  # one export, no file per rank
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == 2  # written once, by rank 0


@pytest.mark.e2e
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


@pytest.mark.e2e
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
