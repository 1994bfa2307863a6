"""Small building blocks shared by the networks: resampling and residual blocks.

All functions take and return NHWC arrays ``[B, H, W, C]``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any


def downsample2x(x: jax.Array) -> jax.Array:
    """2× downsampling by 2×2 average pooling: ``[B, H, W, C] -> [B, H/2, W/2, C]``.

    The paper does not say which filter makes ``x^(0.5×)``; a box filter is exact for
    even sizes, alias-safe for a 2× step and the cheapest op on every backend.
    """
    b, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"downsample2x needs even height and width; got shape {x.shape}")
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


DOWNSAMPLE_METHODS = ("box", "matlab_bicubic")


def downsample(x: jax.Array, factor: int, method: str = "box") -> jax.Array:
    """``[B, H, W, C] -> [B, H/factor, W/factor, C]``; ``factor`` a power of two (1 =
    identity). ``"box"``: repeated :func:`downsample2x`; ``"matlab_bicubic"``: MATLAB's
    ``imresize`` by ``1/factor`` (:func:`matlab_resize`), what the authors' released code
    does to the blurred image."""
    if method not in DOWNSAMPLE_METHODS:
        raise ValueError(f"downsample method must be one of {DOWNSAMPLE_METHODS}; got {method!r}")
    if factor == 1:
        return x
    if method == "matlab_bicubic":
        _, h, w, _ = x.shape
        if h % factor or w % factor:
            raise ValueError(f"downsample by {factor} needs sizes divisible by it; got {x.shape}")
        return matlab_resize(x, h // factor, w // factor)
    while factor > 1:
        x = downsample2x(x)
        factor //= 2
    return x


def _matlab_cubic(t: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize``'s cubic kernel (Keys, a = -0.5)."""
    a = np.abs(t)
    return np.where(
        a <= 1,
        1.5 * a**3 - 2.5 * a**2 + 1,
        np.where(a <= 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0.0),
    )


def matlab_resize_matrix(in_len: int, out_len: int) -> np.ndarray:
    """``f64[out_len, in_len]``: MATLAB ``imresize``'s bicubic resampling along one axis
    (its ``contributions`` function: antialiasing when shrinking, i.e. the kernel stretched
    by ``in_len / out_len`` and scaled down as much; each row's weights normalised to sum to
    1; indices outside the image mirrored with the edge sample repeated)."""
    scale = out_len / in_len
    width = 4.0
    if scale < 1:
        kernel = lambda t: scale * _matlab_cubic(scale * t)
        width /= scale
    else:
        kernel = _matlab_cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    index = left[:, None] + np.arange(taps)[None, :]  # 1-based
    weights = kernel(u[:, None] - index)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    cols = mirror[(index.astype(np.int64) - 1) % (2 * in_len)]
    out = np.zeros((out_len, in_len))
    np.add.at(out, (np.repeat(np.arange(out_len), taps), cols.ravel()), weights.ravel())
    return out


def matlab_resize(x: jax.Array, height: int, width: int) -> jax.Array:
    """MATLAB ``imresize(x, [height width])`` with its defaults (bicubic, antialiasing):
    ``[B, h, w, C] -> [B, height, width, C]``, rows then columns, in ``x``'s dtype."""
    _, h, w, _ = x.shape
    rows = jnp.asarray(matlab_resize_matrix(h, height), x.dtype)
    cols = jnp.asarray(matlab_resize_matrix(w, width), x.dtype)
    y = jnp.einsum("oh,bhwc->bowc", rows, x, precision=jax.lax.Precision.HIGHEST)
    return jnp.einsum("pw,bowc->bopc", cols, y, precision=jax.lax.Precision.HIGHEST)


