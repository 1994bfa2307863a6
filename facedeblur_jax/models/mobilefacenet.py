"""``MobileFaceNet``: a 128-D face-identity embedding (Chen et al. 2018, "MobileFaceNets").

The identity network of the recognition evaluation (docs/design.md §8). The paper measures
identity with FaceNet features (§5.2, Fig. 13, Table 11); FaceNet's weights are not public in
a form this package can read, so MobileFaceNet stands in: a public PyTorch checkpoint exists
(Xiaoccer/MobileFaceNet_Pytorch, ``model/best/068.ckpt``, trained on CASIA-WebFace), and it
is small (999,552 parameters).

Layout (MobileFaceNets Table 1 with the 112×96 input of that checkpoint; NHWC here):

====================  ===============================  ==========  =========
layer                 operator                         output      name
====================  ===============================  ==========  =========
conv 3×3, s2          conv–BN–PReLU                    56×48×64    ``conv1``
depthwise 3×3, s1     depthwise conv–BN–PReLU          56×48×64    ``dw_conv1``
bottlenecks           ``BOTTLENECK_SETTING`` (15)      7×6×128     ``blocks_i``
conv 1×1              conv–BN–PReLU                    7×6×512     ``conv2``
linear GDConv 7×6     depthwise conv–BN (no PReLU)     1×1×512     ``linear7``
linear conv 1×1       conv–BN (no PReLU)               1×1×128     ``linear1``
====================  ===============================  ==========  =========

A bottleneck ``(t, c, n, s)`` repeated ``n`` times is: 1×1 expansion to ``t·C_in`` (``expand``,
conv–BN–PReLU), 3×3 depthwise with stride ``s`` on the first repeat, 1 after
(``depthwise``, conv–BN–PReLU), linear 1×1 projection to ``c`` (``project``, conv–BN), and the
input added back when stride is 1 and ``C_in = c``. Convolutions have no bias; 3×3 ones pad
by 1 (zeros), so a stride-2 layer halves 112×96 exactly. PReLU has one slope per channel
(``negative_slope``, PyTorch's ``nn.PReLU(C)``). BatchNorm is inference-only with the stored
statistics (``batch_stats``: ``mean``, ``var``) and PyTorch's ε = 1e-5.

Input convention (the checkpoint's, from its LFW evaluation): aligned **RGB** faces of
112×96 pixels, ``(255·x − 127.5) / 128``. :func:`embed` takes the project's aligned square
crops ``f32[B, S, S, 3]`` in ``[0, 1]``: a crop whose side ``S`` is not 112 is first resized
to 112×112 (``jax.image.resize``, bilinear, antialiased when shrinking), then 8 columns are
trimmed from each side (112×96). The trim is exact for ArcFace-style 112×112 crops like the
face set's: that alignment template is the 112×96 SphereFace one the checkpoint was trained
on, shifted 8 px to the right. With ``flip=True`` the embedding of the horizontally flipped
crop is appended (256-D), as the authors' LFW evaluation does.

Weights are never bundled: ``facedeblur convert-mobilefacenet`` turns the
user's PyTorch checkpoint into the ``.npz`` that :func:`load_mobilefacenet` reads.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from facedeblur_jax.core.asserts import check_images
from facedeblur_jax.models.npz_weights import (
    flatten_tree,
    read_tagged_npz,
    unflatten_tree,
    write_tagged_npz,
)

Dtype = Any

# (t, c, n, s): expansion factor, output channels, repeats, stride of the first repeat.
BOTTLENECK_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)
INPUT_HW = (112, 96)  # the network's input, height × width
CROP_SIZE = 112  # the square aligned crop embed() trims to INPUT_HW
EMBED_DIM = 128
BN_EPSILON = 1e-5  # PyTorch's BatchNorm2d default, which the checkpoint was trained with
# Layout version 1: the parameter tree of this module (names below) as of its first release.
LAYOUT_VERSION = 1
CHECKPOINT_FORMAT = f"facedeblur_jax.mobilefacenet.v{LAYOUT_VERSION}"
# Default of embed(flip=...): append the mirrored crop's embedding. Top-1 on the bundled face
# set's 543 test faces against per-identity train means (cosine), 068.ckpt converted: 99.63 %
# (541) with the flip, 99.26 % (539) without, the same as the PyTorch original in both cases
# (python -m tests.models.measure_mobilefacenet_top1; docs/design.md §8).
DEFAULT_FLIP = True


def conv_layers() -> tuple[tuple[str, tuple[int, int], int, int, int, int, bool], ...]:
    """Every conv–BN unit in network order: ``(name, (kh, kw), stride, C_in, C_out, groups,
    prelu)``; ``name`` is the Flax module path (``blocks_3/depthwise``)."""
    units = [("conv1", (3, 3), 2, 3, 64, 1, True), ("dw_conv1", (3, 3), 1, 64, 64, 64, True)]
    c_in, i = 64, 0
    for t, c, n, s in BOTTLENECK_SETTING:
        for r in range(n):
            hidden = c_in * t
            units += [
                (f"blocks_{i}/expand", (1, 1), 1, c_in, hidden, 1, True),
                (f"blocks_{i}/depthwise", (3, 3), s if r == 0 else 1, hidden, hidden, hidden, True),
                (f"blocks_{i}/project", (1, 1), 1, hidden, c, 1, False),
            ]
            c_in, i = c, i + 1
    units += [
        ("conv2", (1, 1), 1, c_in, 512, 1, True),
        ("linear7", (7, 6), 1, 512, 512, 512, False),
        ("linear1", (1, 1), 1, 512, EMBED_DIM, 1, False),
    ]
    return tuple(units)


def expected_variable_shapes() -> dict[str, tuple[int, ...]]:
    """``{"params/<unit>/conv/kernel": (kh, kw, C_in/groups, C_out), …}`` of every variable,
    ``params`` and ``batch_stats`` (Flax HWIO kernels)."""
    shapes = {}
    for name, (kh, kw), _, c_in, c_out, groups, prelu in conv_layers():
        shapes[f"params/{name}/conv/kernel"] = (kh, kw, c_in // groups, c_out)
        shapes[f"params/{name}/bn/scale"] = (c_out,)
        shapes[f"params/{name}/bn/bias"] = (c_out,)
        shapes[f"batch_stats/{name}/bn/mean"] = (c_out,)
        shapes[f"batch_stats/{name}/bn/var"] = (c_out,)
        if prelu:
            shapes[f"params/{name}/prelu/negative_slope"] = (c_out,)
    return shapes


class PReLU(nn.Module):
    """``max(x, 0) + a · min(x, 0)`` with one learned slope ``a`` per channel (last axis)."""

    init_slope: float = 0.25

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        slope = self.param(
            "negative_slope", nn.initializers.constant(self.init_slope), (x.shape[-1],)
        )
        return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


class ConvBN(nn.Module):
    """Bias-free conv, inference BatchNorm, then PReLU unless ``linear``: ``[B, H, W, C_in] ->
    [B, H', W', features]``. ``depthwise``: one filter per channel (``features = C_in``)."""

    features: int
    kernel_size: tuple[int, int]
    stride: int = 1
    depthwise: bool = False
    linear: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # "Same" zero padding of the odd square kernels; none for 1×1 and the 7×6 GDConv.
        pad = self.kernel_size[0] // 2 if self.kernel_size[0] == self.kernel_size[1] else 0
        x = nn.Conv(
            self.features,
            self.kernel_size,
            strides=self.stride,
            padding=((pad, pad), (pad, pad)),
            feature_group_count=x.shape[-1] if self.depthwise else 1,
            use_bias=False,
            dtype=self.dtype,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, dtype=self.dtype, name="bn")(
            x
        )
        return x if self.linear else PReLU(name="prelu")(x)


class Bottleneck(nn.Module):
    """Inverted residual: 1×1 expand ×``expansion`` – 3×3 depthwise (``stride``) – linear 1×1
    project to ``features``; the input is added back when the shapes allow (stride 1,
    ``C_in = features``)."""

    features: int
    expansion: int
    stride: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = x.shape[-1] * self.expansion
        h = ConvBN(hidden, (1, 1), dtype=self.dtype, name="expand")(x)
        h = ConvBN(hidden, (3, 3), self.stride, depthwise=True, dtype=self.dtype, name="depthwise")(
            h
        )
        h = ConvBN(self.features, (1, 1), linear=True, dtype=self.dtype, name="project")(h)
        return x + h if self.stride == 1 and x.shape[-1] == self.features else h


class MobileFaceNet(nn.Module):
    """``f32[B, 112, 96, 3]`` normalised as ``(255·x − 127.5) / 128`` -> ``f32[B, 128]``.

    The raw network; use :func:`embed` for ``[0, 1]`` crops. Inference only (BatchNorm with
    stored statistics): ``MobileFaceNet().apply(variables, x)`` with ``variables =
    {"params": …, "batch_stats": …}`` from :func:`load_mobilefacenet`.

    Attributes:
      dtype: compute dtype (params stay float32; the embedding is returned as float32).
    """

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        chex.assert_shape(x, (None, *INPUT_HW, 3))
        x = x.astype(self.dtype)
        x = ConvBN(64, (3, 3), 2, dtype=self.dtype, name="conv1")(x)
        x = ConvBN(64, (3, 3), depthwise=True, dtype=self.dtype, name="dw_conv1")(x)
        i = 0
        for t, c, n, s in BOTTLENECK_SETTING:
            for r in range(n):
                x = Bottleneck(c, t, s if r == 0 else 1, dtype=self.dtype, name=f"blocks_{i}")(x)
                i += 1
        x = ConvBN(512, (1, 1), dtype=self.dtype, name="conv2")(x)
        x = ConvBN(512, (7, 6), depthwise=True, linear=True, dtype=self.dtype, name="linear7")(x)
        x = ConvBN(EMBED_DIM, (1, 1), linear=True, dtype=self.dtype, name="linear1")(x)
        chex.assert_shape(x, (None, 1, 1, EMBED_DIM))
        return x.reshape(x.shape[0], EMBED_DIM).astype(jnp.float32)


def preprocess(images: jax.Array) -> jax.Array:
    """Aligned square crops ``f32[B, S, S, 3]`` in ``[0, 1]`` -> the network's input
    ``f32[B, 112, 96, 3]``: resized to 112×112 when ``S ≠ 112`` (bilinear, antialiased when
    shrinking), 8 columns trimmed from each side, ``(255·x − 127.5) / 128``."""
    check_images("images", images, 3)
    b, h, w, _ = images.shape
    if h != w:
        raise ValueError(
            f"images must be square aligned face crops [B, S, S, 3]; got shape {images.shape}"
        )
    x = jnp.asarray(images, jnp.float32)
    if h != CROP_SIZE:
        x = jax.image.resize(x, (b, CROP_SIZE, CROP_SIZE, 3), method="linear", antialias=True)
    trim = (CROP_SIZE - INPUT_HW[1]) // 2
    x = x[:, :, trim : CROP_SIZE - trim]
    return (x * 255.0 - 127.5) / 128.0


def embed(
    variables: Mapping[str, Any],
    images: jax.Array,
    *,
    flip: bool = DEFAULT_FLIP,
    dtype: Dtype = jnp.float32,
) -> jax.Array:
    """Identity embeddings of aligned face crops (not normalised; compare by cosine).

    Args:
      variables: ``{"params": …, "batch_stats": …}`` from :func:`load_mobilefacenet`.
      images: ``f32[B, S, S, 3]`` aligned RGB face crops in ``[0, 1]`` (the face set's are
        112×112; other sizes are resized, see :func:`preprocess`).
      flip: append the embedding of the horizontally flipped crop.
      dtype: compute dtype of the network.
    Returns:
      ``f32[B, 256]`` with ``flip`` (the crop's 128, then the flipped crop's 128), else
      ``f32[B, 128]``.
    """
    x = preprocess(images)
    b = x.shape[0]
    if flip:
        x = jnp.concatenate([x, x[:, :, ::-1]], axis=0)  # one pass over crops and mirrors
    out = MobileFaceNet(dtype=dtype).apply(variables, x)
    if flip:
        out = jnp.concatenate([out[:b], out[b:]], axis=-1)
    chex.assert_shape(out, (b, EMBED_DIM * (2 if flip else 1)))
    return out


def init_variables(key: jax.Array) -> dict[str, Any]:
    """Randomly initialised ``{"params", "batch_stats"}`` (layout tests only: never a
    stand-in for the pre-trained weights)."""
    return MobileFaceNet().init(key, jnp.zeros((1, *INPUT_HW, 3), jnp.float32))


# ----------------------------------------------------------------------------- weights file

_CONVERT_HINT = (
    "; MobileFaceNet weights are not bundled: convert a PyTorch MobileFaceNet checkpoint "
    "(e.g. 068.ckpt of Xiaoccer/MobileFaceNet_Pytorch) with "
    "facedeblur convert-mobilefacenet --input 068.ckpt --out {path}"
)


def check_mobilefacenet_variables(flat: Mapping[str, Any], source: str = "variables") -> None:
    """``ValueError`` naming every missing, unexpected or wrong-shaped variable of ``flat``
    (``{"params/conv1/conv/kernel": array, …}``)."""
    expected = expected_variable_shapes()
    problems = [
        f"{key}: missing (expected shape {shape})"
        for key, shape in expected.items()
        if key not in flat
    ]
    problems += [
        f"{key}: expected shape {shape}, got {tuple(np.shape(flat[key]))}"
        for key, shape in expected.items()
        if key in flat and tuple(np.shape(flat[key])) != shape
    ]
    extra = sorted(set(flat) - set(expected))
    if extra:
        problems.append(f"unexpected entries {extra[:8]}{' …' if len(extra) > 8 else ''}")
    if problems:
        shown = problems[:8] + ([f"… {len(problems) - 8} more"] if len(problems) > 8 else [])
        raise ValueError(
            f"{source} is not a MobileFaceNet (layout v{LAYOUT_VERSION}): " + "; ".join(shown)
        )


def save_mobilefacenet(
    variables: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    source: str = "",
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes ``{"params", "batch_stats"}`` (checked) to the ``.npz`` that
    :func:`load_mobilefacenet` reads; atomic, refuses to replace a file unless ``overwrite``.
    Returns the resolved path."""
    flat = flatten_tree(variables)
    check_mobilefacenet_variables(flat)
    return write_tagged_npz(
        path,
        flat,
        fmt=CHECKPOINT_FORMAT,
        what="the MobileFaceNet weights file",
        meta={"input": "rgb 112x96, (255*x - 127.5) / 128", "source": source},
        overwrite=overwrite,
    )


