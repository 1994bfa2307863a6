import numpy as np
import pytest

from facedeblur_jax.core import imageio, sample_data
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


BORDERS = {  # crop centre (x, y) on a 120 × 160 photo: the crop runs off that edge
    "top": (80.0, 5.0),
    "bottom": (80.0, 114.0),
    "left": (4.0, 60.0),
    "right": (155.0, 60.0),
    "corner": (3.0, 2.0),
}


def _off_photo(m, size, shape):
    """bool[size, size]: crop pixels whose source point lies outside the photo's pixel area."""
    gy, gx = np.mgrid[0:size, 0:size]
    x, y = np.moveaxis(fa.apply_affine(fa.invert_affine(m), np.stack([gx, gy], -1)), -1, 0)
    h, w = shape
    return (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)


def _crop_at(centre, crop_to_photo_scale, size=48, angle_deg=17.0):
    """``f64[2, 3]`` from the photo to a ``size`` crop centred on ``centre``."""
    to_photo = _similarity(crop_to_photo_scale, angle_deg, (0.0, 0.0))
    to_photo[:, 2] = np.asarray(centre) - to_photo[:, :2] @ np.full(2, (size - 1) / 2)
    return fa.invert_affine(to_photo)


@pytest.mark.parametrize("border", sorted(BORDERS))
@pytest.mark.parametrize("scale", [0.7, 1.6, 2.5])
def test_a_crop_off_the_photo_round_trips_at_every_border(border, scale):
    # A smooth photo: crop + paste-back of an unchanged crop (an identity model) must give
    # the photo back within resampling error everywhere, the edge rows included. With the
    # crop's off-photo part zero-filled, the edge rows came back up to ~150 levels darker.
    photo = background(120, 160)
    m = _crop_at(BORDERS[border], scale)
    assert 0.05 < _off_photo(m, 48, photo.shape[:2]).mean() < 0.8  # the crop runs off
    crop = fa.align_crop(photo, m, 48)
    out = fa.paste_back(photo, crop, m)
    diff = np.abs(out.astype(int) - photo)
    assert diff.max() <= 2, diff.max()
    changed = fa.warp_affine(fa.feather_mask(48), fa.invert_affine(m), photo.shape[:2]) > 0.5
    assert changed.sum() > 300  # the paste did cover a real area


def test_align_crop_pads_by_edge_replication():
    photo = background(120, 160)
    m = _crop_at(BORDERS["corner"], 1.0, angle_deg=0.0)
    crop = fa.align_crop(photo, m, 48)
    # Crop pixel (i, j) comes from photo point (j - 20.5, i - 21.5): the corner pixel repeated
    # up and left of the photo, its top row repeated above it.
    np.testing.assert_allclose(fa.apply_affine(fa.invert_affine(m), [0, 0]), [-20.5, -21.5])
    assert (crop[:22, :21] == photo[0, 0]).all()
    expected = (photo[0, 9].astype(float) + photo[0, 10]) / 2  # x = 9.5 on the top row
    assert np.abs(crop[:22, 30] - expected).max() <= 0.5


def test_paste_back_ignores_what_the_model_made_of_the_padding():
    # Whatever the model answers where the crop lay beyond the photo (here: black, or white)
    # never reaches the photo, not even through interpolation at its edge.
    photo = background(120, 160)
    for border, centre in BORDERS.items():
        m = _crop_at(centre, 1.3)
        crop = fa.align_crop(photo, m, 48)
        outside = _off_photo(m, 48, photo.shape[:2])
        np.testing.assert_array_equal(fa.inside_mask(m, 48, photo.shape[:2]) == 0, outside)
        for value in (0, 255):
            restored = crop.copy()
            restored[outside] = value
            out = fa.paste_back(photo, restored, m)
            assert np.abs(out.astype(int) - photo).max() <= 2, (border, value)


def test_add_correction_adds_the_models_change_at_the_photos_resolution():
    # A 48-px crop of a face 2.5× larger in the photo (what --resample residual pastes).
    photo = background(200, 240)
    m = _crop_at((120.0, 100.0), 2.5, angle_deg=10.0)  # 120 px, inside the photo
    assert fa.inside_mask(m, 48, photo.shape[:2]).all()
    crop = fa.align_crop(photo, m, 48)
    mask = fa.feather_mask(48)
    weight = fa.warp_affine(mask, fa.invert_affine(m), photo.shape[:2])
    # A model that changes nothing gives the photo back bit for bit; pasting its output
    # back does not (the crop holds less detail than the photo had).
    same = fa.add_correction(photo, np.zeros((48, 48, 3), np.float32), m, mask)
    np.testing.assert_array_equal(same, photo)
    assert np.abs(fa.paste_back(photo, crop, m, mask).astype(int) - photo)[weight > 0.99].max() > 0
    # A uniform change of +0.1: +25.5 levels where the weight is 1, scaled by the weight
    # over the feathered edge, nothing outside the footprint.
    out = fa.add_correction(photo, np.full((48, 48, 3), 0.1, np.float32), m, mask)
    change = out.astype(float) - photo
    full = weight > 0.999
    assert full.sum() > 2000
    assert np.abs(change[full] - 25.5).max() <= 0.5 + 1e-6
    np.testing.assert_array_equal(change[weight == 0], 0)
    ramp = (weight > 0.05) & (weight < 0.95)
    assert np.abs(change[ramp] - 25.5 * weight[ramp][:, None]).max() < 3.0
    # Clipped to [0, 255]; a footprint off the photo leaves it as it was.
    big = fa.add_correction(photo, np.ones((48, 48, 3), np.float32), m, mask)
    assert (big[full] == 255).all()
    far = fa.invert_affine(_similarity(1.0, 0.0, (500.0, 500.0)))
    np.testing.assert_array_equal(fa.add_correction(photo, np.ones((48, 48, 3)), far), photo)
