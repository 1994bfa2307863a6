"""Synthetic ``net_G_P_S_F.mat`` / ``net_P_P_S_F.mat`` in the released layout (``layout.py``).

The real files are not available (``.gitattributes`` of the release never routes *.mat to
Git LFS, so they are plain Git blobs, each 4 MiB or more: the snapshot used here omits files
of that size). These stand-ins have the exact structure: MATLAB v5 files (``scipy.io.savemat``,
compressed like MATLAB's default ``save``), one variable ``net_G`` (1×33 struct array, fields
``w, b``) or ``net_P`` (1×12, fields ``w, b, bw, bb, bm, upw, upb``; unset fields ``[]``),
float32 filters H×W×Cin×Cout (transposed convs H×W×Cout×Cin), C×1 biases and BN vectors, C×2
moments. Filters are random (so not symmetric under any flip or transpose), and the first conv
of each scale gets a different scale per input-channel group, so a swapped concat order
changes the output. The _GAN pair is taken to have the same layout: the repository has one
forward function for both (``DL_deblur_net18.m``), the readme (l.48-55) offers the two pairs
as alternatives for it, and ``savemodel.m`` writes its "-GAN" P file with the same fields;
``write_pair(..., gan=True)`` only changes the file names (variables stay net_G / net_P).
"""

from __future__ import annotations

import pathlib

import numpy as np
import scipy.io

from . import layout

SMALL_G = layout.GWidths(classes=4, feat=6)
SMALL_P = layout.PWidths(enc=(5, 6, 7, 8, 9, 10), up=(4, 5, 6, 7, 3), dec5=5, classes=4)
FILE_NAMES = {False: ("net_G_P_S_F.mat", "net_P_P_S_F.mat"),
              True: ("net_G_P_S_F_GAN.mat", "net_P_P_S_F_GAN.mat")}  # fmt: skip


def _value(rng, key, shape, group_sizes=None):
    field = key[1]
    if field in ("w", "upw"):
        fan_in = shape[0] * shape[1] * (shape[2] if field == "w" else shape[3])
        w = rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)
        if group_sizes:  # a distinct gain per input-channel group
            start = 0
            for gain, n in zip((0.5, 1.0, 2.0)[: len(group_sizes)], group_sizes, strict=True):
                w[:, :, start : start + n] *= gain
                start += n
        return w.astype(np.float32)
    if field == "bw":
        return (1.0 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
    if field == "bm":
        mu, sigma = rng.standard_normal(shape[0]), 0.5 + rng.random(shape[0])
        return np.stack([mu, sigma], axis=1).astype(np.float32)
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)


def struct_array(values: dict, n: int, fields) -> np.ndarray:
    """A (1, n) MATLAB struct array; ``values[(k, field)]``, absent fields stored as ``[]``."""
    arr = np.empty((1, n), dtype=[(f, object) for f in fields])
    for k in range(1, n + 1):
        for f in fields:
            arr[0, k - 1][f] = values.get((k, f), np.zeros((0, 0)))
    return arr


def make_values(gw=SMALL_G, pw=SMALL_P, seed=0):
    """``(g_values, p_values)``: ``{(k, field): float32 array}`` in the layout's shapes."""
    rng = np.random.default_rng(seed)
    g_shapes, p_shapes = layout.g_param_shapes(gw), layout.p_param_shapes(pw)
    groups = {1: (3, gw.classes), 18: (gw.up_out, 3, gw.classes)}
    g = {key: _value(rng, key, s, groups.get(key[0]) if key[1] == "w" else None)
         for key, s in g_shapes.items()}  # fmt: skip
    p = {key: _value(rng, key, s) for key, s in p_shapes.items()}
    return g, p


def write_values(directory, g_values, p_values, gan=False, g_fields=None, p_fields=None):
    """Write the two files; returns their paths (G, P)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    g_name, p_name = FILE_NAMES[gan]
    net_g = struct_array(g_values, layout.N_G, g_fields or layout.G_FIELDS)
    net_p = struct_array(p_values, layout.N_P, p_fields or layout.P_FIELDS)
    scipy.io.savemat(directory / g_name, {"net_G": net_g}, do_compression=True)
    scipy.io.savemat(directory / p_name, {"net_P": net_p}, do_compression=True)
    return directory / g_name, directory / p_name


def write_pair(directory, gw=SMALL_G, pw=SMALL_P, seed=0, gan=False):
    """Synthetic pair in the released layout; returns the paths (G, P)."""
    g, p = make_values(gw, pw, seed)
    return write_values(directory, g, p, gan)


# Deliberately broken variants: name -> (what is wrong, the entry a refusal must name).
BROKEN = {
    "G18_w_wrong_cin": ("net_G(1,18).w takes one input channel too many", "net_G(1,18).w"),
    "P3_w_3x3": ("net_P(1,3).w is 3×3 instead of 5×5 (sizes no longer add up)", "l.55"),
    "P7_upw_transposed": ("net_P(1,7).upw stored H×W×Cin×Cout", "net_P(1,7).upw"),
    "P_missing_upw": ("net_P has no field upw", "net_P(1,7).upw"),
    "G_missing_b": ("net_G has no field b", "net_G(1,1).b"),
    "G33_b_empty": ("net_G(1,33).b is []", "net_G(1,33).b"),
    "G_short": ("net_G is 1×32", "net_G(1,33)"),
}


def write_broken(directory, name, seed=0):
    """Write the small pair with the defect ``name`` (a key of BROKEN); returns (G, P)."""
    g, p = make_values(SMALL_G, SMALL_P, seed)
    g_fields, p_fields = None, None
    if name == "G18_w_wrong_cin":
        w = g[(18, "w")]
        g[(18, "w")] = np.concatenate([w, w[:, :, :1]], axis=2)
    elif name == "P3_w_3x3":
        p[(3, "w")] = p[(3, "w")][1:4, 1:4].copy()
    elif name == "P7_upw_transposed":
        p[(7, "upw")] = np.ascontiguousarray(p[(7, "upw")].transpose(0, 1, 3, 2))
    elif name == "P_missing_upw":
        p_fields = tuple(f for f in layout.P_FIELDS if f != "upw")
    elif name == "G_missing_b":
        g_fields = ("w",)
    elif name == "G33_b_empty":
        g[(33, "b")] = np.zeros((0, 0))
    elif name == "G_short":
        directory = pathlib.Path(directory)
        paths = write_values(directory, g, p)
        net_g = struct_array(g, layout.N_G - 1, layout.G_FIELDS)
        scipy.io.savemat(paths[0], {"net_G": net_g}, do_compression=True)
        return paths
    else:
        raise KeyError(name)
    return write_values(directory, g, p, g_fields=g_fields, p_fields=p_fields)
