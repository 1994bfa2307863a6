"""``facedeblur deblur`` on photos of any size (detect, align, deblur, paste back) and on
aligned crops (``--no-align``), with the session's tiny checkpoint and an
untrained one (the exact identity: G_c's and G_f's last convs start at zero)."""

import os
import stat

import numpy as np
import pytest
from PIL import Image

from facedeblur_jax import cli
from facedeblur_jax.commands import deblur as deblur_command
from facedeblur_jax.core import imageio
from facedeblur_jax.faces import align as face_align
from facedeblur_jax.serving import photos as deblur_photos
from tests.faces.synthetic_photo import (
    background,
    photo_with_face,
    place_face,
    placement,
    sample_face,
)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    """The session's tiny checkpoint (32 px; G_c trained two steps): a real Orbax workdir."""
    return str(tiny_checkpoint)


@pytest.fixture(scope="module")
def identity_checkpoint(tmp_path_factory):
    """A real Orbax checkpoint of the untrained tiny model at 128 px (P's five max-pools need
    a multiple of 32; the bundled faces are 112 px): its output equals its input."""
    import jax

    from facedeblur_jax.config import load_config
    from facedeblur_jax.models.factory import build_discriminator, build_model
    from facedeblur_jax.state import checkpoint as ckpt_lib
    from facedeblur_jax.state.train_state import create_train_state

    config = load_config("tiny", {"image_size": 128})
    model, disc = build_model(config.model), build_discriminator(config.model)
    state = jax.jit(lambda key: create_train_state(config, model, disc, key))(jax.random.key(0))
    workdir = tmp_path_factory.mktemp("identity")
    checkpointer = ckpt_lib.Checkpointer(workdir, async_save=False)
    checkpointer.save(0, state, {"step": 0, "config": ckpt_lib.config_to_json(config)})
    checkpointer.close()
    return str(workdir)


def _deblur(*args) -> int:
    return cli.main(["deblur", "--checkpoint", *args])


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
    # Faces of 150-220 px in a 32-px model are large: pasted only with --large-faces paste.
    args = [checkpoint, str(src), "--out", str(out), "--large-faces", "paste"]
    assert _deblur(*args) == 0
    printed = capsys.readouterr().out
    assert "deblurred 4 face(s) in 2 image(s)" in printed
    assert printed.count("pasted back anyway, softer than the photo") == 4
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
    every = ("--max-downscale", "inf")  # the 32-px model: no face counts as large
    assert _deblur(checkpoint, str(src), "--out", str(out), *every) == 0
    printed = capsys.readouterr().out
    assert f"skip {src / 'wall.png'}: no face found" in printed
    assert "deblurred 1 face(s) in 1 image(s)" in printed and "skipped 1" in printed
    assert "warning" not in printed
    assert sorted(p.name for p in out.iterdir()) == ["face.png"]
    before = (out / "face.png").read_bytes()
    # Only the no-face image: nothing written, exit 1.
    assert _deblur(checkpoint, str(src / "wall.png"), "--out", str(out), *every) == 1
    assert _deblur(checkpoint, str(src), "--out", str(out), *every) == 1
    assert "would overwrite" in capsys.readouterr().out
    assert (out / "face.png").read_bytes() == before
    # Into the input folder: the input is never replaced without --overwrite.
    original = (src / "face.png").read_bytes()
    _deblur(checkpoint, str(src), "--out", str(src), *every)
    assert "it is an input" in capsys.readouterr().out
    assert (src / "face.png").read_bytes() == original
    rc = _deblur(checkpoint, str(src), "--out", str(out), "--overwrite", *every)
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
    printed = capsys.readouterr().out
    assert "deblurred 2 image(s)" in printed
    # 100 px on the longer side into the 32-px model and back: softer, and said so.
    assert f"warning: {src / 'crop.png'}: shrunk 3.1× to the model's 32 px" in printed
    assert imageio.load_image(out / "crop.png").shape == (90, 100, 3)
    result = imageio.load_image(out / "wall.png")
    assert result.shape == (50, 70, 3)
    assert np.abs(result.astype(int) - background(50, 70)).mean() > 0  # went through the model


BORDERS = {  # face centre (x, y) in a 300 × 400 photo: its crop runs off that edge
    "top": (200.0, 40.0),
    "bottom": (200.0, 265.0),
    "left": (45.0, 150.0),
    "right": (355.0, 150.0),
}


