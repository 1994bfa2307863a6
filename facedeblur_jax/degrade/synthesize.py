"""One call from sharp faces to a training example: augment → kernel → blur → noise.

Runs inside the jitted train step (DESIGN.md §1): the loader moves only sharp ``uint8``
crops and label maps; everything here is traced once and fused by XLA.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import ml_collections

from facedeblur_jax.checks import check_images
from facedeblur_jax.config import reference_config
from facedeblur_jax.degrade import augment as augment_lib
from facedeblur_jax.degrade import blur as blur_lib
from facedeblur_jax.degrade import kernels as kernels_lib


@flax.struct.dataclass
class Degraded:
    """A synthesised batch.

    Attributes:
      blurred: ``f32[B, H, W, 3]`` network input ``x`` in [0, 1].
      sharp: ``f32[B, H, W, 3]`` ground truth ``y_GT`` (augmented like ``blurred``).
      labels: ``i32[B, H, W]`` parsing labels aligned with ``sharp`` (or ``None``).
      kernels: ``f32[B, c, c]`` the blur kernels (``c`` = kernel canvas).
      kernel_sizes: ``i32[B]`` the support size drawn for each kernel.
    """

    blurred: jax.Array
    sharp: jax.Array
    labels: jax.Array | None
    kernels: jax.Array
    kernel_sizes: jax.Array


def check_degrade_config(cfg: ml_collections.ConfigDict) -> None:
    """``ValueError`` naming unknown or missing keys of the ``degrade`` config section."""
    known = set(reference_config().degrade.keys())
    keys = set(cfg.keys())
    unknown, missing = keys - known, known - keys
    if unknown:
        raise ValueError(f"unknown degrade config key(s): {sorted(unknown)}")
    if missing:
        raise ValueError(f"degrade config is missing key(s): {sorted(missing)}")


def to_float_images(images: jax.Array) -> jax.Array:
    """``uint8[B, H, W, 3]`` (0..255) or float (0..1) -> ``f32[B, H, W, 3]`` in [0, 1]."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    check_images("sharp", images, 3)
    return images.astype(jnp.float32)


def synthesize(
    key: jax.Array,
    sharp: jax.Array,
    labels: jax.Array | None,
    cfg: ml_collections.ConfigDict,
) -> Degraded:
    """Makes blurred inputs from sharp faces, as in the paper's training data (§3.5–3.6).

    Args:
      key: PRNG key; the whole result is a deterministic function of it.
      sharp: ``uint8[B, H, W, 3]`` or ``f32[B, H, W, 3]`` in [0, 1].
      labels: optional ``int[B, H, W]`` parsing labels, warped with the images.
      cfg: the config's ``degrade`` section (see ``configs/paper.py``).

    Returns:
      :class:`Degraded`.
    """
    check_degrade_config(cfg)
    if sharp.ndim != 4 or sharp.shape[-1] != 3:
        raise ValueError(f"sharp must have shape [B, H, W, 3]; got shape {tuple(sharp.shape)}")
    images = to_float_images(sharp)
    b = images.shape[0]
    k_aug, k_kernel, k_noise = jax.random.split(key, 3)
    if cfg.augment:
        images, labels = augment_lib.random_affine(
            k_aug,
            images,
            labels,
            scale_range=tuple(cfg.scale_range),
            max_shift=float(cfg.max_shift),
            max_rotation_deg=float(cfg.max_rotation_deg),
            fill_mode=cfg.fill_mode,
        )
    kernels, sizes = kernels_lib.sample_kernels(
        k_kernel,
        b,
        sizes=tuple(int(s) for s in cfg.kernel_sizes),
        canvas=int(cfg.kernel_canvas),
        anxiety=None if cfg.anxiety is None else float(cfg.anxiety),
        num_steps=int(cfg.trajectory_steps),
        max_total_length=float(cfg.trajectory_length),
    )
    blurred = blur_lib.blur(images, kernels, method=cfg.blur_method)
    blurred = blur_lib.add_noise(k_noise, blurred, float(cfg.noise_sigma))
    if labels is not None:
        labels = labels.astype(jnp.int32)
    return Degraded(
        blurred=blurred, sharp=images, labels=labels, kernels=kernels, kernel_sizes=sizes
    )
