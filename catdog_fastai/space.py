"""A Hugging Face Space from an export: one folder that serves the model with ONNX Runtime, without torch.

    catdog-export models --space space/ --examples a.jpg b.jpg     (then: hf upload USER/NAME space --repo-type space)

The folder holds what a Gradio Space runs and nothing else:
- `README.md`: the Spaces front matter (title, emoji, `sdk: gradio`, `sdk_version` = the Gradio this was built and
  tested with, `app_file`, licence, datasets and tags from the model card) above the export's model card;
- `app.py`: `catdog-app`'s page (`app.build_demo`) for the folder's own export;
- `requirements.txt`: the serving libraries pinned to the versions installed here, never torch, timm or fastai;
- `catdog_fastai/`: the package's serving modules, copied (the modules `app` imports, followed through the package),
  so the Space needs no package index that has catdog_fastai and no access to this repository. A wheel would not
  do: a Space installs requirements.txt before the rest of the repository is copied in;
- model.onnx, model.json, model.safetensors (the unknown gate's arrays) and report.json, checked against the
  checksums model.json records; never model.pkl, which runs code when loaded;
- up to six example photos (`examples/`), with any licence file found beside them; `.gitattributes` routing the
  binary files through Git LFS, which the Hub requires for a `git push`.

It is built in a temporary folder beside OUT and renamed into place: a failure leaves OUT as it was, never half a
Space. Nothing is uploaded unless asked (`push`, through huggingface_hub).
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

from . import __version__
from .card import folder_card
from .errors import CatdogError, ExportError
from .files import CARD, REPORT
from .images import ImageError, open_image
from .meta import META, MIXED_UP, ONNX, WEIGHTS, ModelMeta, read_meta, verify

PACKAGE = Path(__file__).resolve().parent
SERVING = ("gradio", "onnxruntime", "numpy", "pillow", "safetensors", "threadpoolctl", "huggingface_hub")  # = pyproject
ENTRY = ("__init__", "app")  # the modules the Space's app.py imports; what they import is followed from here
MAX_EXAMPLES = 6
LICENCE_FILES = ("ATTRIBUTION*", "LICENSE*", "LICENCE*", "COPYING*")  # beside the example photos
LFS = ("*.onnx", "*.safetensors", "*.jpg", "*.jpeg", "*.png", "*.webp", "*.gif", "*.bmp", "*.tif", "*.tiff")


class SpaceError(CatdogError):
    """The Space cannot be built or pushed as asked; the message says what to do."""


def serving_modules(entry: Iterable[str] = ENTRY, root: Path = PACKAGE) -> list[str]:
    """The package's modules that `entry` imports, directly or through each other (at module level or inside
    functions, not under `if TYPE_CHECKING:`): exactly the code a Space needs."""
    todo, seen = list(entry), set()
    while todo:
        name = todo.pop()
        if name in seen or not (root / f"{name}.py").is_file():
            continue
        seen.add(name)
        todo += package_imports(root / f"{name}.py")
    return sorted(seen)


def package_imports(path: Path) -> set[str]:
    "The names of this package's modules that the file at `path` imports (relative or absolute), anywhere in it."
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1 or module.split(".")[0] == PACKAGE.name:
                sub = module.split(".", 1)[1] if module.startswith(PACKAGE.name) and "." in module else module
                sub = "" if sub == PACKAGE.name else sub
                out |= {sub.split(".")[0]} if sub else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith(f"{PACKAGE.name}.")}
    return out


def check_export(model_dir: str | os.PathLike) -> ModelMeta:
    "The export's record, once model.onnx and model.safetensors are there and match the checksums it records."
    folder = Path(model_dir)
    meta = read_meta(folder)
    if meta.onnx is None or not (folder / ONNX).is_file():
        raise ExportError(
            f"{folder} has no {ONNX}, which the Space serves with ONNX Runtime: add it with "
            f"`catdog-export {folder} --onnx` (needs torch), then build the Space again"
        )
    verify(folder / ONNX, meta.onnx.sha256, f"re-run catdog-export {folder} --onnx")
    if not (folder / WEIGHTS).is_file():
        raise ExportError(f"{folder / WEIGHTS} is missing; the export in {folder} is incomplete")
    verify(folder / WEIGHTS, meta.weights_sha256, MIXED_UP)
    return meta


def check_examples(paths: Sequence[str | os.PathLike]) -> list[Path]:
    "The example photos, each one decoded as the app would; anything else is refused by name, all at once."
    paths = [Path(p) for p in paths]
    if len(paths) > MAX_EXAMPLES:
        raise SpaceError(f"{len(paths)} examples given; a Space page shows at most {MAX_EXAMPLES}")
    problems = []
    for p in paths:
        try:
            open_image(p)
        except ImageError as e:
            problems.append(f"{p}: {e}")
    names = [p.name for p in paths]
    problems += [f"two examples are called {n}" for n in sorted({n for n in names if names.count(n) > 1})]
    if problems:
        raise SpaceError("not usable as example photos: " + "; ".join(problems))
    return paths


def requirements(names: Sequence[str] = SERVING) -> str:
    "requirements.txt: each serving library pinned to the version installed here (the one this Space was tested with)."
    lines = ["# Serving only (ONNX Runtime): no torch, timm or fastai. Built by catdog_fastai " + __version__]
    for name in names:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise SpaceError(
                f"{name} is not installed here, so its version cannot be pinned: pip install {name}"
            ) from None
    return "\n".join(lines) + "\n"


def space_title(model_dir: Path, title: str | None = None) -> str:
    "`title`, or the model card's first heading (the Space's name on the Hub and in app.py's docstring)."
    heading = re.search(r"^# (.+)$", _card(model_dir)[1], re.M)
    return title or (heading.group(1).strip() if heading else "Cat or dog?")


def _card(model_dir: Path) -> tuple[dict, str]:
    "The model card's front matter (a dict) and body: the export's README.md, or one written now from model.json."
    from huggingface_hub import ModelCard

    path = model_dir / CARD
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if not text.startswith("---\n"):
        text = folder_card(model_dir)  # an export without a card (older versions): the card it would have
    card = ModelCard(text, ignore_metadata_errors=True)
    return card.data.to_dict(), card.text.lstrip("\n")


def readme(model_dir: Path, meta: ModelMeta, title: str | None, emoji: str, examples: Sequence[str], notes: str) -> str:
    """README.md: the Spaces front matter, then the model card's body, then where the example photos come from.
    `title`: None for the card's own (its first heading)."""
    from huggingface_hub import SpaceCardData

    front, body = _card(model_dir)
    data = SpaceCardData(
        title=title,
        emoji=emoji,
        colorFrom="yellow",
        colorTo="green",
        sdk="gradio",
        sdk_version=metadata.version("gradio"),
        python_version=".".join(platform.python_version_tuple()[:2]),
        app_file="app.py",
        pinned=False,
        license=front.get("license"),
        models=front.get("models") or None,
        datasets=front.get("datasets") or None,
        tags=list(dict.fromkeys([*(front.get("tags") or []), "onnx", "gradio"])),
        short_description=f"{meta.n_classes} classes, {meta.arch}, ONNX Runtime on a CPU"[:60],
    )
    text = f"---\n{data.to_yaml()}\n---\n\n{body.rstrip()}\n"
    if examples:
        listed = ", ".join(f"`{n}`" for n in examples)
        text += f"\n## Example photos\n\n{listed}. {notes}\n"
    return text


