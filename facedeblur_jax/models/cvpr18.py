"""``Cvpr18Model``: the authors' released CVPR'18 model (``model.kind = "cvpr18"``).

The graph of the authors' test code, ``DL_deblur_net18.m``
(``joanshen0508/Deep-Semantic-Face-Deblurring``), which is not the IJCV cascade: there is
no G_c. P parses the blurred face itself, and one two-scale generator G deblurs it given
P's softmax (docs/design.md §2):

    x ──P──▶ p = softmax(logits)
    (x, p) ──G──▶ y            (G: MultiScaleDeblurNet without guide)

What the released code does, and how the parts are set (``models/factory.py``; the
converter ``facedeblur convert-official`` writes a weights file with this config):

* G: 5 ResBlocks per scale (16 convolutions), no residual to the input, the 2×2 max-pooled
  prior at the half scale and the full-resolution prior at 1×; the half-scale image is
  MATLAB's bicubic ``imresize`` of the input (``downsample_method = "matlab_bicubic"``).
  The released scale-1 input order [upsampled, x, p] is a permutation of our [x,
  upsampled, p], which the converter applies to that conv's kernel.
* P: the official encoder–decoder, normalised with each image's own statistics
  (``norm = "per_image"``: ``vl_nnbnorm`` without moments, one image at a time, ε = 1e-4),
  so a batch of N gives the outputs of N single images. Its widths and class count are
  read from the weights.
* Input scale: the released script divides 8-bit images by 256, not 255
  (``input_scale = 255/256`` turns our ``/255`` input into theirs); its output is written
  with ``imwrite``, i.e. taken as [0, 1].

Parameters: ``parsing`` (P) and ``generator`` (G).
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from facedeblur_jax.core.asserts import check_images
from facedeblur_jax.models.face_deblur import STAGES, DeblurOutputs

ModuleDef = Any


class Cvpr18Model(nn.Module):
    """P on the blurred input → G (the released CVPR'18 graph).

    Attributes:
      parsing_cls: constructor of P (``images, train -> logits [B, H, W, K]``).
      generator_cls: constructor of G (``x, prior -> per-scale predictions``).
      num_classes: K parsing classes.
      input_scale: factor applied to ``x`` before both nets (255/256 for the released
        weights: their script divides 8-bit images by 256).
    """

    parsing_cls: ModuleDef
    generator_cls: ModuleDef
    num_classes: int = 11
    input_scale: float = 1.0

    kind: ClassVar[str] = "cvpr18"
    has_coarse: ClassVar[bool] = False  # no G_c: DeblurOutputs.coarse is empty

    def fine_names(self) -> tuple[str, ...]:
        """Top-level param key of the deblurring net."""
        return ("generator",)

    def setup(self):
        self.parsing = self.parsing_cls()
        self.generator = self.generator_cls()

    def _scaled(self, x: jax.Array) -> jax.Array:
        return x * self.input_scale if self.input_scale != 1.0 else x

    def __call__(
        self,
        x: jax.Array,
        *,
        upto: str = "fine",
        train_parsing: bool = False,
        prior: jax.Array | None = None,
    ) -> DeblurOutputs:
        """Runs P, then G (``upto = "fine"``), or P alone (``"parsing"``).

        Args:
          x: blurred faces ``f32[B, H, W, 3]`` in [0, 1].
          upto: ``"parsing"`` or ``"fine"``; this model has no ``"coarse"`` stage.
          train_parsing: P's normalisation in training mode (the ``"batch"`` norm only).
          prior: optional ``f32[B, H, W, K]`` fed to G instead of ``softmax(P(x))``.

        Returns:
          :class:`DeblurOutputs` with ``coarse = ()`` and one ``fine`` stage.
        """
        if upto not in STAGES:
            raise ValueError(f"upto must be one of {STAGES}; got {upto!r}")
        if upto == "coarse":
            raise ValueError("the CVPR'18 model has no coarse net G_c: use upto='fine'")
        check_images("x", x, 3, value_range=None)
        if prior is not None and prior.shape != (*x.shape[:3], self.num_classes):
            raise ValueError(
                f"prior must have shape [B, H, W, K] = {(*x.shape[:3], self.num_classes)}; "
                f"got shape {prior.shape}"
            )
        xs = self._scaled(x)
        logits = self.parsing(xs, train=train_parsing)
        if upto == "parsing":
            return DeblurOutputs(coarse=(), parsing_logits=logits)
        p = jax.nn.softmax(logits, axis=-1) if prior is None else prior.astype(jnp.float32)
        fine = (self.generator(xs, prior=p),)
        return DeblurOutputs(coarse=(), parsing_logits=logits, prior=p, fine=fine)

    def parse(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        """P alone on any faces: ``f32[B, H, W, 3] -> logits f32[B, H, W, K]``."""
        check_images("images", images, 3, value_range=None)
        return self.parsing(self._scaled(images), train=train)

    def deblur_given_prior(self, x: jax.Array, prior: jax.Array) -> DeblurOutputs:
        """G fed ``prior`` ``f32[B, H, W, K]``; P does not run."""
        check_images("x", x, 3, value_range=None)
        if prior.shape != (*x.shape[:3], self.num_classes):
            raise ValueError(
                f"prior must have shape [B, H, W, K] = {(*x.shape[:3], self.num_classes)}; "
                f"got shape {prior.shape}"
            )
        p = prior.astype(jnp.float32)
        return DeblurOutputs(coarse=(), prior=p, fine=(self.generator(self._scaled(x), prior=p),))
