"""A Space folder in a fresh virtual environment: install size, cold start to the first answer, folder size.

    nice -n 5 python benchmarks/space.py --model models [--venv /tmp/space-venv] [--repeats 3]

Builds the Space (`catdog-export MODEL --space`, the six photos in examples/), installs its requirements.txt into
a new venv (from whatever index pip is configured with; a venv given by --venv that exists is reused), then times:
- `python -c "import gradio"` in that venv: the floor any Gradio app pays (4-7 s on the 2-core CPU);
- `python app.py` from the folder, launch to the first `/predict` answer (gradio_client from this process); the
  first launch (no bytecode cache yet) is reported apart from the median of the next `--repeats`.
The targets (issue 29): cold start at most 3 s above the import, folder at most 2x model.onnx + model.safetensors.
`fresh_venv` and `launch_space` also serve the e2e test (tests/test_space.py).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from appcheck import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.jpg"))[:6]


def fresh_venv(requirements: Path, venv: Path) -> str:
    "A new venv at `venv` with `requirements` installed (nothing else: no torch, no catdog_fastai); its python."
    python = venv / "bin" / "python"
    if not python.is_file():
        base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(requirements)]
        r = subprocess.run(pip, capture_output=True, text=True, timeout=1800)
        if r.returncode:
            raise RuntimeError(f"pip install -r {requirements} failed:\n{r.stderr[-3000:]}")
    return str(python)


def launch_space(folder: Path, python: str, log: Path, timeout: float = 120) -> tuple[subprocess.Popen, str, float]:
    """`python app.py --port P` from `folder`; (process, url, seconds from launch until the page answers)."""
    port = free_port()
    t0 = time.perf_counter()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.Popen(
        [python, "app.py", "--port", str(port)], cwd=folder, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env
    )
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited early:\n{log.read_text()}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc, url, time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"app.py did not answer on {url} within {timeout} s:\n{log.read_text()}")


def first_answer(folder: Path, python: str, photo: Path, log: Path) -> dict[str, float]:
    "Seconds from launching app.py to the page answering, and to the first prediction coming back."
    from gradio_client import Client, handle_file

    t0 = time.perf_counter()
    proc, url, listen = launch_space(folder, python, log)
    try:
        label = Client(url, verbose=False).predict(handle_file(str(photo)), api_name="/predict")
        answer = time.perf_counter() - t0
        assert label and label.get("label"), label
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return dict(listen_s=round(listen, 2), answer_s=round(answer, 2))


def import_gradio(python: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([python, "-c", "import gradio"], check=True, capture_output=True)
    return time.perf_counter() - t0


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def main() -> None:
    import bench

    from catdog_fastai.meta import ONNX, WEIGHTS
    from catdog_fastai.space import build_space

    ap = bench.parser(__doc__, "space")
    ap.add_argument("--model", type=Path, default=Path("models"), help="export folder (with model.onnx)")
    ap.add_argument("--venv", type=Path, help="where to make the fresh venv (default: a temporary folder)")
    ap.add_argument("--repeats", type=int, default=3, help="warm launches timed after the first")
    args = ap.parse_args()
    m = bench.machine()
    print(bench.describe(m))
    work = Path(tempfile.mkdtemp(prefix="space-bench-"))
    folder = build_space(args.model, work / "space", examples=EXAMPLES, force=True)
    venv = args.venv or work / "venv"
    reused = (venv / "bin" / "python").is_file()
    t0 = time.perf_counter()
    python = fresh_venv(folder / "requirements.txt", venv)
    install_s = None if reused else round(time.perf_counter() - t0, 1)  # a reused venv was installed before
    torch_absent = subprocess.run([python, "-c", "import torch"], capture_output=True).returncode != 0
    photo = EXAMPLES[0]
    first = first_answer(folder, python, photo, work / "app.log")
    runs, imports = [], []
    for _ in range(args.repeats):  # in turn, so machine noise hits both alike
        imports.append(import_gradio(python))
        runs.append(first_answer(folder, python, photo, work / "app.log"))
    model_mb = sum((args.model / f).stat().st_size for f in (ONNX, WEIGHTS)) / 1e6
    answer = statistics.median(r["answer_s"] for r in runs)
    gradio_s = statistics.median(imports)
    over = statistics.median(r["answer_s"] - g for r, g in zip(runs, imports))  # paired: each launch vs its import
    res = dict(
        venv_mb=round(size_mb(venv), 1),
        venv_install_s=install_s,
        torch_importable=not torch_absent,
        folder_mb=round(size_mb(folder), 2),
        onnx_plus_safetensors_mb=round(model_mb, 2),
        folder_ratio=round(size_mb(folder) / model_mb, 3),
        first_launch=first,
        launch_to_listen_s=statistics.median(r["listen_s"] for r in runs),
        launch_to_first_answer_s=answer,
        import_gradio_s=round(gradio_s, 2),
        cold_start_over_import_gradio_s=round(over, 2),
        runs=runs,
        import_gradio_runs=[round(x, 2) for x in imports],
    )
    print(
        f"venv {res['venv_mb']:.0f} MB (torch importable: {res['torch_importable']}); folder {res['folder_mb']:.1f} "
        f"MB = {res['folder_ratio']:.2f}x model.onnx + model.safetensors; launch to first answer {answer:.2f} s vs "
        f"import gradio {gradio_s:.2f} s (paired +{over:.2f} s); first launch {first['answer_s']:.2f} s"
    )
    print(f"results: {bench.save('space', res, args, m)}")
    shutil.rmtree(work, ignore_errors=True)  # the folder, and the venv unless --venv put it elsewhere


if __name__ == "__main__":
    main()
