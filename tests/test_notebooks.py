"""Every notebook runs top to bottom on its tiny settings; committed notebooks carry no
outputs."""

import pathlib

import nbclient
import nbformat
import pytest

from facedeblur_jax import cli
from tests.models.cvpr18 import synthetic_mat

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
    # nbformat 4.5 cell ids (a missing one is a validation warning now, an error later).
    ids = [cell.get("id") for cell in nb.cells]
    assert None not in ids and len(set(ids)) == len(ids), path.name
    nbformat.validate(nb)


@pytest.fixture(scope="module")
def runs_dir(tiny_demo_run):
    """The runs/ folder of the session's ``facedeblur demo --config tiny``: the notebooks'
    tiny checkpoint (``runs/notebook_tiny``) is that finished run, trained once."""
    return tiny_demo_run[0]


@pytest.fixture(scope="module")
def official_weights(tmp_path_factory):
    """A converted synthetic release (the real weights are the user's to fetch): the
    parsing-prior notebook shows the released P's maps from it."""
    folder = tmp_path_factory.mktemp("official")
    src = synthetic_mat.write_pair(folder / "release")[0].parent
    out = folder / "official.npz"
    assert cli.main(["convert-official", "--src", str(src), "--out", str(out)]) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, runs_dir, official_weights, monkeypatch):
    monkeypatch.setenv("FACEDEBLUR_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("FACEDEBLUR_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("FACEDEBLUR_OFFICIAL_MODEL", str(official_weights))
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
