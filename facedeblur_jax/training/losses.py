"""Loss functions of the paper (§3.3), each a pure function.

Reductions follow MatConvNet, the paper's framework: every loss is **summed over pixels
and channels of an image and averaged over the batch**. The paper's weights
(λ_s = 50, λ_p = 1e-4, λ_VGG = 1e-5, λ_adv = 5e-5) balance losses of those magnitudes
(a per-pixel mean would make L_c ~10⁴× smaller at 128² and upset the balance); Adam is
invariant to the overall scale, so only the ratios matter.

Label set (docs/design.md §2): 0 background, 1 skin, 2/3 left/right brow, 4/5 left/right eye,
6 nose, 7 upper lip, 8 inner mouth/teeth, 9 lower lip, 10 hair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from facedeblur_jax.data.labels import PART_CLASSES
from facedeblur_jax.models.layers import downsample

# The 8 key components of L_s (paper §3.3): brows, eyes, nose, upper lip, teeth, lower lip.
KEY_PARTS: tuple[int, ...] = PART_CLASSES


def _batch_mean(per_image: jax.Array, weights: jax.Array | None) -> jax.Array:
    """Mean of ``f32[B]`` over the batch, or the ``weights``-masked mean (0 if all masked)."""
    if weights is None:
        return jnp.mean(per_image)
    w = weights.astype(jnp.float32)
    return jnp.sum(per_image * w) / jnp.maximum(jnp.sum(w), 1.0)


def content_loss(predictions: Sequence[jax.Array], target: jax.Array) -> jax.Array:
    """Multi-scale L1 content loss L_c (eq. 5) of one network's outputs.

    Args:
      predictions: per scale, coarse to fine, ``f32[B, H/2^(S-1-s), W/2^(S-1-s), 3]``; the
        target is 2×2-average-pooled to each scale's size (as the network's inputs are).
      target: ground truth ``f32[B, H, W, 3]``.

    Returns:
      Scalar: Σ_scales Σ_pixels,channels |pred − target↓|, averaged over the batch.
    """
    total = jnp.zeros((), jnp.float32)
    height = target.shape[1]
    for pred in predictions:
        t = downsample(target, height // pred.shape[1])
        total += jnp.mean(jnp.sum(jnp.abs(pred.astype(jnp.float32) - t), axis=(1, 2, 3)))
    return total


def part_masks(labels: jax.Array, parts: Sequence[int], factor: int = 1) -> jax.Array:
    """Soft masks ``f32[B, H/factor, W/factor, P]`` of ``parts`` from ``int[B, H, W]`` labels
    (one-hot, average-pooled ``factor``× for coarser scales)."""
    onehot = (labels[..., None] == jnp.asarray(parts)[None, None, None, :]).astype(jnp.float32)
    return downsample(onehot, factor)


def structural_loss(
    prediction: jax.Array,
    target: jax.Array,
    labels: jax.Array,
    *,
    parts: Sequence[int] = KEY_PARTS,
    c: float = 1.0,
    adaptive: bool = True,
    has_labels: jax.Array | None = None,
    min_area: float = 0.0,
) -> jax.Array:
    """Adaptive local structural loss L_s (eqs. 6–7) at one scale.

    ``L_s = Σ_k w_k ‖M_k ⊙ (y − y_GT)‖₁`` over the key parts, with
    ``w_k = c / max(A_k, floor)`` where ``A_k = Σ M_k`` is the part's area in that image at
    this scale and ``floor = min_area / factor²`` (``adaptive``), or ``w_k = 1`` (the equal
    weights of Shen et al. 2018). Parts absent from an image (``A_k = 0``) contribute 0.

    The floor is not in the paper (eq. 7 is ``c / A_k``): with it a part of a few pixels —
    a stray label pixel, a part cut by the image border after augmentation — gets at most
    the weight of a ``min_area``-pixel part instead of dominating the sum, while parts at
    least that large keep eq. 7's weight exactly (``config.loss.structural_min_area``;
    docs/design.md §4).

    Args:
      prediction: ``f32[B, h, w, 3]`` (one scale of G_f's output).
      target: ``f32[B, H, W, 3]`` full-resolution ground truth.
      labels: ``int[B, H, W]`` ground-truth parsing labels.
      parts: label values of the key parts.
      c: the constant of eq. 7.
      adaptive: size-adaptive weights.
      has_labels: optional ``bool[B]``; images without labels are left out of the mean.
      min_area: the floor of ``A_k`` in pixels at full resolution (``target``'s size); at a
        coarser scale it is divided by the scale's area factor, as ``A_k`` is. 0 = eq. 7.

    Returns:
      Scalar, averaged over (labelled) images.
    """
    factor = target.shape[1] // prediction.shape[1]
    masks = part_masks(labels, parts, factor)  # [B, h, w, P]
    err = jnp.sum(jnp.abs(prediction.astype(jnp.float32) - downsample(target, factor)), -1)
    per_part = jnp.einsum("bhw,bhwp->bp", err, masks)  # ‖M_k ⊙ Δ‖₁ (channels summed)
    if adaptive:
        area = jnp.sum(masks, axis=(1, 2))
        floor = max(float(min_area) / factor**2, 1e-6)
        weights = jnp.where(area > 0, c / jnp.maximum(area, floor), 0.0)
        per_part = per_part * weights
    return _batch_mean(jnp.sum(per_part, axis=-1), has_labels)


def parsing_loss(
    logits: jax.Array, labels: jax.Array, has_labels: jax.Array | None = None
) -> jax.Array:
    """Parsing cross-entropy L_p (eq. 4): ``f32[B, H, W, K]`` logits vs ``int[B, H, W]``
    labels, summed over pixels, averaged over (labelled) images."""
    ce = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), labels.astype(jnp.int32)
    )
    return _batch_mean(jnp.sum(ce, axis=(1, 2)), has_labels)


def perceptual_loss(
    features: Callable[[jax.Array], Mapping[str, jax.Array]],
    prediction: jax.Array,
    target: jax.Array,
    layers: Sequence[str] = ("pool2", "pool5"),
) -> jax.Array:
    """Perceptual loss L_VGG (eq. 8): Σ_l ‖φ_l(y) − φ_l(y_GT)‖₁ over ``layers``.

    Args:
      features: maps ``f32[B, H, W, 3]`` in [0, 1] to a dict of feature maps (VGG-Face).
      prediction, target: ``f32[B, H, W, 3]``.
      layers: feature names to compare (paper: pool2 and pool5).

    Returns:
      Scalar, summed over feature elements, averaged over the batch. The target's features
      carry no gradient.
    """
    both = features(jnp.concatenate([prediction, target], axis=0))
    b = prediction.shape[0]
    total = jnp.zeros((), jnp.float32)
    for name in layers:
        f = both[name].astype(jnp.float32)
        diff = jnp.abs(f[:b] - jax.lax.stop_gradient(f[b:]))
        total += jnp.mean(jnp.sum(diff, axis=tuple(range(1, diff.ndim))))
    return total


def identity_loss(
    embed: Callable[[jax.Array], jax.Array], prediction: jax.Array, target: jax.Array
) -> jax.Array:
    """Optional identity loss (not in the paper): mean cosine distance ``1 − cos(e(y),
    e(y_GT))`` of face-identity embeddings (docs/design.md §4).

    A substitute where VGG-Face weights are unavailable: it uses the converted public
    MobileFaceNet (``models/mobilefacenet.py``), is off unless ``loss.identity_weight > 0``,
    and never replaces L_VGG — a phase that lists both needs both weight files.

    Args:
      embed: maps ``f32[B, H, W, 3]`` aligned faces in [0, 1] to ``f32[B, D]`` embeddings
        (the frozen network).
      prediction, target: ``f32[B, H, W, 3]``.

    Returns:
      Scalar, averaged over the batch; the target's embedding carries no gradient.
    """
    both = embed(jnp.concatenate([prediction, target], axis=0)).astype(jnp.float32)
    b = prediction.shape[0]
    e, t = both[:b], jax.lax.stop_gradient(both[b:])
    cos = jnp.sum(e * t, axis=-1) / jnp.maximum(
        jnp.linalg.norm(e, axis=-1) * jnp.linalg.norm(t, axis=-1), 1e-12
    )
    return jnp.mean(1.0 - cos)


def generator_adversarial_loss(fake_logits: jax.Array) -> jax.Array:
    """Non-saturating generator loss L_adv = −log D(y) (eq. 10), D given as logits ``f32[B]``."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """D's loss −log D(y_GT) − log(1 − D(y)) (eq. 9), from logits ``f32[B]``."""
    real = optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
    fake = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
    return jnp.mean(real + fake)
