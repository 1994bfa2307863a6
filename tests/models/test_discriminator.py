import jax
import jax.numpy as jnp
import pytest

from facedeblur_jax.models.discriminator import Discriminator


def test_paper_size_logits():
    d = Discriminator()
    x = jnp.zeros((2, 128, 128, 3))
    shapes = jax.eval_shape(lambda: d.init(jax.random.key(0), x))
    assert len(shapes["params"]) == 7  # 6 strided convs + the logit layer
    out = jax.eval_shape(lambda v: d.apply(v, x), shapes)
    assert out.shape == (2,)


def test_tiny_forward_finite():
    d = Discriminator(features=(4, 8, 8))
    x = jax.random.uniform(jax.random.key(0), (3, 32, 32, 3))
    logits = d.apply(d.init(jax.random.key(1), x), x)
    assert logits.shape == (3,) and bool(jnp.all(jnp.isfinite(logits)))


def test_rejects_gray():
    with pytest.raises(ValueError, match="images must have 3 channels"):
        Discriminator().init(jax.random.key(0), jnp.zeros((1, 128, 128, 1)))
