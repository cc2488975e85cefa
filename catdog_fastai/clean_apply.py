"""Fixing without losing anything: `catdog-clean --apply PLAN.csv` moves files, `--undo` puts them back.

A plan is issues.csv with its `action` column filled: `keep` (or empty), `remove`, `relabel:CLASS`. Nothing is ever
deleted: removed photos go to `quarantine/` beside the plan, relabelled ones to their class folder (class folders),
to a new `CLASS_N` name (Pets names), or the CSV's label column is rewritten (a CSV, whose original is kept).

The undo manifest names every move before the first one is made, and each move is one rename (or a copy, then the
original's removal, across disks), so an apply stopped at any point leaves every photo at its old or its new place,
both of which the manifest names; `--undo` moves back whatever it finds at the new place.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from .clean_find import INFO, read_issues
from .errors import DataError
from .files import atomic_write, sha256, write_json
from .labels import is_pets_name

MANIFEST = "undo-{stamp}.json"
ACTIONS = "keep, remove or relabel:CLASS"


def parse_action(text: str, where: str) -> tuple[str, str]:
    "('keep'|'remove'|'relabel', class) from a plan's action cell; anything else is a one-line error."
    a = (text or "").strip()
    if a.lower() in ("", "keep"):
        return "keep", ""
    if a.lower() == "remove":
        return "remove", ""
    if a.lower().startswith("relabel:") and a.split(":", 1)[1].strip():
        return "relabel", a.split(":", 1)[1].strip()
    raise DataError(f"{where}: action {a!r} is not one of {ACTIONS}")


def _actions(rows: list[dict[str, str]], plan: Path) -> dict[str, tuple[str, str]]:
    "One action per photo; a photo listed twice (a duplicate with a doubtful label) may not get two."
    chosen: dict[str, tuple[str, str]] = {}
    for n, r in enumerate(rows, 2):
        act = parse_action(r.get("action", ""), f"{plan} line {n}")
        if act[0] == "keep":
            continue
        if chosen.get(r["path"], act) != act:
            raise DataError(f"{plan}: {r['path']} has two different actions ({chosen[r['path']][0]}, {act[0]})")
        chosen[r["path"]] = act
    return chosen


def _free(path: Path, taken: set[Path]) -> Path:
    "`path`, or `name-1.ext`, `name-2.ext`, ... : never overwrite a file, nor one another move will make."
    cand, i = path, 0
    while cand.exists() or cand in taken:
        i += 1
        cand = path.with_name(f"{path.stem}-{i}{path.suffix}")
    taken.add(cand)
    return cand


def _pets_name(folder: Path, cls: str, ext: str, taken: set[Path]) -> Path:
    "The next free `CLASS_N.ext` in `folder`: a Pets photo's label is its name."
    if cls.lower() in ("cat", "dog") or not is_pets_name(f"{cls}_1"):
        raise DataError(f"relabel:{cls}: Pets file names carry the breed; relabel to a breed, e.g. relabel:beagle")
    nums = [int(m[1]) for p in folder.glob(f"{cls}_*") if (m := re.fullmatch(rf"{re.escape(cls)}_(\d+)", p.stem))]
    nums += [int(m[1]) for p in taken if (m := re.fullmatch(rf"{re.escape(cls)}_(\d+)", p.stem))]
    return _free(folder / f"{cls}_{max(nums, default=0) + 1}{ext}", taken)


def _move(src: Path, dst: Path) -> None:
    "One rename; across disks a copy, then the original's removal (a stop in between leaves two copies, no loss)."
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
    except OSError:
        shutil.copy2(src, dst)
        src.unlink()


def plan_moves(rows: list[dict[str, str]], plan: Path, info: dict[str, Any]) -> tuple[list[dict], dict, list[str]]:
    "(file moves, {path: new label} for a CSV, paths no longer there) for a plan, before anything moves."
    folder, layout, out = Path(info["folder"]), info["layout"], plan.parent
    if not layout:
        raise DataError(
            f"{plan}: the check found no readable photo, so there is nothing to relabel; remove files by hand"
        )
    moves, relabels, missing, taken = [], {}, [], set()
    for rel, (act, cls) in _actions(rows, plan).items():
        src = folder / rel
        if not src.is_file():
            missing.append(rel)
            continue
        if act == "remove":
            dst = _free(out / "quarantine" / rel, taken)
        elif layout == "csv":
            relabels[rel] = cls
            continue
        elif layout == "pets":
            dst = _pets_name(src.parent, cls, src.suffix, taken)
        else:  # class folders: the photo joins CLASS beside its old folder (inside train/ or valid/ when split)
            dst = _free(src.parent.parent / cls / src.name, taken)
        moves.append(dict(action=act, label=cls, src=str(src), dst=str(dst), sha256=sha256(src)))
    return moves, relabels, missing


def _rewrite_csv(csv_path: Path, folder: Path, relabels: dict[str, str], removed: set[str]) -> None:
    "The CSV with new labels and without removed photos' rows, atomically; other columns and rows unchanged."
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames or [], list(reader)
    out = []
    for r in rows:
        rel = (folder / r["file"].strip()).relative_to(folder).as_posix()
        if rel in removed:
            continue
        out.append({**r, "label": relabels.get(rel, r["label"])})

    def _write(p: Path) -> None:
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(out)

    atomic_write(csv_path, _write)


def _info(plan: Path) -> dict[str, Any]:
    p = plan.parent / INFO
    if not p.is_file():
        raise DataError(f"{p} not found: apply the issues.csv in the folder catdog-clean wrote it to")
    return json.loads(p.read_text())


def apply_plan(plan: str | os.PathLike, data: str | None = None) -> str:
    """Carry out `plan`; returns what was done, in words, with the undo command. `data` is accepted for symmetry
    with the check; the plan's clean.json says where the photos are."""
    plan = Path(plan)
    rows, info = read_issues(plan), _info(plan)
    moves, relabels, missing = plan_moves(rows, plan, info)
    manifest = plan.parent / MANIFEST.format(stamp=time.strftime("%Y%m%d-%H%M%S"))
    manifest = _free(manifest, set())
    entry: dict[str, Any] = dict(plan=str(plan), status="started", moves=moves, csv=None)
    if info["layout"] == "csv" and (relabels or moves):
        csv_path = Path(info["data"])
        backup = _free(plan.parent / "quarantine" / f"{csv_path.name}.before-apply", set())
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(csv_path, backup)
        entry["csv"] = dict(path=str(csv_path), backup=str(backup))
    write_json(manifest, entry)  # every move named before the first is made
    for m in moves:
        _move(Path(m["src"]), Path(m["dst"]))
    if entry["csv"]:
        folder = Path(info["folder"])
        removed = {Path(m["src"]).relative_to(folder).as_posix() for m in moves}
        _rewrite_csv(Path(entry["csv"]["path"]), folder, relabels, removed)
    write_json(manifest, {**entry, "status": "done"})
    n_rm = sum(m["action"] == "remove" for m in moves)
    n_rl = len(moves) - n_rm + len(relabels)
    lines = [f"catdog-clean: {n_rm} photos moved to {plan.parent / 'quarantine'}, {n_rl} relabelled"]
    if missing:
        lines.append(f"  {len(missing)} rows name a file that is not there any more (moved since the check?), left "
                     f"alone: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")  # fmt: skip
    lines.append(f"  undo: catdog-clean --undo {manifest}")
    return "\n".join(lines)


