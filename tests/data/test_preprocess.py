"""Resize / centre-crop geometry; labels stay aligned and keep only existing classes."""

import numpy as np
import pytest

from facedeblur_jax.data import preprocess


@pytest.mark.parametrize(
    ("hw", "size", "expected"),
    [
        ((112, 112), 128, (128, 128, 0, 0)),
        ((112, 112), 32, (32, 32, 0, 0)),
        ((100, 50), 32, (64, 32, 16, 0)),  # tall: short side (width) → 32
        ((40, 80), 20, (20, 40, 0, 10)),
    ],
)
def test_target_geometry_crop(hw, size, expected):
    assert preprocess.target_geometry(hw, size, "crop") == expected


def test_faces_resize_to_every_working_size():
    face = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    labels = np.random.default_rng(1).integers(0, 11, (112, 112), dtype=np.uint8)
    for size in (32, 64, 128):
        ex = preprocess.to_example({"image": face, "labels": labels, "name": "x"}, size)
        assert ex["image"].shape == (size, size, 3) and ex["image"].dtype == np.uint8
        assert ex["labels"].shape == (size, size) and ex["labels"].dtype == np.uint8
        assert set(np.unique(ex["labels"])) <= set(np.unique(labels))  # nearest: no blends
        assert bool(ex["has_labels"])


def test_crop_keeps_image_and_labels_aligned():
    # A 60×120 image whose left and right halves differ; labels mark the same halves.
    image = np.zeros((60, 120, 3), np.uint8)
    image[:, 60:] = 255
    labels = (image[..., 0] > 0).astype(np.uint8) * 7
    ex = preprocess.to_example({"image": image, "labels": labels, "name": "x"}, 30)
    # The centre crop is the middle 60 px of the 120 px width: the boundary is centred.
    assert ex["image"][:, :12].max() < 10 and ex["image"][:, 18:].min() > 245  # Lanczos ringing
    bright = ex["image"][..., 0] > 127
    np.testing.assert_array_equal(ex["labels"] == 7, bright)


def test_stretch_changes_aspect_without_crop():
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :10] = 200  # the left quarter
    out = preprocess.fit_image(image, 16, "stretch")
    assert out.shape == (16, 16, 3)
    assert out[:, 1, 0].min() > 150 and out[:, 8, 0].max() < 50


def test_missing_labels_become_zeros_with_flag_and_eval_fields():
    face = np.full((24, 20, 3), 9, np.uint8)
    ex = preprocess.to_eval_example({"image": face, "name": "a/b"}, 16)
    assert not ex["has_labels"] and (ex["labels"] == 0).all()
    assert ex["identity"] == -1 and ex["name"] == "a/b" and ex["valid"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="resize policy"):
        preprocess.target_geometry((4, 4), 2, "pad")
    with pytest.raises(ValueError, match=r"uint8\[H, W, 3\]"):
        preprocess.fit_image(np.zeros((4, 4), np.uint8), 2)
    with pytest.raises(ValueError, match="do not match"):
        preprocess.to_example(
            {"image": np.zeros((4, 4, 3), np.uint8), "labels": np.zeros((2, 2), np.uint8)}, 2
        )
