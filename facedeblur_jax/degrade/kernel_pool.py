"""A fixed pool of training kernels, sampled on the device once per run (paper Table 1).

The paper trains on blurred faces "synthesized from 6,464 face images and 20,000 blur
kernels" (§3.6, Table 1): a fixed set of kernels, not a fresh one per image. With
``config.degrade.kernel_pool_size = N > 0`` a run samples N Boracchi–Foi kernels on the
accelerator at start-up (the same sampler as the per-step path) and each training sample
then draws one of them uniformly; blur, noise and augmentation stay per sample and per step.
``0`` (the default, docs/design.md §3) samples a fresh kernel for every sample of every step.

Why it exists: the 2,000-step walk is sequential, so sampling a batch of kernels costs the
same ~17–20 ms on an H100 whatever the batch (docs/benchmarks/h100_2026-11-24.md), 42–67 %
of a training step. A pool takes the walk out of the step: the step only gathers
``N × canvas²`` floats (20,000 × 27 × 27 × 4 B = 58 MB, replicated on every device).

Key derivation: kernel ``i`` is ``kernels.sample_kernel(fold_in(fold_in(key(seed),
POOL_TAG), i))``, so the pool depends only on the config (seed and degrade settings), is
rebuilt identically on resume (nothing to checkpoint), and kernel ``i`` does not depend on
N or on the chunking. Training steps draw from ``split(key(seed))[1]`` folded with the step
and the sample index, and the test bank (``kernel_bank.py``) from another root seed and
tag: the streams share no key.
"""

from __future__ import annotations

import chex
import flax
import jax
import jax.numpy as jnp
import ml_collections

from facedeblur_jax.degrade import kernels as kernels_lib

POOL_TAG = 0x6B50_0071
DEFAULT_CHUNK = 1024


@flax.struct.dataclass
class KernelPool:
    """``kernels``: ``f32[N, canvas, canvas]`` (each sums to 1); ``sizes``: ``i32[N]``."""

    kernels: jax.Array
    sizes: jax.Array

    @property
    def size(self) -> int:
        return int(self.kernels.shape[0])


def pool_key(seed: int) -> jax.Array:
    """The root key of a run's kernel pool."""
    return jax.random.fold_in(jax.random.key(int(seed)), POOL_TAG)


def make_kernel_pool(
    key: jax.Array,
    size: int,
    cfg: ml_collections.ConfigDict,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> KernelPool:
    """Samples ``size`` kernels on the default device, ``chunk`` at a time.

    Args:
      key: the pool's root key (:func:`pool_key` of the config's seed in training).
      size: number of kernels ``N >= 1``.
      cfg: the config's ``degrade`` section (sizes, canvas, anxiety, trajectory settings).
      chunk: kernels per compiled call (bounds memory: the walk of one kernel holds
        ``T × canvas × 2`` splatting weights); the pool does not depend on it.

    Returns:
      :class:`KernelPool` with ``N`` kernels; kernel ``i`` is
      ``sample_kernel(fold_in(key, i))``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"kernel pool size must be an int >= 1, got {size!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk!r}")
    chunk = min(chunk, size)
    kwargs = kernels_lib.config_kwargs(cfg)

    @jax.jit
    def sample_chunk(root, start):  # compiled once: every chunk has the same shape
        indices = start + jnp.arange(chunk)
        return jax.vmap(lambda i: kernels_lib.sample_kernel(jax.random.fold_in(root, i), **kwargs))(
            indices
        )

    parts = [sample_chunk(key, jnp.int32(start)) for start in range(0, size, chunk)]
    kernels = jnp.concatenate([p[0] for p in parts])[:size]
    sizes = jnp.concatenate([p[1] for p in parts])[:size]
    canvas = int(cfg.kernel_canvas)
    chex.assert_shape(kernels, (size, canvas, canvas))
    chex.assert_shape(sizes, (size,))
    return KernelPool(kernels=kernels, sizes=sizes)


def draw(pool: KernelPool, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One kernel of the pool, uniformly: ``(f32[canvas, canvas], i32[])``."""
    index = jax.random.randint(key, (), 0, pool.kernels.shape[0])
    return pool.kernels[index], pool.sizes[index]


def pool_from_config(config: ml_collections.ConfigDict) -> KernelPool | None:
    """The run's pool (``None`` when ``degrade.kernel_pool_size`` is 0)."""
    size = int(config.degrade.kernel_pool_size)
    if size < 0:
        raise ValueError(f"degrade.kernel_pool_size must be >= 0, got {size}")
    if size == 0:
        return None
    return make_kernel_pool(pool_key(config.seed), size, config.degrade)
