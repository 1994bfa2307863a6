import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.training import losses


def test_content_loss_hand_computed_4x4():
    target = jnp.zeros((1, 4, 4, 3))
    full = target.at[0, 0, 0, 0].set(1.0).at[0, 3, 3, 2].set(-0.5)  # |Δ| sums to 1.5
    half = jnp.full((1, 2, 2, 3), 0.25)  # vs pooled target 0: 12 × 0.25 = 3
    assert float(losses.content_loss([half, full], target)) == pytest.approx(4.5)
    # Averaged over the batch, summed over pixels/channels.
    two = losses.content_loss([jnp.concatenate([full, target])], jnp.concatenate([target] * 2))
    assert float(two) == pytest.approx(0.75)


def test_content_loss_pools_target_to_each_scale():
    target = jnp.arange(16.0).reshape(1, 4, 4, 1).repeat(3, -1)
    pooled = target.reshape(1, 2, 2, 2, 2, 3).mean((2, 4))
    assert float(losses.content_loss([pooled], target)) == 0.0


def _labels_4x4():
    # Row-major 4×4 map: left eye (4) = 2 px, nose (6) = 1 px, skin elsewhere.
    lab = np.ones((1, 4, 4), np.int32)
    lab[0, 0, 0] = lab[0, 0, 1] = 4
    lab[0, 2, 2] = 6
    return jnp.asarray(lab)


def test_structural_loss_adaptive_weights_hand_computed():
    labels = _labels_4x4()
    target = jnp.zeros((1, 4, 4, 3))
    pred = target.at[0, 0, 0, :].set(0.1)  # eye error: 3 ch × 0.1 = 0.3 over A = 2
    pred = pred.at[0, 2, 2, 0].set(0.4)  # nose error 0.4 over A = 1
    pred = pred.at[0, 3, 3, :].set(1.0)  # skin: not a key part, ignored
    adaptive = losses.structural_loss(pred, target, labels)
    assert float(adaptive) == pytest.approx(0.3 / 2 + 0.4 / 1)
    equal = losses.structural_loss(pred, target, labels, adaptive=False)
    assert float(equal) == pytest.approx(0.3 + 0.4)
    scaled = losses.structural_loss(pred, target, labels, c=2.0)
    assert float(scaled) == pytest.approx(2 * (0.15 + 0.4))


def test_structural_loss_absent_parts_and_unlabelled_images():
    labels = jnp.zeros((2, 4, 4), jnp.int32)  # background only: no key part
    pred = jnp.ones((2, 4, 4, 3))
    assert float(losses.structural_loss(pred, jnp.zeros_like(pred), labels)) == 0.0
    lab = jnp.concatenate([_labels_4x4(), _labels_4x4()])
    target = jnp.zeros((2, 4, 4, 3))
    err = target.at[0, 2, 2, 0].set(0.4).at[1, 2, 2, 0].set(100.0)
    masked = losses.structural_loss(err, target, lab, has_labels=jnp.array([True, False]))
    assert float(masked) == pytest.approx(0.4)
    none = losses.structural_loss(err, target, lab, has_labels=jnp.array([False, False]))
    assert float(none) == 0.0


def test_structural_loss_at_half_scale_uses_soft_masks():
    labels = _labels_4x4()
    target = jnp.zeros((1, 4, 4, 3))
    pred = jnp.zeros((1, 2, 2, 3)).at[0, 0, 0, 0].set(1.0)
    # Top-left 2×2 block holds the 2 eye px: mask 0.5, area 0.5 → w = 2; error 1 × 0.5.
    assert float(losses.structural_loss(pred, target, labels)) == pytest.approx(1.0)


def test_structural_loss_area_floor_hand_computed():
    """w_k = c / max(A_k, floor): the 1-px nose is floored, the 2-px eye is not (floor 1.5);
    absent parts still give 0; at half scale the floor is divided by 4."""
    labels = _labels_4x4()
    target = jnp.zeros((1, 4, 4, 3))
    pred = target.at[0, 0, 0, :].set(0.1).at[0, 2, 2, 0].set(0.4)
    floored = losses.structural_loss(pred, target, labels, min_area=1.5)
    assert float(floored) == pytest.approx(0.3 / 2 + 0.4 / 1.5)
    both = losses.structural_loss(pred, target, labels, min_area=4.0, c=2.0)
    assert float(both) == pytest.approx(2 * (0.3 / 4 + 0.4 / 4))
    assert float(losses.structural_loss(pred, target, labels, min_area=0.0)) == pytest.approx(
        0.3 / 2 + 0.4
    )
    empty = jnp.zeros((1, 4, 4), jnp.int32)
    assert float(losses.structural_loss(pred, target, empty, min_area=4.0)) == 0.0
    # Half scale: eye mask area 0.5, floor 4 / 2² = 1 → w = 1; error 1 × 0.5.
    half = jnp.zeros((1, 2, 2, 3)).at[0, 0, 0, 0].set(1.0)
    assert float(losses.structural_loss(half, target, labels, min_area=4.0)) == pytest.approx(0.5)
    assert float(losses.structural_loss(half, target, labels, min_area=1.0)) == pytest.approx(1.0)


def test_parsing_loss_hand_computed():
    labels = jnp.array([[[0, 1]]], jnp.int32)  # [1, 1, 2]
    logits = jnp.array([[[[0.0, 0.0], [jnp.log(3.0), 0.0]]]])  # p = (.5,.5), (.75,.25)
    expected = -np.log(0.5) - np.log(0.25)
    assert float(losses.parsing_loss(logits, labels)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.parsing_loss(logits, labels, jnp.array([False]))) == 0.0


def test_perceptual_loss_sums_layers_and_stops_target_gradient():
    def features(x):
        return {"pool2": x * 2.0, "pool5": x.mean(axis=(1, 2), keepdims=True), "other": x * 1e9}

    target = jnp.zeros((1, 2, 2, 3))
    pred = jnp.full((1, 2, 2, 3), 0.5)
    value = losses.perceptual_loss(features, pred, target)
    assert float(value) == pytest.approx(12 * 1.0 + 3 * 0.5)
    g = jax.grad(lambda t: losses.perceptual_loss(features, pred, t))(target)
    assert float(jnp.abs(g).sum()) == 0.0


def test_adversarial_losses():
    zero = jnp.zeros((4,))
    assert float(losses.generator_adversarial_loss(zero)) == pytest.approx(np.log(2))
    assert float(losses.discriminator_loss(zero, zero)) == pytest.approx(2 * np.log(2))
    # Confident, correct D: small loss; G is punished when D says "fake".
    assert float(losses.discriminator_loss(jnp.full(4, 20.0), jnp.full(4, -20.0))) < 1e-6
    assert float(losses.generator_adversarial_loss(jnp.full(4, -20.0))) == pytest.approx(20.0)