def _border_first(a: np.ndarray, border: str) -> np.ndarray:
    """``a[H, W, ...]`` turned so that the given border is row 0."""
    a = a if border in ("top", "bottom") else np.swapaxes(a, 0, 1)
    return a[::-1] if border in ("bottom", "right") else a


def test_faces_at_each_border_come_back_without_a_dark_edge(identity_checkpoint, tmp_path, capsys):
    # The identity model through the whole photo path (dlib, align, deblur, paste back): the
    # photo comes back up to resampling error, the edge rows and columns included. Measured
    # before the fix (zero-filled crops pasted at full weight): the two outermost rows or
    # columns under the face were 18-26 grey levels darker on average, up to 122-219; now
    # their mean change is within ±0.3 and the largest 13-28, no more than the 29-45 the
    # two resamplings cause inside the photo.
    src = tmp_path / "in"
    src.mkdir()
    photos = {}
    for border, centre in BORDERS.items():
        photos[border], to_crop = photo_with_face(scale=1.0, angle_deg=5.0, centre=centre)
        off = face_align.inside_mask(to_crop, 112, photos[border].shape[:2]) == 0
        assert off.mean() > 0.01, border  # the face's crop does run off the photo
        imageio.save_image(src / f"{border}.png", photos[border])
    out = tmp_path / "out"
    old = os.umask(0o027)
    try:
        assert _deblur(identity_checkpoint, str(src), "--out", str(out)) == 0
    finally:
        os.umask(old)
    printed = capsys.readouterr().out
    assert "deblurred 4 face(s) in 4 image(s)" in printed and "warning" not in printed
    for border, photo in photos.items():
        result = imageio.load_image(out / f"{border}.png")
        assert stat.S_IMODE(os.stat(out / f"{border}.png").st_mode) == 0o640  # umask 027
        change = _border_first(result.astype(int) - photo, border)
        under_face = np.abs(change[:40]).max(axis=(0, 2)) > 0  # columns the paste reached
        assert under_face.sum() > 40, border
        edge = change[:2, under_face]
        assert abs(edge.mean()) <= 1.0, (border, edge.mean())  # no darkening
        assert np.abs(edge).max() < 60, (border, np.abs(edge).max())
        assert np.abs(change).max() < 60, border


