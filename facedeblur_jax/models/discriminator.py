"""``Discriminator``: DCGAN-style critic for 128×128 faces (paper §3.3).

Six 4×4 stride-2 convolutions (128 → 2 px) with LeakyReLU(0.2), then a dense layer to
one logit. The paper says "6 strided convolutional layers followed by ReLU" and a
sigmoid; we return the logit and compute the sigmoid inside the loss
(``optax.sigmoid_binary_cross_entropy``), which is the numerically stable form of the
same thing. LeakyReLU follows DCGAN (Radford et al. 2016), on which the paper says D is
based; ``negative_slope = 0`` gives the paper's plain ReLU. No normalisation, so D has
no state beyond its parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from facedeblur_jax.core.asserts import check_images

Dtype = Any


class Discriminator(nn.Module):
    """``f32[B, H, W, 3] -> f32[B]`` real-vs-fake logits.

    Attributes:
      features: widths of the strided convs (one per conv; 6 for 128×128 inputs).
      negative_slope: LeakyReLU slope (0 = ReLU).
      dtype: compute dtype.
    """

    features: Sequence[int] = (64, 128, 256, 512, 512, 512)
    negative_slope: float = 0.2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        check_images("images", images, 3, value_range=None)
        h = images.astype(self.dtype)
        for i, f in enumerate(self.features):
            h = nn.Conv(
                f, (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype, name=f"conv{i}"
            )(h)
            h = nn.leaky_relu(h, self.negative_slope)
        h = h.reshape(h.shape[0], -1)
        logit = nn.Dense(1, dtype=self.dtype, name="logit")(h)
        return logit[:, 0].astype(jnp.float32)
