"""`catdog-export DIR --space OUT`, the serving install without torch, and the import boundary that makes both work.

Fast tests build Spaces from the tiny session export and check them in subprocesses where torch, timm and fastai
cannot be imported. The real thing (a fresh virtual environment installed from the folder's requirements.txt, the
page in Chromium) is `test_a_fresh_venv_serves_the_space_in_a_browser`, marked e2e and browser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import PETS

from catdog_fastai import ExportError, load_predictor
from catdog_fastai.export_cli import main as export_main
from catdog_fastai.meta import ONNX, PKL, WEIGHTS
from catdog_fastai.space import SERVING, SpaceError, build_space, package_imports, push, serving_modules

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "catdog_fastai"
OLD = Path(__file__).parent / "data" / "export-0.4.1"  # made by 0.4.1: no model.onnx
PHOTOS = sorted(PETS.glob("*.jpg"))
EXAMPLES = [PETS / "Bengal_1.jpg", PETS / "beagle_10.jpg"]
SERVING_SIDE = ("predict", "backends", "verdict", "meta", "images", "labels", "files")  # issue 31's list
TRAINING_SIDE = {  # training, export and data code: fastai, optimisers, writers of exports
    "train", "data", "export", "onnx_export", "ood", "evaluate", "callbacks", "distributed", "losses", "optim",
    "prototypes", "sources", "splits", "transforms", "cache", "loggers", "metrics", "space", "duplicates", "export_cli",
}  # fmt: skip
BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm", "fastai"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Block())
"""


def _modules() -> dict[str, set[str]]:
    names = {p.stem for p in PKG.glob("*.py")}
    return {p.stem: package_imports(p) & names for p in PKG.glob("*.py")}


