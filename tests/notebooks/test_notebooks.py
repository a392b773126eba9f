"""Every notebook in ``notebooks/`` runs top to bottom, so the examples cannot rot (issues 4, 5).

Each notebook is executed from a copy, in a temporary working directory, by an IPython kernel
running *this* interpreter (the virtualenv's): installed kernelspecs are ignored, so a user-level
``python3`` kernel pointing at another Python cannot sneak in. ``CHECKOUTLAB_NOTEBOOK_SMALL=1``
tells the notebooks to shrink their data; the outputs stored in the repository come from a run
at the normal size, and a second test checks that they are there and error-free.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SMALL_ENV = "CHECKOUTLAB_NOTEBOOK_SMALL"
CELL_TIMEOUT = 300  # seconds per cell

# Prepended to the executed copy: which interpreter and settings the kernel really has.
PROBE = f"""\
import json, os, sys
print(json.dumps([sys.prefix, os.environ.get({SMALL_ENV!r})]))
"""


def _kernel_manager() -> KernelManager:
    """A manager for ipykernel's built-in ``python3`` spec, which runs ``sys.executable``."""
    specs = KernelSpecManager(kernel_dirs=[])  # no installed kernelspecs: the native one only
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SMALL_ENV, "1")  # the kernel inherits the environment
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(PROBE))

    client = NotebookClient(
        nb,
        km=_kernel_manager(),
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    probe = json.loads(nb.cells[0].outputs[0]["text"])
    assert probe == [sys.prefix, "1"], f"kernel runs {probe[0]}, not this interpreter {sys.prefix}"
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors
    stray = sorted(p.name for p in workdir.iterdir())
    assert not stray, f"{path.name} wrote {stray} into its working directory; use a temp dir"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_executed(path: Path) -> None:
    """Committed with the outputs of one clean top-to-bottom run, so readers see the plots."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code cells"
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name} is not stored from one clean run (execution counts {counts}); "
        f"re-run it: .venv/bin/jupyter execute --inplace notebooks/{path.name}"
    )
    outputs = [o for cell in code for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{path.name} stores an error"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} has no plot"
