"""Random similarity transforms of faces and their label maps (paper §3.5).

One affine per sample — scale ∈ ``scale_range``, shift within ``±max_shift · size`` pixels
per axis (12 px at 128 px), rotation within ``±max_rotation_deg`` — about the image
centre, applied by inverse mapping: bilinear for images, nearest for labels (so label
values stay in the label set).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy import ndimage

from facedeblur_jax.core.asserts import check_images, check_rank

FILL_MODES = ("nearest", "constant", "reflect", "mirror", "wrap")


def sample_affine(
    key: jax.Array,
    batch: int,
    size: tuple[int, int],
    scale_range: tuple[float, float] = (0.9, 1.1),
    max_shift: float = 12 / 128,
    max_rotation_deg: float = 30.0,
) -> jax.Array:
    """Draws ``f32[B, 2, 3]`` inverse maps (output ``(row, col, 1)`` -> input ``(row, col)``)."""
    k_s, k_t, k_r = jax.random.split(key, 3)
    h, w = size
    scale = jax.random.uniform(k_s, (batch,), minval=scale_range[0], maxval=scale_range[1])
    shift = jax.random.uniform(k_t, (batch, 2), minval=-1.0, maxval=1.0)
    shift = shift * max_shift * jnp.array([h, w], jnp.float32)
    theta = jnp.deg2rad(
        jax.random.uniform(k_r, (batch,), minval=-max_rotation_deg, maxval=max_rotation_deg)
    )
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    # Forward: out = s·R(θ)(in − c) + c + t  ⇒  in = R(−θ)(out − c − t)/s + c.
    inv = jnp.stack([jnp.stack([cos, sin], -1), jnp.stack([-sin, cos], -1)], -2)  # [B,2,2]
    inv = inv / scale[:, None, None]
    centre = jnp.array([(h - 1) / 2, (w - 1) / 2], jnp.float32)
    offset = centre - jnp.einsum("bij,bj->bi", inv, centre + shift)
    return jnp.concatenate([inv, offset[:, :, None]], axis=-1)


def _warp(image: jax.Array, affine: jax.Array, order: int, mode: str) -> jax.Array:
    """``[H, W, C]`` (or ``[H, W]``) warped by one ``[2, 3]`` inverse map."""
    h, w = image.shape[:2]
    rows, cols = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    src = (
        jnp.einsum("ij,jhw->ihw", affine[:, :2], jnp.stack([rows, cols])) + affine[:, 2, None, None]
    )
    sample = lambda plane: ndimage.map_coordinates(
        plane, [src[0], src[1]], order=order, mode=mode, cval=0.0
    )
    if image.ndim == 2:
        return sample(image)
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(image)


def random_affine(
    key: jax.Array,
    images: jax.Array,
    labels: jax.Array | None = None,
    *,
    scale_range: tuple[float, float] = (0.9, 1.1),
    max_shift: float = 12 / 128,
    max_rotation_deg: float = 30.0,
    fill_mode: str = "nearest",
) -> tuple[jax.Array, jax.Array | None]:
    """Applies one random similarity transform per sample to images and labels.

    Args:
      key: PRNG key.
      images: ``f32[B, H, W, C]``.
      labels: optional ``int[B, H, W]`` label maps (warped with nearest neighbour).
      scale_range: min/max zoom.
      max_shift: shift bound as a fraction of the image size (12/128 in the paper).
      max_rotation_deg: rotation bound in degrees.
      fill_mode: how pixels outside the source are filled (``jax.scipy.ndimage`` modes;
        ``"constant"`` fills 0 = black / background).

    Returns:
      ``(images f32[B, H, W, C], labels int[B, H, W] | None)``.
    """
    check_images("images", images, None, value_range=None)
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}; got {fill_mode!r}")
    b, h, w, _ = images.shape
    affine = sample_affine(key, b, (h, w), scale_range, max_shift, max_rotation_deg)
    warped = jax.vmap(lambda im, a: _warp(im, a, 1, fill_mode))(images, affine)
    if labels is None:
        return warped, None
    check_rank("labels", labels, 3, "[B, H, W]")
    if labels.shape != (b, h, w):
        raise ValueError(f"labels must have shape {(b, h, w)}; got shape {labels.shape}")
    warped_labels = jax.vmap(lambda lb, a: _warp(lb.astype(jnp.float32), a, 0, fill_mode))(
        labels, affine
    )
    return warped, jnp.round(warped_labels).astype(labels.dtype)
