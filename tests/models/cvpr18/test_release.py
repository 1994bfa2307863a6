"""The real release, when you have it: the converted plain pair reproduces the authors' own
output ``example_deblur.png`` of ``example.png`` (written by their ``main_deblur18.m``).

Set ``FACEDEBLUR_CVPR18_RELEASE`` to a clone of github.com/joanshen0508/
Deep-Semantic-Face-Deblurring (the MAT-files and the two PNGs); skipped otherwise. MATLAB ran
in single precision on a GPU and ``imwrite`` rounded to 8 bits, so the tolerance is a few
levels, not zero.
"""

from __future__ import annotations

import os
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax import cli
from facedeblur_jax.core import imageio
from facedeblur_jax.serving.loading import load_model

from . import reference

RELEASE_ENV = "FACEDEBLUR_CVPR18_RELEASE"


@pytest.fixture(scope="module")
def release():
    root = pathlib.Path(os.environ.get(RELEASE_ENV, "")).expanduser()
    if not os.environ.get(RELEASE_ENV) or not (root / "net_G_P_S_F.mat").is_file():
        pytest.skip(f"set {RELEASE_ENV}=DIR (a clone of the authors' repository)")
    return root


def test_the_released_weights_reproduce_the_released_example(release, tmp_path):
    out = tmp_path / "official.npz"
    assert cli.main(["convert-official", "--src", str(release), "--out", str(out)]) == 0
    loaded = load_model(out)
    example = imageio.load_image(release / "example.png")
    expected = imageio.load_image(release / "example_deblur.png")
    assert example.shape == expected.shape == (128, 128, 3)
    y = loaded.model.apply(loaded.variables, jnp.asarray(example, jnp.float32)[None] / 255.0).y
    ours = reference.to_uint8_like_imwrite(np.asarray(y[0], np.float64))
    diff = np.abs(ours.astype(int) - expected.astype(int))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 3, (diff.mean(), diff.max())
