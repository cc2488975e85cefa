"""notebooks/01_cats_vs_dogs.ipynb runs top to bottom (on the tiny fixture; e2e: a kernel, lr_find, two
trainings), and is stored without outputs; in the default run, its code parses and what it imports exists."""

import ast
import importlib
from pathlib import Path

import nbformat
import pytest
from conftest import PETS
from nbclient import NotebookClient

NB = Path(__file__).parent.parent / "notebooks" / "01_cats_vs_dogs.ipynb"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NB, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


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
    assert "loss before training" in text and "validation accuracy" in text and "breeds" in text
    assert (tmp_path / "models" / "model.safetensors").is_file()
    assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
