"""Loading a trained model from a checkpoint and deblurring batches of images.

A checkpoint is self-describing: its ``meta`` item stores the config it was trained with,
so ``load_model(DIR)`` needs nothing else. ``DIR`` may be a training workdir, its
``checkpoints/`` folder, or one ``checkpoints/<step>`` folder; or a generator weights file
(``.npz``, ``facedeblur export-weights``; :mod:`facedeblur_jax.serving.weights_file`), which holds
the same config and the generator's variables alone.

The package may carry one such file, the bundled model
(``facedeblur_jax/assets/pretrained/``, :data:`BUNDLED_MODEL`; its model card is the
``README.md`` there): :func:`bundled_model_path` returns it, or ``None`` when this copy of
the package has none. ``facedeblur deblur`` uses it when no ``--checkpoint`` is given.

Padded-batch inference lives here, once: :func:`padded_batches` cuts ``range(total)`` into
index batches of one fixed length (the last one repeats its last index), so a jitted
function compiles once whatever the number of inputs; :func:`map_batched` applies a
function over such batches of an array and drops the padding. :func:`generator_variables`
takes the generator's variables (G_c, P, G_f; no discriminator) out of a train state's
params and batch statistics, for checkpoints and for evaluation during training alike.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from facedeblur_jax.core import sample_data
from facedeblur_jax.models.face_deblur import DeblurOutputs, FaceDeblurModel
from facedeblur_jax.models.factory import build_discriminator, build_model
from facedeblur_jax.training import checkpoint as ckpt_lib
from facedeblur_jax.training.state import create_train_state

PyTree = Any

PRETRAINED_DIR = sample_data.ASSETS / "pretrained"
BUNDLED_MODEL = PRETRAINED_DIR / "cpu_study.npz"


@dataclasses.dataclass
class LoadedModel:
    config: ml_collections.ConfigDict
    model: FaceDeblurModel
    variables: PyTree  # {"params": ..., "batch_stats": ...} of the generator (no D)
    step: int
    meta: dict

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)


def bundled_model_path() -> pathlib.Path | None:
    """The weights file bundled with the package (:data:`BUNDLED_MODEL`), or ``None``."""
    return BUNDLED_MODEL if BUNDLED_MODEL.is_file() else None


def _resolve(path: str | os.PathLike) -> tuple[pathlib.Path, int | None]:
    """``(workdir, step or None)`` from a workdir / checkpoints dir / step dir."""
    p = pathlib.Path(path).resolve()
    if not p.exists():
        raise FileNotFoundError(f"checkpoint path {str(p)!r} does not exist")
    if (p / "checkpoints").is_dir():
        return p, None
    if p.name == "checkpoints":
        return p.parent, None
    if p.parent.name == "checkpoints" and p.name.isdigit():
        return p.parent.parent, int(p.name)
    raise FileNotFoundError(
        f"{str(p)!r} is not a training workdir (no checkpoints/ inside), a checkpoints/ "
        "folder, a checkpoints/<step> folder or a weights file (.npz, facedeblur "
        "export-weights)"
    )


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Restores the generator (G_c, P, G_f) of the latest (or the named) checkpoint, or
    reads it from a weights file (a file ending in ``.npz``)."""
    if pathlib.Path(path).suffix == ".npz" and not pathlib.Path(path).is_dir():
        from facedeblur_jax.serving import weights_file

        return weights_file.load_weights(path)
    workdir, step = _resolve(path)
    checkpointer = ckpt_lib.Checkpointer(workdir, async_save=False)
    try:
        step = checkpointer.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {str(checkpointer.directory)!r}")
        meta = checkpointer.restore_meta(step)
        config = ckpt_lib.config_from_meta(meta)
        ckpt_lib.check_layout(config, str(checkpointer.directory / str(step)))
        model = build_model(config.model)
        device = jax.devices()[0]
        abstract = jax.eval_shape(
            lambda k: create_train_state(config, model, build_discriminator(config.model), k),
            jax.random.key(0),
        )
        sharding = jax.sharding.SingleDeviceSharding(device)
        abstract = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), abstract
        )
        state, meta = checkpointer.restore(abstract, step)
    finally:
        checkpointer.close()
    return LoadedModel(config, model, generator_variables(state), int(step), meta)


def generator_variables(state) -> PyTree:
    """``{"params": ..., ["batch_stats": ...]}`` of G_c, P and G_f from a train state (its
    params without the discriminator's ``disc``; batch statistics when P has BatchNorm)."""
    params = {k: v for k, v in state.params.items() if k != "disc"}
    variables = {"params": params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def make_deblur_fn(loaded: LoadedModel, *, upto: str = "fine"):
    """A jitted ``f32[B, S, S, 3] -> DeblurOutputs`` for the loaded model."""

    @jax.jit
    def run(variables, x) -> DeblurOutputs:
        return loaded.model.apply(variables, x, upto=upto)

    return lambda x: run(loaded.variables, x)


def padded_batches(total: int, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """Index batches over ``range(total)``, in order, all of one length.

    Yields:
      ``(i32[batch_size] indices, count)``: the first ``count`` indices are new; the last
      batch is padded by repeating ``total - 1`` (a real input, so the padding computes
      nothing undefined), and its padded results are to be dropped. Nothing when
      ``total == 0``.

    Raises:
      ValueError: ``batch_size < 1`` or ``total < 0``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if total < 0:
        raise ValueError(f"total must be >= 0; got {total}")
    for start in range(0, total, batch_size):
        index = np.minimum(np.arange(start, start + batch_size), total - 1).astype(np.int32)
        yield index, min(batch_size, total - start)


def map_batched(fn: Callable[[np.ndarray], PyTree], x: np.ndarray, batch_size: int) -> PyTree:
    """``fn`` over fixed-size batches of ``x``'s leading axis (:func:`padded_batches`).

    Args:
      fn: ``[batch_size, ...] -> pytree of [batch_size, ...]`` (e.g. a jitted network: it
        compiles once).
      x: ``[N, ...]`` inputs, ``N >= 1``.
      batch_size: rows per call.

    Returns:
      The pytree of ``fn``'s outputs for the ``N`` rows, as numpy arrays ``[N, ...]``.
    """
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError("map_batched needs at least one input row")
    outs = []
    for index, count in padded_batches(len(x), batch_size):
        outs.append(jax.tree.map(lambda y, n=count: np.asarray(y)[:n], fn(x[index])))
    return jax.tree.map(lambda *ys: np.concatenate(ys), *outs)


def deblur_array(loaded: LoadedModel, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Deblurs ``uint8|f32[N, S, S, 3]`` (S = the model's image size) in batches; returns
    ``f32[N, S, S, 3]`` in [0, 1]. One compiled shape (:func:`map_batched`)."""
    fn = make_deblur_fn(loaded)
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    if len(images) == 0:
        return np.zeros((0, *images.shape[1:]), np.float32)
    return map_batched(lambda x: jnp.clip(fn(jnp.asarray(x)).y, 0.0, 1.0), images, batch_size)
