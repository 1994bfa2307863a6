"""A real tiny-config checkpoint and weights file in a second, without compiling anything.

The nets' weights are all zeros, shaped by ``jax.eval_shape`` of ``create_train_state``. With
``model.residual`` (every built-in config) a net whose weights are all zero returns its
input, so G_c, G_f and the full model are the identity: a deblurred image is its input
(resampled to the model's 32 px and back). Written through the real Orbax and weights-file
code, it is what ``facedeblur`` loads from any workdir.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from facedeblur_jax.config import load_config
from facedeblur_jax.models.factory import build_discriminator, build_model
from facedeblur_jax.serving import weights_file
from facedeblur_jax.state import checkpoint as ckpt_lib
from facedeblur_jax.state.train_state import create_train_state, generator_variables


def zero_state(config):
    """The train state with zero params and BatchNorm statistics (mean 0, variance 0: P's
    output is its BatchNorm bias, 0). Adam's moments, which inference never reads, are
    random numbers, so that the checkpoint has array files of some size (zeros compress
    to nothing) for the tests that damage them."""
    model, disc = build_model(config.model), build_discriminator(config.model)
    abstract = jax.eval_shape(
        lambda key: create_train_state(config, model, disc, key), jax.random.key(0)
    )
    rng = np.random.default_rng(0)

    def leaf(path, s):
        name = jax.tree_util.keystr(path)
        if "opt_state" in name and np.issubdtype(s.dtype, np.floating) and s.ndim:
            return jax.device_put(rng.standard_normal(s.shape).astype(s.dtype))
        return jax.device_put(np.zeros(s.shape, s.dtype))

    return jax.tree_util.tree_map_with_path(leaf, abstract)


# Smaller still than the tiny config (one scale, a two-stage P): a third of its arrays, so
# that loading and tracing it in a test's process costs about half as much.
MICRO = {
    "model.num_scales": 1,
    "model.features": 4,
    "model.parsing_features": (4, 4),
    "model.disc_features": (4,),
}


def tiny_config(**overrides):
    """The tiny config (32 px) with one phase, and ``overrides`` (e.g. :data:`MICRO`)."""
    return load_config("tiny", {"phase_order": ("coarse",), **overrides})


def meta(config, step: int) -> dict:
    return {
        "step": step,
        "phase": "coarse",
        "phase_index": 0,
        "phase_step": step,
        "data_state": {},
        "config": ckpt_lib.config_to_json(config),
        "versions": {"jax": jax.__version__},
    }


def zero_checkpoint(workdir: pathlib.Path, steps=(2,), config=None) -> pathlib.Path:
    """``workdir`` with one Orbax checkpoint of the zero state per step; returns it."""
    config = tiny_config() if config is None else config
    state = zero_state(config)
    with ckpt_lib.Checkpointer(workdir, async_save=False) as checkpointer:
        for step in steps:
            checkpointer.save(step, state, meta(config, step))
    return workdir


def zero_weights(path: pathlib.Path, config=None) -> pathlib.Path:
    """The zero generator as a weights file (``facedeblur export-weights``' format)."""
    config = tiny_config() if config is None else config
    variables = generator_variables(zero_state(config))
    return weights_file.save_weights(
        config, variables, path, step=2, meta=meta(config, 2), name="zero"
    )


def zero_array_data(step_dir: pathlib.Path) -> None:
    """Damages the arrays of the checkpoint ``step_dir`` (``WORKDIR/checkpoints/<step>``) as
    a disk error would: the middle half of each data file Orbax's process wrote is zeroed.
    The state's metadata (a file apart) still reads; its arrays do not."""
    for data in sorted((step_dir / "state").glob("ocdbt.process_*/d/*")):
        raw = bytearray(data.read_bytes())
        n = len(raw)
        raw[n // 4 : n // 4 + n // 2] = bytes(n // 2)
        data.write_bytes(bytes(raw))
