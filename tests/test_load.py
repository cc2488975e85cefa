"""Load on the running app (localhost only, bounded): a handful of concurrent clients in the default run; 50
concurrent clients, then 1,000 more predictions and the app's memory, end to end (e2e, minutes)."""

import pytest
from appcheck import hammer, rss_mb, start_app
from conftest import PETS
from gradio_client import Client, handle_file


def test_concurrent_clients_each_get_the_answer_given_alone(app_url):
    photo = PETS / "Bengal_1.jpg"
    alone = Client(app_url, verbose=False).predict(handle_file(str(photo)), api_name="/predict")["label"]
    burst = hammer(app_url, photo, clients=6, per_client=2, deadline_s=60, expect=alone)
    assert burst["failed"] == 0 and burst["ok"] == 12, burst["errors"]  # none lost, none mixed up


@pytest.mark.e2e
def test_fifty_concurrent_clients_then_a_thousand_predictions(breeds_model, tmp_path):
    proc, url = start_app(breeds_model, tmp_path / "app.log")  # its own app, so its memory is ours to read
    try:
        photo = PETS / "Bengal_1.jpg"
        alone = Client(url, verbose=False).predict(handle_file(str(photo)), api_name="/predict")["label"]
        burst = hammer(url, photo, clients=50, per_client=6, deadline_s=240, expect=alone)
        print(f"burst: {burst}")
        assert burst["failed"] == 0 and burst["ok"] == 300, burst["errors"]  # every answer the one given alone
        assert burst["p95"] < 60, burst  # queued behind 49 other clients on 2 cores, but never stuck
        before = rss_mb(proc.pid)
        soak = hammer(url, PETS / "beagle_10.jpg", clients=10, per_client=100, deadline_s=400)
        after = rss_mb(proc.pid)
        print(f"soak: {soak['ok']} ok, RSS {before:.0f} -> {after:.0f} MB")
        assert soak["failed"] == 0 and soak["ok"] == 1000, soak["errors"]
        assert after - before < 100, f"app memory grew {after - before:.0f} MB over 1,000 predictions"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
