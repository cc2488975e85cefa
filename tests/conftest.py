"""Shared fixtures: the in-repo Pets photos and one tiny model trained once per test session.

Nothing here touches the network: `no_network` makes any socket connection fail, as it does for offline users.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from catdog_fastai import TrainConfig
from catdog_fastai.appcheck import start_app

PETS = Path(__file__).parent / "data" / "pets"  # 113 real Oxford-IIIT Pets photos, CC BY-SA 4.0 (see ATTRIBUTION.md)
TINY = dict(arch="test_efficientnet", pretrained=False, size=64, presize=80, bs=16, workers=0)
TINY_ARGS = ["--arch", TINY["arch"], "--no-pretrained", "--size", str(TINY["size"]), "--presize", str(TINY["presize"])]
TINY_ARGS += ["--workers", str(TINY["workers"])]  # the same settings for catdog-train's command line (no --bs)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--shared", default=os.environ.get("CATDOG_SHARED"), help="path to ../shared (slow tests)")


@pytest.fixture(scope="session")
def shared(request: pytest.FixtureRequest) -> Path:
    "The team's ../shared folder (real weights and data); slow tests only."
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
