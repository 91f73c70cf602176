"""Every notebook runs end to end under papermill with the smoke profile, and its py:percent twin matches."""

from pathlib import Path

import jupytext
import papermill as pm
import pytest

from finemem_lib.infra.quiet import kernel_config

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_twin_is_in_sync(notebook):
    twin = notebook.with_suffix(".py")
    assert twin.is_file(), f"{notebook.name} has no py:percent twin"
    from_ipynb = [c.source for c in jupytext.read(notebook).cells]
    from_py = [c.source for c in jupytext.read(twin).cells]
    assert from_ipynb == from_py, f"{notebook.name} and {twin.name} differ: run 'jupytext --sync {notebook}'"


@pytest.fixture(scope="module")
def shared_dirs(tmp_path_factory):
    """One results/data folder for the whole run: later notebooks read what earlier ones wrote."""
    return tmp_path_factory.mktemp("notebook_runs")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_profile(notebook, shared_dirs):
    tmp_path = shared_dirs
    (tmp_path / "executed").mkdir(exist_ok=True)
    before = set((tmp_path / "results" / "figures").glob("*.png"))
    nb = jupytext.read(notebook)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), "no cell tagged 'parameters'"
    pm.execute_notebook(
        str(notebook),
        str(tmp_path / "executed" / notebook.name),
        parameters={"profile": "smoke", "results_dir": str(tmp_path / "results"), "data_dir": str(tmp_path / "data")},
        cwd=str(notebook.parents[1]),
        kernel_name="python3",
        progress_bar=False,
        config=kernel_config(),  # IPC transport: no TCP-without-encryption warning
    )
    after = set((tmp_path / "results" / "figures").glob("*.png"))
    assert after - before, "the notebook saved no new figure"
