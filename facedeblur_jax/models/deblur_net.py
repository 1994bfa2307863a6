"""``MultiScaleDeblurNet``: the coarse (G_c) and fine (G_f) deblurring networks.

Paper §3.2 / §3.5 (after Nah et al. 2017): two scales, coarse first. Each scale is

    conv first_kernel×first_kernel → features, ReLU
    num_resblocks × [conv 5×5 – ReLU – conv 5×5 + skip]
    conv 5×5 → 3

with no normalisation. Scale ``s`` sees its inputs downsampled by ``2^(S-1-s)`` and,
for ``s > 0``, the 2×-upsampled prediction of scale ``s-1``.

Choices the paper leaves open (written down here, set in the config):

* Residual output (``residual=True``): each scale predicts a correction added to a base
  image: its blurred input ``x^(s)`` for G_c, and — when a ``guide`` is given — the
  guide ``y_c^(s)`` (the previous stage's estimate) for G_f. The paper does not say;
  residual learning starts G_c at the identity (the blurred input's PSNR) and G_f at
  G_c's output, so the fine phase starts where the coarse one ended instead of below it.
* The last conv of each scale starts at zero when ``residual``, so an untrained net is
  exactly the identity on its blurred input and training starts from the blurred PSNR.
* Downsampling of inputs: 2×2 average pooling (:func:`layers.downsample2x`).
* The semantic prior ``p`` (G_f only) enters every scale at the coarsest scale's
  resolution, resized up bilinearly: the paper feeds ``p^(0.5×)`` to both scales (§3.2).
* Upsampling between scales: :class:`layers.Upsample2x` (``upsample`` field).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from facedeblur_jax.checks import check_images
from facedeblur_jax.models.layers import ResBlock, Upsample2x, downsample, resize_to

Dtype = Any


class ScaleNet(nn.Module):
    """One scale: ``[B, h, w, C_in] -> [B, h, w, 3]`` (before the residual add)."""

    first_kernel: int = 11
    features: int = 64
    num_resblocks: int = 6
    kernel_size: int = 5
    zero_init_out: bool = False
    remat: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        fk = (self.first_kernel, self.first_kernel)
        h = nn.Conv(self.features, fk, padding="SAME", dtype=self.dtype, name="conv_in")(inputs)
        h = nn.relu(h)
        # remat: keep only each ResBlock's input for the backward pass and recompute its
        # inner activation (same params, same values; less memory, ~1/3 more conv work).
        block = nn.remat(ResBlock) if self.remat else ResBlock
        for i in range(self.num_resblocks):
            h = block(self.features, self.kernel_size, self.dtype, name=f"res{i}")(h)
        k = (self.kernel_size, self.kernel_size)
        out_init = nn.initializers.zeros if self.zero_init_out else nn.linear.default_kernel_init
        return nn.Conv(
            3, k, padding="SAME", kernel_init=out_init, dtype=self.dtype, name="conv_out"
        )(h)


class MultiScaleDeblurNet(nn.Module):
    """Multi-scale deblurring network (G_c without, G_f with ``guide``/``prior``).

    Attributes:
      first_kernel: size of each scale's first conv (paper: 11; Table 7 sweeps 5–13).
      features: channels of the ResBlocks (paper: 64).
      num_resblocks: ResBlocks per scale (paper: 6).
      num_scales: number of scales (paper: 2); image size must divide by ``2^(S-1)``.
      kernel_size: kernel of all but the first conv (paper: 5).
      upsample: ``"transposed"`` | ``"subpixel"`` | ``"bicubic"``, see ``Upsample2x``.
      residual: add each scale's blurred input to its prediction.
      remat: rematerialise each ResBlock in the backward pass (``nn.remat``; same function).
      dtype: compute dtype (params stay float32).
    """

    first_kernel: int = 11
    features: int = 64
    num_resblocks: int = 6
    num_scales: int = 2
    kernel_size: int = 5
    upsample: str = "transposed"
    residual: bool = True
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
          prior: optional semantic probabilities ``f32[B, H, W, K]`` (G_f: ``p``), fed at the
            coarsest scale's resolution to every scale (paper §3.2).

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
            prior_coarse = downsample(prior, top)

        outputs: list[jax.Array] = []
        prev = None
        for s in range(self.num_scales):
            factor = 2 ** (self.num_scales - 1 - s)
            xs = downsample(x, factor)
            parts = [xs]
            base = xs
            if guide is not None:
                base = downsample(guide, factor)
                parts.append(base)
            if prev is not None:
                parts.append(
                    Upsample2x(self.upsample, self.dtype, name=f"up{s}")(prev).astype(xs.dtype)
                )
            if prior is not None:
                hs, ws = xs.shape[1:3]
                p = prior_coarse if factor == top else resize_to(prior_coarse, hs, ws)
                parts.append(p.astype(xs.dtype))
            inputs = jnp.concatenate(parts, axis=-1).astype(self.dtype)
            pred = ScaleNet(
                self.first_kernel,
                self.features,
                self.num_resblocks,
                self.kernel_size,
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