def test_large_faces_warn_and_are_kept_apart(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    photo, _ = photo_with_face(240, 320, scale=1.2, angle_deg=0.0, centre=(160.0, 120.0))
    imageio.save_image(src / "big.png", photo)
    # The face's 112-px crop at scale 1.2 is ~134 px: ~4.2× the tiny model's 32 px.
    out = tmp_path / "out"
    assert _deblur(checkpoint, str(src), "--out", str(out)) == 0  # default: --large-faces crop
    printed = capsys.readouterr().out
    factor = deblur_photos.downscale_factor(
        deblur_photos.alignment(deblur_photos.find_faces(photo)[0], 32)
    )
    assert 3.5 < factor < 5
    assert (
        f"warning: {src / 'big.png'}: face 1 is shrunk {factor:.1f}× (a {32 * factor:.0f}-px "
        "crop to the model's 32 px, more than --max-downscale 2); pasted back it would be "
        "softer than the photo, so the photo keeps it as it was; its deblurred 32-px crop "
        "goes to big_face1.png"
    ) in printed
    assert (
        "deblurred 0 face(s) in 0 image(s) into " + str(out) + "; 1 large face(s) left as they "
        "were in the photo, only the deblurred 32-px crop written for each (big_face1.png); "
        "skipped 0"
    ) in printed
    assert sorted(p.name for p in out.iterdir()) == ["big_face1.png"]  # no copy of the photo
    assert imageio.load_image(out / "big_face1.png").shape == (32, 32, 3)
    # keep: nothing to write, so the image counts as skipped and the new folder goes away.
    kept = tmp_path / "kept"
    assert _deblur(checkpoint, str(src), "--out", str(kept), "--large-faces", "keep") == 1
    printed = capsys.readouterr().out
    assert "so the photo keeps it as it was (--large-faces keep)" in printed
    assert "skip" in printed and not kept.exists()
    # A larger threshold: not large any more, pasted without a warning.
    pasted = tmp_path / "pasted"
    assert _deblur(checkpoint, str(src), "--out", str(pasted), "--max-downscale", "5") == 0
    printed = capsys.readouterr().out
    assert "warning" not in printed and "deblurred 1 face(s) in 1 image(s)" in printed
    assert sorted(p.name for p in pasted.iterdir()) == ["big.png"]
    # Bad values: one line naming the option, nothing written.
    bad = tmp_path / "bad"
    assert _deblur(checkpoint, str(src), "--out", str(bad), "--max-downscale", "0.5") == 2
    assert "--max-downscale must be at least 1" in capsys.readouterr().err
    assert not bad.exists()


def test_a_run_that_writes_nothing_removes_only_the_folder_it_made(checkpoint, tmp_path):
    wall = tmp_path / "wall.png"
    imageio.save_image(wall, background(120, 160))
    made = tmp_path / "new" / "deeper"
    assert _deblur(checkpoint, str(wall), "--out", str(made)) == 1
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    assert _deblur(checkpoint, str(wall), "--out", str(existing / "sub")) == 1
    assert existing.is_dir() and not any(existing.iterdir())
    assert _deblur(checkpoint, str(wall), "--out", str(existing)) == 1
    assert existing.is_dir()


def test_cli_defaults_are_the_modules():
    parser = deblur_command.build_parser()
    args = parser.parse_args(["--checkpoint", "c", "x", "--out", "o"])
    assert args.max_downscale == deblur_photos.MAX_DOWNSCALE
    assert args.large_faces == deblur_photos.LARGE_FACES
    for policy in deblur_photos.LARGE_FACE_POLICIES:
        argv = ["--checkpoint", "c", "x", "--out", "o", "--large-faces", policy]
        assert parser.parse_args(argv).large_faces == policy


def test_without_checkpoint_the_bundled_model_is_used_and_named(
    checkpoint, tiny_weights_file, tmp_path, capsys, monkeypatch
):
    from facedeblur_jax.serving import loading as inference

    src = tmp_path / "in"
    src.mkdir()
    imageio.save_image(src / "crop.png", imageio.resize_hw(sample_face(2), 48, 40))
    monkeypatch.setattr(inference, "BUNDLED_MODEL", tiny_weights_file)
    assert inference.bundled_model_path() == tiny_weights_file
    assert cli.main(["deblur", str(src), "--out", str(tmp_path / "bundled"), "--no-align"]) == 0
    printed = capsys.readouterr().out.splitlines()
    card = inference.PRETRAINED_DIR / "README.md"
    assert printed[0] == (
        f"using the bundled model 'tiny' (the bundled sample faces; 32 px; step 2); see {card}"
    )
    assert card.is_file()
    # The same pixels as the Orbax checkpoint the file was exported from.
    assert _deblur(checkpoint, str(src), "--out", str(tmp_path / "orbax"), "--no-align") == 0
    assert "bundled" not in capsys.readouterr().out
    bundled = imageio.load_image(tmp_path / "bundled" / "crop.png")
    np.testing.assert_array_equal(bundled, imageio.load_image(tmp_path / "orbax" / "crop.png"))
    assert np.abs(bundled.astype(int) - imageio.load_image(src / "crop.png")).mean() > 0

    # A package without a bundled model: one line saying to pass --checkpoint, nothing made.
    absent = tmp_path / "pretrained" / "absent.npz"
    monkeypatch.setattr(inference, "BUNDLED_MODEL", absent)
    assert inference.bundled_model_path() is None
    assert cli.main(["deblur", str(src), "--out", str(tmp_path / "none"), "--no-align"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("facedeblur deblur: error: no model is bundled")
    assert f"({absent} is missing): pass --checkpoint" in err
    assert not (tmp_path / "none").exists()


def test_resize_hw_float_is_resize_hws_filter_without_rounding():
    face = imageio.resize(sample_face(0), 32)
    for hw in ((90, 100), (20, 24)):
        exact = imageio.resize_hw_float(face.astype(np.float32), *hw)
        assert exact.dtype == np.float32 and exact.shape == (*hw, 3)
        # resize_hw rounds and clips to 8 bits after each pass: apart by 0.3 levels on
        # average, a few at the face's black border where the filter overshoots.
        diff = np.abs(imageio.resize_hw(face, *hw).astype(float) - np.clip(exact, 0, 255))
        assert diff.mean() < 0.5 and diff.max() < 10
    # Linear, signed values kept: what the residual path enlarges is a difference.
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(
        imageio.resize_hw_float(a - b, 70, 60),
        imageio.resize_hw_float(a, 70, 60) - imageio.resize_hw_float(b, 70, 60),
        atol=1e-5,
    )
    const = imageio.resize_hw_float(np.full((32, 32, 3), -0.25, np.float32), 50, 50)
    np.testing.assert_allclose(const, -0.25, atol=1e-6)


def test_back_to_size_residual_is_the_original_plus_the_enlarged_correction():
    image = imageio.resize_hw(sample_face(1), 90, 100)  # larger than a 32-px model
    x = deblur_photos.model_inputs([image], 32)[0]
    assert x.shape == (32, 32, 3) and x.dtype == np.uint8
    rng = np.random.default_rng(0)
    y = np.clip(x / 255.0 + rng.normal(0, 0.05, x.shape), 0, 1).astype(np.float32)
    correction = y - x.astype(np.float32) / 255.0
    enlarged = imageio.resize_hw_float(correction, 90, 100)
    want = np.clip(np.round((image / 255.0 + enlarged) * 255), 0, 255)
    got = deblur_photos.back_to_size(image, x, y, "residual")
    assert got.shape == image.shape and got.dtype == np.uint8
    assert np.abs(got.astype(float) - want).max() <= 1  # float32 vs float64 rounding
    # "output": the model's output enlarged, the input's own pixels gone.
    np.testing.assert_array_equal(
        deblur_photos.back_to_size(image, x, y, "output"),
        imageio.resize_hw(imageio.to_uint8(y), 90, 100),
    )
    # A model that changes nothing: "residual" returns the original exactly, "output" a
    # copy that went through 32 px and back.
    unchanged = x.astype(np.float32) / 255.0
    np.testing.assert_array_equal(
        deblur_photos.back_to_size(image, x, unchanged, "residual"), image
    )
    soft = deblur_photos.back_to_size(image, x, unchanged, "output")
    assert np.abs(soft.astype(int) - image).mean() > 3
    # Not larger than the model's input: both the same.
    small = imageio.resize_hw(sample_face(1), 30, 24)
    xs = deblur_photos.model_inputs([small], 32)[0]
    ys = np.clip(xs / 255.0 + 0.1, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(
        deblur_photos.back_to_size(small, xs, ys, "residual"),
        deblur_photos.back_to_size(small, xs, ys, "output"),
    )


def test_resample_option_reaches_run(monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(deblur_photos, "run", lambda *a, **kw: seen.update(kw) or 0)
    argv = ["deblur", "--checkpoint", "c", "x", "--out", "o"]
    assert cli.main(argv) == 0 and seen["resample"] == deblur_photos.RESAMPLE
    for mode in deblur_photos.RESAMPLE_MODES:
        assert cli.main([*argv, "--resample", mode]) == 0 and seen["resample"] == mode
    with pytest.raises(SystemExit):
        cli.main([*argv, "--resample", "bicubic"])
    assert "invalid choice: 'bicubic'" in capsys.readouterr().err
    assert "--resample" in deblur_command.build_parser().format_help()


def test_resample_residual_returns_an_unchanged_face_exactly(identity_checkpoint, tmp_path):
    # The identity model (128 px): a face larger than 128 px comes back bit for bit with
    # --resample residual, and resampled (softer) with output; --no-align and photos alike.
    src = tmp_path / "in"
    src.mkdir()
    crop = np.repeat(np.repeat(sample_face(2), 2, 0), 2, 1)[:200, :180]  # sharp 2×2 blocks
    imageio.save_image(src / "crop.png", crop)
    photo, _ = photo_with_face(300, 400, scale=1.6, angle_deg=5.0, centre=(200.0, 150.0))
    imageio.save_image(src / "photo.png", photo)
    every = ("--max-downscale", "inf")
    results = {}
    for mode in deblur_photos.RESAMPLE_MODES:
        out = tmp_path / mode
        crop_args = [str(src / "crop.png"), "--out", str(out / "a"), "--no-align"]
        assert _deblur(identity_checkpoint, *crop_args, "--resample", mode) == 0
        photo_args = [str(src / "photo.png"), "--out", str(out / "p"), *every]
        assert _deblur(identity_checkpoint, *photo_args, "--resample", mode) == 0
        results[mode] = (
            imageio.load_image(out / "a" / "crop.png"),
            imageio.load_image(out / "p" / "photo.png"),
        )
    np.testing.assert_array_equal(results["residual"][0], crop)
    np.testing.assert_array_equal(results["residual"][1], photo)
    assert np.abs(results["output"][0].astype(int) - crop).mean() > 2
    changed = np.any(results["output"][1] != photo, axis=-1)
    assert changed.sum() > 2000  # the face went through the model's 128 px and back
    found = deblur_photos.find_faces(photo)[0]
    assert deblur_photos.downscale_factor(deblur_photos.alignment(found, 128)) > 1.2
