import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.degrade.synthesize import synthesize


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny").degrade


def _batch():
    sharp = jax.random.randint(jax.random.key(0), (4, 32, 32, 3), 0, 256).astype(jnp.uint8)
    labels = jax.random.randint(jax.random.key(1), (4, 32, 32), 0, 11)
    return sharp, labels


def test_shapes_ranges_and_determinism(cfg):
    sharp, labels = _batch()
    fn = jax.jit(lambda k, s, lb: synthesize(k, s, lb, cfg))
    out = fn(jax.random.key(3), sharp, labels)
    assert out.blurred.shape == out.sharp.shape == (4, 32, 32, 3)
    assert out.labels.shape == (4, 32, 32) and out.labels.dtype == jnp.int32
    assert out.kernels.shape == (4, 7, 7) and out.kernel_sizes.shape == (4,)
    assert float(out.blurred.min()) >= 0.0 and float(out.blurred.max()) <= 1.0
    np.testing.assert_allclose(out.kernels.sum((1, 2)), 1.0, atol=1e-5)
    again = fn(jax.random.key(3), sharp, labels)
    np.testing.assert_array_equal(out.blurred, again.blurred)
    other = fn(jax.random.key(4), sharp, labels)
    assert not np.allclose(out.blurred, other.blurred)


def test_without_augmentation_blurred_is_kernel_conv_plus_noise(cfg):
    from facedeblur_jax.degrade.blur import blur

    sharp, _ = _batch()
    c = cfg.copy_and_resolve_references()
    with c.unlocked():
        c.augment = False
        c.noise_sigma = 0.0
    out = synthesize(jax.random.key(0), sharp, None, c)
    np.testing.assert_allclose(out.sharp, sharp / 255.0, atol=1e-6)
    np.testing.assert_allclose(out.blurred, jnp.clip(blur(out.sharp, out.kernels), 0, 1), atol=1e-5)
    assert out.labels is None


def test_float_input_and_bad_input(cfg):
    sharp, _ = _batch()
    out = synthesize(jax.random.key(0), sharp.astype(jnp.float32) / 255, None, cfg)
    assert out.blurred.shape == (4, 32, 32, 3)
    with pytest.raises(ValueError, match=r"sharp must have shape \[B, H, W, 3\].*\(4, 32, 32, 1\)"):
        synthesize(jax.random.key(0), sharp[..., :1], None, cfg)
    with pytest.raises(ValueError, match=r"sharp must have values in \[0.0, 1.0\]"):
        synthesize(jax.random.key(0), sharp.astype(jnp.float32), None, cfg)
    bad = cfg.copy_and_resolve_references()
    with bad.unlocked():
        bad.sigma = 0.1
    with pytest.raises(ValueError, match=r"unknown degrade config key\(s\): \['sigma'\]"):
        synthesize(jax.random.key(0), sharp, None, bad)


def test_degrade_center_places_the_kernels(cfg):
    """``degrade.center`` reaches the sampler: same sizes, another placement; a bad value is
    named before any work."""
    from facedeblur_jax.degrade.kernels_reference import kernel_stats

    sharp, _ = _batch()
    by = {}
    for center in ("bbox", "centroid"):
        c = cfg.copy_and_resolve_references()
        with c.unlocked():
            c.center = center
        by[center] = synthesize(jax.random.key(5), sharp, None, c)
    np.testing.assert_array_equal(by["bbox"].kernel_sizes, by["centroid"].kernel_sizes)
    assert kernel_stats(np.asarray(by["centroid"].kernels))["centroid_offset"].max() < 0.5
    assert not np.allclose(by["bbox"].kernels, by["centroid"].kernels)
    with c.unlocked():
        c.center = "middle"
    with pytest.raises(ValueError, match="degrade.center must be one of"):
        synthesize(jax.random.key(0), sharp, None, c)


def test_vmaps_over_keys(cfg):
    sharp, labels = _batch()
    keys = jax.random.split(jax.random.key(0), 2)
    out = jax.vmap(lambda k: synthesize(k, sharp, labels, cfg).blurred)(keys)
    single = synthesize(keys[1], sharp, labels, cfg).blurred
    np.testing.assert_allclose(out[1], single, atol=1e-5)


def test_a_sample_depends_only_on_its_key(cfg):
    """Per-sample keys: sample i of a batch equals the same sample degraded alone."""
    sharp, labels = _batch()
    keys = jax.random.split(jax.random.key(9), 4)
    batch = synthesize(keys, sharp, labels, cfg)
    alone = synthesize(keys[2:3], sharp[2:3], labels[2:3], cfg)
    np.testing.assert_allclose(batch.blurred[2], alone.blurred[0], atol=1e-6)
    np.testing.assert_array_equal(batch.labels[2], alone.labels[0])
    with pytest.raises(ValueError, match="key must be a typed PRNG key"):
        synthesize(jax.random.PRNGKey(0), sharp, labels, cfg)
    with pytest.raises(ValueError, match=r"one key per sample \(\[4\]\)"):
        synthesize(keys[:3], sharp, labels, cfg)
