"""Run `app.py` on localhost and put bounded load on it: shared by the tests and the benchmarks.

Traffic goes to 127.0.0.1 only, and every loop is bounded in count and time. `start_app` runs the repository's
`app.py` by default, or any other app file given (two apps side by side, for comparison). Harness code, so it lives
in `benchmarks/`, not in the package.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import Timing

APP = Path(__file__).resolve().parent.parent / "app.py"  # the repository's app


def free_port() -> int:
    "A TCP port on 127.0.0.1 that nothing listens on right now."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(
    model_dir: Path, log: Path, app: Path = APP, python: str = sys.executable
) -> tuple[subprocess.Popen, str]:
    """Launch `python <app> --model model_dir` (from the app's folder) on a free localhost port; return (process,
    url) once it answers (60 s at most). `app` and `python` are parameters so that two apps (another version's, with
    its own environment) can be started side by side."""
    app = Path(app).resolve()
    port = free_port()
    proc = subprocess.Popen(
        [python, str(app), "--model", str(model_dir), "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=app.parent,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{app.name} exited early:\n{log.read_text()}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{app.name} did not answer on {url} within 60 s:\n{log.read_text()}")


def cpu_s(pid: int) -> float:
    "CPU seconds (user + system) a process has used so far, from /proc (Linux)."
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    "Resident memory of a process, from /proc (Linux)."
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def hammer(
    url: str, photo: Path, clients: int, per_client: int, deadline_s: float = 300, expect: str | None = None
) -> dict:
    """`clients` threads, each with its own `gradio_client.Client`, `per_client` predictions each.

    Returns counts of successes and failures, latencies (s) and wall time; stops issuing requests at the deadline.
    With `expect`, an answer with another label counts as a failure (the app must not mix up concurrent requests).
    """
    from gradio_client import Client, handle_file

    stop = time.time() + deadline_s

    def one_user(_: int) -> tuple[list[float], list[str]]:
        lat, errors = [], []
        try:
            client = Client(url, verbose=False)
        except Exception as e:  # noqa: BLE001 - a failed connection is a failed request to report
            return [], [f"connect: {e}"]
        for _ in range(per_client):
            if time.time() > stop:
                errors.append("deadline")
                break
            t = time.perf_counter()
            try:
                res = client.predict(handle_file(str(photo)), api_name="/predict")
                if not res.get("label") or (expect is not None and res["label"] != expect):
                    raise ValueError(f"expected label {expect!r}, got {res}")
                lat.append(time.perf_counter() - t)
            except Exception as e:  # noqa: BLE001
                errors.append(f"{type(e).__name__}: {e}")
        return lat, errors

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as ex:
        results = list(ex.map(one_user, range(clients)))
    wall = time.perf_counter() - t0
    lat = [x for r in results for x in r[0]]
    errors = [x for r in results for x in r[1]]
    timing = Timing(tuple(lat)) if lat else None
    return dict(
        ok=len(lat),
        failed=len(errors),
        errors=errors[:5],
        p50=timing.median if timing else None,
        p95=timing.p95 if timing else None,
        wall=wall,
        rps=len(lat) / wall,
    )
