"""Files stay whole under interruption: ``facedeblur deblur`` and ``export-weights`` killed
(SIGKILL) in the middle of writing an output leave no half-written file under its final
name, and an older file there (``--overwrite``) is left as it was.

The kill is deterministic: the child runs the real command line with the file writer
(PIL's ``Image.save`` for deblur's PNGs, ``numpy.savez`` for the weights file) replaced by
one that writes half of the file's bytes to the path it was given, flushes them to disk and
SIGKILLs its own process. A last test kills a ``deblur`` of many images from outside, as
soon as its first output exists, and checks that every output then under its final name is
a complete image.
"""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from facedeblur_jax.core import sample_data
from tests import processes, zero_model

# The command line with the writer of argv[1] ("png" or "npz") dying half-way through.
DIE_MID_WRITE = """
import io, os, signal, sys
kind = sys.argv.pop(1)

def die_after_half(path_or_file, data):
    if hasattr(path_or_file, "write"):
        f = path_or_file
    else:
        f = open(path_or_file, "wb")
    f.write(data[: len(data) // 2])
    f.flush()
    os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

if kind == "png":
    from PIL import Image
    save = Image.Image.save
    def save_half(self, fp, format=None, **params):
        buf = io.BytesIO()
        save(self, buf, format=format or "PNG", **params)
        die_after_half(fp, buf.getvalue())
    Image.Image.save = save_half
else:
    import numpy as np
    savez = np.savez
    def savez_half(file, *args, **kwds):
        buf = io.BytesIO()
        savez(buf, *args, **kwds)
        die_after_half(file, buf.getvalue())
    np.savez = savez_half

from facedeblur_jax import cli
sys.exit(cli.main(sys.argv[1:]))
"""

OLD = b"the result of an earlier run"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupted")
    zero_model.zero_checkpoint(root / "ckpt")
    face = root / "face.png"
    face.write_bytes(sample_data.sample_faces("test")[0].path.read_bytes())
    return root


def _killed_mid_write(kind: str, args: list[str], cwd: pathlib.Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DIE_MID_WRITE, kind, *args],
        cwd=cwd,
        env=processes.child_env(1),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _visible(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


CASES = {
    "deblur": (
        "png",
        lambda root, out: [
            *["deblur", "--checkpoint", str(root / "ckpt"), str(root / "face.png")],
            *["--out", str(out), "--no-align"],
        ],
        "face.png",
    ),
    "export-weights": (
        "npz",
        lambda root, out: [
            *["export-weights", "--checkpoint", str(root / "ckpt")],
            *["--out", str(out / "model.npz")],
        ],
        "model.npz",
    ),
}


@pytest.mark.parametrize("command", CASES)
def test_a_write_killed_half_way_leaves_no_file_under_its_name(files, tmp_path, command):
    kind, argv, name = CASES[command]
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    old.mkdir()
    (old / name).write_bytes(OLD)
    children = [
        _killed_mid_write(kind, argv(files, fresh), tmp_path),
        _killed_mid_write(kind, [*argv(files, old), "--overwrite"], tmp_path),
    ]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == -signal.SIGKILL, err[-3000:]
    # A new output: nothing under its name (the half-written bytes are in a hidden
    # temporary file beside it, never renamed).
    assert _visible(fresh) == []
    hidden = [p for p in fresh.iterdir() if p.name.startswith(".tmp-")]
    assert hidden and all(p.stat().st_size > 0 for p in hidden)  # the kill was mid-write
    # --overwrite: the earlier file is still there, whole.
    assert _visible(old) == [name]
    assert (old / name).read_bytes() == OLD


def test_deblur_killed_from_outside_leaves_only_whole_images(files, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(40):
        (inputs / f"face{i:02d}.png").write_bytes((files / "face.png").read_bytes())
    out = tmp_path / "out"
    args = ["deblur", "--checkpoint", str(files / "ckpt"), str(inputs), "--out", str(out)]
    child = processes.start(
        [*args, "--no-align", "--batch-size", "4"], processes.child_env(1), tmp_path, "deblur"
    )
    deadline = time.monotonic() + 300
    while not (out.is_dir() and _visible(out)):
        assert child.proc.poll() is None, child.stderr[-3000:]
        assert time.monotonic() < deadline, "no output appeared"
        time.sleep(0.005)
    processes.kill_all([child])
    written = _visible(out)
    assert written
    for name in written:  # every file under a final name decodes to the whole image
        with Image.open(out / name) as im:
            im.load()
            assert im.size == (112, 112)
            assert np.asarray(im).shape == (112, 112, 3)