def max_pool(x: jax.Array, factor: int) -> jax.Array:
    """``factor``×``factor`` max pooling with stride ``factor``: ``[B, H, W, C] ->
    [B, H/factor, W/factor, C]`` (1 = identity).

    How the official code brings the parsing prior to the 0.5× scale
    (``vl_nnpool(softmax, [2, 2], 'stride', 2, 'method', 'max')``); for a power of two it
    equals repeated 2×2 max pools.
    """
    b, h, w, c = x.shape
    if h % factor or w % factor:
        raise ValueError(
            f"max_pool by {factor} needs height and width divisible by {factor}; "
            f"got shape {x.shape}"
        )
    if factor == 1:
        return x
    return x.reshape(b, h // factor, factor, w // factor, factor, c).max(axis=(2, 4))


def resize_to(x: jax.Array, height: int, width: int, method: str = "linear") -> jax.Array:
    """Resizes ``[B, h, w, C] -> [B, height, width, C]`` with ``jax.image.resize``."""
    b, _, _, c = x.shape
    return jax.image.resize(x, (b, height, width, c), method=method, antialias=False)


def bilinear_upsample_kernel(channels: int) -> np.ndarray:
    """``f32[4, 4, C, C]`` transposed-conv kernel that performs 2× bilinear upsampling.

    With stride 2 and ``SAME`` padding a 4×4 transposed conv with the separable taps
    ``[1, 3, 3, 1] / 4`` reproduces half-pixel-aligned bilinear upsampling in the interior.
    """
    taps = np.array([0.25, 0.75, 0.75, 0.25], np.float32)
    k2 = np.outer(taps, taps)
    kernel = np.zeros((4, 4, channels, channels), np.float32)
    for c in range(channels):
        kernel[:, :, c, c] = k2
    return kernel


class Upsample2x(nn.Module):
    """2× upsampling of a scale's output image before it is fed to the next scale.

    Attributes:
      method: ``"transposed"`` — the paper's 4×4 stride-2 transposed conv (§3.5),
        initialised to bilinear so training starts from a sensible upsampler;
        ``"subpixel"`` — a 3×3 conv to ``4·C`` channels + depth-to-space (same receptive
        field, no transposed conv; initialised to nearest-neighbour copy);
        ``"bicubic"`` — fixed bicubic resize, the ``U_2×`` of the paper's text (§3.2).
      dtype: compute dtype.
    """

    method: str = "transposed"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[B, H, W, C] -> [B, 2H, 2W, C]``."""
        b, h, w, c = x.shape
        if self.method == "transposed":
            init = lambda *_: jnp.asarray(bilinear_upsample_kernel(c))
            return nn.ConvTranspose(
                c, (4, 4), strides=(2, 2), padding="SAME", kernel_init=init, dtype=self.dtype
            )(x)
        if self.method == "subpixel":

            def init(_key, shape, dtype=jnp.float32):
                k = np.zeros(shape, np.float32)  # [3, 3, C, 4C], centre tap copies
                for ci in range(c):
                    for phase in range(4):
                        k[1, 1, ci, ci * 4 + phase] = 1.0
                return jnp.asarray(k, dtype)

            y = nn.Conv(4 * c, (3, 3), padding="SAME", kernel_init=init, dtype=self.dtype)(x)
            y = y.reshape(b, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
            return y.reshape(b, 2 * h, 2 * w, c)
        if self.method == "bicubic":
            return resize_to(x, 2 * h, 2 * w, method="cubic").astype(self.dtype)
        raise ValueError(
            f"upsample must be 'transposed', 'subpixel' or 'bicubic'; got {self.method!r}"
        )


class ResBlock(nn.Module):
    """Two convs with an identity skip, no normalisation: ``[B, H, W, F] -> [B, H, W, F]``.

    ``pre_relu=True`` (the official code, ``model.resblock_post_relu``):
    ``x + conv2(relu(conv1(relu(x))))``. In ``DL_deblur_net18.m`` each block's sum goes
    through a ReLU into the next block's first conv while the skip carries the sum itself
    (``sum_k = conv(relu(conv(relu(sum_{k-1})))) + sum_{k-1}``), and ``relu(sum_last)``
    feeds the next layer; that is this block with the ReLU moved to the front, plus one
    ReLU after the last block (``ScaleNet``). ``pre_relu=False``: ``x + conv2(relu(conv1(x)))``
    (Nah et al. 2017; no ReLU after the add).
    """

    features: int
    kernel_size: int = 5
    dtype: Dtype = jnp.float32
    pre_relu: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = (self.kernel_size, self.kernel_size)
        y = nn.relu(x) if self.pre_relu else x
        y = nn.Conv(self.features, k, padding="SAME", dtype=self.dtype, name="conv1")(y)
        y = nn.relu(y)
        y = nn.Conv(self.features, k, padding="SAME", dtype=self.dtype, name="conv2")(y)
        return x + y
