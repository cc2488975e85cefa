"""Shared fixtures: the in-repo Pets photos and one tiny model trained once per test session.

Markers (declared in pyproject.toml): the default run leaves out `e2e` (end-to-end runs of minutes: the load test,
the notebook, torchrun, a real SIGTERM), `browser` (Chromium) and `slow` (real weights and photos); each behaviour
they check also has a fast test in the default run.

Nothing here touches the network: `no_network` makes any socket connection fail, as it does for offline users.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
from pathlib import Path

import pytest
from appcheck import start_app

from catdog_fastai import TrainConfig

PETS = Path(__file__).parent / "data" / "pets"  # 113 real Oxford-IIIT Pets photos, CC BY-SA 4.0 (see ATTRIBUTION.md)
TINY = dict(arch="test_efficientnet", pretrained=False, size=64, presize=80, bs=16, workers=0)
TINY_ARGS = ["--arch", TINY["arch"], "--no-pretrained", "--size", str(TINY["size"]), "--presize", str(TINY["presize"])]
TINY_ARGS += ["--workers", str(TINY["workers"])]  # the same settings for catdog-train's command line (no --bs)
SMALL = dict(size=32, presize=40)  # a quarter of the pixels, for runs that check behaviour, not the export's figures


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--shared", default=os.environ.get("CATDOG_SHARED"), help="real weights and photos (slow tests)")


@pytest.fixture(scope="session")
def shared(request: pytest.FixtureRequest) -> Path:
    "A folder of real weights and photos beside the clone (../shared), if present; slow tests only."
    path = request.config.getoption("--shared")
    if not path or not Path(path, "weights").is_dir():
        pytest.fail("slow tests need the shared data: pass --shared PATH or set CATDOG_SHARED=PATH (e.g. ../shared)")
    return Path(path)


def tiny_cfg(out: Path, **kw) -> TrainConfig:
    "A config that trains in seconds on the fixture: a 99k-parameter timm test model at 64 px."
    return TrainConfig(**{**TINY, "data": str(PETS), "out": str(out), "epochs": 1, "freeze_epochs": 1, **kw})


@pytest.fixture(scope="session")
def breeds_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    "A 37-breed export trained once for the session (2 epochs, pretrained=False)."
    from catdog_fastai.train import train_model

    out = tmp_path_factory.mktemp("breeds_model")
    train_model(tiny_cfg(out, task="breeds"))
    return out


@pytest.fixture()
def pets_copy(tmp_path: Path) -> Path:
    "A writable copy of the fixture photos, for tests that add broken files."
    dst = tmp_path / "images"
    shutil.copytree(PETS, dst)
    return dst


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    "Every outgoing connection fails at once, as on a machine without internet."

    def refuse(*a, **k):
        raise OSError(101, "Network is unreachable (blocked by the test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="session")
def app_url(breeds_model: Path, tmp_path_factory: pytest.TempPathFactory):
    "The Gradio app serving `breeds_model` on localhost, for the client and browser tests."
    proc, url = start_app(breeds_model, tmp_path_factory.mktemp("app") / "app.log")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(autouse=True)
def _cli_leaves_no_trace():
    "`catdog-train`'s main() run in-process sets up logging and a SIGTERM handler: put both back after each test."
    root = logging.getLogger()
    handlers, level, sigterm = list(root.handlers), root.level, signal.getsignal(signal.SIGTERM)
    yield
    for h in [h for h in root.handlers if type(h) is logging.StreamHandler and h not in handlers]:
        root.removeHandler(h)  # basicConfig's, writing to this test's captured stdout
    root.setLevel(level)
    signal.signal(signal.SIGTERM, sigterm)