APP = '''"""{title}

A Gradio Space for a catdog_fastai export, built by `catdog-export --space` (catdog_fastai {version}). The page is
`catdog-app`'s (`catdog_fastai.app.build_demo`) for this folder's own export, served with ONNX Runtime: no torch.
`catdog_fastai/` beside this file is the package's serving code, copied when the folder was built, so
requirements.txt is all a Space (or `pip install -r requirements.txt && python app.py`) needs.
"""

import argparse
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network call on import or launch

from catdog_fastai.app import build_demo, launch  # noqa: E402

HERE = Path(__file__).resolve().parent
PHOTOS = {examples}  # in examples/: the page's examples
EXAMPLES = [str(HERE / "examples" / name) for name in PHOTOS]

demo = build_demo(HERE, EXAMPLES)  # at import, as Gradio's own demos: `gradio app.py` finds it

if __name__ == "__main__":
    on_space = bool(os.environ.get("SPACE_ID"))  # set by Hugging Face: the page must listen outside its container
    ap = argparse.ArgumentParser(description="Serve this folder's model in a web page.")
    ap.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space else "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = ap.parse_args()
    launch(demo, args.host, args.port)
'''


def _copy_examples(photos: Sequence[Path], dest: Path) -> str:
    "Copy the photos and any licence file beside them into `dest`; the README's sentence on their licence."
    dest.mkdir()
    for p in photos:
        shutil.copy2(p, dest / p.name)
    licences = sorted({f for p in photos for pat in LICENCE_FILES for f in p.parent.glob(pat) if f.is_file()})
    copied = []
    for i, f in enumerate(licences):
        name = f.name if not (dest / f.name).exists() else f"{f.stem}-{i}{f.suffix}"
        shutil.copy2(f, dest / name)
        copied.append(f"`examples/{name}`")
    if copied:
        return f"Licence and attribution: {', '.join(copied)}."
    return "No licence file (ATTRIBUTION, LICENSE) was found beside them: make sure you may publish them."


