"""`catdog-clean --ui --out DIR`: the findings as a gallery; click a photo, choose keep / relabel / remove, save.

fastai's `ImageClassifierCleaner` in a browser page: it writes the same plan `--apply` reads (DIR/plan.csv, the
rows of issues.csv with their `action` filled), so clicking and editing the CSV by hand are interchangeable, and
the apply step stays one command with its undo manifest. The page reads local files only and makes no network call.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from .clean_apply import parse_action
from .clean_find import COLUMNS, INFO, ISSUES_CSV, read_issues
from .files import atomic_write

PLAN = "plan.csv"


def load_rows(out: Path) -> list[dict[str, str]]:
    "The plan in `out` if one was saved, else the findings (issues.csv) with empty actions."
    return read_issues(out / PLAN if (out / PLAN).is_file() else out / ISSUES_CSV)


def set_action(rows: list[dict[str, str]], index: int, action: str, label: str = "") -> list[dict[str, str]]:
    "Rows with photo `index`'s action set (to every row of that photo: a duplicate can also be a label finding)."
    text = f"relabel:{label.strip()}" if action == "relabel" else action
    parse_action(text, "the chosen action")  # a relabel with no class is refused here, not at apply time
    path = rows[index]["path"]
    return [{**r, "action": text} if r["path"] == path else r for r in rows]


def save_plan(out: Path, rows: list[dict[str, str]]) -> Path:
    "DIR/plan.csv, atomically: what `catdog-clean --apply DIR/plan.csv` reads."

    def _write(p: Path) -> None:
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows({k: r.get(k, "") for k in COLUMNS} for r in rows)

    return atomic_write(out / PLAN, _write)


def caption(r: dict[str, str]) -> str:
    label = r.get("given_label", "") + (f" → {r['suggested_label']}" if r.get("suggested_label") else "")
    action = f" [{r['action']}]" if r.get("action") else ""
    group = f" #{r['group']}" if r.get("group") else ""
    return f"{r['issue']}{group}: {label} ({r['score']}){action}"


def build_ui(out: Path) -> Any:
    "The Gradio Blocks page for the findings in `out` (built, not launched: tests can build it offline)."
    import gradio as gr

    info = json.loads((out / INFO).read_text())
    folder, vocab = Path(info["folder"]), info.get("vocab", [])

    def gallery(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
        return [(str(folder / r["path"]), caption(r)) for r in rows if (folder / r["path"]).is_file()]

    with gr.Blocks(title="catdog-clean") as demo:
        rows = gr.State(load_rows(out))
        chosen = gr.State(0)
        gr.Markdown(f"## catdog-clean: {info.get('n_photos', 0)} photos in `{folder}`\nClick a photo, choose, save.")
        gal = gr.Gallery(value=gallery(rows.value), columns=6, height=520, allow_preview=False)
        with gr.Row():
            action = gr.Radio(["keep", "relabel", "remove"], value="keep", label="action")
            label = gr.Dropdown(vocab, label="relabel to", allow_custom_value=True)
            do = gr.Button("Set")
            save = gr.Button("Save plan", variant="primary")
        status = gr.Markdown()

        def pick(evt: gr.SelectData) -> int:
            return evt.index

        def apply_choice(rs: list, i: int, a: str, lab: str | None) -> tuple:
            try:
                rs = set_action(rs, i, a, lab or "")
            except ValueError as e:
                return rs, gallery(rs), str(e)
            return rs, gallery(rs), f"{rs[i]['path']}: {rs[i]['action']}"

        def do_save(rs: list) -> str:
            plan = save_plan(out, rs)
            return f"Saved {plan}. Next: `catdog-clean --apply {plan}` (moves, never deletes; `--undo` puts back)."

        gal.select(pick, None, chosen)
        do.click(apply_choice, [rows, chosen, action, label], [rows, gal, status])
        save.click(do_save, rows, status)
    return demo


def launch(out: Path, **kw: Any) -> None:
    "Serve the page on localhost (Gradio's defaults); the photos' folder is allowed, nothing else."
    info = json.loads((out / INFO).read_text()) if (out / INFO).is_file() else None
    if info is None:
        from .errors import DataError

        raise DataError(f"no findings in {out}: run catdog-clean --data DIR --out {out} first")
    build_ui(out).launch(allowed_paths=[info["folder"]], **kw)
