import numpy as np
import pytest

from facedeblur_jax import imageio, sample_data
from facedeblur_jax.faces import align as fa
from facedeblur_jax.faces import landmarks as lm
from tests.faces.synthetic_photo import background, photo_with_face, sample_face


def _similarity(scale, angle_deg, shift):
    a = np.deg2rad(angle_deg)
    linear = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.concatenate([linear, np.asarray(shift, float)[:, None]], axis=1)


def test_estimate_similarity_recovers_a_known_transform_and_round_trips():
    m = _similarity(0.37, -23.0, (12.5, -40.0))
    src = np.random.default_rng(0).uniform(0, 500, (5, 2))
    dst = fa.apply_affine(m, src)
    np.testing.assert_allclose(fa.estimate_similarity(src, dst), m, atol=1e-9)
    # Template points of a 64-px crop -> photo -> back.
    to_photo = fa.invert_affine(m)
    photo_points = fa.apply_affine(to_photo, fa.template(64))
    back = fa.estimate_similarity(photo_points, fa.template(64))
    np.testing.assert_allclose(fa.apply_affine(back, photo_points), fa.template(64), atol=1e-9)
    np.testing.assert_allclose(fa.invert_affine(to_photo), m, atol=1e-12)
    assert fa.affine_scale(m) == pytest.approx(0.37)


def test_estimate_similarity_never_reflects_and_fits_noisy_points():
    src = fa.template(112)
    mirrored = src * [-1, 1]
    assert np.linalg.det(fa.estimate_similarity(src, mirrored)[:, :2]) > 0
    noisy = src + np.random.default_rng(1).normal(0, 1.0, src.shape)
    m = fa.estimate_similarity(noisy, src)
    assert np.abs(fa.apply_affine(m, noisy) - src).mean() < 2.0
    with pytest.raises(ValueError, match="coincide"):
        fa.estimate_similarity(np.ones((5, 2)), src)


def test_template_scales_with_pixel_centres():
    # (x + 0.5) / S is the same point at every size.
    np.testing.assert_allclose((fa.template(64) + 0.5) / 64, (fa.template(128) + 0.5) / 128)
    left_eye, right_eye, nose, mouth_l, mouth_r = fa.template(112)
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_l[0] < mouth_r[0]
    assert left_eye[1] < nose[1] < mouth_l[1]


def test_template_is_the_mean_of_the_bundled_faces():
    # The held-back 40 only (the constant is the mean over all 190 detected of 200).
    points = []
    for face in sample_data.sample_faces("test"):
        found, detected = lm.landmarks(imageio.load_image(face.path))
        if detected:
            points.append((fa.five_points(found) + 0.5) / 112)
    assert len(points) >= 35
    mean = np.mean(points, axis=0)
    assert np.abs(mean - fa.TEMPLATE_5).max() < 0.015  # < 1.7 px at 112 px


def test_feather_mask():
    mask = fa.feather_mask(64)
    assert mask.shape == (64, 64) and mask.dtype == np.float32
    assert mask[0, 0] < 0.01 and mask[0, 32] < 0.05 and mask[32, 32] == 1.0
    np.testing.assert_allclose(mask, mask.T)
    np.testing.assert_allclose(mask, mask[::-1, ::-1])
    row = mask[32, :32]
    assert (np.diff(row) >= 0).all()


def test_align_crop_recovers_the_placed_face():
    photo, to_crop = photo_with_face(scale=1.4, angle_deg=12.0)
    crop = fa.align_crop(photo, to_crop, 112)
    face = sample_face(2)
    inner = (slice(25, 100), slice(25, 87))  # inside the placement ellipse
    diff = np.abs(crop.astype(int) - face)[inner]
    assert diff.mean() < 3.0
    # The background elsewhere is not a face: the corners differ.
    assert np.abs(crop.astype(int) - face)[:8, :8].mean() > 10


def test_align_crop_antialiases_when_shrinking():
    stripes = np.zeros((400, 400, 3), np.uint8)
    stripes[:, ::2] = 255  # 1-px stripes: aliases to bands if sampled without filtering
    crop = fa.align_crop(stripes, _similarity(0.25, 7.0, (-20, -20)), 64)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert abs(float(crop.mean()) - 127.5) < 6 and crop.std() < 6
    # Without the Gaussian (plain bilinear warp) the same transform is far from uniform.
    plain = fa.warp_affine(stripes, _similarity(0.25, 7.0, (-20, -20)), (64, 64))
    assert plain.std() > 30


def test_paste_back_of_an_unchanged_crop_reproduces_the_photo():
    photo, to_crop = photo_with_face(scale=1.0, angle_deg=15.0)
    crop = fa.align_crop(photo, to_crop, 112)
    out = fa.paste_back(photo, crop, to_crop)
    assert out.shape == photo.shape and out.dtype == np.uint8
    weight = fa.warp_affine(fa.feather_mask(112), fa.invert_affine(to_crop), photo.shape[:2])
    diff = np.abs(out.astype(int) - photo)
    assert (diff[weight == 0] == 0).all()  # outside the crop: bit for bit
    assert diff[weight > 0.99].mean() < 4.0  # inside: two bilinear resamplings
    # A float crop in [0, 1] is taken the same way.
    out_f = fa.paste_back(photo, crop.astype(np.float32) / 255, to_crop)
    assert np.abs(out_f.astype(int) - out).max() <= 1


def test_paste_back_blends_only_inside_the_footprint():
    photo = background(120, 160)
    to_photo = _similarity(2.0, 30.0, (140.0, -20.0))  # a 32-px crop, partly off the photo
    to_crop = fa.invert_affine(to_photo)
    white = np.full((32, 32, 3), 255, np.uint8)
    out = fa.paste_back(photo, white, to_crop)
    weight = fa.warp_affine(fa.feather_mask(32), to_photo, photo.shape[:2])
    changed = np.any(out != photo, axis=-1)
    assert changed.sum() > 500
    assert not changed[weight == 0].any()
    x, y = np.round(fa.apply_affine(to_photo, [15.5, 15.5])).astype(int)
    assert (out[y, x] == 255).all()  # full weight at the crop's centre
    far = fa.invert_affine(_similarity(1.0, 0.0, (500.0, 500.0)))  # entirely off the photo
    np.testing.assert_array_equal(fa.paste_back(photo, white, far), photo)
