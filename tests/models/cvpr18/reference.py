"""Independent NumPy forward pass of the released CVPR'18 test code (float64, CPU).

What it runs: ``main_deblur18.m`` l.4-10 and ``DL_deblur_net18.m`` (joanshen0508/
Deep-Semantic-Face-Deblurring @ aea7fe5), op by op from ``layout.GRAPH``, with the semantics of
MatConvNet 1.0-beta22 (the copy vendored in that repository):

* ``vl_nnconv``: correlation, no filter flip, zero padding: y(i,j,k) = b(k) +
  Σ f(u,v,d,k) x(S(i-1)+u-P, S(j-1)+v-P, d) (``doc/blocks.tex`` §Convolution).
* ``vl_nnconvt``: the transpose of ``vl_nnconv`` with stride = upsample and pad = crop,
  "Y(:) = M' X(:)" (``vl_nnconvt.m`` l.50-54); implemented here literally as that adjoint
  (``conv_transpose``), which the tests check by ⟨Ax, y⟩ = ⟨x, Aᵀy⟩ and against the
  closed form of ``blocks.tex`` eq. (e:convt).
* ``vl_nnbnorm(x, g, b, 'epsilon', 1e-4)`` without moments: y = g (x - μ) / sqrt(σ² + ε) + b
  with μ, σ² the biased mean and variance over H, W AND the batch (``vl_nnbnorm.m`` l.5-20,
  "accumulated across all the data items (images) stored in the 4D tensor X";
  ``bits/impl/bnorm_cpu.cpp`` l.38-53, mass = WH·num). The released scripts pass one image at
  a time (``main_deblur18.m`` l.10, ``main_deblur_all.m`` l.7-18), so the statistics are each
  image's own: ``bn="per_image"`` (default) reproduces that for any batch; ``bn="batch"``
  is what vl_nnbnorm would do to a stacked batch; ``bn="moments"`` uses the stored
  ``bm`` = [μ, σ] with σ already sqrt(var + ε), no ε added (``bnorm_cpu.cpp`` l.177-183),
  which only the unfinished backup ``DL_deblur_net18.m~`` passes ('moments', net_P(1,k).bm).
* ``vl_nnrelu`` leak 0; ``vl_nnpool`` 2×2 stride 2 pad 0 max; ``vl_nnsoftmax`` over channels
  (``vl_nnsoftmax.m`` l.22-24); ``vl_nnconcat(..., 3)`` along channels.

Weights: ``load_nets`` reads the two .mat files with ``scipy.io.loadmat(squeeze_me=False,
struct_as_record=True)``: each variable is a (1, N) structured array, ``net['w'][0, k-1]``
the ndarray of MATLAB's ``net(1,k).w`` with MATLAB's index order. ``params_from_structs``
turns both into ``{(net, k, field): float64 array}`` (filters made 4-D). Images are
``[B, H, W, C]`` float64 in [0, 1] (already divided by 256 as ``main_deblur18.m`` l.6-8 does);
MATLAB computes in single precision, this reference in double.
"""

from __future__ import annotations

import numpy as np
import scipy.io

from . import layout
from .imresize import imresize


def load_nets(path_g, path_p):
    """The struct arrays ``net_G`` (1×33) and ``net_P`` (1×12) of the two .mat files."""
    g = scipy.io.loadmat(path_g, squeeze_me=False, struct_as_record=True)
    p = scipy.io.loadmat(path_p, squeeze_me=False, struct_as_record=True)
    for name, mat in (("net_G", g), ("net_P", p)):
        if name not in mat:
            raise ValueError(f"no variable {name} in the file (main_deblur18.m l.10 uses it)")
    return g["net_G"], p["net_P"]


