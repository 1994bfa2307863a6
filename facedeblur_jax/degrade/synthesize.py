"""One call from sharp faces to a training example: augment → kernel → blur → noise.

Runs inside the jitted train step (docs/design.md §1): the loader moves only sharp ``uint8``
crops and label maps; everything here is traced once and fused by XLA.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import ml_collections

from facedeblur_jax.core.asserts import check_images
from facedeblur_jax.degrade import augment as augment_lib
from facedeblur_jax.degrade import blur as blur_lib
from facedeblur_jax.degrade import kernel_pool as pool_lib
from facedeblur_jax.degrade import kernels as kernels_lib

# The walk implementations a config may name (kernels.TRAJECTORY_IMPLS less "pallas", whose
# off-CUDA interpreter JAX cannot run inside shard_map).
CONFIG_TRAJECTORY_IMPLS = ("scan", "auto")


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


# The keys of the ``degrade`` config section this package reads (the schema,
# ``configs/paper.py``, defines the same ones: tests/test_config.py checks that they agree).
DEGRADE_KEYS = (
    "anxiety",
    "augment",
    "blur_method",
    "center",
    "fill_mode",
    "kernel_canvas",
    "kernel_pool_size",
    "kernel_sizes",
    "max_rotation_deg",
    "max_shift",
    "noise_sigma",
    "scale_range",
    "trajectory_impl",
    "trajectory_length",
    "trajectory_steps",
    "trajectory_unroll",
)


def check_degrade_config(cfg: ml_collections.ConfigDict) -> None:
    """``ValueError`` naming unknown or missing keys of the ``degrade`` config section."""
    known = set(DEGRADE_KEYS)
    keys = set(cfg.keys())
    unknown, missing = keys - known, known - keys
    if unknown:
        raise ValueError(f"unknown degrade config key(s): {sorted(unknown)}")
    if missing:
        raise ValueError(f"degrade config is missing key(s): {sorted(missing)}")
    pool = cfg.kernel_pool_size
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 0:
        raise ValueError(f"degrade.kernel_pool_size must be >= 0 (an int), got {pool!r}")
    if cfg.trajectory_impl not in CONFIG_TRAJECTORY_IMPLS:
        raise ValueError(
            f"degrade.trajectory_impl must be one of {CONFIG_TRAJECTORY_IMPLS}, got "
            f"{cfg.trajectory_impl!r} ('pallas' — Pallas' interpreter off CUDA — cannot run "
            "inside the sharded train step; 'auto' runs the kernel on CUDA)"
        )
    if cfg.center not in kernels_lib.CENTERS:
        raise ValueError(f"degrade.center must be one of {kernels_lib.CENTERS}, got {cfg.center!r}")


def to_float_images(images: jax.Array) -> jax.Array:
    """``uint8[B, H, W, 3]`` (0..255) or float (0..1) -> ``f32[B, H, W, 3]`` in [0, 1]."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    check_images("sharp", images, 3)
    return images.astype(jnp.float32)


def per_sample_keys(key: jax.Array, batch: int) -> jax.Array:
    """One PRNG key per sample: a single key is split ``batch`` ways; ``key[B]`` is kept."""
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        raise ValueError(
            f"key must be a typed PRNG key (jax.random.key); got dtype {key.dtype} "
            f"with shape {tuple(key.shape)}"
        )
    if key.shape == ():
        return jax.random.split(key, batch)
    if key.shape == (batch,):
        return key
    raise ValueError(f"key must be one key or one key per sample ([{batch}]); got {key.shape}")


def _augment(key: jax.Array, image: jax.Array, label: jax.Array | None, cfg):
    """§4.1's random scale/shift/rotation of ``f32[1, H, W, 3]`` (and ``int[1, H, W]``
    labels) when ``cfg.augment``; unchanged otherwise."""
    if not cfg.augment:
        return image, label
    return augment_lib.random_affine(
        key,
        image,
        label,
        scale_range=tuple(cfg.scale_range),
        max_shift=float(cfg.max_shift),
        max_rotation_deg=float(cfg.max_rotation_deg),
        fill_mode=cfg.fill_mode,
    )


