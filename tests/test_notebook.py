"""notebooks/01_cats_vs_dogs.ipynb runs top to bottom (on the tiny fixture), and is stored without outputs."""

from pathlib import Path

import nbformat
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
