"""The Flax networks of ``facedeblur_jax.models`` rebuilt in PyTorch, with weight converters.

Both model kinds (``model.kind``, :func:`build_model`): ``"ijcv"``, :class:`FaceDeblurModel`
(G_c → P → G_f), and ``"cvpr18"``, :class:`Cvpr18Model` (the released graph: P on the
blurred input → one G; ``models/cvpr18.py``). The twin mirrors the Flax model, not the
released MATLAB code (e.g. G's scale-1 inputs in our order [x, upsampled, prior]).

Used by ``python -m facedeblur_jax.bench.throughput`` to compare against a PyTorch baseline
and by ``tests/bench/test_torch_reference.py`` to check that both implementations compute
the same function. Modules take and return NCHW tensors and run in ``channels_last`` memory
format (NHWC in memory, like the Flax code, and what cuDNN's fast kernels want).

Every module is named after the Flax module it mirrors, so a torch ``state_dict`` key is
the Flax param path joined by dots (``coarse.scale0.res0.conv1.weight`` ↔
``params["coarse"]["scale0"]["res0"]["conv1"]["kernel"]``); the Flax auto-names inside
``Upsample2x`` (``ConvTranspose_0``, ``Conv_0``) are kept for that reason.

How the Flax semantics map onto torch (each checked numerically by the test):

* ``nn.Conv(padding="SAME")``: XLA's SAME pads ``total = max((ceil(n/s)-1)·s + k - n, 0)``
  with ``total // 2`` before and the rest after. :class:`Conv2dSame` computes that per
  input size; symmetric pads go to ``F.conv2d``, asymmetric ones through ``F.pad``.
* ``nn.ConvTranspose(padding="SAME", transpose_kernel=False)``: ``lax.conv_transpose``
  convolves the stride-dilated input, padded by ``(pad_a, pad_b)`` from
  ``lax._conv_transpose_padding``, with the *unflipped* kernel. ``torch`` ConvTranspose2d
  is that convolution with the *flipped* kernel and ``k - 1 - padding`` on each side, so
  the torch weight is the Flax kernel flipped in both spatial axes, ``[in, out, kh, kw]``,
  and the torch padding is ``k - 1 - pad``. For the 4×4 stride-2 case used here
  ``pad_a = pad_b = 2``, i.e. torch ``padding=1`` and no cropping; other kernel/stride
  pairs can be asymmetric, handled by cropping (:func:`conv_transpose_same_torch_args`).
* ``downsample2x``: 2×2 average pooling, ``F.avg_pool2d(2)``.
* ``layers.matlab_resize`` (``downsample_method = "matlab_bicubic"``, MATLAB's bicubic
  ``imresize``): the same ``layers.matlab_resize_matrix`` weights applied with two
  ``einsum`` (rows, then columns), in float32 outside autocast like the Flax resize; the
  weights for the config's image size are buffers of G, so ``torch.compile`` traces no
  NumPy.
* ``parsing_net.PerImageNorm`` (``parsing_norm = "per_image"``): instance statistics
  (each image's per-channel mean and biased variance over H×W) with the BatchNorm-named
  affine params, :class:`PerImageNorm2d`; no running statistics.
* ``Cvpr18Model.input_scale``: the input multiplied before P and G, as in Flax.
* ``jax.image.resize(method="linear", antialias=False)``: half-pixel-centred bilinear,
  which is ``F.interpolate(mode="bilinear", align_corners=False)``; out-of-range taps are
  dropped and renormalised in JAX and clamped in torch, identical for integer upsampling.
  ``method="cubic"`` uses Keys' kernel with ``a = -0.5`` and JAX's renormalisation at
  the border, which torch's bicubic (``a = -0.75``, clamped) is not: it is done here with
  separable weight matrices that copy ``jax._src.image.scale.compute_weight_mat``.
* ``nn.max_pool((2, 2), strides=(2, 2))`` and ``layers.max_pool(x, f)`` (the prior at
  a scale ``f`` times smaller): ``F.max_pool2d(2)`` / ``F.max_pool2d(f)``.
* ``nn.BatchNorm``: P's ``eps`` (1e-4, the official value); train mode normalises with
  the biased batch variance and updates ``ra = m·ra + (1-m)·batch`` with the *biased*
  variance, which :class:`FlaxBatchNorm2d` reproduces (torch's own update uses the
  unbiased one).
* ``Dense`` on ``h.reshape(B, -1)`` of an NHWC map: torch flattens
  ``h.permute(0, 2, 3, 1)`` (a free view in channels_last), so the Linear weight is
  just the Flax kernel transposed.
* ``model.compute_dtype = "bfloat16"``: run under ``torch.autocast(dtype=torch.bfloat16)``;
  as in Flax, each scale's prediction is cast to float32 before the residual add and the
  parsing logits are float32 before the softmax.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facedeblur_jax.models.layers import DOWNSAMPLE_METHODS, matlab_resize_matrix

STAGES = ("coarse", "parsing", "fine")
CHANNELS_LAST = torch.channels_last
WIDE_STAGE = 2  # parsing_net.WIDE_STAGE: P's third encoder conv is 5×5

# --------------------------------------------------------------------------------------
# Padding rules of XLA's "SAME"
# --------------------------------------------------------------------------------------


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """``(before, after)`` padding of XLA's ``SAME`` for a forward conv along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv_transpose_same_pads(kernel: int, stride: int) -> tuple[int, int]:
    """``(pad_a, pad_b)`` that ``lax.conv_transpose(padding="SAME")`` puts around the
    stride-dilated input (a copy of ``jax._src.lax.convolution._conv_transpose_padding``)."""
    pad_len = kernel + stride - 2
    pad_a = kernel - 1 if stride > kernel - 1 else math.ceil(pad_len / 2)
    return pad_a, pad_len - pad_a


