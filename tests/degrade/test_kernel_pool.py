"""The training kernel pool: sampled once per run on the device, drawn from per sample."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.degrade import kernel_pool as pool_lib
from facedeblur_jax.degrade import kernels as K
from facedeblur_jax.degrade.synthesize import synthesize


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny", {"degrade.kernel_pool_size": 10}).degrade


def _sample_one(cfg, key):
    return K.sample_kernel(
        key,
        sizes=tuple(cfg.kernel_sizes),
        canvas=cfg.kernel_canvas,
        anxiety=cfg.anxiety,
        num_steps=cfg.trajectory_steps,
        max_total_length=cfg.trajectory_length,
    )


def test_kernel_i_is_sample_kernel_of_fold_in_i_whatever_the_chunking(cfg):
    key = pool_lib.pool_key(0)
    pool = pool_lib.make_kernel_pool(key, 10, cfg, chunk=4)  # 3 chunks, the last padded
    assert pool.size == 10 and pool.kernels.shape == (10, 7, 7) and pool.sizes.shape == (10,)
    np.testing.assert_allclose(pool.kernels.sum((1, 2)), 1.0, atol=1e-5)
    assert set(np.asarray(pool.sizes).tolist()) <= set(cfg.kernel_sizes)
    for i in (0, 5, 9):
        kernel, size = _sample_one(cfg, jax.random.fold_in(key, i))
        np.testing.assert_allclose(pool.kernels[i], kernel, atol=1e-6)
        assert int(pool.sizes[i]) == int(size)
    bigger = pool_lib.make_kernel_pool(key, 12, cfg, chunk=12)  # prefix-stable in N
    np.testing.assert_allclose(bigger.kernels[:10], pool.kernels, atol=1e-6)
    other = pool_lib.make_kernel_pool(pool_lib.pool_key(1), 10, cfg)
    assert float(jnp.max(jnp.abs(other.kernels - pool.kernels))) > 1e-2


def test_bad_sizes_are_named(cfg):
    with pytest.raises(ValueError, match="kernel pool size must be an int >= 1"):
        pool_lib.make_kernel_pool(pool_lib.pool_key(0), 0, cfg)
    bad = load_config("tiny", {"degrade.kernel_pool_size": -3})
    with pytest.raises(ValueError, match="degrade.kernel_pool_size must be >= 0, got -3"):
        pool_lib.pool_from_config(bad)
    assert pool_lib.pool_from_config(load_config("tiny")) is None


def _batch(b=6):
    sharp = jax.random.randint(jax.random.key(0), (b, 32, 32, 3), 0, 256).astype(jnp.uint8)
    labels = jax.random.randint(jax.random.key(1), (b, 32, 32), 0, 11)
    return sharp, labels


def test_synthesize_draws_every_kernel_from_the_pool(cfg):
    pool = pool_lib.pool_from_config(load_config("tiny", {"degrade.kernel_pool_size": 10}))
    sharp, labels = _batch(16)
    fn = jax.jit(lambda k, s, lb, p: synthesize(k, s, lb, cfg, p))
    out = fn(jax.random.key(3), sharp, labels, pool)
    kernels, pool_kernels = np.asarray(out.kernels), np.asarray(pool.kernels)
    # Every sample's kernel is one of the pool's (exactly), with the pool's size.
    matches = [np.flatnonzero(np.all(pool_kernels == k, axis=(1, 2))) for k in kernels]
    assert all(len(m) >= 1 for m in matches)
    sizes = np.asarray(pool.sizes)
    assert [int(s) for s in out.kernel_sizes] == [int(sizes[m[0]]) for m in matches]
    assert len({int(m[0]) for m in matches}) > 3  # 16 draws from 10 hit several
    again = fn(jax.random.key(3), sharp, labels, pool)
    np.testing.assert_array_equal(out.blurred, again.blurred)
    assert float(out.blurred.min()) >= 0.0 and float(out.blurred.max()) <= 1.0


def test_pool_given_iff_configured(cfg):
    sharp, labels = _batch(2)
    with pytest.raises(ValueError, match="kernel_pool_size = 10 but no kernel pool was passed"):
        synthesize(jax.random.key(0), sharp, labels, cfg)
    small = pool_lib.make_kernel_pool(pool_lib.pool_key(0), 4, cfg)
    with pytest.raises(ValueError, match="holds 4 kernels but degrade.kernel_pool_size = 10"):
        synthesize(jax.random.key(0), sharp, labels, cfg, small)
