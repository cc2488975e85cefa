"""Files that are either whole or absent: every export file, card and CSV is written to a temporary name in the same
folder and renamed into place, so a crash, a full disk or Ctrl-C mid-write leaves the previous good file untouched.

Standard library only: the serving path (`predict`, the app) writes through it without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The files of an export folder (`catdog-train --out`), each named here once. Serving reads the first four; the rest
# are the run's record (report, history, checkpoints, plots) and the model card.
WEIGHTS, META, PKL, ONNX = "model.safetensors", "model.json", "model.pkl", "model.onnx"
REPORT, CARD, CONFIG = "report.json", "README.md", "train_config.json"
HISTORY, CHECKPOINT, BEST = "history.csv", "checkpoint.pth", "best.pth"
CONFUSION, TOP_LOSSES, LR_FIND = "confusion_matrix.png", "top_losses.png", "lr_find.png"
EXPORT_FILES = (
    WEIGHTS,
    META,
    PKL,
    ONNX,
    REPORT,
    CARD,
    CONFIG,
    HISTORY,
    CHECKPOINT,
    BEST,
    CONFUSION,
    TOP_LOSSES,
    LR_FIND,
)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    "Call `write(tmp_path)`, fsync, then rename onto `path`; on any failure remove the temp file and re-raise."
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    "`obj` as indented JSON, atomically."
    return atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def sha256(path: str | os.PathLike) -> str:
    "The file's SHA-256, read in 1 MiB chunks: ties model.json to the weights it describes."
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
