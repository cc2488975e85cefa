"""Load test of the Gradio app on localhost: many concurrent `gradio_client` users, bounded in count and time.

    python benchmarks/load_test.py --model models [--clients 50 --per-client 6 --soak 1000]

Starts `app.py` in a subprocess on 127.0.0.1, runs `clients` concurrent clients doing `per-client` predictions
each (a real photo, uploaded every time), reports failures and p50/p95 latency, then runs `soak` more
predictions and reports the app's resident memory before and after. Traffic goes to the loopback address only.
"""

from __future__ import annotations

from pathlib import Path

from catdog_fastai import benchmark as bench
from catdog_fastai.appcheck import hammer, rss_mb, start_app

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = bench.parser(__doc__, "load-test")
    ap.add_argument("--model", default="models")
    ap.add_argument("--photo", default=str(REPO / "examples" / "Bengal_100.jpg"))
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--per-client", type=int, default=6)
    ap.add_argument("--soak", type=int, default=1000, help="predictions for the memory check")
    args = ap.parse_args()
    m = bench.machine()
    print(bench.describe(m))
    proc, url = start_app(Path(args.model), Path("/tmp/catdog_load_app.log"))
    try:
        base = rss_mb(proc.pid)
        r = hammer(url, Path(args.photo), args.clients, args.per_client)
        print(
            f"{args.clients} concurrent clients, {r['ok']} ok, {r['failed']} failed {r['errors']}; "
            f"latency p50 {r['p50'] * 1000:.0f} ms, p95 {r['p95'] * 1000:.0f} ms; {r['rps']:.1f} predictions/s"
        )
        res = dict(app_rss_mb_start=base, burst=r)
        if args.soak:
            warm = rss_mb(proc.pid)
            s = hammer(url, Path(args.photo), 10, args.soak // 10, deadline_s=600)
            end = rss_mb(proc.pid)
            res.update(soak=s, app_rss_mb_after_burst=warm, app_rss_mb_after_soak=end)
            print(
                f"soak: {s['ok']} ok, {s['failed']} failed; app RSS {base:.0f} MB at start, {warm:.0f} MB after the "
                f"burst, {end:.0f} MB after {s['ok']} more predictions ({end - warm:+.0f} MB)"
            )
        print(f"results: {bench.save('load-test', res, args, m)}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