def _run(code: str, cwd: Path, timeout: int = 180) -> subprocess.CompletedProcess:
    "`code` in a fresh interpreter, torch/timm/fastai blocked, run from `cwd` (first on sys.path)."
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def space(breeds_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_space(breeds_model, tmp_path_factory.mktemp("space") / "out", examples=EXAMPLES, title="Tiny pets")


# ---- the import boundary (issue 31) --------------------------------------------------------------------------------


def test_serving_modules_import_nothing_from_training_or_export():
    "At module level or inside functions: the serving modules and everything they reach stay on the serving side."
    reached = set(serving_modules(SERVING_SIDE))
    assert not reached & TRAINING_SIDE, sorted(reached & TRAINING_SIDE)
    space_pkg = set(serving_modules())  # what a Space carries: the app's closure
    assert {"app", "predict", "backends", "meta"} <= space_pkg and not space_pkg & TRAINING_SIDE


def test_the_package_has_no_import_circle():
    graph = _modules()
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for m in sorted(graph[n]):
            assert state.get(m) != 1, "import circle: " + " -> ".join([*path[path.index(m) :], m])
            if m not in state:
                visit(m, [*path, m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])


def test_the_base_install_is_the_serving_install():
    "pyproject: no torch, timm or fastai without [train]; the Space pins exactly the base dependencies' names."
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    key = lambda r: re.split(r"[<>=!~ \[;]", r, maxsplit=1)[0].lower().replace("_", "-")  # noqa: E731
    base = {key(r) for r in project["dependencies"]}
    assert base == {key(n) for n in SERVING}
    train = {key(r) for r in project["optional-dependencies"]["train"]}
    assert {"torch", "timm", "fastai", "onnx"} <= train and not train & base
    assert "catdog_fastai[train]" in project["optional-dependencies"]["test"]
    assert project["scripts"]["catdog-export"] == "catdog_fastai.export_cli:main"


def test_commands_that_need_torch_say_what_to_install_in_one_line(tmp_path):
    "In a serving install: catdog-train, catdog-evaluate and catdog-export --onnx print one line, no traceback."
    code = f"""
from catdog_fastai.cli import train, evaluate
from catdog_fastai.export_cli import main
print(train(["--help"]), evaluate(["--model", "m", "--data", "d"]), main([{str(OLD)!r}, "--onnx"]))
"""
    r = _run(code, tmp_path)
    assert r.returncode == 0 and r.stdout.split() == ["2", "2", "2"], r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3 and "Traceback" not in r.stderr
    assert all("pip install 'catdog_fastai[train]'" in line for line in lines)
    assert lines[0].startswith("catdog-train needs torch, timm, fastai")
    assert lines[2].startswith("catdog-export --onnx needs torch, timm")


# ---- the Space folder ------------------------------------------------------------------------------------------


def test_the_space_folder_holds_what_a_space_runs(space, breeds_model):
    names = {p.name for p in space.iterdir()}
    assert names == {
        "README.md", "app.py", "requirements.txt", ".gitattributes", "catdog_fastai", "examples",
        ONNX, WEIGHTS, "model.json", "report.json",
    }  # fmt: skip
    assert PKL not in names and (breeds_model / PKL).is_file()  # never the pickle
    for f in (ONNX, WEIGHTS, "model.json"):
        assert (space / f).read_bytes() == (breeds_model / f).read_bytes()
    reqs = (space / "requirements.txt").read_text().split("\n")
    pins = dict(line.split("==") for line in reqs if line and not line.startswith("#"))
    assert pins == {n: metadata.version(n) for n in SERVING}
    assert not re.search(r"^(torch|timm|fastai)", (space / "requirements.txt").read_text(), re.M)
    copied = {p.stem for p in (space / "catdog_fastai").glob("*.py")}
    assert copied == set(serving_modules()) and not copied & TRAINING_SIDE
    assert sorted(p.name for p in (space / "examples").iterdir()) == ["ATTRIBUTION.md", "Bengal_1.jpg", "beagle_10.jpg"]
    assert "*.onnx filter=lfs" in (space / ".gitattributes").read_text()


def test_the_readme_is_spaces_front_matter_over_the_model_card(space, breeds_model):
    from huggingface_hub import ModelCard, SpaceCard

    card, own = SpaceCard.load(space / "README.md"), ModelCard.load(breeds_model / "README.md")
    fm = card.data.to_dict()
    assert fm["sdk"] == "gradio" and fm["sdk_version"] == metadata.version("gradio") and fm["app_file"] == "app.py"
    assert fm["title"] == "Tiny pets" and fm["emoji"] and fm["license"] == own.data.license
    assert fm["datasets"] == own.data.datasets and set(own.data.tags) <= set(fm["tags"])
    assert len(fm["short_description"]) <= 60
    assert own.text.strip() in card.text  # the card's body, whole
    assert "## Example photos" in card.text and "examples/ATTRIBUTION.md" in card.text


def test_the_space_answers_like_onnxruntime_without_torch(space, breeds_model):
    "Its own copied package, torch/timm/fastai blocked: the same probabilities (1e-5) and verdicts; the page builds."
    ref = load_predictor(breeds_model, backend="onnxruntime")
    want = [[(lab, q) for lab, q in r] + [r.verdict] for r in ref.predict_batch(PHOTOS[:8], top_k=None)]
    code = f"""
import json, sys, catdog_fastai
from catdog_fastai import load_predictor
p = load_predictor(".")
rs = p.predict_batch({[str(f) for f in PHOTOS[:8]]!r}, top_k=None)
import app  # the Space's own app.py: builds the page at import, as a Space does
print(json.dumps(dict(pkg=catdog_fastai.__file__, backend=p.backend.name, demo=type(app.demo).__name__,
                      out=[[[lab, q] for lab, q in r] + [r.verdict] for r in rs],
                      leaked=[m for m in ("torch", "timm", "fastai") if m in sys.modules])))
"""
    r = _run(code, space)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(got["pkg"]).parent == space / "catdog_fastai"  # the folder's copy, not this checkout
    assert got["backend"] == "onnxruntime" and got["demo"] == "Blocks" and got["leaked"] == []
    for w, g in zip(want, got["out"]):
        assert w[-1] == g[-1] and [lab for lab, _ in w[:-1]] == [lab for lab, _ in g[:-1]]
        assert np.allclose([q for _, q in w[:-1]], [q for _, q in g[:-1]], atol=1e-5)


def test_catdog_export_builds_a_space_without_torch_and_says_how_to_publish(breeds_model, tmp_path):
    out = tmp_path / "sp"
    code = f"from catdog_fastai.export_cli import main; print(main([{str(breeds_model)!r}, '--space', {str(out)!r}]))"
    r = _run(code, tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("0"), r.stderr
    assert f"hf upload USER/NAME {out} --repo-type space" in r.stdout
    assert (out / "app.py").is_file() and not (out / "examples").exists()


def test_an_old_export_gets_a_space_once_it_has_model_onnx(tmp_path):
    old = shutil.copytree(OLD, tmp_path / "old")
    with pytest.raises(ExportError, match=re.escape(f"`catdog-export {old} --onnx`")):
        build_space(old, tmp_path / "sp")
    assert not (tmp_path / "sp").exists() and not list(tmp_path.glob(".sp.*"))
    assert export_main([str(old), "--onnx", "--space", str(tmp_path / "sp")]) == 0
    assert (tmp_path / "sp" / ONNX).read_bytes() == (old / ONNX).read_bytes()
    assert "README.md" in {p.name for p in (tmp_path / "sp").iterdir()}  # its card written from model.json


# ---- bad input ----------------------------------------------------------------------------------------------------


def test_a_folder_with_other_files_is_refused_unless_force(breeds_model, tmp_path):
    out = tmp_path / "sp"
    (out / ".git").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SpaceError, match=r"already holds files \(\.git, notes\.txt\): pass --force"):
        build_space(breeds_model, out)
    assert sorted(p.name for p in out.iterdir()) == [".git", "notes.txt"]
    build_space(breeds_model, out, force=True)
    assert (out / ".git" / "HEAD").is_file() and not (out / "notes.txt").exists() and (out / "app.py").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sp"]  # no temporary folder left beside it
    with pytest.raises(SpaceError, match="holds the export itself"):
        build_space(breeds_model, breeds_model, force=True)


def test_a_failure_mid_build_leaves_the_folder_as_it_was(breeds_model, tmp_path, monkeypatch):
    import catdog_fastai.space as sp

    out = tmp_path / "sp"
    build_space(breeds_model, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sp, "requirements", full_disk)
    with pytest.raises(OSError, match="No space"):
        build_space(breeds_model, out, force=True)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sp"]


def test_examples_that_are_not_photos_are_refused_by_name(breeds_model, tmp_path, capsys):
    notes, empty = tmp_path / "notes.jpg", tmp_path / "empty.png"
    notes.write_text("a text file\n")
    empty.write_bytes(b"")
    args = [str(breeds_model), "--space", str(tmp_path / "sp"), "--examples", str(EXAMPLES[0]), str(notes), str(empty)]
    assert export_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not usable as example photos" in err
    assert "'notes.jpg' is not an image file" in err and "'empty.png' is empty" in err and "Bengal_1" not in err
    assert not (tmp_path / "sp").exists()
    with pytest.raises(SpaceError, match="7 examples given; a Space page shows at most 6"):
        build_space(breeds_model, tmp_path / "sp", examples=PHOTOS[:7])
    with pytest.raises(SpaceError, match="two examples are called Bengal_1.jpg"):
        build_space(breeds_model, tmp_path / "sp", examples=[EXAMPLES[0], shutil.copy(EXAMPLES[0], tmp_path)])


def test_push_offline_is_one_line_and_uploads_nothing(space, breeds_model, tmp_path, monkeypatch, no_network, capsys):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SpaceError, match=rf"could not push to the Space me/pets .*hf upload me/pets {space}"):
        push(space, "me/pets")
    with pytest.raises(SpaceError, match="--push takes USER/NAME"):
        push(space, "not a repo")
    assert export_main([str(breeds_model), "--space", str(tmp_path / "sp"), "--push", "me/pets"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("catdog-export: could not push to the Space me/pets")
    assert (tmp_path / "sp" / "app.py").is_file()  # the folder is built all the same


# ---- end to end: a fresh virtual environment and a real browser ---------------------------------------------------


def _classify(page, url: str, path: Path) -> None:
    page.goto(url)
    page.get_by_role("button", name="Classify", exact=True).wait_for()
    page.locator("input[type=file]").first.set_input_files(str(path))
    page.wait_for_timeout(500)  # let the preview settle before submitting
    page.get_by_role("button", name="Classify", exact=True).click()


@pytest.mark.e2e
@pytest.mark.browser
def test_a_fresh_venv_serves_the_space_in_a_browser(space, breeds_model, tmp_path):
    """`pip install -r requirements.txt` into a new venv, `python app.py` from a copy of the folder (no checkout in
    sight): no torch there, the same numbers as a full install, and Chromium gets the answer and the bad-file
    message."""
    from space import fresh_venv, launch_space
    from test_browser import ARGS, CHROMIUM

    from catdog_fastai.app import page_answer

    folder = shutil.copytree(space, tmp_path / "space")
    python = fresh_venv(folder / "requirements.txt", tmp_path / "venv")
    r = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    ref = load_predictor(breeds_model, backend="onnxruntime")
    photo = EXAMPLES[0]
    want = ref.predict(photo, top_k=None, calibrated=True)
    code = f"import json; from catdog_fastai import load_predictor; r = load_predictor('.').predict({str(photo)!r}, "
    code += "top_k=None, calibrated=True); print(json.dumps([[[lab, q] for lab, q in r], r.verdict]))"
    r = subprocess.run([python, "-c", code], cwd=folder, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pairs, verdict = json.loads(r.stdout.strip().splitlines()[-1])
    assert verdict == want.verdict and [lab for lab, _ in pairs] == [lab for lab, _ in want]
    assert np.allclose([q for _, q in pairs], [q for _, q in want], atol=1e-5)

    proc, url, _ = launch_space(folder, python, tmp_path / "app.log")
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page()
            page.set_default_timeout(60_000)
            sel = "[data-testid=label-output-value]"
            _classify(page, url, photo)
            page.wait_for_function(f"() => document.querySelector('{sel}')?.innerText.trim()")
            assert page.locator(sel).inner_text().strip() == page_answer(ref, want)[1]["label"]  # as catdog-app
            page.screenshot(path=str(tmp_path / "space_predict.png"), full_page=True)
            bad = tmp_path / "notes.jpg"
            bad.write_text("this is a text file, not a photo\n")
            _classify(page, url, bad)
            page.get_by_text("Can't use this file").first.wait_for()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
