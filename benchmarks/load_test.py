"""Load test of the Gradio app on localhost: many concurrent `gradio_client` users, bounded in count and time.

    python benchmarks/load_test.py --model models [--clients 50 --per-client 6 --soak 1000]

Starts `app.py` in a subprocess on 127.0.0.1, runs `clients` concurrent clients doing `per-client` predictions
each (a real photo, uploaded every time), reports failures and p50/p95 latency, then runs `soak` more
predictions and reports the app's resident memory before and after. Traffic goes to the loopback address only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    "Resident memory of a process, from /proc (Linux)."
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def hammer(url: str, photo: Path, clients: int, per_client: int, deadline_s: float = 300) -> dict:
    """`clients` threads, each with its own `gradio_client.Client`, `per_client` predictions each.

    Returns counts of successes and failures, latencies (s) and wall time; stops issuing requests at the deadline.
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
                if not res.get("label"):
                    raise ValueError(f"no label in {res}")
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
    q = statistics.quantiles(lat, n=20) if len(lat) >= 2 else [float("nan")] * 19
    return dict(
        ok=len(lat),
        failed=len(errors),
        errors=errors[:5],
        p50=statistics.median(lat) if lat else None,
        p95=q[18],
        wall=wall,
        rps=len(lat) / wall,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models")
    ap.add_argument("--photo", default=str(REPO / "examples" / "Bengal_100.jpg"))
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--per-client", type=int, default=6)
    ap.add_argument("--soak", type=int, default=1000, help="predictions for the memory check")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import start_app

    proc, url = start_app(Path(args.model), Path("/tmp/catdog_load_app.log"))
    try:
        base = rss_mb(proc.pid)
        r = hammer(url, Path(args.photo), args.clients, args.per_client)
        print(
            f"{args.clients} concurrent clients, {r['ok']} ok, {r['failed']} failed {r['errors']}; "
            f"latency p50 {r['p50'] * 1000:.0f} ms, p95 {r['p95'] * 1000:.0f} ms; {r['rps']:.1f} predictions/s"
        )
        if not args.soak:
            return
        warm = rss_mb(proc.pid)
        s = hammer(url, Path(args.photo), 10, args.soak // 10, deadline_s=600)
        end = rss_mb(proc.pid)
        print(
            f"soak: {s['ok']} ok, {s['failed']} failed; app RSS {base:.0f} MB at start, {warm:.0f} MB after the "
            f"burst, {end:.0f} MB after {s['ok']} more predictions ({end - warm:+.0f} MB)"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
