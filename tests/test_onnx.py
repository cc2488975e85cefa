"""`model.onnx` and the ONNX Runtime backend: written at export, the same answers as torch, no torch needed."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from badfiles import bad_cases, ok_cases
from conftest import PETS

from catdog_fastai import ExportError, ImageError, load_predictor
from catdog_fastai.export_cli import main as export_main
from catdog_fastai.meta import ONNX, read_meta
from catdog_fastai.model import build_model
from catdog_fastai.onnx_export import add_onnx, write_onnx

PHOTOS = sorted(PETS.glob("*.jpg"))
OLD = Path(__file__).parent / "data" / "export-0.4.1"  # made by 0.4.1: no model.onnx


@pytest.fixture(scope="module")
def both(breeds_model):
    return load_predictor(breeds_model, backend="torch"), load_predictor(breeds_model, backend="onnxruntime")


def test_the_export_writes_a_recorded_onnx_graph(breeds_model):
    meta = read_meta(breeds_model)
    assert (breeds_model / ONNX).is_file() and meta.onnx is not None
    assert meta.onnx.outputs == ["logits", "pooled"] and meta.onnx.opset >= 17 and meta.onnx.dynamic_batch
    assert meta.onnx.max_abs_diff < 1e-4 and len(meta.onnx.sha256) == 64
    assert load_predictor(breeds_model).backend.name == "onnxruntime"  # auto picks it


def test_onnx_runtime_gives_torchs_answers_on_every_fixture_photo(both):
    "Probabilities (plain and calibrated) within 1e-4, the same labels, species and verdicts, batch sizes 1 and 7."
    tch, ort = both
    for calibrated in (False, True):
        a = tch.predict_batch(PHOTOS, top_k=None, calibrated=calibrated, bs=7)
        b = ort.predict_batch(PHOTOS, top_k=None, calibrated=calibrated, bs=7)
        for x, y in zip(a, b):
            assert [lab for lab, _ in x] == [lab for lab, _ in y]
            assert np.allclose([q for _, q in x], [q for _, q in y], atol=1e-4)
            assert x.verdict == y.verdict and x.unknown == y.unknown
            assert x.ood_score == pytest.approx(y.ood_score, abs=1e-4)
            assert [s for s, _ in x.species] == [s for s, _ in y.species]
    one = ort.predict(PHOTOS[0], top_k=None)
    assert np.allclose([q for _, q in one], [q for _, q in ort.predict_batch(PHOTOS[:5], top_k=None)[0]], atol=1e-5)


def test_both_backends_refuse_bad_files_with_the_same_message(both, tmp_path):
    tch, ort = both
    for name, path in bad_cases(tmp_path).items():
        with pytest.raises(ImageError) as e_torch:
            tch.predict(path)
        with pytest.raises(ImageError) as e_ort:
            ort.predict(path)
        assert str(e_torch.value) == str(e_ort.value), name
    odd = ok_cases(tmp_path)
    for r_t, r_o in zip(tch.predict_each(odd.values()), ort.predict_each(odd.values())):
        assert [lab for lab, _ in r_t] == [lab for lab, _ in r_o]


def test_serving_needs_no_torch_timm_or_fastai(breeds_model, both, tmp_path):
    "A fresh process where torch, timm and fastai cannot be imported predicts as torch does and reads bad files."
    expected = [[lab, q, r.verdict] for r in both[0].predict_batch(PHOTOS[:6], calibrated=True) for lab, q in r[:1]]
    (tmp_path / "bad.jpg").write_text("not a photo")
    script = f"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "timm", "fastai"):
            raise ImportError(f"{{name}} is blocked in this test")
sys.meta_path.insert(0, Block())
from catdog_fastai import ImageError, load_predictor
from catdog_fastai.predict_cli import main
p = load_predictor({str(breeds_model)!r})
rs = p.predict_batch({[str(f) for f in PHOTOS[:6]]!r}, calibrated=True)
out = [[lab, q, r.verdict] for r in rs for lab, q in r[:1]]
try:
    p.predict({str(tmp_path / "bad.jpg")!r})
except ImageError as e:
    bad = str(e)
code = main([{str(PHOTOS[0])!r}, "--model", {str(breeds_model)!r}])
print(json.dumps(dict(backend=p.backend.name, out=out, bad=bad, code=code,
                      leaked=[m for m in ("torch", "timm", "fastai") if m in sys.modules])))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["backend"] == "onnxruntime" and got["leaked"] == [] and got["code"] == 0
    assert got["bad"] == "'bad.jpg' is not an image file (or a format Pillow cannot read)"
    for (lab, q, v), (lab2, q2, v2) in zip(expected, got["out"]):
        assert lab == lab2 and v == v2 and abs(q - q2) < 1e-4


def test_catdog_export_adds_onnx_to_an_old_export(tmp_path, capsys):
    old = shutil.copytree(OLD, tmp_path / "old")
    assert load_predictor(old).backend.name == "torch"  # no model.onnx: auto falls back to torch
    assert export_main([str(old), "--onnx"]) == 0 and "opset" in capsys.readouterr().out
    tch, ort = load_predictor(old, backend="torch"), load_predictor(old)
    assert ort.backend.name == "onnxruntime" and read_meta(old).versions["catdog_fastai"] == "0.4.1"
    a, b = tch.predict_batch(PHOTOS[:8], calibrated=True), ort.predict_batch(PHOTOS[:8], calibrated=True)
    assert [r.verdict for r in a] == [r.verdict for r in b]
    assert np.allclose([r[0][1] for r in a], [r[0][1] for r in b], atol=1e-4)


def test_a_graph_that_does_not_match_model_json_is_refused(breeds_model, tmp_path):
    d = shutil.copytree(breeds_model, tmp_path / "m")
    with open(d / ONNX, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ExportError, match="checksum differs"):
        load_predictor(d)
    with pytest.raises(ExportError, match=r"no model\.onnx"):
        load_predictor(OLD, backend="onnxruntime")


def test_an_architecture_the_exporter_cannot_trace_leaves_the_export_alone(tmp_path, monkeypatch, caplog):
    d = shutil.copytree(OLD, tmp_path / "old")
    (d / ONNX).write_bytes(b"a graph from an earlier export")
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.name != ONNX}

    def cannot(*a, **k):
        raise RuntimeError("Unsupported: aten::something_new\nlong traceback")

    monkeypatch.setattr(torch.onnx, "export", cannot)
    model = build_model("test_efficientnet", 37, pretrained=False)
    with caplog.at_level(logging.WARNING, logger="catdog_fastai"):
        assert write_onnx(model, read_meta(d), d) is None
    assert caplog.messages == [
        "model.onnx not written: torch.onnx cannot export test_efficientnet (Unsupported: aten::something_new)"
    ]
    with pytest.raises(ExportError, match="cannot export test_efficientnet; the export in .* is unchanged"):
        add_onnx(d)
    assert not (d / ONNX).exists() and {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert not list(d.glob(".*tmp"))