def conv_transpose_same_torch_args(kernel: int, stride: int) -> tuple[int, int, int, int]:
    """``(padding, output_padding, crop_before, crop_after)`` that make ``ConvTranspose2d``
    (with the spatially flipped kernel) equal ``lax.conv_transpose(padding="SAME")``.

    torch's transposed conv is the conv of the dilated input padded by ``k - 1 - padding``
    on each side (``+ output_padding`` after); the rest is cropped from the output.
    """
    pad_a, pad_b = conv_transpose_same_pads(kernel, stride)
    cut_a, cut_b = kernel - 1 - pad_a, kernel - 1 - pad_b  # cut_a >= 0 always
    padding = min(cut_a, max(cut_b, 0))
    output_padding = max(-cut_b, 0)
    return padding, output_padding, cut_a - padding, max(cut_b, 0) - padding


# --------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------


def _f32(t: torch.Tensor) -> torch.Tensor:
    """Flax's ``.astype(float32)``: bf16/f16 -> f32; float64 stays (for reference runs)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with XLA ``SAME`` padding (computed per input size)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1):
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        (ph0, ph1), (pw0, pw1) = same_pads(x.shape[2], kh, sh), same_pads(x.shape[3], kw, sw)
        if ph0 == ph1 and pw0 == pw1:
            return F.conv2d(x, self.weight, self.bias, self.stride, (ph0, pw0))
        return F.conv2d(F.pad(x, (pw0, pw1, ph0, ph1)), self.weight, self.bias, self.stride)


class ConvTranspose2dSame(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` equal to Flax ``ConvTranspose(padding="SAME")``.

    The weight is ``[in, out, kh, kw]`` = the Flax kernel ``[kh, kw, in, out]`` flipped in
    both spatial axes (see :func:`flax_to_torch`).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int):
        padding, output_padding, crop_a, crop_b = conv_transpose_same_torch_args(kernel, stride)
        super().__init__(
            in_ch, out_ch, kernel, stride=stride, padding=padding, output_padding=output_padding
        )
        self.crop = (crop_a, crop_b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        a, b = self.crop
        if a or b:
            y = y[:, :, a : y.shape[2] - b, a : y.shape[3] - b]
        return y


class FlaxBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm with Flax's semantics (``momentum`` is Flax's: ``ra = m·ra + (1-m)·x``).

    ``forward(x, train)``: ``train=None`` follows ``self.training``. In train mode the
    batch is normalised with its biased variance and the running variance is updated with
    the biased variance too (``torch.nn.BatchNorm2d`` would use the unbiased one).
    """

    def __init__(self, channels: int, momentum: float = 0.99, eps: float = 1e-5):
        super().__init__(channels, eps=eps, momentum=1.0 - momentum)
        self.flax_momentum = momentum

    def forward(self, x: torch.Tensor, train: bool | None = None) -> torch.Tensor:
        train = self.training if train is None else train
        if not train:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        xf = _f32(x)
        mean = xf.mean(dim=(0, 2, 3))
        var = xf.var(dim=(0, 2, 3), unbiased=False)
        with torch.no_grad():
            m = self.flax_momentum
            self.running_mean.mul_(m).add_(mean.detach(), alpha=1.0 - m)
            self.running_var.mul_(m).add_(var.detach(), alpha=1.0 - m)
            self.num_batches_tracked.add_(1)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        y = xf * scale[None, :, None, None] + shift[None, :, None, None]
        return y.to(x.dtype)


