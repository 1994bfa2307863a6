"""``FaceDeblurModel``: G_c → P → N × G_f (paper Fig. 3, Table 8).

    x ──G_c──▶ y_c ──P──▶ p = softmax(logits)
    (x, y_c, p) ──G_f──▶ y_1;  (x, y_1, p) ──G_f'──▶ y_2 ...     (num_fine_stages = N)

Parameters are grouped by sub-network — ``coarse``, ``parsing``, ``fine_0`` … ``fine_{N-1}``
(or a single ``fine`` when ``share_fine_weights``) — so the training schedule can freeze
or train each net by the top-level key of the param tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from facedeblur_jax.core.asserts import check_images
from facedeblur_jax.models.deblur_net import MultiScaleDeblurNet
from facedeblur_jax.models.parsing_net import ParsingNet

Dtype = Any
STAGES = ("coarse", "parsing", "fine")


@flax.struct.dataclass
class DeblurOutputs:
    """Every intermediate the losses need. ``S`` = num_scales, ``N`` = num_fine_stages.

    Attributes:
      coarse: G_c's predictions per scale, coarse to fine: ``S × f32[B, H/2^(S-1-s), ., 3]``;
        ``coarse[-1]`` is ``y_c``.
      parsing_logits: P's logits ``f32[B, H, W, K]`` (``None`` if not computed).
      prior: the probabilities fed to G_f ``f32[B, H, W, K]`` (softmax of the logits, or the
        caller's override), ``None`` if G_f did not run.
      fine: per fine stage, G_f's predictions per scale: ``N × S × f32[...]``; ``fine[-1][-1]``
        is the final ``y``. Empty if G_f did not run.
    """

    coarse: tuple[jax.Array, ...]
    parsing_logits: jax.Array | None = None
    prior: jax.Array | None = None
    fine: tuple[tuple[jax.Array, ...], ...] = ()

    @property
    def y_coarse(self) -> jax.Array:
        """``y_c``: ``f32[B, H, W, 3]``."""
        return self.coarse[-1]

    @property
    def y(self) -> jax.Array:
        """The final output: last fine stage, full scale (``y_c`` if G_f did not run)."""
        return self.fine[-1][-1] if self.fine else self.coarse[-1]


class FaceDeblurModel(nn.Module):
    """The full semantic face deblurring model.

    Attributes:
      num_classes: K parsing classes (11).
      num_fine_stages: N cascaded fine nets (paper default 1; Table 8 tries 2, 3).
      share_fine_weights: one set of G_f weights for all N stages (Table 8, "shared").
      first_kernel, features, num_resblocks, num_scales, kernel_size, resblock_post_relu,
      upsample, residual, remat: forwarded to every deblurring net (see
      ``MultiScaleDeblurNet``).
      parsing_features, parsing_use_bn, bn_axis_name: forwarded to ``ParsingNet``.
      dtype: compute dtype of all nets (params float32).
    """

    num_classes: int = 11
    num_fine_stages: int = 1
    share_fine_weights: bool = False
    first_kernel: int = 11
    features: int = 64
    num_resblocks: int = 6
    num_scales: int = 2
    kernel_size: int = 5
    resblock_post_relu: bool = True
    upsample: str = "transposed"
    residual: bool = True
    remat: bool = False
    parsing_features: Sequence[int] = (64, 128, 256, 256, 256, 256)
    parsing_use_bn: bool = True
    bn_axis_name: str | None = None
    dtype: Dtype = jnp.float32

    def _deblur_net(self, name: str) -> MultiScaleDeblurNet:
        return MultiScaleDeblurNet(
            first_kernel=self.first_kernel,
            features=self.features,
            num_resblocks=self.num_resblocks,
            num_scales=self.num_scales,
            kernel_size=self.kernel_size,
            resblock_post_relu=self.resblock_post_relu,
            upsample=self.upsample,
            residual=self.residual,
            remat=self.remat,
            dtype=self.dtype,
            name=name,
        )

    def fine_names(self) -> tuple[str, ...]:
        """Top-level param keys of the fine nets."""
        if self.share_fine_weights:
            return ("fine",)
        return tuple(f"fine_{i}" for i in range(self.num_fine_stages))

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        upto: str = "fine",
        train_parsing: bool = False,
        prior: jax.Array | None = None,
    ) -> DeblurOutputs:
        """Runs the cascade up to ``upto``.

        Args:
          x: blurred faces ``f32[B, H, W, 3]`` in [0, 1].
          upto: ``"coarse"`` (G_c only), ``"parsing"`` (G_c, P) or ``"fine"`` (everything).
            Earlier training phases skip the nets they neither train nor need.
          train_parsing: BatchNorm of P in training mode (batch statistics, running
            averages updated; needs the ``batch_stats`` collection mutable).
          prior: optional ``f32[B, H, W, K]`` to feed G_f instead of ``softmax(P(y_c))``
            (ground-truth one-hot maps, zeros, shuffled maps: the Table 2 experiments). P
            still runs so its logits are reported.

        Returns:
          :class:`DeblurOutputs`.
        """
        if upto not in STAGES:
            raise ValueError(f"upto must be one of {STAGES}; got {upto!r}")
        check_images("x", x, 3, value_range=None)
        if prior is not None and prior.shape != (*x.shape[:3], self.num_classes):
            raise ValueError(
                f"prior must have shape [B, H, W, K] = {(*x.shape[:3], self.num_classes)}; "
                f"got shape {prior.shape}"
            )

        coarse = self._deblur_net("coarse")(x)
        if upto == "coarse":
            return DeblurOutputs(coarse=coarse)
        y_c = coarse[-1]
        logits = ParsingNet(
            num_classes=self.num_classes,
            features=tuple(self.parsing_features),
            use_bn=self.parsing_use_bn,
            bn_axis_name=self.bn_axis_name,
            dtype=self.dtype,
            name="parsing",
        )(y_c, train=train_parsing)
        if upto == "parsing":
            return DeblurOutputs(coarse=coarse, parsing_logits=logits)

        p = jax.nn.softmax(logits, axis=-1) if prior is None else prior.astype(jnp.float32)
        names = self.fine_names()
        nets = [self._deblur_net(n) for n in names]
        fine = []
        previous = y_c
        for i in range(self.num_fine_stages):
            net = nets[0] if self.share_fine_weights else nets[i]
            out = net(x, guide=previous, prior=p)
            fine.append(out)
            previous = out[-1]
        return DeblurOutputs(coarse=coarse, parsing_logits=logits, prior=p, fine=tuple(fine))
