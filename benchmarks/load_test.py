"""Load test of the Gradio app on localhost: many concurrent `gradio_client` users, bounded in count and time.

    python benchmarks/load_test.py --model models [--clients 50 --per-client 6 --soak 1000]
        [--baseline-app OLD/app.py --baseline-python OLD/.venv/bin/python]

Starts `app.py` in a subprocess on 127.0.0.1, runs `clients` concurrent clients doing `per-client` predictions
each (a real photo, uploaded every time), reports failures, p50/p95 latency, throughput and the CPU time per
prediction of the app and of the clients (which share the machine), then runs `soak` more predictions and reports
the app's resident memory before and after. With `--baseline-app`, another version's app (in its own environment)
takes the same burst first: same model, same photo, same machine, same run. Traffic goes to the loopback address
only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import bench
from appcheck import APP, cpu_s, hammer, rss_mb, start_app

REPO = Path(__file__).resolve().parent.parent


def burst(app: Path, python: str, args, log: Path) -> tuple[dict, object, str]:
    "Start `app`, run the burst; return its figures, the running process (the caller stops it) and its URL."
    proc, url = start_app(Path(args.model), log, app, python)
    hammer(url, Path(args.photo), 2, 3)  # warm-up: first requests load lazily
    cpu0, clients0, base = cpu_s(proc.pid), time.process_time(), rss_mb(proc.pid)
    r = hammer(url, Path(args.photo), args.clients, args.per_client)
    per = 1000 / max(r["ok"], 1)
    r.update(
        app_cpu_ms_per_prediction=(cpu_s(proc.pid) - cpu0) * per,
        client_cpu_ms_per_prediction=(time.process_time() - clients0) * per,  # the gradio_client threads, here
        app_rss_mb_start=base,
    )
    print(
        f"{app}: {args.clients} concurrent clients, {r['ok']} ok, {r['failed']} failed {r['errors']}; latency p50 "
        f"{r['p50'] * 1000:.0f} ms, p95 {r['p95'] * 1000:.0f} ms; {r['rps']:.1f} predictions/s; CPU per prediction: "
        f"app {r['app_cpu_ms_per_prediction']:.0f} ms, clients {r['client_cpu_ms_per_prediction']:.0f} ms"
    )
    return r, proc, url


def main() -> None:
    ap = bench.parser(__doc__, "load-test")
    ap.add_argument("--model", default="models")
    ap.add_argument("--photo", default=str(REPO / "examples" / "Bengal_100.jpg"))
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--per-client", type=int, default=6)
    ap.add_argument("--soak", type=int, default=1000, help="predictions for the memory check")
    ap.add_argument("--baseline-app", type=Path, help="another version's app.py, loaded the same way, run first")
    ap.add_argument("--baseline-python", default=sys.executable, help="the Python environment of --baseline-app")
    args = ap.parse_args()
    m = bench.machine()
    print(bench.describe(m))
    res: dict = {}
    if args.baseline_app:
        r, proc, _ = burst(args.baseline_app, args.baseline_python, args, Path("/tmp/catdog_load_baseline.log"))
        proc.terminate()
        proc.wait(timeout=30)
        res["baseline"] = dict(app=str(args.baseline_app), burst=r)
    r, proc, url = burst(APP, sys.executable, args, Path("/tmp/catdog_load_app.log"))
    res["burst"] = r
    try:
        if "baseline" in res:
            b = res["baseline"]["burst"]
            res["vs_baseline"] = dict(throughput=r["rps"] / b["rps"], p95=r["p95"] / b["p95"], p50=r["p50"] / b["p50"])
            print(
                f"against the baseline: {res['vs_baseline']['throughput']:.2f}x the throughput, p95 "
                f"{res['vs_baseline']['p95']:.2f}x, p50 {res['vs_baseline']['p50']:.2f}x"
            )
        if args.soak:
            warm = rss_mb(proc.pid)
            s = hammer(url, Path(args.photo), 10, args.soak // 10, deadline_s=600)
            end = rss_mb(proc.pid)
            res.update(soak=s, app_rss_mb_after_burst=warm, app_rss_mb_after_soak=end)
            print(
                f"soak: {s['ok']} ok, {s['failed']} failed; app RSS {r['app_rss_mb_start']:.0f} MB at start, "
                f"{warm:.0f} MB after the burst, {end:.0f} MB after {s['ok']} more predictions ({end - warm:+.0f} MB)"
            )
        print(f"results: {bench.save('load-test', res, args, m)}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
