"""``ParsingNet``: the face parsing network P (paper §3.2, DESIGN.md §2).

Encoder–decoder with additive skips, after the official CVPR'18 code of Shen et al.:
``len(features)`` encoder stages of conv 3×3 (+BatchNorm) + ReLU + 2×2 max-pool, then as
many decoder stages of 4×4 stride-2 transposed conv (+BatchNorm) + ReLU whose output is
added to the matching encoder activation, and a 1×1 conv to ``num_classes`` logits.

The paper gives neither the widths nor the depth of P. The default widths
``(64, 128, 256, 320, 320, 320)`` are our choice: with them G_c + P + G_f (N = 1) has
15.1 M parameters against the 14.8 M of Table 8 (see ``tools/param_count.py``).

BatchNorm statistics live in the ``batch_stats`` collection; during training they are
averaged over the device axis ``bn_axis_name`` (the mesh axis ``"data"``) so all
replicas keep identical statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from facedeblur_jax.checks import check_images

Dtype = Any


class ParsingNet(nn.Module):
    """Face parsing network: ``f32[B, H, W, 3] -> logits f32[B, H, W, num_classes]``.

    Attributes:
      num_classes: K (Helen's 11 classes by default, DESIGN.md §2).
      features: encoder widths, one per stage; ``H`` and ``W`` must divide by
        ``2^len(features)``.
      use_bn: BatchNorm after every conv (the official code uses it).
      bn_axis_name: named axis to average batch statistics over in training (``"data"``
        inside the sharded train step), or ``None``.
      bn_momentum: running-average momentum.
      dtype: compute dtype.
    """

    num_classes: int = 11
    features: Sequence[int] = (64, 128, 256, 320, 320, 320)
    use_bn: bool = True
    bn_axis_name: str | None = None
    bn_momentum: float = 0.99
    dtype: Dtype = jnp.float32

    def _norm_act(self, h: jax.Array, train: bool, name: str) -> jax.Array:
        if self.use_bn:
            h = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                axis_name=self.bn_axis_name if train else None,
                dtype=self.dtype,
                name=name,
            )(h)
        return nn.relu(h)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Returns per-pixel class logits.

        Args:
          x: images ``f32[B, H, W, 3]`` (the coarse deblurred ``y_c`` in the full model).
          train: use batch statistics and update the running averages.

        Returns:
          ``f32[B, H, W, num_classes]`` logits (softmax gives ``p``).
        """
        check_images("x", x, 3, value_range=None)
        depth = len(self.features)
        if x.shape[1] % 2**depth or x.shape[2] % 2**depth:
            raise ValueError(
                f"ParsingNet with {depth} stages needs height and width divisible by "
                f"{2**depth}; got x of shape {x.shape}"
            )
        h = x.astype(self.dtype)
        skips = []
        for i, f in enumerate(self.features):
            h = nn.Conv(f, (3, 3), padding="SAME", dtype=self.dtype, name=f"enc{i}")(h)
            h = self._norm_act(h, train, f"enc{i}_bn")
            skips.append(h)
            h = nn.max_pool(h, (2, 2), strides=(2, 2))
        for i in reversed(range(depth)):
            h = nn.ConvTranspose(
                self.features[i],
                (4, 4),
                strides=(2, 2),
                padding="SAME",
                dtype=self.dtype,
                name=f"dec{i}",
            )(h)
            h = self._norm_act(h, train, f"dec{i}_bn")
            h = h + skips[i]
        logits = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, name="logits")(h)
        return logits.astype(jnp.float32)
