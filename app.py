"""Cat or dog? Which breed? The web app (`catdog_fastai.app`) with this repository's example photos.

    python app.py [--model DIR] [--port N] [--share]      (or CATDOG_MODEL=DIR gradio app.py; --help lists all)

Importing this file builds nothing: `python app.py` builds the page once, and `demo` (what `gradio app.py` looks
for) is built from `CATDOG_MODEL` (default `models/`) the first time it is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from catdog_fastai.app import build_demo, main

EXAMPLES = sorted(str(p) for p in (Path(__file__).parent / "examples").glob("*.jpg"))  # real Pets photos, CC BY-SA 4.0


def __getattr__(name: str) -> Any:
    if name == "demo":
        globals()["demo"] = built = build_demo(os.environ.get("CATDOG_MODEL", "models"), EXAMPLES)
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main(examples=EXAMPLES)
