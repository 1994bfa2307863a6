"""Parameter counts per network, next to the paper's numbers (Table 8 / Table 12)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from facedeblur_jax.models.factory import build_discriminator, build_model

# Table 8: G_c + P + G_f, N = 1 → 14.80 M; N = 2 → 26.66 M; N = 3 → 38.52 M.
# Table 12 reports 26.6 M for the same model; the paper does not give per-net counts.
PAPER_TOTAL = {1: 14.80e6, 2: 26.66e6, 3: 38.52e6}


def count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def param_counts(config: ml_collections.ConfigDict) -> dict[str, int]:
    """Counts of every top-level net (``coarse``, ``parsing``, ``fine_*``, ``disc``) and the
    generator total (without D, as the paper counts), from shapes only (no FLOPs spent)."""
    size = config.image_size
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    model = build_model(config.model)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]
    counts = {name: count(tree) for name, tree in shapes.items()}
    counts["generator_total"] = sum(counts.values())
    disc = build_discriminator(config.model)
    counts["disc"] = count(jax.eval_shape(lambda: disc.init(jax.random.key(0), x))["params"])
    return counts