def synthesize(
    key: jax.Array,
    sharp: jax.Array,
    labels: jax.Array | None,
    cfg: ml_collections.ConfigDict,
    kernel_pool: pool_lib.KernelPool | None = None,
) -> Degraded:
    """Makes blurred inputs from sharp faces, as in the paper's training data (§3.5–3.6).

    Every sample is degraded with its own key, so a sample's result depends only on its
    key — not on the batch it sits in or on how the batch is split over devices (the
    train step derives the keys from global sample indices; see ``train_step.py``).

    Args:
      key: one PRNG key (split into one per sample) or ``key[B]``, one per sample; the
        result is a deterministic function of the keys.
      sharp: ``uint8[B, H, W, 3]`` or ``f32[B, H, W, 3]`` in [0, 1].
      labels: optional ``int[B, H, W]`` parsing labels, warped with the images.
      cfg: the config's ``degrade`` section (see ``configs/paper.py``).
      kernel_pool: with ``cfg.kernel_pool_size = N > 0``, the run's :class:`KernelPool` of
        N kernels (``kernel_pool.pool_from_config``); each sample draws one uniformly
        instead of sampling a fresh kernel. Must be given exactly when N > 0.

    Returns:
      :class:`Degraded`.
    """
    check_degrade_config(cfg)
    pool_size = int(cfg.kernel_pool_size)
    if pool_size and kernel_pool is None:
        raise ValueError(
            f"degrade.kernel_pool_size = {pool_size} but no kernel pool was passed "
            "(build it with kernel_pool.pool_from_config(config))"
        )
    if kernel_pool is not None and kernel_pool.kernels.shape[0] != pool_size:
        raise ValueError(
            f"the kernel pool holds {kernel_pool.kernels.shape[0]} kernels but "
            f"degrade.kernel_pool_size = {pool_size}"
        )
    images, keys = _checked_inputs(key, sharp, labels)

    def one(k, image, label):
        k_aug, k_kernel, k_noise = jax.random.split(k, 3)
        image = image[None]
        label = None if label is None else label[None]
        image, label = _augment(k_aug, image, label, cfg)
        if kernel_pool is not None:
            kernel, size = pool_lib.draw(kernel_pool, k_kernel)
            kernel, size = kernel[None], size[None]
        else:
            kernel, size = kernels_lib.sample_kernels(k_kernel, 1, **kernels_lib.config_kwargs(cfg))
        blurred = blur_lib.blur(image, kernel, method=cfg.blur_method)
        blurred = blur_lib.add_noise(k_noise, blurred, float(cfg.noise_sigma))
        label = None if label is None else label[0].astype(jnp.int32)
        return blurred[0], image[0], label, kernel[0], size[0]

    if labels is None:
        out = jax.vmap(lambda k, im: one(k, im, None))(keys, images)
    else:
        out = jax.vmap(one)(keys, images, labels)
    blurred, images, labels, kernels, sizes = out
    return Degraded(
        blurred=blurred, sharp=images, labels=labels, kernels=kernels, kernel_sizes=sizes
    )


def _checked_inputs(
    key: jax.Array, sharp: jax.Array, labels: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """``(f32[B, H, W, 3] images in [0, 1], key[B] per-sample keys)`` after checking the
    shapes of ``sharp`` (``[B, H, W, 3]``) and ``labels`` (``[B, H, W]`` or ``None``)."""
    if sharp.ndim != 4 or sharp.shape[-1] != 3:
        raise ValueError(f"sharp must have shape [B, H, W, 3]; got shape {tuple(sharp.shape)}")
    images = to_float_images(sharp)
    if labels is not None and labels.shape != images.shape[:3]:
        raise ValueError(
            f"labels must have shape [B, H, W] = {images.shape[:3]}; got shape {labels.shape}"
        )
    return images, per_sample_keys(key, images.shape[0])


def augment_only(
    key: jax.Array, sharp: jax.Array, labels: jax.Array | None, cfg: ml_collections.ConfigDict
) -> Degraded:
    """The clear input of a ``parsing_input = "clear"`` phase: :func:`synthesize`'s
    augmentation (the same warp for the same key) and nothing else — no kernel, no blur, no
    noise.

    Args: as :func:`synthesize` (no kernel pool: no kernel is drawn).

    Returns:
      :class:`Degraded` whose network input ``blurred`` is the augmented sharp face itself
      (``blurred is sharp``), ``kernels`` and ``kernel_sizes`` ``None``.
    """
    check_degrade_config(cfg)
    images, keys = _checked_inputs(key, sharp, labels)

    def one(k, image, label):
        k_aug, _, _ = jax.random.split(k, 3)  # synthesize's split: the same warp
        image = image[None]
        label = None if label is None else label[None]
        image, label = _augment(k_aug, image, label, cfg)
        return image[0], None if label is None else label[0].astype(jnp.int32)

    if labels is None:
        images, labels = jax.vmap(lambda k, im: one(k, im, None))(keys, images)
    else:
        images, labels = jax.vmap(one)(keys, images, labels)
    return Degraded(blurred=images, sharp=images, labels=labels, kernels=None, kernel_sizes=None)
