"""Every notebook runs top to bottom on its tiny settings; committed notebooks carry no
outputs."""

import pathlib

import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} == {
        "parsing_priors.ipynb",
        "kernels_and_blur.ipynb",
        "ablations.ipynb",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.fixture(scope="module")
def runs_dir(tiny_demo_run):
    """The runs/ folder of the session's ``facedeblur demo --config tiny``: the notebooks'
    tiny checkpoint (``runs/notebook_tiny``) is that finished run, trained once."""
    return tiny_demo_run[0]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, runs_dir, monkeypatch):
    monkeypatch.setenv("FACEDEBLUR_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("FACEDEBLUR_RUNS_DIR", str(runs_dir))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws PNGs
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    images = sum(
        1
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    )
    assert images >= 1, f"{path.name} drew no figure"
