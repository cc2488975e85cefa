"""The contact sheet: the findings as one self-contained HTML page, because people would rather look than read.

Each finding is a thumbnail with its given and suggested label and score; near-duplicates sit side by side, one
row per group. Thumbnails are embedded (base64 JPEG, 160 px), so the page can be mailed or opened anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

from .files import atomic_write
from .images import ImageError, open_image

THUMB = 160  # px, the long side of a thumbnail: enough to tell a beagle from a basset
MAX_SHOWN = 400  # findings per page: the rest are in issues.csv (a page of thousands of photos helps no one)
TITLES = dict(unreadable="Files that do not decode", tiny="Small photos", duplicate="Near-duplicates (copies)",
              label="Perhaps the wrong label", not_pet="Perhaps not a cat or a dog",
              outlier="Far from every class")  # fmt: skip
CSS = """body{font-family:sans-serif;margin:1em}h2{margin-top:1.5em}.row{display:flex;flex-wrap:wrap;gap:8px}
.card{width:170px;font-size:12px;border:1px solid #ccc;padding:4px}.card img{max-width:160px;max-height:160px}
.group{display:flex;gap:8px;border:2px solid #e90;padding:4px;margin:4px 0}.leak{border-color:#d00}
.bad{color:#a00}.muted{color:#666}"""


def thumbnail(path: str | os.PathLike) -> str | None:
    "A data: URL of a small JPEG of `path`, or None when it does not decode."
    try:
        im = open_image(path, min_side=1)
    except ImageError:
        return None
    im.thumbnail((THUMB, THUMB))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _card(f: dict[str, Any], folder: Path) -> str:
    src = thumbnail(folder / f["path"])
    img = f'<img src="{src}" alt="">' if src else '<div class="bad">(no image)</div>'
    label = html.escape(f.get("given_label") or "")
    if f.get("suggested_label"):
        label += f" &rarr; <b>{html.escape(f['suggested_label'])}</b>"
    return (f'<div class="card">{img}<div>{html.escape(f["path"])}</div><div>{label}</div>'
            f'<div class="muted">score {f["score"]:.2f} {html.escape(str(f.get("note", "")))}</div></div>')  # fmt: skip


def render(findings: list[dict[str, Any]], info: dict[str, Any]) -> str:
    "The page's HTML: one section per issue, duplicate groups as bordered rows (red: straddling train and valid)."
    folder = Path(info.get("folder", "."))
    shown = findings[:MAX_SHOWN]
    parts = [f"<!doctype html><meta charset=utf-8><title>catdog-clean</title><style>{CSS}</style>",
             f"<h1>catdog-clean: {len(findings)} findings in {info.get('n_photos', 0)} photos</h1>",
             f"<p class=muted>{html.escape(str(folder))}. Fill the <code>action</code> column of issues.csv "
             "(keep, relabel:CLASS, remove), then <code>catdog-clean --apply issues.csv</code>.</p>"]  # fmt: skip
    if len(findings) > len(shown):
        parts.append(f"<p>Showing the first {len(shown)}; all are in issues.csv.</p>")
    for issue, title in TITLES.items():
        rows = [f for f in shown if f["issue"] == issue]
        if not rows:
            continue
        parts.append(f"<h2>{title} ({len(rows)})</h2>")
        if issue != "duplicate":
            parts.append('<div class="row">' + "".join(_card(f, folder) for f in rows) + "</div>")
            continue
        groups: dict[int, list[dict[str, Any]]] = {}
        for f in rows:
            groups.setdefault(f["group"], []).append(f)
        for g, members in groups.items():
            leak = " leak" if any(m.get("leak") for m in members) else ""
            parts.append(f'<div class="group{leak}" title="group {g}">' + "".join(_card(m, folder) for m in members)
                         + "</div>")  # fmt: skip
    return "\n".join(parts) + "\n"


def write_sheet(path: str | os.PathLike, findings: list[dict[str, Any]], info: dict[str, Any]) -> Path:
    "issues.html, atomically."
    page = render(findings, info)
    return atomic_write(path, lambda p: p.write_text(page, encoding="utf-8"))