def params_from_structs(net_g, net_p) -> dict:
    """``{(net, k, field): float64 array}`` of every field the forward graph reads.

    Raises ValueError naming ``net_X(1,k).field`` for a missing field, a too-short struct
    array or an empty value, and (through ``layout.propagate_shapes``, see ``check``) for
    shapes that do not fit together.
    """
    params = {}
    for op in layout.GRAPH:
        if not op.net:
            continue
        struct = net_g if op.net == "G" else net_p
        for field in op.fields + (("bm",) if op.kind == "bnorm" else ()):
            name = f"net_{op.net}(1,{op.k}).{field}"
            names = struct.dtype.names or ()
            if field not in names:
                if field == "bm":
                    continue  # only bn="moments" reads it
                raise ValueError(f"{name}: the struct array has no field {field!r}")
            if struct.shape[0] != 1 or struct.shape[1] < op.k:
                raise ValueError(f"{name}: net_{op.net} is {struct.shape}, needs 1×{op.k}")
            value = np.asarray(struct[field][0, op.k - 1], dtype=np.float64)
            if value.size == 0:
                if field == "bm":
                    continue
                raise ValueError(f"{name} is empty")
            if field in ("w", "upw"):
                value = value.reshape(layout.as4d(value.shape))
            params[(op.net, op.k, field)] = value
    return params


