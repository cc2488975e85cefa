"""`catdog-export`: add formats to an existing export folder, or turn it into a Hugging Face Space folder.

    catdog-export models --onnx              (adds model.onnx to an export made without it, or by an older version)
    catdog-export models --space space/      (a Hugging Face Space folder that serves it without torch: space.py)

The work is `onnx_export.add_onnx` and `space.build_space`; this module is the command: its options
(`ExportOptions`, built through `cli.py` like every other command's), the lines it prints and its exit status.
torch is imported only to trace: `--space` runs in a serving install (no torch), and `--onnx` without torch says in
one line what to install.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from .backends import needs_training_stack
from .cli import error, option, parse
from .errors import CatdogError
from .meta import ONNX, OnnxGraph
from .onnx_export import add_onnx
from .space import build_space, publish_hint, push

SPACE = "Hugging Face Space (see docs/space.md)"


@dataclass
class ExportOptions:
    model: str = option(None, "export folder (model.safetensors + model.json)", "export", positional=True)
    onnx: bool = option(False, "write model.onnx for ONNX Runtime and record it in model.json", "export")
    space: str | None = option(None, "write a Gradio Space folder for this export to OUT", SPACE, metavar="OUT")
    examples: list[str] | None = option(None, "up to 6 example photos for the page", SPACE, nargs="+",
                                        metavar="PHOTO")  # fmt: skip
    title: str | None = option(None, "the Space's title (default: the model card's)", SPACE)
    emoji: str = option("🐾", "the Space's emoji", SPACE)
    force: bool = option(False, "replace OUT even if it holds other files (keeps .git)", SPACE)
    push: str | None = option(None, "also upload OUT to this Space through huggingface_hub", SPACE,
                              metavar="USER/NAME")  # fmt: skip


def _check(o: ExportOptions) -> str | None:
    if not (o.onnx or o.space):
        return "say what to add: --onnx, or --space OUT"
    if not o.space and (o.examples or o.force or o.push or o.title):
        return "--examples, --title, --force and --push go with --space OUT"
    return None


def main(argv: list[str] | None = None) -> int:
    "`catdog-export DIR --onnx` and/or `catdog-export DIR --space OUT` (`--onnx` first when both are given)."
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    o = parse(ExportOptions, argv, _check, prog="catdog-export",
              description="Add formats to an existing export folder (made by catdog-train), or turn it into a\n"
              "Hugging Face Space folder that serves it with ONNX Runtime, without torch.\n\nexamples:\n  "
              "catdog-export models --onnx\n  catdog-export models --space space --examples a.jpg b.jpg")  # fmt: skip
    try:
        if o.onnx:
            problem = needs_training_stack("catdog-export --onnx", ("torch", "timm", "onnx"))
            if problem:
                print(problem, file=sys.stderr)
                return 2
            meta = add_onnx(o.model)
            graph = meta.onnx or OnnxGraph()
            print(f"{Path(o.model) / ONNX}: opset {graph.opset}, largest gap to torch {graph.max_abs_diff}")
            if not o.space:
                print(f"serve it without torch: load_predictor({o.model!r}, backend='onnxruntime')")
        if o.space:
            out = build_space(o.model, o.space, examples=o.examples or [], title=o.title, emoji=o.emoji, force=o.force)
            print(f"{out}: a Gradio Space serving {o.model} with ONNX Runtime (no torch)")
            if o.push:
                print(f"pushed: {push(out, o.push)}")
            else:
                print(publish_hint(out))
    except CatdogError as e:
        return error("catdog-export", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
