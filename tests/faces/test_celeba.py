"""faces.celeba: CelebA's photos aligned with dlib (the main face; the annotated frame)."""

from __future__ import annotations

import numpy as np
import pytest

from facedeblur_jax.core import imageio
from facedeblur_jax.faces import align as fa
from facedeblur_jax.faces import celeba as face_celeba
from tests.data import celeba_tree
from tests.faces.synthetic_photo import placement, sample_face


def test_align_wild_maps_the_placed_face_onto_the_template():
    _, scale, angle, centre = celeba_tree.GOOD_FACE
    photo = celeba_tree.photo([celeba_tree.GOOD_FACE])
    face = face_celeba.align_wild(photo, 128)
    assert face.crop.shape == (128, 128, 3) and face.crop.dtype == np.uint8
    assert face.landmarks.shape == (68, 2) and face.detected
    # The face was placed with its 112-px crop's template points at known photo positions.
    placed = fa.apply_affine(placement(scale, angle, centre), fa.template(112))
    error = np.abs(fa.apply_affine(face.transform, placed) - fa.template(128))
    assert error.max() < 2.5, error
    # The crop shows the placed face (inside the placement ellipse), not another one: the
    # bundled faces deviate from the mean template by a pixel or two, hence the margin.
    inner = (slice(30, 110), slice(30, 98))
    diffs = [
        np.abs(face.crop.astype(int) - imageio.resize(sample_face(i), 128))[inner].mean()
        for i in range(10)
    ]
    assert diffs[2] < 12 and diffs[2] < 0.3 * min(diffs[:2] + diffs[3:]), diffs


@pytest.mark.parametrize("reason", list(celeba_tree.FAILING_PHOTOS))
def test_align_wild_reports_why_a_photo_fails(reason):
    with pytest.raises(face_celeba.AlignmentError) as info:
        face_celeba.align_wild(celeba_tree.photo(celeba_tree.FAILING_PHOTOS[reason]), 128)
    assert info.value.reason == reason and info.value.reason in face_celeba.REASONS
    assert str(info.value).startswith(reason)


def test_implausible_landmarks_and_degenerate_transforms_are_reasons(monkeypatch):
    m = face_celeba._checked_transform(fa.template(112) * 2 + 40, 128, (400, 400))
    assert m.shape == (2, 3)
    with pytest.raises(face_celeba.AlignmentError) as info:
        face_celeba._checked_transform(np.ones((5, 2)), 128, (400, 400))
    assert info.value.reason == "degenerate transform"
    from facedeblur_jax.faces import pseudo_labels

    monkeypatch.setattr(pseudo_labels, "landmark_problems", lambda p, s: ["eye line rolled 90°"])
    with pytest.raises(face_celeba.AlignmentError, match="implausible landmarks: eye line rolled"):
        face_celeba.align_wild(celeba_tree.photo([celeba_tree.GOOD_FACE]), 128)


def test_align_aligned_uses_the_five_annotated_points():
    image, points = celeba_tree.aligned_image(3)
    assert image.shape == (218, 178, 3)
    face = face_celeba.align_aligned(image, points, 64)
    np.testing.assert_allclose(fa.apply_affine(face.transform, points), fa.template(64), atol=1e-6)
    # The crop is the bundled face again, at 64 px (two resamplings apart).
    expected = imageio.resize(sample_face(3), 64)
    inner = (slice(8, 56), slice(8, 56))
    assert np.abs(face.crop.astype(int) - expected)[inner].mean() < 4
    assert face.landmarks.shape == (68, 2)
    with pytest.raises(face_celeba.AlignmentError, match="wrong image size: 177×218"):
        face_celeba.align_aligned(image[:, :177], points, 64)
    with pytest.raises(face_celeba.AlignmentError) as info:
        face_celeba.align_aligned(image, points + np.array([150.0, 0.0]), 64)
    assert info.value.reason == "crop off the photo"