def load_mobilefacenet(path: str | os.PathLike) -> dict[str, Any]:
    """Reads converted MobileFaceNet weights: ``{"params": …, "batch_stats": …}`` (float32).

    For :func:`embed` / ``MobileFaceNet().apply``. Read with ``allow_pickle=False``; every
    variable must be present with its shape.

    Raises:
      FileNotFoundError: no file at ``path`` (the one-line message says how to convert one).
      ValueError: not a file written by the converter (another format, another layout
        version, pickled objects), or a variable missing, unexpected, wrong-shaped, not
        float or not finite — one line naming the file.
    """
    path = pathlib.Path(path).expanduser()
    flat, _ = read_tagged_npz(
        path,
        fmt=CHECKPOINT_FORMAT,
        what="MobileFaceNet weights file",
        writer="the MobileFaceNet converter",
        missing_hint=_CONVERT_HINT.format(path=path),
        bad_hint=_CONVERT_HINT.format(path=path),
    )
    check_mobilefacenet_variables(flat, source=str(path))
    for key, value in flat.items():
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"{path}: {key} has dtype {value.dtype}, not float")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: {key} holds non-finite values")
        if key.endswith("/var") and np.any(value < 0):
            raise ValueError(f"{path}: {key} (a BatchNorm variance) has negative entries")
    return unflatten_tree({k: v.astype(np.float32) for k, v in flat.items()}, str(path))
