"""``ParsingNet``: the face parsing network P (paper §3.2, docs/design.md §2).

The paper says only "an encoder-decoder architecture with skip connections". The layout
is the one the authors' official test code builds (``DL_deblur_net18.m``), stage for
stage, with ``n = len(features)`` (6 there):

    enc0 … enc{n-1}   conv (3×3; 5×5 for enc2) → BatchNorm → ReLU, then a 2×2 max-pool
                      after every stage but the last (5 pools for n = 6)
    up{j}, dec{j}     for j = n-2 … 0: 4×4 stride-2 transposed conv → conv 3×3 → BatchNorm
                      → ReLU, then ``+`` the encoder's ReLU output of stage j for j ≥ 1
                      (4 additive skips for n = 6; the last stage, j = 0, has none)
    logits            conv 3×3 → ``num_classes``

Padding keeps sizes (the official pads are ``k // 2``; its transposed convs crop 1, i.e.
2× upsampling), BatchNorm ε = 1e-4 as there. ``H`` and ``W`` must divide by ``2^(n-1)``.

The widths are not published (the official weights are not in its repository). The
encoder's are ``features``; each decoder stage ends at the width of the skip it adds to
(stage j: ``features[j]``, also for the transposed conv; the skipless last stage keeps
``features[0]``), so the decoder mirrors the encoder. The default ``(64, 128, 256, 256,
256, 256)`` doubles from G's 64 features and stops at 256, chosen once and not tuned to a
count: G_c + P + G_f (N = 1) then has 15.37 M parameters against Table 8's 14.80 M
(``facedeblur params --config paper``; Table 8, Table 12 and the text do not agree on the
count, see docs/design.md §2).

In the official test code P sees the blurred image (CVPR'18: P → G, ``models/cvpr18.py``);
in the IJCV model it sees G_c's output (``FaceDeblurModel``).

Normalisation (``norm``):

* ``"batch"`` (the IJCV model as trained here): BatchNorm; statistics live in the
  ``batch_stats`` collection; during training they are averaged over the device axis
  ``bn_axis_name`` (the mesh axis ``"data"``) so all replicas keep identical statistics;
  in eval mode the running averages are used.
* ``"per_image"`` (the released CVPR'18 model): the released test code calls
  ``vl_nnbnorm`` without stored moments on one image at a time, i.e. each image is
  normalised with its own mean and (biased) variance per channel over H×W, then scaled and
  shifted by BatchNorm's learned ``scale`` and ``bias`` (:class:`PerImageNorm`). A batch of N
  images gives the outputs of N single images; there are no running averages.

Decoder widths: the released weights fix each decoder stage's transposed-conv width and
the last stage's width independently (``up_features``, ``last_features``; the converter
reads them from the weights); by default they mirror the encoder as above.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from facedeblur_jax.core.asserts import check_images

Dtype = Any

WIDE_STAGE = 2  # the official encoder's third conv is 5×5 (pad 2); all others are 3×3


NORMS = ("batch", "per_image")


class PerImageNorm(nn.Module):
    """``vl_nnbnorm`` applied to one image at a time: ``[B, H, W, C] -> [B, H, W, C]``,
    ``scale · (x - μ) / sqrt(σ² + ε) + bias`` with μ, σ² each image's own per-channel mean
    and biased variance over H×W. The parameters are named as ``nn.BatchNorm``'s."""

    epsilon: float = 1e-4
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        h = x.astype(jnp.float32)
        mean = h.mean(axis=(1, 2), keepdims=True)
        var = jnp.square(h - mean).mean(axis=(1, 2), keepdims=True)
        y = (h - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
        return y.astype(self.dtype)


class ParsingNet(nn.Module):
    """Face parsing network: ``f32[B, H, W, 3] -> logits f32[B, H, W, num_classes]``.

    Attributes:
      num_classes: K (Helen's 11 classes by default, docs/design.md §2).
      features: encoder widths, one per conv stage (official: 6 stages); ``H`` and ``W``
        must divide by ``2^(len(features) - 1)``.
      use_bn: normalisation after every conv but the logits (the official code uses it).
      norm: ``"batch"`` or ``"per_image"`` (module docstring).
      up_features: width of each decoder stage's transposed conv, indexed like
        ``features`` (entry ``j`` upsamples into stage ``j``; ``len(features) - 1``
        entries); empty = ``features[j]``.
      last_features: width of the last decoder stage (it adds no skip); 0 = ``features[0]``.
      bn_axis_name: named axis to average batch statistics over in training (``"data"``
        inside the sharded train step), or ``None``.
      bn_momentum: running-average momentum.
      bn_epsilon: BatchNorm ε (official: 1e-4).
      dtype: compute dtype.
    """

    num_classes: int = 11
    features: Sequence[int] = (64, 128, 256, 256, 256, 256)
    use_bn: bool = True
    norm: str = "batch"
    up_features: Sequence[int] = ()
    last_features: int = 0
    bn_axis_name: str | None = None
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-4
    dtype: Dtype = jnp.float32

    def _norm_act(self, h: jax.Array, train: bool, name: str) -> jax.Array:
        if self.use_bn and self.norm == "per_image":
            h = PerImageNorm(self.bn_epsilon, self.dtype, name=name)(h)
        elif self.use_bn:
            h = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                epsilon=self.bn_epsilon,
                axis_name=self.bn_axis_name if train else None,
                dtype=self.dtype,
                name=name,
            )(h)
        return nn.relu(h)

    def _conv(self, features: int, size: int, name: str) -> nn.Conv:
        return nn.Conv(features, (size, size), padding="SAME", dtype=self.dtype, name=name)

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
        if depth < 1:
            raise ValueError("ParsingNet needs at least one encoder width in features")
        if self.norm not in NORMS:
            raise ValueError(f"ParsingNet norm must be one of {NORMS}; got {self.norm!r}")
        ups = tuple(self.up_features) or tuple(self.features[: depth - 1])
        if len(ups) != depth - 1:
            raise ValueError(
                f"up_features needs {depth - 1} widths (one per decoder stage); got {ups}"
            )
        pools = 2 ** (depth - 1)
        if x.shape[1] % pools or x.shape[2] % pools:
            raise ValueError(
                f"ParsingNet with {depth} stages ({depth - 1} pools) needs height and width "
                f"divisible by {pools}; got x of shape {x.shape}"
            )
        h = x.astype(self.dtype)
        skips = []
        for i, f in enumerate(self.features):
            h = self._conv(f, 5 if i == WIDE_STAGE else 3, f"enc{i}")(h)
            h = self._norm_act(h, train, f"enc{i}_bn")
            skips.append(h)
            if i < depth - 1:
                h = nn.max_pool(h, (2, 2), strides=(2, 2))
        for j in reversed(range(depth - 1)):
            f = self.features[j] if j > 0 or not self.last_features else self.last_features
            h = nn.ConvTranspose(
                ups[j], (4, 4), strides=(2, 2), padding="SAME", dtype=self.dtype, name=f"up{j}"
            )(h)
            h = self._norm_act(self._conv(f, 3, f"dec{j}")(h), train, f"dec{j}_bn")
            if j > 0:
                h = h + skips[j]
        logits = self._conv(self.num_classes, 3, "logits")(h)
        return logits.astype(jnp.float32)
