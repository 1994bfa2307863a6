"""Per-sample blur and sensor noise, on the accelerator.

``blur`` is a true convolution (the kernel is flipped before XLA's cross-correlation),
so a centred delta image returns the kernel and the result matches
``scipy.signal.convolve2d(image, kernel, mode="same")`` on the interior. Borders are
reflect-padded (numpy ``"reflect"``: the edge pixel is not repeated), then a VALID conv
keeps ``H × W``.

Three equivalent implementations (``method``):

* ``"grouped"`` — batch folded into channels, one ``conv_general_dilated`` with
  ``feature_group_count = B·C`` (one depthwise conv for the whole batch).
* ``"vmap"`` — ``vmap`` over samples of a depthwise conv.
* ``"fft"`` — ``rfft2`` of the padded image times the zero-padded kernel spectrum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from facedeblur_jax.core.asserts import check_images, check_rank

METHODS = ("grouped", "vmap", "fft")


def _check(images: jax.Array, kernels: jax.Array) -> tuple[int, int]:
    check_images("images", images, None, value_range=None)
    check_rank("kernels", kernels, 3, "[B, k, k]")
    b, h, w, _ = images.shape
    kb, kh, kw = kernels.shape
    if kb != b:
        raise ValueError(
            f"kernels must have one kernel per image ([B, k, k] with B = {b}); "
            f"got shape {kernels.shape}"
        )
    if kh != kw or kh % 2 == 0:
        raise ValueError(f"kernels must be square with odd size k; got shape {kernels.shape}")
    if kh // 2 >= min(h, w):
        raise ValueError(
            f"kernels of size {kh} need images larger than {kh // 2} px for reflect padding; "
            f"got images of shape {images.shape}"
        )
    return kh // 2, kh


def _pad(images: jax.Array, r: int) -> jax.Array:
    return jnp.pad(images, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")


def _blur_grouped(padded: jax.Array, kernels: jax.Array) -> jax.Array:
    b, hp, wp, c = padded.shape
    k = kernels.shape[-1]
    lhs = padded.transpose(1, 2, 0, 3).reshape(1, hp, wp, b * c)  # [1, Hp, Wp, B·C]
    flipped = kernels[:, ::-1, ::-1]
    rhs = jnp.repeat(flipped, c, axis=0).transpose(1, 2, 0)[:, :, None, :]  # [k, k, 1, B·C]
    out = jax.lax.conv_general_dilated(
        lhs,
        rhs.astype(lhs.dtype),
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=b * c,
    )
    h, w = hp - k + 1, wp - k + 1
    return out.reshape(h, w, b, c).transpose(2, 0, 1, 3)


def _blur_one(padded: jax.Array, kernel: jax.Array) -> jax.Array:
    """``[Hp, Wp, C]``, ``[k, k]`` -> ``[H, W, C]`` depthwise conv."""
    c = padded.shape[-1]
    rhs = jnp.tile(kernel[::-1, ::-1, None, None], (1, 1, 1, c)).astype(padded.dtype)
    out = jax.lax.conv_general_dilated(
        padded[None],
        rhs,
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )
    return out[0]


def _blur_fft(padded: jax.Array, kernels: jax.Array) -> jax.Array:
    b, hp, wp, _ = padded.shape
    k = kernels.shape[-1]
    kpad = jnp.zeros((b, hp, wp), jnp.float32).at[:, :k, :k].set(kernels.astype(jnp.float32))
    spec = jnp.fft.rfft2(padded.astype(jnp.float32), axes=(1, 2))
    kspec = jnp.fft.rfft2(kpad, axes=(1, 2))[..., None]
    full = jnp.fft.irfft2(spec * kspec, s=(hp, wp), axes=(1, 2))
    # Circular conv with the kernel at the origin: valid outputs start at k-1.
    return full[:, k - 1 :, k - 1 :, :].astype(padded.dtype)


def blur(images: jax.Array, kernels: jax.Array, method: str = "grouped") -> jax.Array:
    """Convolves each image with its own kernel.

    Args:
      images: ``f32[B, H, W, C]``.
      kernels: ``f32[B, k, k]`` (odd ``k``; normally sum 1).
      method: ``"grouped"`` | ``"vmap"`` | ``"fft"`` (same result up to float error).

    Returns:
      ``f32[B, H, W, C]`` blurred images, reflect border.
    """
    r, _ = _check(images, kernels)
    padded = _pad(images, r)
    if method == "grouped":
        return _blur_grouped(padded, kernels)
    if method == "vmap":
        return jax.vmap(_blur_one)(padded, kernels)
    if method == "fft":
        return _blur_fft(padded, kernels)
    raise ValueError(f"blur method must be one of {METHODS}; got {method!r}")


def add_noise(key: jax.Array, images: jax.Array, sigma: float = 0.01) -> jax.Array:
    """Adds i.i.d. Gaussian noise of std ``sigma`` and clips to [0, 1] (paper §3.6).

    ``f32[B, H, W, C] -> f32[B, H, W, C]``.
    """
    noise = sigma * jax.random.normal(key, images.shape, jnp.float32)
    return jnp.clip(images + noise.astype(images.dtype), 0.0, 1.0)