def _write(folder: Path, model_dir: Path, meta: ModelMeta, photos: Sequence[Path], title: str | None, emoji: str):
    "Everything in the Space, written into the (new, empty) `folder`."
    for name in (ONNX, WEIGHTS, META, REPORT):
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, folder / name)
    verify(folder / ONNX, meta.onnx.sha256 if meta.onnx else None, MIXED_UP)  # the copies are what model.json says
    verify(folder / WEIGHTS, meta.weights_sha256, MIXED_UP)
    (folder / PACKAGE.name).mkdir()
    for module in serving_modules():
        shutil.copy2(PACKAGE / f"{module}.py", folder / PACKAGE.name / f"{module}.py")
    notes = _copy_examples(photos, folder / "examples") if photos else ""
    names = [p.name for p in photos]
    title = space_title(model_dir, title)
    (folder / CARD).write_text(readme(model_dir, meta, title, emoji, names, notes), encoding="utf-8")
    listed = "[" + "".join(f"\n    {json.dumps(n)}," for n in names) + ("\n]" if names else "]")  # as ruff lays it out
    (folder / "app.py").write_text(APP.format(title=title, version=__version__, examples=listed), encoding="utf-8")
    (folder / "requirements.txt").write_text(requirements())
    (folder / ".gitattributes").write_text("".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS))


def build_space(
    model_dir: str | os.PathLike,
    out: str | os.PathLike,
    examples: Sequence[str | os.PathLike] = (),
    title: str | None = None,
    emoji: str = "🐾",
    force: bool = False,
) -> Path:
    """Write the Space for the export in `model_dir` to `out` (see the module's docstring); returns `out`.

    `out` must be empty or absent unless `force` (then it is replaced whole, keeping its `.git`, so a cloned Space
    repository can be rebuilt in place). Everything is checked before anything is written.
    """
    model_dir, out = Path(model_dir), Path(out)
    meta = check_export(model_dir)
    photos = check_examples(examples)
    if model_dir.resolve() == out.resolve() or out.resolve() in model_dir.resolve().parents:
        raise SpaceError(f"{out} holds the export itself; write the Space to another folder")
    if out.exists() and not out.is_dir():
        raise SpaceError(f"{out} is a file, not a folder")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if present and not force:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise SpaceError(f"{out} already holds files ({shown}): pass --force to replace them, or choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write(tmp, model_dir, meta, photos, title, emoji)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the folder gets the usual permissions
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _swap(new: Path, out: Path) -> None:
    "Put `new` where `out` is with two renames (its `.git` carried over): OUT is always whole, old or new."
    if not out.exists():
        os.rename(new, out)
        return
    if (out / ".git").exists():
        os.rename(out / ".git", new / ".git")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    try:
        os.rename(out, old / out.name)
    except BaseException:
        if (new / ".git").exists():
            os.rename(new / ".git", out / ".git")
        raise
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish_hint(out: str | os.PathLike) -> str:
    "What to run to publish the folder (the command itself uploads nothing unless --push)."
    return (
        f"publish it: hf upload USER/NAME {out} --repo-type space (after `hf auth login`), or catdog-export ... "
        f"--push USER/NAME; or git push it into a new Gradio Space's repository. Try it first: cd {out} && "
        "pip install -r requirements.txt && python app.py"
    )


def push(out: str | os.PathLike, repo: str) -> str:
    "Create (if needed) the Gradio Space `repo` and upload `out` to it; its URL. A failure is one `SpaceError` line."
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise SpaceError(f"--push takes USER/NAME, not {repo!r}")
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, repo_type="space", space_sdk="gradio", exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(out), repo_type="space", commit_message="catdog-export --space")
    except Exception as e:  # noqa: BLE001 - offline, no token, no rights: each is the same one line for the user
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise SpaceError(
            f"could not push to the Space {repo} ({type(e).__name__}: {reason}); the folder {out} is ready: "
            f"hf upload {repo} {out} --repo-type space"
        ) from None
    return f"https://huggingface.co/spaces/{repo}"
