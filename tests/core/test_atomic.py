"""atomic_write and the writers that use it: whole files, the umask's permissions, no
leftovers on failure."""

import os
import stat

import numpy as np
import pytest

from facedeblur_jax.core import imageio
from facedeblur_jax.core.atomic import atomic_write, current_umask
from facedeblur_jax.data.label_io import save_labels
from facedeblur_jax.degrade import kernel_bank


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_current_umask_reads_without_changing_it(umask):
    assert current_umask() == umask
    assert current_umask() == umask


def test_new_files_get_the_umask_permissions(tmp_path, umask):
    path = atomic_write(tmp_path / "sub" / "a.txt", lambda tmp: open(tmp, "w").write("x"))
    assert path.read_text() == "x"
    assert _mode(path) == 0o666 & ~umask  # mkstemp alone: 0o600 whatever the umask
    image = imageio.save_image(tmp_path / "a.png", np.zeros((4, 5, 3), np.uint8))
    labels = save_labels(tmp_path / "l.png", np.zeros((4, 5), np.uint8))
    bank = kernel_bank.save_bank(
        tmp_path / "k.npz", kernel_bank.make_bank(sizes=(3,), per_size=1, canvas=5, num_steps=50)
    )
    durable = atomic_write(
        tmp_path / "d.bin", lambda tmp: open(tmp, "wb").write(b"1"), durable=True
    )
    for written in (image, labels, bank, durable):
        assert _mode(written) == 0o666 & ~umask, written.name
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.png", "d.bin", "k.npz", "l.png", "sub"
    ]  # fmt: skip


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"old")

    def fails(tmp):
        open(tmp, "wb").write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fails)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_save_image_without_suffix_writes_png(tmp_path):
    path = imageio.save_image(tmp_path / "noext", np.full((3, 3, 3), 7, np.uint8))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (imageio.load_image(path) == 7).all()
