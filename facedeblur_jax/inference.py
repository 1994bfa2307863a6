"""Loading a trained model from a checkpoint and deblurring batches of images.

A checkpoint is self-describing: its ``meta`` item stores the config it was trained with,
so ``load_model(DIR)`` needs nothing else. ``DIR`` may be a training workdir, its
``checkpoints/`` folder, or one ``checkpoints/<step>`` folder.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from facedeblur_jax import checkpoint as ckpt_lib
from facedeblur_jax.models.face_deblur import DeblurOutputs, FaceDeblurModel
from facedeblur_jax.models.factory import build_discriminator, build_model
from facedeblur_jax.train_state import create_train_state

PyTree = Any


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
        "folder or a checkpoints/<step> folder"
    )


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Restores the generator (G_c, P, G_f) of the latest (or the named) checkpoint."""
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
    params = {k: v for k, v in state.params.items() if k != "disc"}
    variables = {"params": params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return LoadedModel(config, model, variables, int(step), meta)


def make_deblur_fn(loaded: LoadedModel, *, upto: str = "fine"):
    """A jitted ``f32[B, S, S, 3] -> DeblurOutputs`` for the loaded model."""

    @jax.jit
    def run(variables, x) -> DeblurOutputs:
        return loaded.model.apply(variables, x, upto=upto)

    return lambda x: run(loaded.variables, x)


def deblur_array(loaded: LoadedModel, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Deblurs ``uint8|f32[N, S, S, 3]`` (S = the model's image size) in batches; returns
    ``f32[N, S, S, 3]`` in [0, 1]. The last batch is padded to keep one compiled shape."""
    fn = make_deblur_fn(loaded)
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    out = []
    for i in range(0, len(images), batch_size):
        chunk = images[i : i + batch_size]
        n = len(chunk)
        if n < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, 0)])
        y = fn(jnp.asarray(chunk)).y
        out.append(np.asarray(jnp.clip(y, 0.0, 1.0))[:n])
    return np.concatenate(out) if out else np.zeros((0, *images.shape[1:]), np.float32)
