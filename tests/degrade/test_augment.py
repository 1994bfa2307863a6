import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.degrade.augment import random_affine, sample_affine


def test_labels_stay_in_label_set_and_images_in_range():
    key = jax.random.key(0)
    labels = jax.random.choice(key, jnp.array([0, 2, 5, 10], jnp.int32), (4, 32, 32))
    images = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3))
    out, out_labels = random_affine(jax.random.key(2), images, labels)
    assert out.shape == images.shape and out_labels.shape == labels.shape
    assert out_labels.dtype == labels.dtype
    assert set(np.unique(out_labels)) <= {0, 2, 5, 10}
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_identity_when_ranges_are_degenerate():
    images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
    labels = jnp.arange(2 * 16 * 16, dtype=jnp.int32).reshape(2, 16, 16) % 11
    out, out_labels = random_affine(
        jax.random.key(0),
        images,
        labels,
        scale_range=(1.0, 1.0),
        max_shift=0.0,
        max_rotation_deg=0.0,
    )
    np.testing.assert_allclose(out, images, atol=1e-5)
    np.testing.assert_array_equal(out_labels, labels)


def test_image_and_labels_share_the_transform():
    """A label map equal to a thresholded image stays equal to the thresholded warp."""
    yy, xx = jnp.mgrid[:32, :32]
    disk = (((yy - 12) ** 2 + (xx - 18) ** 2) < 36).astype(jnp.float32)
    images = jnp.repeat(disk[None, :, :, None], 3, axis=-1)
    labels = disk.astype(jnp.int32)[None]
    out, out_labels = random_affine(jax.random.key(3), images, labels)
    mismatch = jnp.mean((out[0, :, :, 0] > 0.5) != (out_labels[0] == 1))
    assert float(mismatch) < 0.02
    assert not np.allclose(out, images)  # something moved


def test_bounds_of_sampled_transform():
    aff = sample_affine(jax.random.key(0), 512, (128, 128))
    lin = np.asarray(aff[:, :, :2])
    scale = 1.0 / np.sqrt(np.abs(np.linalg.det(lin)))
    assert scale.min() >= 0.9 - 1e-4 and scale.max() <= 1.1 + 1e-4
    angle = np.degrees(np.arctan2(lin[:, 0, 1], lin[:, 0, 0]))
    assert np.abs(angle).max() <= 30.0 + 1e-3 and np.abs(angle).max() > 25
    # Where the centre goes: forward shift t is at most 12 px per axis at 128 px.
    centre = np.array([63.5, 63.5])
    src = np.einsum("bij,j->bi", lin, centre) + aff[:, :, 2]
    shift = np.einsum("bij,bj->bi", np.linalg.inv(lin), centre - src)
    assert np.abs(shift).max() <= 12.0 + 1e-3 and np.abs(shift).max() > 10


def test_deterministic_per_key():
    images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
    a, _ = random_affine(jax.random.key(5), images)
    b, _ = random_affine(jax.random.key(5), images)
    c, _ = random_affine(jax.random.key(6), images)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_bad_input():
    with pytest.raises(ValueError, match="labels must have shape"):
        random_affine(jax.random.key(0), jnp.zeros((2, 16, 16, 3)), jnp.zeros((2, 8, 8), jnp.int32))
    with pytest.raises(ValueError, match="fill_mode"):
        random_affine(jax.random.key(0), jnp.zeros((2, 16, 16, 3)), fill_mode="zeros")