class PerImageNorm2d(nn.Module):
    """``parsing_net.PerImageNorm``: each image normalised with its own per-channel mean and
    biased variance over H×W (instance statistics), then BatchNorm's affine ``weight`` /
    ``bias`` (the Flax ``scale`` / ``bias``); no running statistics. Computed in float32
    and returned in the input's dtype, as the Flax module returns its compute dtype."""

    def __init__(self, channels: int, eps: float = 1e-4):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, train: bool | None = None) -> torch.Tensor:
        """``train`` is accepted for :class:`FlaxBatchNorm2d`'s signature; it changes nothing."""
        del train
        xf = _f32(x)
        var, mean = torch.var_mean(xf, dim=(2, 3), unbiased=False, keepdim=True)
        scale = self.weight[None, :, None, None] * torch.rsqrt(var + self.eps)
        return ((xf - mean) * scale + self.bias[None, :, None, None]).to(x.dtype)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2×2 average pooling, ``[B, C, H, W] -> [B, C, H/2, W/2]`` (``layers.downsample2x``)."""
    if x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"downsample2x needs even height and width; got shape {tuple(x.shape)}")
    return F.avg_pool2d(x, 2)


def downsample(
    x: torch.Tensor,
    factor: int,
    method: str = "box",
    matrices: Mapping[tuple[int, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``layers.downsample``: ``"box"`` repeats :func:`downsample2x` (``factor`` a power of
    two); ``"matlab_bicubic"`` is :func:`matlab_resize` by ``1 / factor`` (``matrices``: its
    weights already made, see :func:`matlab_resize`)."""
    if method not in DOWNSAMPLE_METHODS:
        raise ValueError(f"downsample method must be one of {DOWNSAMPLE_METHODS}; got {method!r}")
    if factor == 1:
        return x
    if method == "matlab_bicubic":
        h, w = x.shape[2], x.shape[3]
        if h % factor or w % factor:
            raise ValueError(
                f"downsample by {factor} needs sizes divisible by it; got {tuple(x.shape)}"
            )
        return matlab_resize(x, h // factor, w // factor, matrices)
    while factor > 1:
        x = downsample2x(x)
        factor //= 2
    return x


def matlab_resize_weights(in_len: int, out_len: int) -> torch.Tensor:
    """``f64[out_len, in_len]``: ``layers.matlab_resize_matrix`` as a tensor."""
    return torch.from_numpy(matlab_resize_matrix(in_len, out_len))


def matlab_resize(
    x: torch.Tensor,
    height: int,
    width: int,
    matrices: Mapping[tuple[int, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``layers.matlab_resize`` (MATLAB ``imresize``, bicubic with antialiasing) on
    ``[B, C, h, w]``: the same ``matlab_resize_matrix`` weights, rows then columns, in
    ``x``'s dtype and outside autocast (Flax resizes the float32 input in float32 at
    ``Precision.HIGHEST`` whatever the compute dtype).

    ``matrices[(in_len, out_len)]``: weights made beforehand (a module's buffers); the others
    are made here with NumPy, which ``torch.compile`` cannot trace (a graph break), so a
    compiled model passes its sizes' weights in (:class:`MultiScaleDeblurNet`).
    """
    h, w = x.shape[2], x.shape[3]
    matrices = matrices or {}

    def weights(n: int, m: int) -> torch.Tensor:
        t = matrices.get((n, m))
        return (matlab_resize_weights(n, m) if t is None else t).to(x.device, x.dtype)

    rows, cols = weights(h, height), weights(w, width)
    with torch.autocast(x.device.type, enabled=False):
        y = torch.einsum("oh,bchw->bcow", rows, x)
        y = torch.einsum("pw,bcow->bcop", cols, y)
    return y.contiguous(memory_format=CHANNELS_LAST)


def _keys_cubic(x: np.ndarray) -> np.ndarray:
    out = ((1.5 * x - 2.5) * x) * x + 1.0
    out = np.where(x >= 1.0, ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0, out)
    return np.where(x >= 2.0, 0.0, out)


def jax_resize_matrix(in_size: int, out_size: int, method: str) -> np.ndarray:
    """``f32[out, in]`` weights of ``jax.image.resize(..., antialias=False)`` along one axis."""
    kernel = {"linear": lambda d: np.maximum(0.0, 1.0 - d), "cubic": _keys_cubic}[method]
    inv_scale = in_size / out_size
    sample = (np.arange(out_size) + 0.5) * inv_scale - 0.5
    w = kernel(np.abs(sample[None, :] - np.arange(in_size)[:, None]))  # [in, out]
    total = w.sum(axis=0, keepdims=True)
    w = np.where(
        np.abs(total) > 1000.0 * np.finfo(np.float32).eps, w / np.where(total, total, 1), 0
    )
    w = np.where(((sample >= -0.5) & (sample <= in_size - 0.5))[None, :], w, 0.0)
    return w.T.astype(np.float32)


def resize_to(x: torch.Tensor, height: int, width: int, method: str = "linear") -> torch.Tensor:
    """``jax.image.resize(method, antialias=False)`` on ``[B, C, h, w]`` (``layers.resize_to``)."""
    if method == "linear":
        return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    wh = torch.from_numpy(jax_resize_matrix(x.shape[2], height, method)).to(x.device, x.dtype)
    ww = torch.from_numpy(jax_resize_matrix(x.shape[3], width, method)).to(x.device, x.dtype)
    y = torch.einsum("oh,bchw,pw->bcop", wh, x, ww)
    return y.contiguous(memory_format=CHANNELS_LAST)


class Upsample2x(nn.Module):
    """``layers.Upsample2x``: ``"transposed"`` | ``"subpixel"`` | ``"bicubic"``."""

    def __init__(self, channels: int, method: str = "transposed"):
        super().__init__()
        self.method = method
        if method == "transposed":
            self.ConvTranspose_0 = ConvTranspose2dSame(channels, channels, 4, 2)
        elif method == "subpixel":
            # Flax orders the 4C channels as c·4 + 2·dy + dx, exactly pixel_shuffle's order.
            self.Conv_0 = Conv2dSame(channels, 4 * channels, 3)
        elif method != "bicubic":
            raise ValueError(
                f"upsample must be 'transposed', 'subpixel' or 'bicubic'; got {method!r}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "transposed":
            return self.ConvTranspose_0(x)
        if self.method == "subpixel":
            return F.pixel_shuffle(self.Conv_0(x), 2)
        return resize_to(x, 2 * x.shape[2], 2 * x.shape[3], method="cubic")


class ResBlock(nn.Module):
    """``layers.ResBlock``: ``x + conv2(relu(conv1(relu(x))))`` with ``pre_relu`` (the
    official ReLU after the add, moved to the next block's front), else without the
    first ReLU."""

    def __init__(self, features: int, kernel_size: int = 5, pre_relu: bool = True):
        super().__init__()
        self.pre_relu = pre_relu
        self.conv1 = Conv2dSame(features, features, kernel_size)
        self.conv2 = Conv2dSame(features, features, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(x) if self.pre_relu else x
        return x + self.conv2(F.relu(self.conv1(y)))


# --------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------


class ScaleNet(nn.Module):
    """``deblur_net.ScaleNet``: ``[B, C_in, h, w] -> [B, 3, h, w]``, the official layout
    conv_in, conv_pre0/1, res0…, conv_post0/1, conv_out."""

    def __init__(
        self,
        in_ch: int,
        first_kernel: int,
        features: int,
        num_resblocks: int,
        kernel_size: int,
        resblock_post_relu: bool = True,
    ):
        super().__init__()
        self.num_resblocks = num_resblocks
        self.resblock_post_relu = resblock_post_relu
        self.conv_in = Conv2dSame(in_ch, features, first_kernel)
        self.conv_pre0 = Conv2dSame(features, features, kernel_size)
        self.conv_pre1 = Conv2dSame(features, features, kernel_size)
        for i in range(num_resblocks):
            self.add_module(f"res{i}", ResBlock(features, kernel_size, resblock_post_relu))
        self.conv_post0 = Conv2dSame(features, features, kernel_size)
        self.conv_post1 = Conv2dSame(features, features, kernel_size)
        self.conv_out = Conv2dSame(features, 3, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv_in(x))
        h = F.relu(self.conv_pre1(F.relu(self.conv_pre0(h))))
        for i in range(self.num_resblocks):
            h = getattr(self, f"res{i}")(h)
        if self.resblock_post_relu:
            h = F.relu(h)
        h = F.relu(self.conv_post1(F.relu(self.conv_post0(h))))
        return self.conv_out(h)


class MultiScaleDeblurNet(nn.Module):
    """``deblur_net.MultiScaleDeblurNet`` (G_c: no guide/prior; G_f: both; the CVPR'18 G:
    the prior only). Inputs of scale ``s`` concatenated in the Flax order [x, guide,
    upsampled, prior]."""

    def __init__(
        self,
        guide_channels: int = 0,
        prior_channels: int = 0,
        first_kernel: int = 11,
        features: int = 64,
        num_resblocks: int = 6,
        num_scales: int = 2,
        kernel_size: int = 5,
        resblock_post_relu: bool = True,
        upsample: str = "transposed",
        residual: bool = True,
        downsample_method: str = "box",
        image_size: int | None = None,
    ):
        super().__init__()
        if downsample_method not in DOWNSAMPLE_METHODS:
            raise ValueError(
                f"downsample method must be one of {DOWNSAMPLE_METHODS}; got {downsample_method!r}"
            )
        self.num_scales = num_scales
        self.residual = residual
        self.downsample_method = downsample_method
        # MATLAB-bicubic weights for an image_size input, as non-persistent buffers (not in
        # the state_dict; they follow .to(device)), so that torch.compile traces no NumPy.
        self._resize_buffers: dict[tuple[int, int], str] = {}
        if downsample_method == "matlab_bicubic" and image_size:
            for s in range(num_scales - 1):
                out = image_size // 2 ** (num_scales - 1 - s)
                name = f"matlab_resize_{image_size}_to_{out}"
                weights = matlab_resize_weights(image_size, out)
                self.register_buffer(name, weights, persistent=False)
                self._resize_buffers[(image_size, out)] = name
        for s in range(num_scales):
            if s > 0:
                self.add_module(f"up{s}", Upsample2x(3, upsample))
            in_ch = 3 + guide_channels + prior_channels + (3 if s > 0 else 0)
            net = ScaleNet(
                in_ch, first_kernel, features, num_resblocks, kernel_size, resblock_post_relu
            )
            self.add_module(f"scale{s}", net)

    def forward(
        self,
        x: torch.Tensor,
        guide: torch.Tensor | None = None,
        prior: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """``x: f32[B, 3, H, W]`` → ``num_scales`` predictions, coarse to fine (float32)."""
        top = 2 ** (self.num_scales - 1)
        if x.shape[2] % top or x.shape[3] % top:
            raise ValueError(
                f"x height and width must be divisible by 2^(num_scales-1) = {top}; "
                f"got shape {tuple(x.shape)}"
            )
        outputs, prev = [], None
        matrices = {k: getattr(self, name) for k, name in self._resize_buffers.items()}
        for s in range(self.num_scales):
            factor = 2 ** (self.num_scales - 1 - s)
            xs = downsample(x, factor, self.downsample_method, matrices)
            parts = [xs]
            base = xs  # residual base: the blurred input, or the guide (G_f) when given
            if guide is not None:
                base = downsample(guide, factor, self.downsample_method, matrices)
                parts.append(base)
            if prev is not None:
                parts.append(getattr(self, f"up{s}")(prev).to(xs.dtype))
            if prior is not None:  # max-pooled to the scale (full resolution at the last)
                p = F.max_pool2d(prior, factor) if factor > 1 else prior
                parts.append(p.to(xs.dtype))
            inputs = torch.cat(parts, dim=1)
            pred = getattr(self, f"scale{s}")(inputs)
            pred = _f32(pred)
            if self.residual:
                pred = pred + _f32(base)
            outputs.append(pred)
            prev = pred
        return tuple(outputs)


class TorchParsingNet(nn.Module):
    """``parsing_net.ParsingNet``: ``[B, 3, H, W] -> logits f32[B, K, H, W]`` (the official
    layout: encoder convs enc0… with a 5×5 third conv, decoder stages up{j} → dec{j} with
    additive skips for j ≥ 1, 3×3 logits). ``norm``: ``"batch"`` (:class:`FlaxBatchNorm2d`)
    or ``"per_image"`` (:class:`PerImageNorm2d`); ``up_features`` / ``last_features``: the
    decoder widths where they do not mirror the encoder (``()`` / 0: they do)."""

    def __init__(
        self,
        num_classes: int = 11,
        features: Sequence[int] = (64, 128, 256, 256, 256, 256),
        use_bn: bool = True,
        bn_momentum: float = 0.99,
        bn_epsilon: float = 1e-4,
        norm: str = "batch",
        up_features: Sequence[int] = (),
        last_features: int = 0,
    ):
        super().__init__()
        if norm not in ("batch", "per_image"):
            raise ValueError(f"TorchParsingNet norm must be 'batch' or 'per_image'; got {norm!r}")
        self.features = tuple(features)
        self.use_bn = use_bn
        depth = len(self.features)
        ups = tuple(up_features) or self.features[: depth - 1]
        if len(ups) != depth - 1:
            raise ValueError(
                f"up_features needs {depth - 1} widths (one per decoder stage); got {ups}"
            )

        def norm_layer(width: int) -> nn.Module:
            if norm == "per_image":
                return PerImageNorm2d(width, bn_epsilon)
            return FlaxBatchNorm2d(width, bn_momentum, bn_epsilon)

        in_ch = 3
        for i, f in enumerate(self.features):
            kernel = 5 if i == WIDE_STAGE else 3
            self.add_module(f"enc{i}", Conv2dSame(in_ch, f, kernel))
            if use_bn:
                self.add_module(f"enc{i}_bn", norm_layer(f))
            in_ch = f
        for j in reversed(range(depth - 1)):
            f = self.features[j] if j > 0 or not last_features else last_features
            self.add_module(f"up{j}", ConvTranspose2dSame(in_ch, ups[j], 4, 2))
            self.add_module(f"dec{j}", Conv2dSame(ups[j], f, 3))
            if use_bn:
                self.add_module(f"dec{j}_bn", norm_layer(f))
            in_ch = f
        self.logits = Conv2dSame(in_ch, num_classes, 3)

    def _norm_act(self, h: torch.Tensor, name: str, train: bool | None) -> torch.Tensor:
        if self.use_bn:
            h = getattr(self, name)(h, train)
        return F.relu(h)

    def forward(self, x: torch.Tensor, train: bool | None = None) -> torch.Tensor:
        """``train``: BatchNorm on batch statistics (``None``: follow ``self.training``)."""
        depth = len(self.features)
        pools = 2 ** (depth - 1)
        if x.shape[2] % pools or x.shape[3] % pools:
            raise ValueError(
                f"TorchParsingNet with {depth} stages ({depth - 1} pools) needs height and width "
                f"divisible by {pools}; got x of shape {tuple(x.shape)}"
            )
        h, skips = x, []
        for i in range(depth):
            h = self._norm_act(getattr(self, f"enc{i}")(h), f"enc{i}_bn", train)
            skips.append(h)
            if i < depth - 1:
                h = F.max_pool2d(h, 2)
        for j in reversed(range(depth - 1)):
            h = getattr(self, f"up{j}")(h)
            h = self._norm_act(getattr(self, f"dec{j}")(h), f"dec{j}_bn", train)
            if j > 0:
                h = h + skips[j]
        return _f32(self.logits(h))


class Discriminator(nn.Module):
    """``discriminator.Discriminator``: ``[B, 3, H, W] -> f32[B]`` logits."""

    def __init__(
        self,
        features: Sequence[int] = (64, 128, 256, 512, 512, 512),
        negative_slope: float = 0.2,
        image_size: int = 128,
    ):
        super().__init__()
        self.features = tuple(features)
        self.negative_slope = negative_slope
        in_ch, size = 3, image_size
        for i, f in enumerate(self.features):
            self.add_module(f"conv{i}", Conv2dSame(in_ch, f, 4, stride=2))
            in_ch, size = f, -(-size // 2)
        # Flax's Dense infers its input width at init; torch needs it: size²·C of the last map.
        self.logit = nn.Linear(size * size * in_ch, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = images
        for i in range(len(self.features)):
            h = F.leaky_relu(getattr(self, f"conv{i}")(h), self.negative_slope)
        h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)  # NHWC flatten order, as in Flax
        return _f32(self.logit(h)[:, 0])


@dataclasses.dataclass
class DeblurOutputs:
    """Torch twin of ``face_deblur.DeblurOutputs``; tensors are NCHW float32."""

    coarse: tuple[torch.Tensor, ...]
    parsing_logits: torch.Tensor | None = None
    prior: torch.Tensor | None = None
    fine: tuple[tuple[torch.Tensor, ...], ...] = ()

    @property
    def y_coarse(self) -> torch.Tensor:
        if not self.coarse:
            raise ValueError("this model has no coarse net G_c, so no y_c")
        return self.coarse[-1]

    @property
    def y(self) -> torch.Tensor:
        return self.fine[-1][-1] if self.fine else self.coarse[-1]


class FaceDeblurModel(nn.Module):
    """``face_deblur.FaceDeblurModel``: G_c → P → N × G_f, same submodule names."""

    def __init__(
        self,
        num_classes: int = 11,
        num_fine_stages: int = 1,
        share_fine_weights: bool = False,
        first_kernel: int = 11,
        features: int = 64,
        num_resblocks: int = 6,
        num_scales: int = 2,
        kernel_size: int = 5,
        resblock_post_relu: bool = True,
        upsample: str = "transposed",
        residual: bool = True,
        parsing_features: Sequence[int] = (64, 128, 256, 256, 256, 256),
        parsing_use_bn: bool = True,
        parsing_norm: str = "batch",
        parsing_up_features: Sequence[int] = (),
        parsing_last_features: int = 0,
        downsample_method: str = "box",
        image_size: int | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_fine_stages = num_fine_stages
        self.share_fine_weights = share_fine_weights
        deblur = dict(
            first_kernel=first_kernel,
            features=features,
            num_resblocks=num_resblocks,
            num_scales=num_scales,
            kernel_size=kernel_size,
            resblock_post_relu=resblock_post_relu,
            upsample=upsample,
            residual=residual,
            downsample_method=downsample_method,
            image_size=image_size,
        )
        self.coarse = MultiScaleDeblurNet(**deblur)
        self.parsing = TorchParsingNet(
            num_classes,
            parsing_features,
            parsing_use_bn,
            norm=parsing_norm,
            up_features=parsing_up_features,
            last_features=parsing_last_features,
        )
        for name in self.fine_names():
            self.add_module(name, MultiScaleDeblurNet(3, num_classes, **deblur))

    def fine_names(self) -> tuple[str, ...]:
        if self.share_fine_weights:
            return ("fine",)
        return tuple(f"fine_{i}" for i in range(self.num_fine_stages))

    def forward(
        self,
        x: torch.Tensor,
        *,
        upto: str = "fine",
        train_parsing: bool | None = None,
        prior: torch.Tensor | None = None,
    ) -> DeblurOutputs:
        """Runs the cascade on ``x: f32[B, 3, H, W]`` (see the Flax ``__call__``).

        ``train_parsing``: P's BatchNorm on batch statistics (``None``: ``self.training``).
        """
        if upto not in STAGES:
            raise ValueError(f"upto must be one of {STAGES}; got {upto!r}")
        x = x.contiguous(memory_format=CHANNELS_LAST)
        coarse = self.coarse(x)
        if upto == "coarse":
            return DeblurOutputs(coarse=coarse)
        y_c = coarse[-1]
        logits = self.parsing(y_c, train=train_parsing)
        if upto == "parsing":
            return DeblurOutputs(coarse=coarse, parsing_logits=logits)
        p = torch.softmax(logits, dim=1) if prior is None else _f32(prior)
        names = self.fine_names()
        fine, previous = [], y_c
        for i in range(self.num_fine_stages):
            net = getattr(self, names[0] if self.share_fine_weights else names[i])
            out = net(x, guide=previous, prior=p)
            fine.append(out)
            previous = out[-1]
        return DeblurOutputs(coarse=coarse, parsing_logits=logits, prior=p, fine=tuple(fine))


class Cvpr18Model(nn.Module):
    """``cvpr18.Cvpr18Model``: P on the (scaled) blurred input → one two-scale G fed
    ``softmax(P)``; submodules ``parsing`` and ``generator`` as in Flax."""

    kind = "cvpr18"
    has_coarse = False

    def __init__(
        self, parsing: TorchParsingNet, generator: MultiScaleDeblurNet, input_scale: float
    ):
        super().__init__()
        self.parsing = parsing
        self.generator = generator
        self.input_scale = float(input_scale)

    def fine_names(self) -> tuple[str, ...]:
        return ("generator",)

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.input_scale if self.input_scale != 1.0 else x

    def forward(
        self,
        x: torch.Tensor,
        *,
        upto: str = "fine",
        train_parsing: bool | None = None,
        prior: torch.Tensor | None = None,
    ) -> DeblurOutputs:
        """P then G on ``x: f32[B, 3, H, W]`` (``upto = "parsing"``: P alone); ``coarse``
        is empty. ``prior`` replaces ``softmax(P(x))`` as G's input."""
        if upto not in STAGES:
            raise ValueError(f"upto must be one of {STAGES}; got {upto!r}")
        if upto == "coarse":
            raise ValueError("the CVPR'18 model has no coarse net G_c: use upto='fine'")
        xs = self._scaled(x.contiguous(memory_format=CHANNELS_LAST))
        logits = self.parsing(xs, train=train_parsing)
        if upto == "parsing":
            return DeblurOutputs(coarse=(), parsing_logits=logits)
        p = torch.softmax(logits, dim=1) if prior is None else _f32(prior)
        fine = (self.generator(xs, prior=p),)
        return DeblurOutputs(coarse=(), parsing_logits=logits, prior=p, fine=fine)


def _model_cfg(config) -> Any:
    """``config.model`` of a full config, or the model section itself."""
    return config.model if "model" in config else config


KINDS = ("ijcv", "cvpr18")


def build_model(config) -> FaceDeblurModel | Cvpr18Model:
    """The torch twin of ``models.factory.build_model`` (channels_last) from a config or its
    ``model`` section: ``model.kind`` ``"ijcv"`` → :class:`FaceDeblurModel`, ``"cvpr18"``
    → :class:`Cvpr18Model`."""
    m = _model_cfg(config)
    kind = m.get("kind", "ijcv")
    if kind not in KINDS:
        raise ValueError(f"model.kind must be one of {KINDS}; got {kind!r}")
    deblur = dict(
        first_kernel=m.first_kernel,
        features=m.features,
        num_resblocks=m.num_resblocks,
        num_scales=m.num_scales,
        kernel_size=m.kernel_size,
        resblock_post_relu=bool(m.resblock_post_relu),
        upsample=m.upsample,
        residual=m.residual,
        downsample_method=m.downsample,
        image_size=config.image_size if "model" in config else None,  # MATLAB resize weights
    )
    parsing = dict(
        features=tuple(m.parsing_features),
        use_bn=m.parsing_use_bn,
        norm=m.parsing_norm,
        up_features=tuple(m.parsing_up_features),
        last_features=int(m.parsing_last_features),
    )
    if kind == "cvpr18":
        model = Cvpr18Model(
            TorchParsingNet(m.num_classes, **parsing),
            MultiScaleDeblurNet(0, m.num_classes, **deblur),
            input_scale=float(m.input_scale),
        )
    else:
        model = FaceDeblurModel(
            num_classes=m.num_classes,
            num_fine_stages=m.num_fine_stages,
            share_fine_weights=m.share_fine_weights,
            **deblur,
            **{f"parsing_{k}": v for k, v in parsing.items()},
        )
    return model.to(memory_format=CHANNELS_LAST)


def build_discriminator(config, image_size: int | None = None) -> Discriminator:
    """Torch ``Discriminator`` (channels_last); ``image_size`` defaults to the config's."""
    m = _model_cfg(config)
    size = image_size if image_size is not None else config.image_size
    model = Discriminator(tuple(m.disc_features), m.disc_negative_slope, size)
    return model.to(memory_format=CHANNELS_LAST)


# --------------------------------------------------------------------------------------
# Weight conversion
# --------------------------------------------------------------------------------------

_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm2d, PerImageNorm2d)


def _subtree(tree: Mapping, path: Sequence[str], what: str) -> Mapping:
    node = tree
    for key in path:
        if key not in node:
            raise KeyError(f"Flax {what} has no entry {'/'.join(path)!r} (missing {key!r})")
        node = node[key]
    return node


def _leaves(tree: Mapping, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out = set()
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out |= _leaves(v, (*prefix, k))
        else:
            out.add((*prefix, k))
    return out


def _np(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _to_state_dict(module: nn.Module, variables: Mapping) -> dict[str, torch.Tensor]:
    params = variables["params"]
    stats = variables.get("batch_stats", {})
    used: set[tuple[str, ...]] = set()
    sd: dict[str, torch.Tensor] = {}
    for name, layer in module.named_modules():
        if not isinstance(layer, _LAYERS):
            continue
        path = tuple(name.split("."))
        p = _subtree(params, path, "params")
        t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))  # own, writable copy
        if isinstance(layer, nn.BatchNorm2d):
            s = _subtree(stats, path, "batch_stats")
            sd[f"{name}.weight"] = t(_np(p["scale"]))
            sd[f"{name}.running_mean"] = t(_np(s["mean"]))
            sd[f"{name}.running_var"] = t(_np(s["var"]))
            sd[f"{name}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
            used |= {("batch_stats", *path, "mean"), ("batch_stats", *path, "var")}
            used.add(("params", *path, "scale"))
        elif isinstance(layer, PerImageNorm2d):  # BatchNorm's names, no statistics
            sd[f"{name}.weight"] = t(_np(p["scale"]))
            used.add(("params", *path, "scale"))
        else:
            k = _np(p["kernel"])
            if isinstance(layer, nn.ConvTranspose2d):  # HWIO, unflipped -> IOHW, flipped
                w = k[::-1, ::-1].transpose(2, 3, 0, 1)
            elif isinstance(layer, nn.Conv2d):  # HWIO -> OIHW
                w = k.transpose(3, 2, 0, 1)
            else:  # Dense [in, out] -> Linear [out, in]
                w = k.T
            if tuple(w.shape) != tuple(layer.weight.shape):
                raise ValueError(
                    f"{name}: Flax kernel {k.shape} converts to {w.shape}, torch expects "
                    f"{tuple(layer.weight.shape)} (config does not match the params?)"
                )
            sd[f"{name}.weight"] = t(w)
            used.add(("params", *path, "kernel"))
        sd[f"{name}.bias"] = t(_np(p["bias"]))
        used.add(("params", *path, "bias"))
    leftover = {("params", *k) for k in _leaves(params)} - used
    leftover |= {("batch_stats", *k) for k in _leaves(stats)} - used
    if leftover:
        names = sorted("/".join(k) for k in leftover)
        raise ValueError(f"Flax variables not used by the torch model: {names[:10]}")
    return sd


def flax_to_torch(variables: Mapping, config, *, discriminator: bool = False) -> dict:
    """Torch ``state_dict`` of the generator (or ``discriminator``) built from ``config``.

    Args:
      variables: the Flax variables, ``{"params": ..., "batch_stats": ...}`` (jax or numpy
        arrays; ``batch_stats`` only where the net has BatchNorm).
      config: a full config (``image_size`` + ``model``) or, for the generator, its
        ``model`` section.
      discriminator: convert ``Discriminator`` variables instead of the generator's
        (``FaceDeblurModel`` or ``Cvpr18Model``, by ``model.kind``).

    Every Flax leaf must be used, and every torch tensor filled; mismatches raise.
    """
    module = build_discriminator(config) if discriminator else build_model(config)
    return _to_state_dict(module, variables)


def load_flax_params(torch_model: nn.Module, variables: Mapping) -> nn.Module:
    """Loads Flax variables into ``torch_model`` (strict; keeps its memory format)."""
    torch_model.load_state_dict(_to_state_dict(torch_model, variables), strict=True)
    return torch_model


def torch_to_flax(torch_model: nn.Module) -> dict[str, dict]:
    """The inverse of :func:`load_flax_params`: ``{"params", "batch_stats"?}`` of numpy
    float32 arrays, nested like the Flax tree (``batch_stats`` only if there is BatchNorm)."""
    params: dict = {}
    stats: dict = {}

    def put(tree: dict, path: Sequence[str], leaf: str, value: torch.Tensor | np.ndarray):
        node = tree
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = np.ascontiguousarray(
            value.detach().float().cpu().numpy() if isinstance(value, torch.Tensor) else value
        )

    for name, layer in torch_model.named_modules():
        if not isinstance(layer, _LAYERS):
            continue
        path = name.split(".")
        w = layer.weight.detach().float().cpu().numpy()
        if isinstance(layer, nn.BatchNorm2d):
            put(params, path, "scale", w)
            put(stats, path, "mean", layer.running_mean)
            put(stats, path, "var", layer.running_var)
        elif isinstance(layer, PerImageNorm2d):
            put(params, path, "scale", w)
        elif isinstance(layer, nn.ConvTranspose2d):
            put(params, path, "kernel", w.transpose(2, 3, 0, 1)[::-1, ::-1])
        elif isinstance(layer, nn.Conv2d):
            put(params, path, "kernel", w.transpose(2, 3, 1, 0))
        else:
            put(params, path, "kernel", w.T)
        put(params, path, "bias", layer.bias)
    return {"params": params, "batch_stats": stats} if stats else {"params": params}


# --------------------------------------------------------------------------------------
# Helpers for tests and benchmarks
# --------------------------------------------------------------------------------------


def random_flax_variables(module, *example_args, seed: int = 0, gain: float = 1.0) -> dict:
    """Random Flax variables for ``module`` (numpy float32), without compiling its init.

    Shapes come from ``jax.eval_shape(module.init, ...)`` (a trace; ``jit(init)`` takes
    XLA ~10 s on CPU even for the tiny model). Kernels get ``N(0, gain² / fan_in)``, the
    zero-initialised last convs too, so the net is not the identity; with ``gain = 1``
    activations stay O(1) through the 18-conv scales and every input still moves the
    output (paper model at 128 px: max |y| 1.45, G_f's prior swapped for another moves y
    by up to 0.23; at gain 0.5 by 0.002). Biases, BatchNorm scale offsets
    and running means ``N(0, 0.1²)`` (scale around 1), running variances ``U(0.5, 1.5)``.
    """

    shapes = jax.eval_shape(module.init, jax.random.key(0), *example_args)
    rng = np.random.default_rng(seed)

    def one(path, leaf):
        name = jax.tree_util.keystr(path[-1:])
        noise = rng.standard_normal(leaf.shape)
        if "kernel" in name:
            out = gain * noise / np.sqrt(np.prod(leaf.shape[:-1]))
        elif "var" in name:
            out = rng.uniform(0.5, 1.5, leaf.shape)
        elif "scale" in name:
            out = 1.0 + 0.1 * noise
        else:  # bias, running mean
            out = 0.1 * noise
        return out.astype(np.float32)

    return jax.tree_util.tree_map_with_path(one, shapes)


# --------------------------------------------------------------------------------------
# Layout helpers
# --------------------------------------------------------------------------------------


def from_nhwc(x, device: str | torch.device = "cpu") -> torch.Tensor:
    """NHWC array (numpy / jax) -> NCHW float32 tensor in channels_last memory format."""
    t = torch.from_numpy(np.array(x, dtype=np.float32)).permute(0, 3, 1, 2)
    return t.to(device).contiguous(memory_format=CHANNELS_LAST)


def to_nhwc(t: torch.Tensor) -> np.ndarray:
    """NCHW tensor -> NHWC float32 numpy array (``[B]`` tensors pass through as ``[B]``)."""
    t = t.detach().float().cpu()
    return (t.permute(0, 2, 3, 1) if t.ndim == 4 else t).numpy()
