"""Peak memory: one training epoch of `catdog-train`, and the app with and without a loaded model.

    python benchmarks/memory.py --model models [--data ../shared/data/pets-dev/images --weights ...]

Each figure is a separate process's peak resident set (Linux `VmHWM` / `ru_maxrss`), so they do not mix.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import bench

REPO = Path(__file__).resolve().parent.parent


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def app_peak(model_dir: Path, n: int = 20) -> float:
    "Peak RSS of app.py serving `model_dir` after `n` predictions (or just started, without a model)."
    from appcheck import hammer, start_app

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_app(model_dir, Path(tmp) / "app.log")
        try:
            if (model_dir / "model.json").is_file():
                hammer(url, REPO / "examples" / "Bengal_100.jpg", clients=2, per_client=n // 2)
            return peak_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


_TRAIN_AND_REPORT = """
import sys
from catdog_fastai.train import main
rc = main(sys.argv[1:])
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]
print('VmHWM_KB', hwm)
sys.exit(rc)
"""


def train_peak(data: str, weights: str, size: int, bs: int, *extra: str) -> float:
    "Peak RSS of one unfrozen epoch of catdog-train, read by the training process itself as it exits."
    with tempfile.TemporaryDirectory() as out:
        args = ["--data", data, "--weights", weights, "--task", "breeds", "--epochs", "1", "--freeze-epochs", "0"]
        args += ["--size", str(size), "--bs", str(bs), "--out", out, "--no-pkl", *extra]
        res = subprocess.run(
            [sys.executable, "-c", _TRAIN_AND_REPORT, *args], check=True, capture_output=True, text=True
        )
    return int(res.stdout.split("VmHWM_KB")[-1].split()[0]) / 1024


def main() -> None:
    ap = bench.parser(__doc__, "memory")
    ap.add_argument("--model", default="models")
    ap.add_argument("--data", default="../shared/data/pets-dev/images")
    ap.add_argument("--weights", default="../shared/weights/tf_efficientnet_lite0.in1k.safetensors")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--train-only", action="store_true", help="skip the app measurements")
    args = ap.parse_args()
    m = bench.machine()
    print(bench.describe(m))
    res: dict = {}
    if not args.train_only:
        with tempfile.TemporaryDirectory() as empty:
            bare = app_peak(Path(empty))
        loaded = app_peak(Path(args.model))
        res["app_peak_mb"] = dict(without_model=bare, serving=loaded)
        print(
            f"app peak RSS: {bare:.0f} MB without a model, {loaded:.0f} MB serving {args.model} "
            f"({loaded - bare:+.0f} MB for the loaded model and its first predictions)"
        )
    for extra in ([], ["--cache"]):
        t = train_peak(args.data, args.weights, args.size, args.bs, *extra)
        res[f"train_peak_mb{'_cache' if extra else ''}"] = t
        print(
            f"training peak RSS: {t:.0f} MB (catdog-train {' '.join(extra) or '(default)'}, "
            f"1 unfrozen epoch, {args.size}px, batch {args.bs}, CPU)"
        )
    print(f"results: {bench.save('memory', res, args, m)}")


if __name__ == "__main__":
    main()
