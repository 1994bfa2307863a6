"""The authors' released CVPR'18 weights (MatConvNet) -> ``models/cvpr18.py`` ``Cvpr18Model``.

The release (``joanshen0508/Deep-Semantic-Face-Deblurring``) holds two pairs of MAT-files,
``net_G_P_S_F.mat`` + ``net_P_P_S_F.mat`` and the ``_GAN`` pair, each file one variable
(``net_G``, ``net_P``) written by its ``savemodel.m``: a 1×N struct array whose element ``k``
holds the parameters of the ``k``-th layer ``DL_deblur_net18.m`` uses (docs/design.md §2):

    net_G(1,k)  k = 1..33  fields w, b       16 convs per scale; k = 17 the transposed conv
    net_P(1,k)  k = 1..6   w, b, bw, bb[, bm] encoder conv + vl_nnbnorm
                k = 7..11  upw, upb, w, b, bw, bb[, bm]  decoder: transposed conv, conv, bnorm
                k = 12     w, b               the parsing logits

Mapping (every shape is checked against the released graph before anything is written; a
shape that does not fit is one ``ValueError`` naming the entry, e.g. ``net_P(1,7).upw:
expected 4×4×C×C', got …``):

* ``vl_nnconv`` filters are H×W×C_in×C_out: Flax ``Conv`` kernels as they are; biases
  (stored C×1 or 1×C) flattened.
* ``vl_nnconvt`` filters are H×W×C_out×C_in and scatter each input pixel through the filter
  (the adjoint of a strided correlation); Flax's ``ConvTranspose`` correlates the dilated
  input, so its kernel is the filter turned by 180° with the last two axes swapped.
  ``upsample 2, crop [1 1 1 1]`` with a 4×4 filter is our ``padding="SAME"`` (2× size).
* G's scale-1 first conv reads [up-conv output, blurred, prior]; ours concatenates [blurred,
  up-conv output, prior], so its input channels are permuted.
* P's ``bw``/``bb`` become the normalisation's ``scale``/``bias``; with ``bn="moments"`` the
  stored ``bm`` = [μ, σ] (σ = sqrt(var + ε) already) become BatchNorm statistics (mean μ,
  var σ² − ε) used as running averages.
* The widths (G's features F, P's encoder, transposed-conv and last decoder widths) and the
  class count K are read from the shapes: the paper publishes none of them.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.io import loadmat

G_LAYERS = 33
P_LAYERS = 12
P_ENCODER = 6  # stages 1..6; decoder stages 7..11; logits 12
G_SCALE = 16  # convolutions per scale
RESBLOCKS = 5
BN_EPSILON = 1e-4  # every vl_nnbnorm call of DL_deblur_net18.m
BN_MODES = ("per_image", "moments")
PAIRS = {  # which pair a file name belongs to
    "net_G_P_S_F.mat": "plain",
    "net_P_P_S_F.mat": "plain",
    "net_G_P_S_F_GAN.mat": "gan",
    "net_P_P_S_F_GAN.mat": "gan",
}


def read_struct(path: str | os.PathLike, variable: str) -> np.ndarray:
    """The struct array ``variable`` (``net_G`` / ``net_P``) of a MATLAB v5/v7 MAT-file.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a MAT-file scipy reads (a v7.3 HDF5 file: say how to re-save it), or
        no such variable, or not a 1×N struct array.
    """
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{variable} file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(128)
    if b"MATLAB 7.3" in head or head.startswith(b"\x89HDF"):
        raise ValueError(
            f"{path} is a MATLAB v7.3 (HDF5) MAT-file, which this converter does not read; "
            f"re-save it as v7 in MATLAB: load('{path.name}'); save('{path.stem}_v7.mat', "
            f"'{variable}', '-v7')"
        )
    try:
        data = loadmat(path, squeeze_me=False, struct_as_record=True)
    except (ValueError, TypeError, OSError, NotImplementedError) as e:
        raise ValueError(f"{path} is not a MATLAB MAT-file scipy can read ({e})") from e
    if variable not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise ValueError(f"{path} holds no variable {variable} (found: {found or 'none'})")
    struct = data[variable]
    if not (isinstance(struct, np.ndarray) and struct.dtype.names and struct.ndim == 2):
        raise ValueError(f"{path}: {variable} is not a MATLAB struct array")
    if struct.shape[0] != 1:
        raise ValueError(f"{path}: {variable} is {struct.shape[0]}×{struct.shape[1]}, not 1×N")
    return struct


def _fmt(shape) -> str:
    return "×".join(str(s) for s in shape) if shape else "[]"


class _Reader:
    """Fields of one struct array, each checked once, errors naming ``net_X(1,k).field``."""

    def __init__(self, struct: np.ndarray, name: str, layers: int):
        self.struct, self.name = struct, name
        if struct.shape[1] < layers:
            raise ValueError(
                f"{name}({1},{layers}): {name} is 1×{struct.shape[1]}; the released graph "
                f"reads 1×{layers}"
            )

    def get(self, k: int, field: str) -> np.ndarray:
        where = f"{self.name}(1,{k}).{field}"
        if field not in (self.struct.dtype.names or ()):
            raise ValueError(f"{where}: {self.name} has no field {field!r}")
        value = np.asarray(self.struct[field][0, k - 1])
        if value.dtype == object or not np.issubdtype(value.dtype, np.number):
            raise ValueError(f"{where}: not a numeric array (got {value.dtype})")
        if value.size == 0:
            raise ValueError(f"{where} is empty")
        value = value.astype(np.float64)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{where} holds non-finite values")
        return value

    def filt(self, k: int, field: str, expect: tuple) -> np.ndarray:
        """A 4-D filter (MATLAB drops trailing singleton axes); ``expect`` entries ``None``
        are free, others must match."""
        value = self.get(k, field)
        if value.ndim > 4:
            raise ValueError(f"{self.name}(1,{k}).{field}: expected 4-D, got {_fmt(value.shape)}")
        value = value.reshape(value.shape + (1,) * (4 - value.ndim))
        want = "×".join("?" if e is None else str(e) for e in expect)
        if any(e is not None and e != s for e, s in zip(expect, value.shape, strict=True)):
            raise ValueError(
                f"{self.name}(1,{k}).{field}: expected {want}, got {_fmt(value.shape)}"
            )
        return value

    def vector(self, k: int, field: str, n: int) -> np.ndarray:
        value = self.get(k, field)
        if value.size != n or sum(s != 1 for s in value.shape) > 1:
            raise ValueError(f"{self.name}(1,{k}).{field}: expected {n}×1, got {_fmt(value.shape)}")
        return value.reshape(n)

    def moments(self, k: int, n: int) -> np.ndarray:
        value = self.get(k, "bm")
        if value.shape != (n, 2):
            raise ValueError(f"{self.name}(1,{k}).bm: expected {n}×2, got {_fmt(value.shape)}")
        return value


def _conv(kernel: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
    return {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}


def _convt(mcn: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
    """vl_nnconvt ``[kh, kw, out, in]`` -> Flax ConvTranspose ``[kh, kw, in, out]``."""
    return _conv(mcn[::-1, ::-1].transpose(0, 1, 3, 2), bias)


def convert(
    net_g: np.ndarray, net_p: np.ndarray, *, bn: str = "per_image"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The released nets as ``(model config overrides, variables)`` of a ``Cvpr18Model``.

    Args:
      net_g, net_p: the struct arrays (:func:`read_struct`).
      bn: ``"per_image"`` (what the released script does: each image's own statistics) or
        ``"moments"`` (the stored ``bm`` as running averages; the entries must hold them).

    Returns:
      ``({"model.KEY": value, ...}, {"params": ..., ["batch_stats": ...]})``: the config keys
      that describe this model (``image_size`` too) and its float32 variables.

    Raises:
      ValueError: a missing field, an empty entry or a shape that does not fit the released
        graph, naming the entry.
    """
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}; got {bn!r}")
    g, p = _Reader(net_g, "net_G", G_LAYERS), _Reader(net_p, "net_P", P_LAYERS)

    # --- P -----------------------------------------------------------------------------
    enc, params_p, stats_p = [], {}, {}

    def norm(k: int, name: str, width: int) -> None:
        scale, bias = p.vector(k, "bw", width), p.vector(k, "bb", width)
        params_p[name] = {"scale": scale.astype(np.float32), "bias": bias.astype(np.float32)}
        if bn == "moments":
            mom = p.moments(k, width)
            var = np.maximum(mom[:, 1] ** 2 - BN_EPSILON, 0.0)
            stats_p[name] = {"mean": mom[:, 0].astype(np.float32), "var": var.astype(np.float32)}

    cin = 3
    for i in range(P_ENCODER):
        size = 5 if i == 2 else 3
        w = p.filt(i + 1, "w", (size, size, cin, None))
        width = w.shape[3]
        params_p[f"enc{i}"] = _conv(w, p.vector(i + 1, "b", width))
        norm(i + 1, f"enc{i}_bn", width)
        enc.append(width)
        cin = width
    ups, last = [0] * (P_ENCODER - 1), 0
    for t in range(1, P_ENCODER):  # decoder stage t upsamples into encoder stage j
        k, j = P_ENCODER + t, P_ENCODER - 1 - t
        up = p.filt(k, "upw", (4, 4, None, cin))
        ups[j] = up.shape[2]
        params_p[f"up{j}"] = _convt(up, p.vector(k, "upb", ups[j]))
        out = enc[j] if j > 0 else None  # the skip sum fixes every width but the last
        w = p.filt(k, "w", (3, 3, ups[j], out))
        width = w.shape[3]
        params_p[f"dec{j}"] = _conv(w, p.vector(k, "b", width))
        norm(k, f"dec{j}_bn", width)
        if j == 0:
            last = width
        cin = width
    w = p.filt(P_LAYERS, "w", (3, 3, cin, None))
    classes = w.shape[3]
    params_p["logits"] = _conv(w, p.vector(P_LAYERS, "b", classes))

    # --- G -----------------------------------------------------------------------------
    first = g.filt(1, "w", (11, 11, 3 + classes, None))
    features = first.shape[3]
    params_g: dict[str, Any] = {}
    for s in (0, 1):
        k0 = 1 + s * (G_SCALE + 1)  # net_G(1,1) and net_G(1,18)
        sc: dict[str, Any] = {}
        if s == 0:
            w = first
        else:
            w = g.filt(k0, "w", (11, 11, 3 + 3 + classes, features))
            # Released order [up-conv output, blurred, prior] -> ours [blurred, up, prior].
            w = np.concatenate([w[:, :, 3:6], w[:, :, 0:3], w[:, :, 6:]], axis=2)
        sc["conv_in"] = _conv(w, g.vector(k0, "b", features))
        names = ["conv_pre0", "conv_pre1"]
        names += [f"res{b}/conv{c}" for b in range(RESBLOCKS) for c in (1, 2)]
        names += ["conv_post0", "conv_post1"]
        for offset, name in enumerate(names, start=1):
            k = k0 + offset
            conv = _conv(g.filt(k, "w", (5, 5, features, features)), g.vector(k, "b", features))
            if "/" in name:
                block, leaf = name.split("/")
                sc.setdefault(block, {})[leaf] = conv
            else:
                sc[name] = conv
        k = k0 + G_SCALE - 1
        sc["conv_out"] = _conv(g.filt(k, "w", (5, 5, features, 3)), g.vector(k, "b", 3))
        params_g[f"scale{s}"] = sc
        if s == 0:
            k = G_SCALE + 1  # net_G(1,17), the transposed conv 3 -> 3
            params_g["up1"] = {
                "ConvTranspose_0": _convt(g.filt(k, "w", (4, 4, 3, 3)), g.vector(k, "b", 3))
            }

    overrides = {
        "image_size": 128,
        "model.kind": "cvpr18",
        "model.num_classes": classes,
        "model.features": features,
        "model.num_resblocks": RESBLOCKS,
        "model.num_scales": 2,
        "model.first_kernel": 11,
        "model.kernel_size": 5,
        "model.resblock_post_relu": True,
        "model.upsample": "transposed",
        "model.residual": False,
        "model.downsample": "matlab_bicubic",
        "model.input_scale": 255 / 256,
        "model.parsing_features": tuple(enc),
        "model.parsing_up_features": tuple(ups),
        "model.parsing_last_features": last,
        "model.parsing_use_bn": True,
        "model.parsing_norm": "per_image" if bn == "per_image" else "batch",
    }
    variables: dict[str, Any] = {"params": {"parsing": params_p, "generator": params_g}}
    if stats_p:
        variables["batch_stats"] = {"parsing": stats_p}
    return overrides, variables


def pair_of(paths: Mapping[str, os.PathLike]) -> str:
    """``"plain"`` or ``"gan"`` from the two released file names, ``"unknown"`` when they
    are renamed or from different pairs."""
    kinds = {PAIRS.get(pathlib.Path(p).name) for p in paths.values()}
    return kinds.pop() if len(kinds) == 1 and None not in kinds else "unknown"
