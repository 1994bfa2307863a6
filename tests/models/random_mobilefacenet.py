"""Random MobileFaceNet weights as a real converter-format ``.npz`` (test mechanics only:
never a stand-in for the pre-trained weights). Drawn in NumPy, so no network is compiled."""

from __future__ import annotations

import pathlib

import numpy as np

from facedeblur_jax.models import mobilefacenet as mfn
from facedeblur_jax.models.npz_weights import unflatten_tree


def write_random_mobilefacenet(path: pathlib.Path, seed: int = 0) -> pathlib.Path:
    """He-normal kernels, unit BN scale and variance, zero shifts and means, PReLU 0.25."""
    rng = np.random.default_rng(seed)
    flat = {}
    for key, shape in mfn.expected_variable_shapes().items():
        if key.endswith("/kernel"):
            flat[key] = rng.normal(0, (2 / np.prod(shape[:-1])) ** 0.5, shape)
        elif key.endswith(("/scale", "/var")):
            flat[key] = np.ones(shape)
        elif key.endswith("/negative_slope"):
            flat[key] = np.full(shape, 0.25)
        else:
            flat[key] = np.zeros(shape)
    tree = unflatten_tree({k: v.astype(np.float32) for k, v in flat.items()}, "random")
    return mfn.save_mobilefacenet(tree, path, source="random (tests)")
