"""``FaceDeblurModel``: G_c → P → N × G_f (paper Fig. 3, Table 8), and the interface every
model kind shares (:class:`DeblurOutputs`; the methods :meth:`~FaceDeblurModel.parse` and
:meth:`~FaceDeblurModel.deblur_given_prior`).

    x ──G_c──▶ y_c ──P──▶ p = softmax(logits)
    (x, y_c, p) ──G_f──▶ y_1;  (x, y_1, p) ──G_f'──▶ y_2 ...     (num_fine_stages = N)

The sub-networks are passed as module constructors (``coarse_cls``, ``parsing_cls``,
``fine_cls``; e.g. ``functools.partial(MultiScaleDeblurNet, features=64)``), as flax's
``examples/imagenet`` ResNet takes ``block_cls``; ``models/factory.py`` builds them from a
config. Parameters are grouped by sub-network — ``coarse``, ``parsing``, ``fine_0`` …
``fine_{N-1}`` (or a single ``fine`` when ``share_fine_weights``) — so the training
schedule can freeze or train each net by the top-level key of the param tree.

Outside this package a model's parts are reached through its methods, with the full
variables: ``model.apply(variables, images, method="parse")`` for P's logits,
``model.apply(variables, x, prior, method="deblur_given_prior")`` for the cascade with G_f
fed another prior (``models/priors.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from facedeblur_jax.core.asserts import check_images

ModuleDef = Any
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
        """``y_c``: ``f32[B, H, W, 3]`` (a model without G_c has none: ``ValueError``)."""
        if not self.coarse:
            raise ValueError("this model has no coarse net G_c, so no y_c")
        return self.coarse[-1]

    @property
    def y(self) -> jax.Array:
        """The final output: last fine stage, full scale (``y_c`` if G_f did not run)."""
        return self.fine[-1][-1] if self.fine else self.coarse[-1]


class FaceDeblurModel(nn.Module):
    """The full semantic face deblurring model of the IJCV paper.

    Attributes:
      coarse_cls: constructor of G_c (``x -> tuple of per-scale predictions``).
      parsing_cls: constructor of P (``images, train -> logits [B, H, W, K]``).
      fine_cls: constructor of each G_f (``x, guide, prior -> per-scale predictions``).
      num_classes: K parsing classes (11); P's output and G_f's prior channels.
      num_fine_stages: N cascaded fine nets (paper default 1; Table 8 tries 2, 3).
      share_fine_weights: one set of G_f weights for all N stages (Table 8, "shared").
    """

    coarse_cls: ModuleDef
    parsing_cls: ModuleDef
    fine_cls: ModuleDef
    num_classes: int = 11
    num_fine_stages: int = 1
    share_fine_weights: bool = False

    kind: ClassVar[str] = "ijcv"
    has_coarse: ClassVar[bool] = True  # y_c exists (DeblurOutputs.y_coarse)

    def fine_names(self) -> tuple[str, ...]:
        """Top-level param keys of the fine nets."""
        if self.share_fine_weights:
            return ("fine",)
        return tuple(f"fine_{i}" for i in range(self.num_fine_stages))

    def setup(self):
        self.coarse = self.coarse_cls()
        self.parsing = self.parsing_cls()
        for name in self.fine_names():
            setattr(self, name, self.fine_cls())

    def _check(self, x: jax.Array, prior: jax.Array | None) -> None:
        check_images("x", x, 3, value_range=None)
        if prior is not None and prior.shape != (*x.shape[:3], self.num_classes):
            raise ValueError(
                f"prior must have shape [B, H, W, K] = {(*x.shape[:3], self.num_classes)}; "
                f"got shape {prior.shape}"
            )

    def _fine(self, x: jax.Array, y_c: jax.Array, p: jax.Array) -> tuple:
        names = self.fine_names()
        fine, previous = [], y_c
        for i in range(self.num_fine_stages):
            net = getattr(self, names[0] if self.share_fine_weights else names[i])
            out = net(x, guide=previous, prior=p)
            fine.append(out)
            previous = out[-1]
        return tuple(fine)

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
            (``models/priors.py``: the Table 2 experiments). P still runs so its logits are
            reported.

        Returns:
          :class:`DeblurOutputs`.
        """
        if upto not in STAGES:
            raise ValueError(f"upto must be one of {STAGES}; got {upto!r}")
        self._check(x, prior)
        coarse = self.coarse(x)
        if upto == "coarse":
            return DeblurOutputs(coarse=coarse)
        y_c = coarse[-1]
        logits = self.parsing(y_c, train=train_parsing)
        if upto == "parsing":
            return DeblurOutputs(coarse=coarse, parsing_logits=logits)
        p = jax.nn.softmax(logits, axis=-1) if prior is None else prior.astype(jnp.float32)
        fine = self._fine(x, y_c, p)
        return DeblurOutputs(coarse=coarse, parsing_logits=logits, prior=p, fine=fine)

    def parse(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        """P alone on any faces: ``f32[B, H, W, 3] -> logits f32[B, H, W, K]`` (``train``:
        BatchNorm in training mode, as ``train_parsing``)."""
        check_images("images", images, 3, value_range=None)
        return self.parsing(images, train=train)

    def deblur_given_prior(self, x: jax.Array, prior: jax.Array) -> DeblurOutputs:
        """G_c, then G_f fed ``prior`` ``f32[B, H, W, K]``; P does not run
        (``parsing_logits`` is ``None``)."""
        self._check(x, prior)
        coarse = self.coarse(x)
        p = prior.astype(jnp.float32)
        return DeblurOutputs(coarse=coarse, prior=p, fine=self._fine(x, coarse[-1], p))