def check(params, hw=(128, 128), batch=1) -> dict:
    """Validate every shape against the graph before running; returns all tensor shapes."""
    h, w = hw
    shape_of = lambda net, k, field: params[(net, k, field)].shape
    return layout.propagate_shapes(
        {"blurImg": (batch, h, w, 3), "blurImg0": (batch, h // 2, w // 2, 3)}, shape_of
    )


def conv_strided(x, w, b=None, stride=1, pad=0):
    """vl_nnconv: x [B,H,W,Cin], w [FH,FW,Cin,Cout] (MATLAB order), zero pad, correlation."""
    bsz, h, wd, _ = x.shape
    fh, fw, _, cout = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho, wo = (h + 2 * pad - fh) // stride + 1, (wd + 2 * pad - fw) // stride + 1
    y = np.zeros((bsz, ho, wo, cout))
    for u in range(fh):
        for v in range(fw):
            patch = xp[
                :, u : u + stride * (ho - 1) + 1 : stride, v : v + stride * (wo - 1) + 1 : stride
            ]
            y += patch @ w[u, v]
    if b is not None:
        y += np.ravel(b)
    return y


def conv_transpose(x, f, b=None, upsample=1, crop=0):
    """vl_nnconvt as the adjoint of ``conv_strided(., f, stride=upsample, pad=crop)``.

    f is [FH, FW, K, D] (MATLAB order: K outputs, D = channels of x). The conv it transposes
    maps a K-channel image of the output size to D channels, so its adjoint scatters each
    input pixel x[i, j] through f[u, v] into output position (S·i + u - crop, S·j + v - crop).
    """
    bsz, h, wd, _ = x.shape
    fh, fw, k, _ = f.shape
    s = upsample
    full = np.zeros((bsz, s * (h - 1) + fh, s * (wd - 1) + fw, k))
    for u in range(fh):
        for v in range(fw):
            full[:, u : u + s * (h - 1) + 1 : s, v : v + s * (wd - 1) + 1 : s] += x @ f[u, v].T
    ho, wo = full.shape[1] - 2 * crop, full.shape[2] - 2 * crop
    y = full[:, crop : crop + ho, crop : crop + wo].copy()
    if b is not None:
        y += np.ravel(b)
    return y


def bnorm(x, g, b, mode="per_image", moments=None, eps=layout.BN_EPSILON):
    """vl_nnbnorm; see the module docstring for the three modes."""
    if mode == "moments":
        mu, sigma = moments[:, 0], moments[:, 1]
    else:
        axes = (1, 2) if mode == "per_image" else (0, 1, 2)
        if mode not in ("per_image", "batch"):
            raise ValueError(f"bn mode {mode!r}")
        mu = x.mean(axis=axes, keepdims=True)
        sigma = np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + eps)
    return np.ravel(g) * (x - mu) / sigma + np.ravel(b)


def maxpool2(x):
    """vl_nnpool(x, [2 2], 'pad', 0, 'stride', [2 2], 'method', 'max')."""
    bsz, h, w, c = x.shape
    ho, wo = (h - 2) // 2 + 1, (w - 2) // 2 + 1
    return x[:, : 2 * ho, : 2 * wo].reshape(bsz, ho, 2, wo, 2, c).max(axis=(2, 4))


def softmax_channels(x):
    """vl_nnsoftmax: E = exp(X - max_c X); Y = E / Σ_c E."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def run_graph(params, blur, blur_half, bn="per_image") -> dict:
    """Every named tensor of DL_deblur_net18.m for inputs blurImg / blurImg0."""
    t = {"blurImg": np.asarray(blur, np.float64), "blurImg0": np.asarray(blur_half, np.float64)}
    for op in layout.GRAPH:
        x = t[op.ins[0]]
        p = lambda field, op=op: params[(op.net, op.k, field)]
        if op.kind == "conv":
            t[op.out] = conv_strided(x, p(op.fields[0]), p(op.fields[1]), 1, op.pad)
        elif op.kind == "convt":
            t[op.out] = conv_transpose(x, p(op.fields[0]), p(op.fields[1]), op.up, op.pad)
        elif op.kind == "bnorm":
            mom = params.get((op.net, op.k, "bm")) if bn == "moments" else None
            if bn == "moments" and mom is None:
                raise ValueError(f"net_{op.net}(1,{op.k}).bm is needed for bn='moments'")
            t[op.out] = bnorm(x, p(op.fields[0]), p(op.fields[1]), bn, mom)
        elif op.kind == "relu":
            t[op.out] = np.maximum(x, 0.0)
        elif op.kind == "pool":
            t[op.out] = maxpool2(x)
        elif op.kind == "softmax":
            t[op.out] = softmax_channels(x)
        elif op.kind == "add":
            t[op.out] = x + t[op.ins[1]]
        elif op.kind == "concat":
            t[op.out] = np.concatenate([t[n] for n in op.ins], axis=-1)
    return t


def forward(params, blur, blur_half=None, bn="per_image") -> dict:
    """P's logits, the prior, G's half- and full-scale outputs (+ ``"all"`` tensors).

    ``blur`` is ``blurImg`` [B, H, W, 3] (128×128 in the released code, l.4; any H, W
    divisible by 32 runs); ``blur_half`` defaults to ``imresize(blur, [H/2 W/2])`` (l.5).
    """
    blur = np.asarray(blur, np.float64)
    bsz, h, w, _ = blur.shape
    if blur_half is None:
        blur_half = imresize(blur, (h // 2, w // 2), axes=(1, 2))
    check(params, (h, w), bsz)
    t = run_graph(params, blur, blur_half, bn)
    out = {key: t[name] for key, name in layout.OUTPUTS.items()}
    out["all"] = t
    return out


def deblur18(image, params, bn="per_image"):
    """main_deblur18.m l.4-10 on images [B, H, W, 3] (uint8 or float): returns ``outIm``.

    ``if max(blurImg(:)>1), blurImg = blurImg/256`` (l.6-8, per image as the script runs one
    image), ``imresize(., [128 128])`` then ``[64 64]`` (DL_deblur_net18.m l.4-5). The output
    is G's 128×128 float output, unclipped; ``imwrite`` (l.11) then clips and scales: see
    ``to_uint8_like_imwrite``.
    """
    x = np.asarray(image, np.float64)
    x = np.stack([xi / 256.0 if np.any(xi > 1) else xi for xi in x])
    blur = imresize(x, (128, 128), axes=(1, 2))
    return forward(params, blur, imresize(blur, (64, 64), axes=(1, 2)), bn)["full"]


def to_uint8_like_imwrite(y):
    """imwrite of a single/double image: clip to [0, 1], ×255, round half away from zero."""
    return np.floor(np.clip(y, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
