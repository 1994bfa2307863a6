"""Image quality metrics (dm-pix): PSNR and SSIM on RGB images in [0, 1].

Conventions (the paper evaluates RGB 128×128): values are clipped to [0, 1], all three
channels and the whole image are used (no border crop, no Y channel); SSIM is dm-pix's
Gaussian-window SSIM (σ = 1.5, 11×11) averaged over channels and pixels. PSNR of two
identical images is ``inf``.
"""

from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp


def psnr(a: jax.Array, b: jax.Array) -> jax.Array:
    """Per-image PSNR in dB: ``f32[B, H, W, 3], f32[B, H, W, 3] -> f32[B]``."""
    return dm_pix.psnr(jnp.clip(a, 0.0, 1.0), jnp.clip(b, 0.0, 1.0))


def ssim(a: jax.Array, b: jax.Array) -> jax.Array:
    """Per-image SSIM: ``f32[B, H, W, 3], f32[B, H, W, 3] -> f32[B]``."""
    return dm_pix.ssim(jnp.clip(a, 0.0, 1.0), jnp.clip(b, 0.0, 1.0))
