"""``facedeblur deblur`` on photos of any size (detect, align, deblur, paste back) and on
aligned crops (``--no-align``), with a tiny checkpoint trained once for the module."""

import numpy as np
import pytest
from PIL import Image

from facedeblur_jax import cli, imageio
from facedeblur_jax.faces import align as face_align
from facedeblur_jax.faces import deblur_photos
from tests.faces.synthetic_photo import (
    background,
    photo_with_face,
    place_face,
    placement,
    sample_face,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The tiny config (32 px), one step per phase: a real checkpoint in ~30 s on a CPU."""
    from facedeblur_jax.config import load_config
    from facedeblur_jax.train import train

    steps = {f"phases.{p}.steps": 1 for p in ("coarse", "parsing", "fine", "joint")}
    workdir = tmp_path_factory.mktemp("tiny")
    train(load_config("tiny", {**steps, "train.checkpoint_every": 4}), workdir, progress=False)
    return str(workdir)


def _footprint(to_crop: np.ndarray, size: int, shape) -> np.ndarray:
    """bool[H, W]: photo pixels a paste-back of a ``size`` crop may change."""
    weight = face_align.warp_affine(np.ones((size, size)), face_align.invert_affine(to_crop), shape)
    return weight > 0


def test_find_faces_and_alignment_match_the_placement():
    photo, to_crop = photo_with_face(scale=1.4, angle_deg=12.0)
    faces = deblur_photos.find_faces(photo)
    assert len(faces) == 1 and faces[0].shape == (68, 2)
    found = deblur_photos.alignment(faces[0], 112)
    # The crop's corners land within a few pixels of where the face was placed (the
    # template is a mean face; this face's landmarks differ from it by ~3 px).
    corners = np.array([[0, 0], [111, 0], [111, 111], [0, 111]], float)
    inv = face_align.invert_affine
    err = np.abs(
        face_align.apply_affine(inv(found), corners)
        - face_align.apply_affine(inv(to_crop), corners)
    )
    assert err.max() < 10
    assert deblur_photos.find_faces(background(300, 400)) == []


def test_photo_is_deblurred_in_place_and_keeps_its_size(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    photo, _ = photo_with_face(300, 400, scale=1.4, angle_deg=12.0, centre=(230.0, 140.0))
    second = placement(1.0, -5.0, (90.0, 200.0))  # a smaller second face, lower left
    photo = place_face(photo, sample_face(3), second)
    imageio.save_image(src / "group.jpg.png", photo)  # odd name: the stem keeps ".jpg"
    Image.fromarray(photo).save(src / "plain.jpg", quality=95)
    out = tmp_path / "out"
    assert cli.main(["deblur", "--checkpoint", checkpoint, str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "deblurred 4 face(s) in 2 image(s)" in printed
    result = imageio.load_image(out / "group.jpg.png")
    assert result.shape == photo.shape
    # Only pixels inside the two faces' crop footprints change.
    near = np.zeros(photo.shape[:2], bool)
    for points in deblur_photos.find_faces(photo):
        near |= _footprint(deblur_photos.alignment(points, 32), 32, photo.shape[:2])
    changed = np.any(result != photo, axis=-1)
    assert changed.sum() > 2000
    assert not changed[~near].any()
    assert near.mean() < 0.5
    assert (out / "plain.png").is_file()


def test_no_face_is_skipped_and_outputs_are_never_overwritten(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    imageio.save_image(src / "wall.png", background(200, 260))
    photo, _ = photo_with_face(240, 320, scale=1.2, angle_deg=0.0, centre=(160.0, 120.0))
    imageio.save_image(src / "face.png", photo)
    out = tmp_path / "out"
    assert cli.main(["deblur", "--checkpoint", checkpoint, str(src), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"skip {src / 'wall.png'}: no face found" in printed
    assert "deblurred 1 face(s) in 1 image(s)" in printed and "skipped 1" in printed
    assert sorted(p.name for p in out.iterdir()) == ["face.png"]
    before = (out / "face.png").read_bytes()
    # Only the no-face image: nothing written, exit 1.
    rc = cli.main(["deblur", "--checkpoint", checkpoint, str(src / "wall.png"), "--out", str(out)])
    assert rc == 1
    assert cli.main(["deblur", "--checkpoint", checkpoint, str(src), "--out", str(out)]) == 1
    assert "would overwrite" in capsys.readouterr().out
    assert (out / "face.png").read_bytes() == before
    # Into the input folder: the input is never replaced without --overwrite.
    original = (src / "face.png").read_bytes()
    cli.main(["deblur", "--checkpoint", checkpoint, str(src), "--out", str(src)])
    assert "it is an input" in capsys.readouterr().out
    assert (src / "face.png").read_bytes() == original
    rc = cli.main(
        ["deblur", "--checkpoint", checkpoint, str(src), "--out", str(out), "--overwrite"]
    )
    assert rc == 0 and "skip" in capsys.readouterr().out  # wall.png still has no face


def test_no_align_resizes_whole_images(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    crop = imageio.resize_hw(sample_face(1), 90, 100)
    imageio.save_image(src / "crop.png", crop)
    imageio.save_image(src / "wall.png", background(50, 70))  # no face: fine without alignment
    out = tmp_path / "out"
    rc = cli.main(["deblur", "--checkpoint", checkpoint, str(src), "--out", str(out), "--no-align"])
    assert rc == 0
    assert "deblurred 2 image(s)" in capsys.readouterr().out
    assert imageio.load_image(out / "crop.png").shape == (90, 100, 3)
    result = imageio.load_image(out / "wall.png")
    assert result.shape == (50, 70, 3)
    assert np.abs(result.astype(int) - background(50, 70)).mean() > 0  # went through the model
