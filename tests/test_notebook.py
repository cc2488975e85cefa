"""notebooks/01_cats_vs_dogs.ipynb runs top to bottom (e2e: a kernel and `train_model` on the tiny fixture), and
is stored with the outputs of a real run (a reader on GitHub sees the pictures); in the default run, its code
parses, what it imports exists, and the stored outputs come from one complete run."""

import ast
import importlib
from pathlib import Path

import nbformat
import pytest
from conftest import PETS
from nbclient import NotebookClient

NB = Path(__file__).parent.parent / "notebooks" / "01_cats_vs_dogs.ipynb"


def test_notebook_is_stored_with_the_outputs_of_one_complete_run():
    "Every code cell ran, in order, without an error; the pictures (SGD, the loss curve, ...) are there."
    nb = nbformat.read(NB, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    outputs = [o for c in code for o in c.outputs]
    assert not any(o.output_type == "error" for o in outputs)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4
    text = "\n".join(o.get("text", "") for o in outputs)
    assert "training-free baseline" in text and "fine-tuned" in text and "after 60 steps" in text
    assert "Warning" not in text and NB.stat().st_size < 1_500_000  # clean, and small enough to review


def test_notebook_runs_what_catdog_train_runs():
    "It trains through `train_model` (catdog-train's whole job), and says what the head really is."
    src = "\n".join(c.source for c in nbformat.read(NB, as_version=4).cells if c.cell_type == "code")
    assert "train_model(cfg)" in src and "fine_tune" not in src and "CosineClassifier" in src
    assert "the final Linear layer" not in src


def test_notebook_imports_and_does_not_redefine_the_package():
    src = "\n".join(c.source for c in nbformat.read(NB, as_version=4).cells if c.cell_type == "code")
    assert "from catdog_fastai import" in src
    assert "def " not in src and "lambda" not in src


def test_notebook_code_parses_and_its_imports_exist():
    "What a rename in the package breaks first: a name the notebook imports (the e2e test runs it all)."
    cells = [c.source for c in nbformat.read(NB, as_version=4).cells if c.cell_type == "code"]
    src = "\n".join(line for c in cells for line in c.splitlines() if not line.startswith("%"))  # no IPython magics
    imports = [n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)]
    ours = [(n.module, a.name) for n in imports if n.module.startswith("catdog_fastai") for a in n.names]
    assert ours
    missing = [f"{m}.{name}" for m, name in ours if not hasattr(importlib.import_module(m), name)]
    assert missing == []


@pytest.mark.e2e
def test_notebook_executes_on_the_fixture(tmp_path):
    nb = nbformat.read(NB, as_version=4)
    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    overrides = dict(
        DATA=str(PETS),
        ARCH="test_efficientnet",
        WEIGHTS=None,
        PRETRAINED=False,
        EPOCHS=1,
        SIZE=64,
        PRESIZE=80,
        BS=16,
        OUT=str(tmp_path / "models"),
    )
    nb.cells.insert(idx + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in overrides.items())))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "loss before training" in text and "training-free baseline" in text and "fine-tuned" in text
    assert (tmp_path / "models" / "model.safetensors").is_file() and (tmp_path / "models" / "history.csv").is_file()
    pictures = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert pictures >= 4  # the batch, SGD on the loss surface, the loss curve, the report
