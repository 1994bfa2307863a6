"""Parameter counts per network, next to the paper's numbers (Table 8 / Table 12).

The paper gives totals only, and they disagree: Table 8 lists 14.80 M for G_c + P + G_f
(N = 1) and 11.86 M more per extra G_f (26.66 M, 38.52 M), Table 12 lists 26.6 M for the
same model, and a G_f laid out as §3.5 describes has ~3.6 M parameters, not 11.86 M.
They count the IJCV cascade; the released CVPR'18 model (``model.kind = "cvpr18"``: P and
one G) has no published count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from facedeblur_jax.models.factory import build_discriminator, build_model

# Table 8: G_c + P + G_f, N = 1 → 14.80 M; N = 2 → 26.66 M; N = 3 → 38.52 M; shared G_f
# weights stay at 14.80 M. Table 12 ("Ours"): 26.6 M.
PAPER_TOTAL = {1: 14.80e6, 2: 26.66e6, 3: 38.52e6}
PAPER_TABLE12 = 26.6e6


def count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def net_label(key: str) -> str:
    """The paper's name of a top-level param key: ``coarse`` → ``G_c``, ``fine_1`` → ``G_f #2``,
    ``generator`` (the CVPR'18 model's one G) → ``G``."""
    if key.startswith("fine_"):
        return f"G_f #{int(key.split('_')[1]) + 1}"
    names = {"coarse": "G_c", "parsing": "P", "fine": "G_f (shared)", "generator": "G"}
    return {**names, "disc": "D"}.get(key, key)


def paper_total(model_cfg: ml_collections.ConfigDict) -> float | None:
    """Table 8's G_c + P + G_f count for this config's N (shared weights: N = 1's); ``None``
    for a model that is not the IJCV cascade (``model.kind``) or an N Table 8 lacks."""
    if model_cfg.get("kind", "ijcv") != "ijcv":
        return None
    if model_cfg.share_fine_weights:
        return PAPER_TOTAL[1]
    return PAPER_TOTAL.get(int(model_cfg.num_fine_stages))


def param_counts(config: ml_collections.ConfigDict) -> dict[str, int]:
    """Counts of every top-level net (``coarse``, ``parsing``, ``fine_*``, ``disc``; for
    ``model.kind = "cvpr18"`` ``parsing``, ``generator``, ``disc``) and the generator total
    (without D, as the paper counts), from shapes only (no FLOPs spent)."""
    size = config.image_size
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    model = build_model(config.model)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]
    counts = {name: count(tree) for name, tree in shapes.items()}
    counts["generator_total"] = sum(counts.values())
    disc = build_discriminator(config.model)
    counts["disc"] = count(jax.eval_shape(lambda: disc.init(jax.random.key(0), x))["params"])
    return counts
