import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from facedeblur_jax.degrade.blur import add_noise, blur


def _random_kernels(key, b, k):
    kern = jax.random.uniform(key, (b, k, k))
    return kern / kern.sum(axis=(1, 2), keepdims=True)


@pytest.mark.parametrize("method", ["grouped", "vmap", "fft"])
def test_centred_delta_returns_kernel(method):
    k = 7
    kernels = _random_kernels(jax.random.key(0), 2, k)  # asymmetric, so a flip would show
    img = jnp.zeros((2, 21, 21, 3)).at[:, 10, 10, :].set(1.0)
    out = blur(img, kernels, method=method)
    for b in range(2):
        for c in range(3):
            np.testing.assert_allclose(out[b, 7:14, 7:14, c], kernels[b], atol=1e-5)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), 1.0, atol=1e-4)


@pytest.mark.parametrize("method", ["grouped", "vmap", "fft"])
def test_matches_scipy_convolve2d_with_reflect_border(method):
    rng = np.random.default_rng(0)
    images = rng.random((3, 24, 20, 3)).astype(np.float32)
    kernels = rng.random((3, 9, 9)).astype(np.float32)
    out = np.asarray(blur(jnp.asarray(images), jnp.asarray(kernels), method=method))
    for b in range(3):
        for c in range(3):
            padded = np.pad(images[b, :, :, c], 4, mode="reflect")
            ref = signal.convolve2d(padded, kernels[b], mode="valid")
            np.testing.assert_allclose(out[b, :, :, c], ref, rtol=1e-4, atol=1e-4)


def test_methods_agree_jitted_and_vmapped():
    images = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3))
    kernels = _random_kernels(jax.random.key(2), 4, 13)
    ref = blur(images, kernels, "grouped")
    for method in ("vmap", "fft"):
        np.testing.assert_allclose(
            jax.jit(blur, static_argnums=2)(images, kernels, method), ref, atol=1e-5
        )
    # vmapping over an outer axis (e.g. a kernel bank) equals the loop.
    stacked = jax.vmap(lambda im, ke: blur(im, ke))(
        images[None].repeat(2, 0), kernels[None].repeat(2, 0)
    )
    np.testing.assert_allclose(stacked[1], ref, atol=1e-6)


def test_bad_shapes_name_the_argument():
    img = jnp.zeros((2, 16, 16, 3))
    with pytest.raises(ValueError, match=r"kernels must have shape \[B, k, k\].*\(2, 5\)"):
        blur(img, jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match="one kernel per image.*B = 2"):
        blur(img, jnp.zeros((3, 5, 5)))
    with pytest.raises(ValueError, match="odd size"):
        blur(img, jnp.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\]"):
        blur(jnp.zeros((16, 16, 3)), jnp.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match="blur method"):
        blur(img, jnp.zeros((2, 5, 5)), method="direct")


def test_noise_sigma_and_clip():
    img = jnp.full((4, 64, 64, 3), 0.5)
    noisy = add_noise(jax.random.key(0), img, 0.01)
    assert abs(float(jnp.std(noisy - img)) - 0.01) < 5e-4
    assert float(noisy.min()) >= 0.0 and float(noisy.max()) <= 1.0
    edge = add_noise(jax.random.key(0), jnp.ones((1, 8, 8, 3)), 0.5)
    assert float(edge.max()) <= 1.0
    np.testing.assert_array_equal(add_noise(jax.random.key(0), img), noisy)
    assert not np.array_equal(add_noise(jax.random.key(1), img), noisy)
