"""The benchmark harness (`benchmarks/bench.py`) and the scripts in `benchmarks/` that use it.

The scripts run as a user runs them (`python benchmarks/x.py` from the repository root, in a subprocess) with tiny
settings, and must write their JSON results: command, arguments, machine and figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import bench
import pytest
import torch
from conftest import PETS

REPO = Path(__file__).resolve().parent.parent


def test_timing_summaries():
    t = bench.Timing(tuple(float(x) for x in range(1, 101)))  # 1 .. 100 s
    assert t.median == 50.5 and t.median_ms == 50500
    assert t.p95 == 95  # nearest rank
    assert bench.Timing((3.0,)).p95 == 3.0
    assert bench.Timing((0.5, 0.5, 2.0)).per_second(32) == 64  # median 0.5 s per batch of 32
    d = bench.Timing((1.0, 3.0)).as_dict()
    assert d["median_s"] == 2 and d["min_s"] == 1 and d["n"] == 2 and d["samples_s"] == [1.0, 3.0]
    assert d["stdev_s"] == pytest.approx(2**0.5)
    with pytest.raises(ValueError):
        bench.Timing(())


def test_time_fns_calls_in_turn_after_warmup():
    calls: list[str] = []
    t = bench.time_fns({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, n=3, warmup=2)
    assert calls == ["a", "b"] * 5  # 2 warm-up rounds then 3 timed, interleaved
    assert all(len(x.samples) == 3 for x in t.values())


def test_time_fns_tells_slow_from_fast():
    t = bench.time_fns({"fast": lambda: None, "slow": lambda: time.sleep(0.02)}, n=3, warmup=0)
    assert t["slow"].median >= 0.02 > t["fast"].median


def test_time_iter_skips_start_and_stops_at_the_end():
    t = bench.time_iter(range(5), n=10, skip=2)
    assert len(t.samples) == 3  # 5 items, 2 skipped, then the iterator ends
    with pytest.raises(ValueError):  # nothing left to time: an error, not a figure
        bench.time_iter(range(1), n=3, skip=1)


def test_time_command_is_a_fresh_process():
    t = bench.time_command("import time; time.sleep(0.1)", n=2)
    assert len(t.samples) == 2 and t.median >= 0.1
    with pytest.raises(subprocess.CalledProcessError):
        bench.time_command("raise SystemExit(3)", n=1)


def test_machine_and_device_tag():
    m = bench.machine()
    assert m["cpu"] and m["cpu_cores"] >= 1 and m["torch_threads"] >= 1
    assert {"python", "torch", "timm", "fastai", "torchvision"} <= set(m["versions"])
    line = bench.describe(m)
    assert m["cpu"] in line and f"torch {m['versions']['torch']}" in line
    assert bench.device_tag({"gpu": None}) == "cpu"
    assert bench.device_tag({"gpu": "NVIDIA H100 80GB HBM3"}) == "h100"
    assert bench.device_tag({"gpu": "NVIDIA H200"}) == "h200"
    assert bench.device_tag({"gpu": "NVIDIA A10G"}) == "a10g"
    assert bench.device_tag({"gpu": "NVIDIA GeForce RTX 4090"}) == "4090"


def test_save_records_command_args_machine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / "..")  # anywhere but the repository root: results still go to benchmarks/results
    m = dict(bench.machine(), gpu=None)
    assert bench.results_path("x", m) == REPO / "benchmarks" / "results" / "x-cpu.json"  # what and where measured
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")  # so the test writes nothing into the repository
    monkeypatch.setattr(sys, "argv", ["benchmarks/x.py", "--n", "3"])
    out = bench.save("x", {"ms": 1.5}, dict(n=3, json=None, data=Path("photos")), m)
    assert out == tmp_path / "results" / "x-cpu.json"
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "x" and doc["results"] == {"ms": 1.5}
    assert doc["command"] == "python benchmarks/x.py --n 3"
    assert doc["args"] == {"n": 3, "json": None, "data": "photos"}
    assert doc["machine"]["versions"]["torch"] == m["versions"]["torch"]
    other = bench.save("x", [1], dict(json=tmp_path / "elsewhere.json"), m)
    assert other == tmp_path / "elsewhere.json" and json.loads(other.read_text())["results"] == [1]


def run_script(name: str, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    "`python benchmarks/<name> ...` from the repository root, as the benchmarks README runs them."
    res = subprocess.run(
        [sys.executable, f"benchmarks/{name}", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def results(path: Path, benchmark: str) -> dict:
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == benchmark and doc["machine"]["versions"]["torch"]
    assert doc["command"].startswith("python benchmarks/")
    return doc["results"]


@pytest.mark.parametrize(
    "name", ["accuracy.py", "throughput.py", "memory.py", "load_test.py", "serving.py", "inference.py", "frontier.py"]
)
def test_long_benchmarks_start(name):
    """The benchmarks too long for the suite (real weights, minutes of training) at least import, and take every
    flag of the command their docstring shows (optional ones in brackets included) and `--json` (bench.save)."""
    import ast
    import re

    doc = ast.get_docstring(ast.parse((REPO / "benchmarks" / name).read_text()))
    command = re.search(rf"python benchmarks/{re.escape(name)}(.*?)(?:\n\n|$)", doc, re.S)
    assert command, f"{name}'s docstring shows no `python benchmarks/{name}` command"
    shown = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command.group(1))) | {"--json"}
    taken = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", run_script(name, "--help").stdout))
    assert shown <= taken, f"{name}: its docstring's command uses {sorted(shown - taken)}, which it does not take"
    assert len(shown) > 1  # the command names its data or model, not only --json


def test_loop_overhead_benchmark(tmp_path):
    out = tmp_path / "r.json"
    run_script("loop_overhead.py", "--batches", "4", "--bs", "4", "--epochs", "1", "--repeats", "2", "--tensors", "6",
               "--json", str(out))  # fmt: skip
    r = results(out, "loop-overhead")
    assert r["plain PyTorch loop"]["n"] == 2 and r["fastai, torch AdamW"]["median_s"] > 0


def test_backbones_and_memory_format_benchmarks(tmp_path):
    tiny = ["--archs", "test_efficientnet"]
    run_script("backbones.py", *tiny, "--size", "32", "--n", "3", "--json", str(tmp_path / "b.json"))
    (row,) = results(tmp_path / "b.json", "backbones")
    assert row["arch"] == "test_efficientnet" and 0 < row["params_m"] < 1 and row["train_img_s"] > 0
    run_script("memory_format.py", *tiny, "--bs", "2", "--n", "1", "--json", str(tmp_path / "m.json"))
    (row,) = results(tmp_path / "m.json", "memory-format")
    assert row["NCHW"]["train"]["n"] == 1 and row["channels_last"]["eval1"]["n"] == 5


def test_input_pipeline_benchmark(tmp_path):
    out = tmp_path / "r.json"
    run_script("input_pipeline.py", "--data", str(PETS), "--bs", "8", "--batches", "2", "--json", str(out))
    r = results(out, "input-pipeline")
    assert set(r) == {"items", "items_and_batch_augmentation", "plain_torchvision"}
    assert all(v["n"] == 2 for v in r.values())


@pytest.mark.e2e  # cold starts in fresh processes: ~20 s
def test_inference_benchmark(breeds_model, tmp_path):
    small = ["--n", "2", "--bs", "4", "--cold-repeats", "1", "--json", str(tmp_path / "i.json")]
    run_script("inference.py", "--model", str(breeds_model), "--images", str(PETS), *small)
    r = results(tmp_path / "i.json", "inference")
    assert r["one_image"]["predict"]["n"] == 2 and r["batch"]["bs"] == 4 and r["batch"]["predict_batch"]["img_s"] > 0
    assert set(r["cold_start"]) == {"load_predictor", "load_learner"}  # the export has a model.pkl beside it


def test_degraded_views_are_what_they_say():
    from PIL import Image
    from views import DEGRADATIONS

    img = Image.new("RGB", (320, 240), (200, 40, 40))
    assert DEGRADATIONS["long96"](img).size == (96, 72) and DEGRADATIONS["long64"](img).size == (64, 48)
    assert DEGRADATIONS["crop60"](img).size == (192, 144)
    r, g, b = DEGRADATIONS["gray"](img).getpixel((5, 5))
    assert r == g == b
    assert DEGRADATIONS["jpeg20"](img).size == img.size and DEGRADATIONS["blur"](img).size == img.size


def test_verdict_figures_weigh_every_breed_the_same():
    "accuracy.py's out-of-fold answers on hand-made verdicts: class-balanced shares, the OOD rates and AUROC."
    import torch
    from accuracy import auroc, verdict_stats

    files = ["Bengal_1.jpg", "Bengal_2.jpg", "Bengal_3.jpg", "Bengal_4.jpg", "beagle_1.jpg"]
    clean = [("known", 0.1), ("known", 0.1), ("known", 0.1), ("unknown", 0.9), ("unsure", 0.2)]
    r = dict(
        task="breeds",
        files=files,
        vocab=["Bengal", "beagle"],
        views={"clean": torch.tensor([[0.9, 0.1]] * 4 + [[0.3, 0.7]])},
        verdicts={"clean": clean, "gray": [("unknown", 0.95)] * 5},
        ood={"animals": [("unknown", 0.99, "cat"), ("known", 0.05, "dog")], "cats_dogs": [("unsure", 0.3, "cat")]},
    )
    s = verdict_stats(r)
    assert s["unknown_bal@clean"] == pytest.approx((1 / 4 + 0) / 2)  # Bengal 1 of 4, beagle 0 of 1
    assert s["unsure_bal@clean"] == pytest.approx((0 + 1) / 2)
    assert s["unknown_bal@gray"] == 1 and s["unknown_bal@degraded_mean"] == 1
    assert s["flagged@animals"] == 0.5 and s["cats_dogs_not_unknown"] == 1
    assert s["species_acc_not_unknown"] == 1  # the 4 kept photos: 3 Bengal (cat), 1 beagle (dog), all right
    assert auroc([0.1, 0.2], [0.9, 0.05]) == 0.5 and auroc([0.1], [0.1]) == 0.5
    # known answers: the 3 known Bengals, all right; they cover 3/4 of Bengal and none of beagle
    assert s["known_precision_bal"] == 1 and s["known_coverage_bal"] == pytest.approx((3 / 4 + 0) / 2)


def test_risk_coverage_weighs_every_breed_the_same():
    from accuracy import risk_coverage

    rows = [[0.9, True, "Bengal", "known"], [0.8, True, "Bengal", "known"], [0.7, False, "beagle", "unsure"]]
    cov, acc = risk_coverage(rows)
    assert cov == pytest.approx([0.25, 0.5, 1.0]) and acc == pytest.approx([1.0, 1.0, 0.5])


@pytest.mark.e2e  # both backends and their cold starts: ~20 s
def test_serving_benchmark_times_both_backends(breeds_model, tmp_path):
    small = ["--n", "2", "--folder-n", "6", "--repeats", "1", "--cold-repeats", "1", "--threads", "1"]
    run_script(
        "serving.py", "--model", str(breeds_model), "--images", str(PETS), *small, "--json", str(tmp_path / "s.json")
    )
    r = results(tmp_path / "s.json", "serving")
    assert set(r["medians"]) == {"torch", "onnxruntime"} and r["medians"]["onnxruntime"]["forward_bs8_s"] > 0
    assert r["predict_ratio"] > 0 and r["predict_batch_speedup"] > 0 and len(r["runs"]["torch"]) == 1
    assert r["catdog_predict_folder"]["photos"] == 6 and set(r["cold_start"]) == {"torch", "onnxruntime"}


def test_install_size_follows_requirements(tmp_path):
    from install_size import closure

    assert {"onnxruntime", "numpy"} <= closure(["onnxruntime"]) and "torch" not in closure(["onnxruntime"])
    assert "torch" in closure(["timm"])  # timm needs torch: the torch path pulls it in either way
    run_script("install_size.py", "--json", str(tmp_path / "s.json"))
    r = results(tmp_path / "s.json", "install-size")
    assert (
        0 < r["onnxruntime"]["total_mb"] < r["torch"]["total_mb"] and "torch" not in r["onnxruntime"]["distributions"]
    )


def test_frontier_known_ceiling_is_the_best_line_in_hindsight():
    "The most a line could cover at 97 %: with the two least confident of 20 photos wrong, 90 %; a wrong top: none."
    from frontier import known_ceiling

    files = [f"Abyssinian_{i}.jpg" for i in range(10)] + [f"beagle_{i}.jpg" for i in range(10)]
    y = torch.tensor([0] * 10 + [1] * 10)
    conf = torch.linspace(0.99, 0.6, 20)[torch.tensor([2 * i for i in range(10)] + [2 * i + 1 for i in range(10)])]
    top = y.clone()
    top[conf.argsort()[:2]] = 1 - top[conf.argsort()[:2]]  # the two least confident name the other breed
    probs = torch.zeros(20, 2)
    probs[torch.arange(20), top] = conf
    probs[torch.arange(20), 1 - top] = 1 - conf
    c = known_ceiling(probs, files)
    assert c["coverage"] == pytest.approx(0.9) and c["precision"] == 1.0 and c["precision_at_75"] == 1.0
    wrong_top = conf.argmax()
    probs[wrong_top] = probs[wrong_top].flip(0)
    assert known_ceiling(probs, files)["precision"] < 0.97  # 17 of the top 18: no line reaches the target


def test_accuracy_known_stats_weigh_every_breed_the_same_per_view():
    "Known answers' precision and coverage, as the photos are and per degraded view, a breed of 1 photo as heavy as 3."
    from accuracy import known_stats

    files = ["Abyssinian_1.jpg", "Abyssinian_2.jpg", "Abyssinian_3.jpg", "beagle_1.jpg"]
    right = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])  # the third photo is wrong
    r = dict(
        task="breeds",
        files=files,
        vocab=["Abyssinian", "beagle"],
        views={"clean": right, "long96": right.flip(1)},  # at 96 px every answer flips
        verdicts={
            "clean": [("known", 0), ("known", 0), ("known", 0), ("unsure", 0)],
            "long96": [("known", 0), ("unsure", 0), ("unsure", 0), ("known", 0)],
        },
    )
    s = known_stats(r, [f.split("_")[0] for f in files])
    assert s["known_precision_bal"] == pytest.approx(2 / 3) and s["known_coverage_bal"] == pytest.approx(0.5)
    assert s["known_precision_bal@long96"] == pytest.approx(0.0)  # both known answers at 96 px are wrong
    assert s["known_coverage_bal@long96"] == pytest.approx((1 / 3 + 1) / 2)
