"""What G_f (or the CVPR'18 G) is fed as its semantic prior: one vocabulary, one implementation.

The model's own prior is ``softmax(P(·))`` (:data:`PREDICTED`). The paper's Table 2 asks
whether the deblurring net uses it, by training and testing it with other maps:

* :data:`ZEROS` — no prior (Table 2's baseline "G");
* :data:`GROUND_TRUTH` — the face's one-hot parsing label ("p_GT + G");
* :data:`SHUFFLED` — the one-hot label of another face (:func:`other_face`): the right kind
  of map for the wrong face.

Training may feed :data:`TRAINING` (``config.phases.<name>.prior``, ``training/step.py``);
evaluation may score :data:`TEST` beside the model's own prediction (``facedeblur eval
--priors``, ``evaluators/psnr_ssim.py``); the notebooks use the same functions, plus
:func:`permute_classes` (a map with the right shapes and the wrong meaning).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

PREDICTED = "predicted"
ZEROS = "zeros"
GROUND_TRUTH = "ground_truth"
SHUFFLED = "shuffled"
TRAINING = (PREDICTED, ZEROS, GROUND_TRUTH)  # what a training phase may feed
TEST = (ZEROS, GROUND_TRUTH, SHUFFLED)  # what evaluation may feed instead of the prediction
DESCRIPTIONS = {
    PREDICTED: "softmax(P(·)), the model's own prior",
    ZEROS: "no prior (zeros)",
    GROUND_TRUTH: "the face's one-hot parsing label",
    SHUFFLED: "the one-hot parsing label of test face (i + N // 2) mod N",
}


def zeros(batch_hw: tuple[int, int, int], num_classes: int) -> jax.Array:
    """No prior: ``f32[B, H, W, K]`` zeros for ``batch_hw = (B, H, W)``."""
    return jnp.zeros((*batch_hw, num_classes), jnp.float32)


def ground_truth(labels: jax.Array, num_classes: int) -> jax.Array:
    """One-hot parsing labels ``int[B, H, W] -> f32[B, H, W, K]``."""
    chex.assert_rank(labels, 3)
    return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)


def other_face(index: jax.Array, count: int) -> jax.Array:
    """The face whose label :data:`SHUFFLED` feeds to face ``index`` of ``count``: face
    ``(index + count // 2) mod count`` (never the face itself when ``count > 1``)."""
    return (index + count // 2) % count


def shuffled(all_labels: jax.Array, index: jax.Array, num_classes: int) -> jax.Array:
    """:data:`SHUFFLED`: for faces ``index`` (``i32[B]``) of a set with labels
    ``int[N, H, W]``, the one-hot labels of faces :func:`other_face` ``f32[B, H, W, K]``."""
    chex.assert_rank(all_labels, 3)
    return ground_truth(all_labels[other_face(index, all_labels.shape[0])], num_classes)


def fed(
    name: str,
    *,
    num_classes: int,
    batch_hw: tuple[int, int, int],
    labels: jax.Array | None = None,
    all_labels: jax.Array | None = None,
    index: jax.Array | None = None,
) -> jax.Array | None:
    """The prior ``name`` for a batch: ``None`` for :data:`PREDICTED` (the model computes
    it), else ``f32[B, H, W, K]``.

    Args:
      name: one of :data:`PREDICTED`, :data:`ZEROS`, :data:`GROUND_TRUTH`, :data:`SHUFFLED`.
      num_classes: K.
      batch_hw: ``(B, H, W)``.
      labels: ``int[B, H, W]``, the batch's labels (:data:`GROUND_TRUTH`).
      all_labels, index: the labels of the whole set ``int[N, H, W]`` and the batch's rows
        in it ``i32[B]`` (:data:`SHUFFLED`; :data:`GROUND_TRUTH` too when ``labels`` is not
        given).

    Raises:
      ValueError: an unknown name, or a name whose labels were not given.
    """
    if name == PREDICTED:
        return None
    if name == ZEROS:
        return zeros(batch_hw, num_classes)
    if name == GROUND_TRUTH:
        if labels is None and all_labels is not None and index is not None:
            labels = all_labels[index]
        if labels is None:
            raise ValueError("the ground_truth prior needs the faces' parsing labels")
        return ground_truth(labels, num_classes)
    if name == SHUFFLED:
        if all_labels is None or index is None:
            raise ValueError("the shuffled prior needs the labels of the whole face set")
        return shuffled(all_labels, index, num_classes)
    known = (PREDICTED, *TEST)
    raise ValueError(f"unknown prior {name!r}; known: {', '.join(known)}")


def permute_classes(prior: jax.Array, key: jax.Array) -> jax.Array:
    """``prior`` with its K class channels in a random order (``key``): a map with the
    right shapes and statistics and the wrong meaning."""
    return prior[..., jax.random.permutation(key, prior.shape[-1])]
