"""catdog-clean: each kind of finding on small fixtures, bad input as one line, and apply + undo losing nothing.

A random-weight timm test model stands in for the pretrained backbone where the weights do not matter (copies
of a photo have equal features whatever the weights); the real-weights figures are benchmarks/clean.py's.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog_fastai import clean, clean_apply, clean_find
from catdog_fastai.duplicates import THRESHOLD, near_duplicate_groups
from catdog_fastai.prototypes import class_means, similarities

PETS = Path(__file__).parent / "data" / "pets"


@pytest.fixture(scope="module")
def tiny_model():
    from catdog_fastai.model import build_model

    return build_model("test_efficientnet", 1, pretrained=False, head="cosine").eval()


def _photo(src: str, dst: Path, side: int = 72) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    im = Image.open(PETS / src).convert("RGB")
    im.thumbnail((side, side))
    im.save(dst, quality=90)
    return dst


@pytest.fixture()
def folders(tmp_path: Path) -> Path:
    "Two class folders of small real photos, one exact copy, one broken file and one tiny photo."
    root = tmp_path / "photos"
    for cls, names in (("cat", ["Bengal_1", "Bengal_2", "Bengal_3", "Abyssinian_1"]),
                       ("dog", ["Bombay_10", "Birman_15", "Birman_125", "Bombay_123"])):  # fmt: skip
        for n in names:
            _photo(f"{n}.jpg", root / cls / f"{n}.jpg")
    shutil.copy(root / "cat" / "Bengal_1.jpg", root / "cat" / "copy_of_bengal.jpg")
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.open(root / "dog" / "Bombay_10.jpg").resize((48, 40)).save(root / "dog" / "small.jpg")
    return root


def checksums(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def cfg(data: Path, out: Path, **kw) -> clean.CleanConfig:
    return clean.CleanConfig(data=str(data), out=str(out), size=64, **kw)


# --- near-duplicate groups -------------------------------------------------------------------------------------
def test_groups_are_components_numbered_by_first_appearance():
    f = np.array([[0, 1.0], [1, 0], [0.02, 1], [-1, 0], [1, 0.01], [0, 0]])
    assert near_duplicate_groups(f, 0.99).tolist() == [0, 1, 0, 2, 1, 3]
    chain = np.array([[1, 0.0], [1, 0.2], [1, 0.4]])  # a~b, b~c, not a~c: one group all the same
    assert near_duplicate_groups(chain, 0.98).tolist() == [0, 0, 0]
    assert near_duplicate_groups(np.zeros((0, 5))).tolist() == []
    assert 0.5 < THRESHOLD < 1


# --- out-of-fold probabilities and label issues ----------------------------------------------------------------
def test_out_of_fold_probs_equal_class_means_without_the_group():
    rng = np.random.default_rng(0)
    feats, y = rng.normal(size=(12, 6)), np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 2])
    groups = np.array([0, 0, 1, 2, 3, 4, 5, 6, 6, 7, 8, 9])
    _, sims = clean_find.out_of_fold_probs(feats, y, 3, groups)
    for i in range(12):
        keep = groups != groups[i]
        import torch

        means = class_means(torch.tensor(feats[keep]), torch.tensor(y[keep]), 3)
        expect = similarities(torch.tensor(feats[i : i + 1]), means).numpy()[0]
        np.testing.assert_allclose(sims[i], expect, atol=1e-6)


def test_a_flipped_label_is_found_and_clean_labels_are_not():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16)) * 3
    y = np.repeat(np.arange(3), 20)
    feats = centres[y] + rng.normal(size=(60, 16))
    paths = [f"p{i}.jpg" for i in range(60)]
    probs, _ = clean_find.out_of_fold_probs(feats, y, 3)
    assert clean_find.label_findings(paths, probs, y, ["a", "b", "c"]) == []
    noisy = y.copy()
    noisy[5] = 2
    probs, _ = clean_find.out_of_fold_probs(feats, noisy, 3)
    found = clean_find.label_findings(paths, probs, noisy, ["a", "b", "c"])
    assert [(f["path"], f["given_label"], f["suggested_label"]) for f in found] == [("p5.jpg", "c", "a")]


# --- duplicates, strangers ------------------------------------------------------------------------------------
def test_a_group_in_train_and_valid_is_leakage():
    feats = np.array([[1, 0.0], [1, 0.001], [0, 1], [0.001, 1]])
    rows, groups = clean_find.duplicate_findings(list("abcd"), feats, ["x"] * 4, [False, True, False, False], 0.99)
    assert groups.tolist() == [0, 0, 1, 1]
    leak = {r["path"] for r in rows if r["leak"]}
    assert leak == {"a", "b"} and all("leakage" in r["note"] for r in rows if r["leak"])


def test_strangers_by_gate_and_by_distance():
    sims = np.full((30, 2), 0.8) + np.random.default_rng(0).normal(scale=0.01, size=(30, 2))
    sims[7] = [0.1, 0.2]
    out = clean_find.stranger_findings([str(i) for i in range(30)], ["a"] * 30, None, sims, ["a", "b"])
    assert [f["path"] for f in out] == ["7"] and out[0]["issue"] == "outlier"
    pet = np.full(30, 0.9)
    pet[3] = 0.01
    out = clean_find.stranger_findings([str(i) for i in range(30)], ["a"] * 30, pet, sims, ["a", "b"])
    assert [(f["path"], f["issue"]) for f in out] == [("3", "not_pet")] and out[0]["score"] > 0.9


# --- the whole check ------------------------------------------------------------------------------------------
def test_check_writes_issues_sheet_and_summary(folders: Path, tmp_path: Path, tiny_model):
    findings, info, out = clean.run(cfg(folders, tmp_path / "clean"), model=tiny_model)
    by_issue = {(f["issue"], f["path"]) for f in findings}
    assert ("unreadable", "dog/broken.jpg") in by_issue
    assert ("tiny", "dog/small.jpg") in by_issue
    assert {("duplicate", "cat/Bengal_1.jpg"), ("duplicate", "cat/copy_of_bengal.jpg")} <= by_issue
    with open(out / clean.ISSUES_CSV) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == clean.COLUMNS and len(rows) == len(findings)
    assert [r["issue"] for r in rows][:1] == ["unreadable"]  # issues in a fixed order, most certain first
    sheet = (out / clean.SHEET).read_text()
    assert "copy_of_bengal" in sheet and "data:image/jpeg;base64" in sheet
    text = clean.summary(findings, info, out)
    assert "near-duplicates" in text and "--apply" in text and len(text.splitlines()) < 20


# --- bad input: one line, never a traceback -------------------------------------------------------------------
def test_bad_input_is_one_line_or_a_finding(tmp_path: Path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert clean.main(["--data", str(empty), "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("catdog-clean: error:") and len(err.strip().splitlines()) == 1
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(3):
        (junk / f"x{i}.jpg").write_bytes(b"nope" * i)
    assert clean.main(["--data", str(junk), "--out", str(tmp_path / "o2")]) == 0
    assert "3 do not decode" in capsys.readouterr().out.replace("    ", " ").replace("   ", " ")
    (tmp_path / "labels.csv").write_text("file,label\nmissing.jpg,cat\n")
    assert clean.main(["--data", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert "do not exist" in err and len(err.strip().splitlines()) == 1
    assert clean.main(["--apply", str(tmp_path / "nope.csv")]) == 2
    assert clean.main(["--undo", str(tmp_path)]) == 2


# --- apply and undo -------------------------------------------------------------------------------------------
def _plan(out: Path, actions: dict[str, str]) -> Path:
    with open(out / clean.ISSUES_CSV) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["action"] = actions.get(r["path"], "keep")
    seen = {r["path"] for r in rows}
    rows += [dict(path=p, issue="label", action=a) for p, a in actions.items() if p not in seen]
    plan = out / "plan.csv"
    with open(plan, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=clean.COLUMNS)
        w.writeheader()
        w.writerows({k: r.get(k, "") for k in clean.COLUMNS} for r in rows)
    return plan


def test_apply_then_undo_restores_every_byte(folders: Path, tmp_path: Path, tiny_model):
    before = checksums(folders)
    _, _, out = clean.run(cfg(folders, tmp_path / "clean"), model=tiny_model)
    plan = _plan(out, {"cat/copy_of_bengal.jpg": "remove", "dog/broken.jpg": "remove",
                       "cat/Abyssinian_1.jpg": "relabel:dog", "dog/Birman_15.jpg": "relabel:cat"})  # fmt: skip
    assert clean.main(["--apply", str(plan)]) == 0
    assert not (folders / "cat" / "copy_of_bengal.jpg").exists()
    assert (out / "quarantine" / "cat" / "copy_of_bengal.jpg").is_file()
    assert (folders / "dog" / "Abyssinian_1.jpg").is_file() and (folders / "cat" / "Birman_15.jpg").is_file()
    assert sorted([*checksums(folders).values(), *checksums(out / "quarantine").values()]) == sorted(before.values())
    assert clean.main(["--undo", str(out)]) == 0
    assert checksums(folders) == before


def test_a_plan_naming_a_moved_file_moves_nothing_else_wrongly(folders: Path, tmp_path: Path, tiny_model):
    _, _, out = clean.run(cfg(folders, tmp_path / "clean"), model=tiny_model)
    plan = _plan(out, {"cat/Bengal_2.jpg": "remove", "dog/Bombay_10.jpg": "remove"})
    (folders / "cat" / "Bengal_2.jpg").rename(tmp_path / "elsewhere.jpg")
    before = checksums(folders)
    message = clean_apply.apply_plan(plan)
    assert "not there any more" in message and "cat/Bengal_2.jpg" in message
    assert clean.main(["--undo", str(out)]) == 0
    assert checksums(folders) == before and (tmp_path / "elsewhere.jpg").is_file()


def test_an_interrupted_apply_is_undone(folders: Path, tmp_path: Path, tiny_model, monkeypatch):
    before = checksums(folders)
    _, _, out = clean.run(cfg(folders, tmp_path / "clean"), model=tiny_model)
    plan = _plan(out, {"cat/Bengal_2.jpg": "remove", "dog/Bombay_10.jpg": "remove", "cat/Bengal_3.jpg": "remove"})
    real, calls = clean_apply._move, []

    def dies_on_second(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(clean_apply, "_move", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        clean_apply.apply_plan(plan)
    monkeypatch.setattr(clean_apply, "_move", real)
    assert "1 photos put back" in clean_apply.undo(out)
    assert checksums(folders) == before


def test_csv_and_pets_names_relabel_and_undo(tmp_path: Path, tiny_model):
    pets = tmp_path / "pets"
    for n in ("Bengal_1", "Bengal_2", "Bombay_10", "Bombay_123", "Birman_15", "Birman_125"):
        _photo(f"{n}.jpg", pets / f"{n}.jpg")
    (pets / "labels.csv").write_text(
        "file,label\n"
        + "".join(
            f"{n}.jpg,{n.split('_')[0]}\n"
            for n in ("Bengal_1", "Bengal_2", "Bombay_10", "Bombay_123", "Birman_15", "Birman_125")
        )
    )
    before = checksums(pets)
    _, _, out = clean.run(cfg(pets / "labels.csv", tmp_path / "c1"), model=tiny_model)
    clean_apply.apply_plan(_plan(out, {"Bengal_2.jpg": "relabel:Bombay", "Birman_15.jpg": "remove"}))
    text = (pets / "labels.csv").read_text()
    assert "Bengal_2.jpg,Bombay" in text and "Birman_15" not in text and not (pets / "Birman_15.jpg").exists()
    clean_apply.undo(out)
    assert checksums(pets) == before
    (pets / "labels.csv").unlink()
    before = checksums(pets)
    _, _, out = clean.run(cfg(pets, tmp_path / "c2"), model=tiny_model)
    with pytest.raises(clean.CatdogError, match="breed"):
        clean_apply.apply_plan(_plan(out, {"Bengal_2.jpg": "relabel:dog"}))
    clean_apply.apply_plan(_plan(out, {"Bengal_2.jpg": "relabel:Bombay"}))
    assert (pets / "Bombay_124.jpg").is_file() and not (pets / "Bengal_2.jpg").exists()
    clean_apply.undo(out)
    assert checksums(pets) == before


# --- the gallery page writes the same plan ---------------------------------------------------------------------
def test_ui_choices_make_a_plan_that_applies(folders: Path, tmp_path: Path, tiny_model):
    from catdog_fastai import clean_ui

    before = checksums(folders)
    _, _, out = clean.run(cfg(folders, tmp_path / "clean"), model=tiny_model)
    rows = clean_ui.load_rows(out)
    i = next(n for n, r in enumerate(rows) if r["path"] == "cat/copy_of_bengal.jpg")
    with pytest.raises(clean.CatdogError):
        clean_ui.set_action(rows, i, "relabel", "")  # a relabel needs a class
    rows = clean_ui.set_action(rows, i, "remove")
    plan = clean_ui.save_plan(out, rows)
    assert clean_ui.load_rows(out)[i]["action"] == "remove"
    assert "1 photos moved" in clean_apply.apply_plan(plan)
    assert clean.main(["--undo", str(out)]) == 0 and checksums(folders) == before


@pytest.mark.slow  # importing Gradio takes longer than the rest of this file; the plan it writes is tested above
def test_ui_page_builds_offline(folders: Path, tmp_path: Path, tiny_model, no_network):
    from catdog_fastai import clean_ui

    _, _, out = clean.run(cfg(folders, tmp_path / "clean"), model=tiny_model)
    assert clean_ui.build_ui(out) is not None  # built, not launched
