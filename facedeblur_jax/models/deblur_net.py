"""``MultiScaleDeblurNet``: the coarse (G_c) and fine (G_f) deblurring networks.

Paper §3.2 / §3.5 (after Nah et al. 2017), laid out as the authors' official test code
``DL_deblur_net18.m`` builds each scale (docs/design.md §2). Two scales, coarse first;
each scale is, with ``R = num_resblocks`` and ``F = features`` (64):

    conv_in      first_kernel² (11×11) → F, ReLU
    conv_pre0/1  2 × [conv 5×5 → F, ReLU]
    res0…res{R-1} R × ResBlock [conv 5×5 – ReLU – conv 5×5, add] (see below)
    conv_post0/1 2 × [conv 5×5 → F, ReLU]
    conv_out     conv 5×5 → 3

i.e. ``2R + 6`` convolutions: 18 with the text's 6 ResBlocks ("each scale has 6 ResBlock
… and 18 convolutional layers"). The released CVPR'18 file has 5 ResBlocks per scale (16
convolutions); we take the IJCV text's 6 (``model.num_resblocks = 6``) in the official
layout; with ``num_resblocks = 5`` the convolutions equal the released file's one for one
(tests/models/test_official_layout.py). No normalisation.

Points the paper's text leaves open, and who decided them:

* ReLU after the ResBlock's add (``resblock_post_relu``, default True = the official
  code): the sum goes through a ReLU into the next conv while the skip carries the sum
  before the ReLU; built as pre-activation blocks ``x + conv(relu(conv(relu(x))))`` and one
  ReLU after the last block (:class:`layers.ResBlock`). False: no ReLU after the add.
* Inputs of scale ``s`` (downsampled by ``2^(S-1-s)``): G_c the blurred ``x^(s)`` and,
  for ``s > 0``, the 2×-upsampled prediction of scale ``s-1``; G_f also the previous
  estimate ``y_c^(s)`` (``guide``) and the prior ``p^(s)``, in the order of §3.2
  (``x``, ``y_c``, upsampled, ``p``): 17 channels at 0.5× and 20 at 1×. The official
  CVPR'18 net has no ``y_c`` and concatenates [upsampled, ``x``, ``p``]; the order of a
  first conv's input channels is only a permutation of its kernel.
* The prior ``p`` as the official code feeds it: the 2×2 **max-pooled** softmax at 0.5×
  and the full-resolution softmax at 1× (§3.2's text says ``p^(0.5×)`` for both scales; the
  code decides). With more scales, each scale max-pools ``p`` by its own factor.
* Downsampling of ``x`` and ``y_c`` (``downsample_method``): 2×2 average pooling
  (:func:`layers.downsample2x`, ``"box"``, the IJCV model here); the official code resizes
  the blurred image with MATLAB's ``imresize`` (``"matlab_bicubic"``,
  :func:`layers.matlab_resize`; the released CVPR'18 model, ``models/cvpr18.py``).
* Upsampling between scales: :class:`layers.Upsample2x` (``upsample``); ``"transposed"``
  is the official 4×4 stride-2 transposed conv (3 → 3 channels).
* Residual output (``residual=True``, this project's choice; the official code has none:
  each scale's ``conv_out`` is its prediction): each scale predicts a correction added to
  a base image, its blurred input ``x^(s)`` for G_c and — when a ``guide`` is given — the
  guide ``y_c^(s)`` for G_f. It starts G_c at the identity (the blurred input's PSNR) and
  G_f at G_c's output, so the fine phase starts where the coarse one ended. The last conv
  of each scale then starts at zero, so an untrained net is exactly that identity.
  ``residual=False`` is the official output.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from facedeblur_jax.core.asserts import check_images
from facedeblur_jax.models.layers import ResBlock, Upsample2x, downsample, max_pool

Dtype = Any


class ScaleNet(nn.Module):
    """One scale, ``2·num_resblocks + 6`` convs: ``[B, h, w, C_in] -> [B, h, w, 3]``
    (before the residual add)."""

    first_kernel: int = 11
    features: int = 64
    num_resblocks: int = 6
    kernel_size: int = 5
    resblock_post_relu: bool = True
    zero_init_out: bool = False
    remat: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        def conv(features: int, size: int, name: str, **kw) -> nn.Conv:
            return nn.Conv(
                features, (size, size), padding="SAME", dtype=self.dtype, name=name, **kw
            )

        h = nn.relu(conv(self.features, self.first_kernel, "conv_in")(inputs))
        for i in range(2):
            h = nn.relu(conv(self.features, self.kernel_size, f"conv_pre{i}")(h))
        # remat: keep only each ResBlock's input for the backward pass and recompute its
        # inner activation (same params, same values; less memory, ~1/3 more conv work).
        block = nn.remat(ResBlock) if self.remat else ResBlock
        for i in range(self.num_resblocks):
            h = block(
                self.features,
                self.kernel_size,
                self.dtype,
                pre_relu=self.resblock_post_relu,
                name=f"res{i}",
            )(h)
        if self.resblock_post_relu:
            h = nn.relu(h)  # the ReLU after the last block's add
        for i in range(2):
            h = nn.relu(conv(self.features, self.kernel_size, f"conv_post{i}")(h))
        out_init = nn.initializers.zeros if self.zero_init_out else nn.linear.default_kernel_init
        return conv(3, self.kernel_size, "conv_out", kernel_init=out_init)(h)


class MultiScaleDeblurNet(nn.Module):
    """Multi-scale deblurring network (G_c without, G_f with ``guide``/``prior``).

    Attributes:
      first_kernel: size of each scale's first conv (paper: 11; Table 7 sweeps 5–13).
      features: channels of the ResBlocks (paper: 64).
      num_resblocks: ResBlocks per scale (paper: 6; the released official file: 5).
      num_scales: number of scales (paper: 2); image size must divide by ``2^(S-1)``.
      kernel_size: kernel of all but the first conv (paper: 5).
      resblock_post_relu: ReLU after each ResBlock's add, as the official code (see above).
      upsample: ``"transposed"`` | ``"subpixel"`` | ``"bicubic"``, see ``Upsample2x``.
      residual: add each scale's base image (``x^(s)``, or the guide) to its prediction;
        False is the official code's output.
      downsample_method: how ``x`` and ``guide`` reach the coarser scales: ``"box"`` or
        ``"matlab_bicubic"`` (:func:`layers.downsample`).
      remat: rematerialise each ResBlock in the backward pass (``nn.remat``; same function).
      dtype: compute dtype (params stay float32).
    """

    first_kernel: int = 11
    features: int = 64
    num_resblocks: int = 6
    num_scales: int = 2
    kernel_size: int = 5
    resblock_post_relu: bool = True
    upsample: str = "transposed"
    residual: bool = True
    downsample_method: str = "box"
    remat: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        guide: jax.Array | None = None,
        prior: jax.Array | None = None,
    ) -> tuple[jax.Array, ...]:
        """Deblurs ``x``.

        Args:
          x: blurred images ``f32[B, H, W, 3]`` in [0, 1].
          guide: optional previous estimate ``f32[B, H, W, 3]`` (G_f: ``y_c``), downsampled
            like ``x`` for each scale; the residual base when given.
          prior: optional semantic probabilities ``f32[B, H, W, K]`` (G_f: ``p``), max-pooled
            to each scale's resolution (full resolution at the last scale).

        Returns:
          Tuple of ``num_scales`` predictions, coarse to fine; entry ``s`` has shape
          ``[B, H / 2^(S-1-s), W / 2^(S-1-s), 3]``; the last is the full-resolution output.
          Values are not clipped (losses see the raw output).
        """
        check_images("x", x, 3, value_range=None)
        _, height, width, _ = x.shape
        top = 2 ** (self.num_scales - 1)
        if height % top or width % top:
            raise ValueError(
                f"x height and width must be divisible by 2^(num_scales-1) = {top}; "
                f"got shape {x.shape}"
            )
        if guide is not None:
            check_images("guide", guide, 3, value_range=None)
            if guide.shape[:3] != x.shape[:3]:
                raise ValueError(f"guide must have shape {(*x.shape[:3], 3)}; got {guide.shape}")
        if prior is not None:
            check_images("prior", prior, None, value_range=None)
            if prior.shape[:3] != x.shape[:3]:
                raise ValueError(
                    f"prior must have shape [B, H, W, K] with [B, H, W] = {x.shape[:3]}; "
                    f"got {prior.shape}"
                )

        outputs: list[jax.Array] = []
        prev = None
        for s in range(self.num_scales):
            factor = 2 ** (self.num_scales - 1 - s)
            xs = downsample(x, factor, self.downsample_method)
            parts = [xs]
            base = xs
            if guide is not None:
                base = downsample(guide, factor, self.downsample_method)
                parts.append(base)
            if prev is not None:
                parts.append(
                    Upsample2x(self.upsample, self.dtype, name=f"up{s}")(prev).astype(xs.dtype)
                )
            if prior is not None:
                parts.append(max_pool(prior, factor).astype(xs.dtype))
            inputs = jnp.concatenate(parts, axis=-1).astype(self.dtype)
            pred = ScaleNet(
                self.first_kernel,
                self.features,
                self.num_resblocks,
                self.kernel_size,
                resblock_post_relu=self.resblock_post_relu,
                zero_init_out=self.residual,
                remat=self.remat,
                dtype=self.dtype,
                name=f"scale{s}",
            )(inputs)
            pred = pred.astype(jnp.float32)
            if self.residual:
                pred = pred + base.astype(jnp.float32)
            outputs.append(pred)
            prev = pred
        return tuple(outputs)
