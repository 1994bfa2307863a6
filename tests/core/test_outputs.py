"""core.outputs: where a command will write, checked before any work, leaving nothing."""

from __future__ import annotations

import pytest

from facedeblur_jax.core import errors, outputs


def test_output_folder_is_made_checked_and_taken_back(tmp_path):
    folder, created = outputs.prepare_output_folder(tmp_path / "a" / "b")
    assert folder.is_dir() and created == [tmp_path / "a", tmp_path / "a" / "b"]
    assert list(folder.iterdir()) == []  # the write test left nothing
    outputs.remove_created(created)
    assert not (tmp_path / "a").exists()
    # A folder that got a file stays, with everything above it.
    folder, created = outputs.prepare_output_folder(tmp_path / "a" / "b")
    (folder / "x.png").write_bytes(b"x")
    outputs.remove_created(created)
    assert (folder / "x.png").is_file()
    # An existing folder: nothing created, nothing to take back.
    assert outputs.prepare_output_folder(tmp_path)[1] == []


def test_a_file_where_a_folder_is_wanted_is_one_line(tmp_path):
    (tmp_path / "out.png").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"--out .*out\.png is a file, not a folder: name a"):
        outputs.prepare_output_folder(tmp_path / "out.png")
    with pytest.raises(ValueError, match=r"out\.png is a file, not a folder"):
        outputs.prepare_output_folder(tmp_path / "out.png" / "sub")
    with pytest.raises(ValueError, match=r"--workdir .*out\.png is a file, not a folder"):
        outputs.check_output_folder(tmp_path / "out.png", flag="--workdir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_output_file_checks_create_nothing(tmp_path):
    assert outputs.check_output_file(tmp_path / "new" / "m.npz", overwrite=False)
    assert not (tmp_path / "new").exists()
    (tmp_path / "m.npz").write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"m\.npz exists; pass --overwrite"):
        outputs.check_output_file(tmp_path / "m.npz", overwrite=False)
    outputs.check_output_file(tmp_path / "m.npz", overwrite=True)
    with pytest.raises(ValueError, match=r"is a folder; name the file to write"):
        outputs.check_output_file(tmp_path, overwrite=True)
    with pytest.raises(NotADirectoryError, match=r"m\.npz is a file, not a folder"):
        outputs.check_output_file(tmp_path / "m.npz" / "x.npz", overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_system_errors_read_as_file_and_reason():
    e = PermissionError(13, "Permission denied", "/data/out/x.png")
    assert errors.one_line(e) == "/data/out/x.png: Permission denied"
    assert errors.one_line(ValueError("two\nlines")) == "two lines"
    assert errors.one_line(FileNotFoundError("input 'a.png' does not exist")) == (
        "input 'a.png' does not exist"
    )