def latest_manifest(path: str | os.PathLike) -> Path:
    "`path` itself, or the newest undo manifest in the folder `path` not undone yet."
    p = Path(path)
    if p.is_file():
        return p
    found = sorted(p.glob("undo-*.json")) if p.is_dir() else []
    live = [m for m in found if json.loads(m.read_text()).get("status") != "undone"]
    if not live:
        raise DataError(f"no undo manifest to undo in {p}")
    return live[-1]


def undo(path: str | os.PathLike) -> str:
    "Put back every move of an apply (finished or interrupted) and the CSV it rewrote; returns what it did."
    manifest = latest_manifest(path)
    try:
        entry = json.loads(manifest.read_text())
        moves = entry["moves"]
    except (ValueError, KeyError):
        raise DataError(f"{manifest} is not an undo manifest from catdog-clean --apply") from None
    back, clash, lost = 0, [], []
    for m in reversed(moves):
        src, dst = Path(m["src"]), Path(m["dst"])
        if dst.is_file() and not src.exists():
            _move(dst, src)
            back += 1
        elif dst.is_file():
            clash.append(str(dst))  # both there: an interrupted copy, or a new file at the old name; keep both
        elif not src.is_file():
            lost.append(str(src))
    if entry.get("csv") and Path(entry["csv"]["backup"]).is_file():
        backup = Path(entry["csv"]["backup"])
        atomic_write(entry["csv"]["path"], lambda p: shutil.copy2(backup, p))
    write_json(manifest, {**entry, "status": "undone"})
    lines = [f"catdog-clean: {back} photos put back" + (", the CSV restored" if entry.get("csv") else "")]
    if clash:
        lines.append(f"  {len(clash)} left where they are, as their old place is taken: {', '.join(clash[:3])}")
    if lost:
        lines.append(f"  {len(lost)} are at neither place (moved by hand since?): {', '.join(lost[:3])}")
    return "\n".join(lines)
