import json
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from facedeblur_jax.core.sample_data import SAMPLE_FACES
from facedeblur_jax.data.label_io import load_labels
from tests import processes
from tests.conftest import REPO_ROOT

FACES = ("test/id01_0000.png", "test/id04_0001.png", "test/id05_0001.png")  # last: fallback


def load_tool():
    from facedeblur_jax.commands import make_labels

    return make_labels


def run_tool(*args):
    """The real command line, in a fresh process."""
    return processes.run(
        [sys.executable, "-m", "facedeblur_jax.commands.make_labels", *map(str, args)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    shutil.copy(SAMPLE_FACES / FACES[0], root / "a.png")
    Image.open(SAMPLE_FACES / FACES[1]).convert("RGB").save(root / "sub" / "b.jpg", quality=95)
    shutil.copy(SAMPLE_FACES / FACES[2], root / "sub" / "c.png")
    (root / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "notes.txt").write_text("not an image")
    return root


def test_end_to_end_with_a_corrupt_file(data, tmp_path, capsys):
    out, grid = tmp_path / "labels", tmp_path / "grid.png"
    result = run_tool("--data", data, "--out", out, "--overlay", grid, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "broken.png" in result.stderr and "warning" in result.stderr
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a.png", "sub/b.png", "sub/c.png"]
    for name, face in zip(written, FACES, strict=True):
        labels = load_labels(out / name)
        assert labels.shape == (112, 112) and labels.max() <= 10
        assert {4, 5, 6, 7, 9} <= set(np.unique(labels).tolist()), face
    report = json.loads((out / "report.json").read_text())
    assert report["total"] == 4 and report["labelled"] == 3 and report["unreadable"] == 1
    assert report["detected"] == 2 and report["fallback"] == 1
    assert report["fallback_files"] == ["sub/c.png"]
    assert [u["file"] for u in report["unreadable_files"]] == ["sub/broken.png"]
    assert report["failed_sanity"] == 0
    with Image.open(grid) as im:  # 3 triples (image | overlay | colours) at 2×
        assert im.width >= 3 * 3 * 224 and im.height >= 224

    # Second run: refuses to overwrite, leaves the files alone.
    tool = load_tool()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert tool.main(["--data", str(data), "--out", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert tool.main(["--data", str(data), "--out", str(out), "--overwrite", "--limit", "2"]) == 0
    assert json.loads((out / "report.json").read_text())["total"] == 2


def test_label_folder_inside_the_data_folder_is_skipped(data, capsys):
    tool, out = load_tool(), data / "labels"
    assert tool.main(["--data", str(data), "--out", str(out)]) == 0
    assert "broken.png" in capsys.readouterr().err
    # Rerun into the same folder, which now lies inside --data: its PNGs are not images.
    assert tool.main(["--data", str(data), "--out", str(out), "--overwrite"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["total"] == 4  # a, b, c + broken
    assert not (out / "labels").exists()


def test_missing_data_folder_is_an_error(tmp_path, capsys):
    assert load_tool().main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
