"""``VGGFace``: the VGG-16 conv stack of VGG-Face (Parkhi et al. 2015) for the perceptual loss.

The paper (§3.3, eq. 8) takes the L1 distance of ``pool2`` and ``pool5`` activations of the
pre-trained VGG-Face. Only the 13 convolutions are built (``conv1_1`` … ``conv5_3``, 3×3,
stride 1, zero padding 1, each followed by ReLU; 2×2 stride-2 max-pools after blocks 1–5;
widths 64, 128, 256, 512, 512); ``fc6``–``fc8`` are never needed for features.

Preprocessing happens inside the module: images ``f32[B, H, W, 3]`` in ``[0, 1]``, **RGB**,
become ``255·x − mean`` with the VGG-Face mean pixel ``VGG_FACE_MEAN_RGB`` = (129.1863,
104.7624, 93.5940) in R, G, B order — the ``meta.normalization.averageImage`` of the
MatConvNet releases (which read images with ``imread``, i.e. RGB) and the
``meta['mean']`` of Albanie's ``vgg_face_dag.pth``. No division by a standard deviation
(the releases use std 1). The Caffe release (and the Lua Torch ``VGG_FACE.t7`` and the
Keras ports made from it) expects **BGR** input with the same per-colour means written in
B, G, R order (93.5940, 104.7624, 129.1863); the converter
(``facedeblur_jax/models/vgg_convert.py``) flips ``conv1_1``'s input channels of such
sources, so a converted checkpoint *always* expects RGB and this module never reorders
channels.

Weights: VGG-Face cannot be downloaded by this package. ``facedeblur convert-vgg`` turns
a public release into the ``.npz`` checkpoint that :func:`load_vgg_face` reads; a missing
file is a ``FileNotFoundError`` that says how to get one (or how to turn the loss off with
``--config.loss.vgg_weight=0``). Nothing here ever substitutes random weights.

Pooling uses floor division (PyTorch/Flax ``VALID``); Caffe rounds pooled sizes up. The two
agree when ``H`` and ``W`` divide by ``2^(number of pools)``, which is therefore required.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from facedeblur_jax.core.asserts import check_images
from facedeblur_jax.models.npz_weights import read_tagged_npz, write_tagged_npz

Dtype = Any

# VGG-Face mean pixel, R, G, B on the 0–255 scale (float32 values of the releases' mean).
VGG_FACE_MEAN_RGB = (129.186279296875, 104.76238250732422, 93.59396362304688)

# (block, convs per block, width) of VGG-16.
_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


def _conv_specs() -> tuple[tuple[str, int, int], ...]:
    specs, c_in = [], 3
    for block, n, width in _BLOCKS:
        for i in range(1, n + 1):
            specs.append((f"conv{block}_{i}", c_in, width))
            c_in = width
    return tuple(specs)


# (name, input channels, output channels) of the 13 convolutions, in network order.
CONV_LAYERS: tuple[tuple[str, int, int], ...] = _conv_specs()
_WIDTHS = {name: c_out for name, _, c_out in CONV_LAYERS}


def _layer_names() -> tuple[str, ...]:
    names = []
    for block, n, _ in _BLOCKS:
        for i in range(1, n + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


# Every feature ``VGGFace`` can return, in network order (MatConvNet / pytorch-mcn names).
LAYER_NAMES: tuple[str, ...] = _layer_names()

# Checkpoint format tag written by ``save_vgg_face`` and required by ``load_vgg_face``.
CHECKPOINT_FORMAT = "facedeblur_jax.vgg_face.v1"


def expected_param_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """``{conv name: {"kernel": (3, 3, C_in, C_out), "bias": (C_out,)}}`` (Flax HWIO)."""
    return {
        name: {"kernel": (3, 3, c_in, c_out), "bias": (c_out,)} for name, c_in, c_out in CONV_LAYERS
    }


class VGGFace(nn.Module):
    """VGG-Face features: ``f32[B, H, W, 3]`` RGB in ``[0, 1]`` -> ``{layer: f32[B, h, w, C]}``.

    Shapes of the default outputs: ``pool2`` ``[B, H/4, W/4, 128]``, ``pool5``
    ``[B, H/32, W/32, 512]``. Only the layers up to the deepest requested one are built and
    run, so ``layers=("pool2",)`` costs 4 convolutions, and its params need only
    ``conv1_1`` … ``conv2_2`` (a full VGG-Face param tree also works: extra entries are
    ignored).

    Use with frozen weights: ``VGGFace().apply({"params": load_vgg_face(path)}, images)``.
    The input is not range-checked (a deblurring net's output may overshoot ``[0, 1]``).

    Attributes:
      layers: names from ``LAYER_NAMES`` (``conv{b}_{i}``, ``relu{b}_{i}``, ``pool{b}``) to
        return; the paper's perceptual loss uses ``("pool2", "pool5")``.
      dtype: compute dtype (params stay float32; features are returned as float32).
    """

    layers: Sequence[str] = ("pool2", "pool5")
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        check_images("images", images, 3, value_range=None)
        wanted = tuple(self.layers)
        unknown = [name for name in wanted if name not in LAYER_NAMES]
        if not wanted or unknown:
            raise ValueError(
                f"VGGFace.layers must be a non-empty subset of {LAYER_NAMES}; got "
                f"{wanted!r} (unknown: {unknown})"
            )
        last = max(LAYER_NAMES.index(name) for name in wanted)
        num_pools = sum(name.startswith("pool") for name in LAYER_NAMES[: last + 1])
        _, h, w, _ = images.shape
        if h % 2**num_pools or w % 2**num_pools:
            raise ValueError(
                f"VGGFace: images height and width must divide by 2^{num_pools} = "
                f"{2**num_pools} to reach {LAYER_NAMES[last]!r}; got shape {images.shape}"
            )

        mean = jnp.asarray(VGG_FACE_MEAN_RGB, jnp.float32)
        x = (images.astype(jnp.float32) * 255.0 - mean).astype(self.dtype)
        out = {}
        for name in LAYER_NAMES[: last + 1]:
            kind = name[:4]
            if kind == "conv":
                x = nn.Conv(
                    _WIDTHS[name], (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=name
                )(x)
            elif kind == "relu":
                x = nn.relu(x)
            else:
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
            if name in wanted:
                out[name] = x.astype(jnp.float32)
        return out


_CONVERT_HINT = (
    "VGG-Face weights are not bundled (licence and size). Download a public release — "
    "Albanie's PyTorch conversion vgg_face_dag.pth "
    "(https://www.robots.ox.ac.uk/~albanie/pytorch-models.html) or the MatConvNet "
    "vgg_face_dag.mat / vgg-face.mat (https://www.robots.ox.ac.uk/~vgg/software/vgg_face/) — "
    "and convert it with\n"
    "  facedeblur convert-vgg --input vgg_face_dag.pth --out {path}\n"
    "or train without the perceptual loss: --config.loss.vgg_weight=0"
)


def _flatten(params: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    return {
        f"{layer}/{leaf}": np.asarray(value, np.float32)
        for layer, leaves in params.items()
        for leaf, value in leaves.items()
    }


def check_vgg_face_params(params: Mapping[str, Mapping[str, Any]], source: str = "params") -> None:
    """``ValueError`` naming every missing, unexpected or wrong-shaped layer of ``params``."""
    expected = expected_param_shapes()
    problems = []
    for layer, leaves in expected.items():
        if layer not in params:
            problems.append(f"{layer}: missing")
            continue
        for leaf, shape in leaves.items():
            if leaf not in params[layer]:
                problems.append(f"{layer}/{leaf}: missing (expected shape {shape})")
            elif tuple(np.shape(params[layer][leaf])) != shape:
                problems.append(
                    f"{layer}/{leaf}: expected shape {shape}, got "
                    f"{tuple(np.shape(params[layer][leaf]))}"
                )
        extra = sorted(set(params[layer]) - set(leaves))
        if extra:
            problems.append(f"{layer}: unexpected entries {extra}")
    extra_layers = sorted(set(params) - set(expected))
    if extra_layers:
        problems.append(f"unexpected layers {extra_layers}")
    if problems:
        raise ValueError(
            f"{source} is not a VGG-16 conv stack (Flax HWIO layout):\n  " + "\n  ".join(problems)
        )


def save_vgg_face(
    params: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    source: str = "",
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes ``params`` (checked) to the ``.npz`` that :func:`load_vgg_face` reads.

    Atomic: the file is written beside ``path`` and renamed into place. Refuses to replace
    an existing file unless ``overwrite``. Returns the resolved path.
    """
    check_vgg_face_params(params)
    return write_tagged_npz(
        path,
        _flatten(params),
        fmt=CHECKPOINT_FORMAT,
        what="the VGG-Face checkpoint",
        meta={
            "input": "rgb",
            "mean_rgb": np.asarray(VGG_FACE_MEAN_RGB, np.float64),
            "source": source,
        },
        overwrite=overwrite,
    )


def load_vgg_face(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Reads a converted VGG-Face checkpoint: ``{conv name: {"kernel", "bias"}}`` float32.

    For ``VGGFace().apply({"params": params}, images)``. The ``.npz`` is read with
    ``allow_pickle=False`` (safe for untrusted files); every one of the 13 conv layers must
    be present with its VGG-16 shape (HWIO kernels), else ``ValueError`` naming the layer.

    Raises:
      FileNotFoundError: no file at ``path``; the message says how to get and convert the
        weights, or how to disable the perceptual loss.
      ValueError: not a checkpoint written by ``facedeblur convert-vgg``, or a layer is
        missing, unexpected or wrong-shaped.
    """
    path = pathlib.Path(path).expanduser()
    hint = _CONVERT_HINT.format(path=path)
    arrays, _ = read_tagged_npz(
        path,
        fmt=CHECKPOINT_FORMAT,
        what="VGG-Face checkpoint",
        writer="facedeblur convert-vgg",
        missing_hint="\n" + hint,
        bad_hint=". Convert the release first:\n" + hint,
    )
    params: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        layer, _, leaf = key.partition("/")
        params.setdefault(layer, {})[leaf or "?"] = value
    check_vgg_face_params(params, source=str(path))
    for layer, leaves in params.items():
        for leaf, value in leaves.items():
            if not np.issubdtype(value.dtype, np.floating):
                raise ValueError(f"{path}: {layer}/{leaf} has dtype {value.dtype}, not float")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{path}: {layer}/{leaf} holds non-finite values")
            leaves[leaf] = value.astype(np.float32)
    return params
