"""Loading a trained model — from a checkpoint or a weights file — and deblurring with it.

This module owns loading: :func:`load_model` takes either form and returns a
:class:`LoadedModel`; :mod:`facedeblur_jax.serving.weights_file` only reads and writes the
weights file's format, and :func:`export_weights` turns a checkpoint into such a file.

A checkpoint is self-describing: its ``meta`` item stores the config it was trained with,
so ``load_model(DIR)`` needs nothing else. ``DIR`` may be a training workdir, its
``checkpoints/`` folder, or one ``checkpoints/<step>`` folder; or a generator weights file
(``.npz``, ``facedeblur export-weights``; :mod:`facedeblur_jax.serving.weights_file`), which holds
the same config and the generator's variables alone.

The package may carry one such file, the bundled model
(``facedeblur_jax/assets/pretrained/``, :data:`BUNDLED_MODEL`; its model card is the
``README.md`` there): :func:`bundled_model_path` returns it, or ``None`` when this copy of
the package has none. ``facedeblur deblur`` uses it when no ``--checkpoint`` is given.

Batches have one fixed shape (:mod:`facedeblur_jax.core.batching`), so the jitted network
compiles once whatever the number of inputs.
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

from facedeblur_jax.core import sample_data
from facedeblur_jax.core.batching import map_batched
from facedeblur_jax.core.outputs import check_output_file
from facedeblur_jax.models.face_deblur import DeblurOutputs, FaceDeblurModel
from facedeblur_jax.models.factory import build_discriminator, build_model
from facedeblur_jax.serving import weights_file
from facedeblur_jax.state import checkpoint as ckpt_lib
from facedeblur_jax.state.train_state import create_train_state, generator_variables

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


def _restore(checkpointer: ckpt_lib.Checkpointer, step: int) -> tuple[dict, Any, Any]:
    """``(meta, config, train state)`` of one checkpoint, on the first device."""
    meta = checkpointer.restore_meta(step)
    config = ckpt_lib.config_from_meta(meta)
    ckpt_lib.check_layout(config, checkpointer.where(step))
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
    return meta, config, state


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Restores the generator (G_c, P, G_f) of the latest (or the named) checkpoint, or
    reads it from a weights file (a file ending in ``.npz``).

    From a workdir or its ``checkpoints/`` folder, a newest checkpoint that cannot be read
    (:class:`~facedeblur_jax.state.checkpoint.UnreadableCheckpoint`) is passed over for the
    newest one that can, with one printed warning line naming the step passed over, why,
    and the step used (:func:`~facedeblur_jax.state.checkpoint.newest_readable`); a named
    ``checkpoints/<step>`` folder is that step or an error.
    """
    if pathlib.Path(path).suffix == ".npz" and not pathlib.Path(path).is_dir():
        config, variables, step, info = weights_file.read_weights(path)
        return LoadedModel(config, build_model(config.model), variables, step, info)
    workdir, step = _resolve(path)
    checkpointer = ckpt_lib.Checkpointer(workdir, async_save=False, create=False)
    try:
        if step is None:
            step, (meta, config, state), skipped = ckpt_lib.newest_readable(
                checkpointer, lambda s: _restore(checkpointer, s)
            )
            for _, why in skipped:
                print(f"warning: {why}; using step {step}, the newest one that can be read")
        else:
            if step not in checkpointer.all_steps():
                raise ckpt_lib.UnreadableCheckpoint(
                    f"checkpoint {checkpointer.where(step)!r} cannot be read: it is not a "
                    "complete checkpoint (Orbax's commit marker is missing)"
                )
            meta, config, state = _restore(checkpointer, step)
    finally:
        checkpointer.close()
    return LoadedModel(config, build_model(config.model), generator_variables(state), step, meta)


def make_deblur_fn(loaded: LoadedModel, *, upto: str = "fine"):
    """A jitted ``f32[B, S, S, 3] -> DeblurOutputs`` for the loaded model."""

    @jax.jit
    def run(variables, x) -> DeblurOutputs:
        return loaded.model.apply(variables, x, upto=upto)

    return lambda x: run(loaded.variables, x)


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


def describe(loaded: LoadedModel) -> str:
    """``'NAME' (DATA; S px; step N)`` of a model read from a weights file (DATA: the card's
    ``"data"`` string, left out when it has none)."""
    data = loaded.meta.get("card", {}).get("data")
    parts = [data] if isinstance(data, str) and data.strip() else []
    parts += [f"{loaded.image_size} px", f"step {loaded.step}"]
    return f"{loaded.meta.get('name', '?')!r} ({'; '.join(parts)})"


def export_weights(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    name: str | None = None,
    card_json: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> tuple[pathlib.Path, LoadedModel]:
    """``facedeblur export-weights``: the generator of ``checkpoint`` (a workdir, its
    ``checkpoints/`` folder, one ``checkpoints/<step>`` folder, or a weights file) written
    to ``out``. ``name`` defaults to ``out``'s name without ``.npz``. Everything is checked
    before the checkpoint is read; an existing ``out`` is kept unless ``overwrite``.

    Returns ``(resolved out, the loaded model)``.
    """
    out = pathlib.Path(out).expanduser().resolve()
    if out.suffix != ".npz":
        raise ValueError(f"--out must end in .npz; got {out}")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name the .npz file to write")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    check_output_file(out, overwrite=overwrite)
    name = weights_file.check_name(out.stem if name is None else name)
    card = weights_file.read_card(card_json) if card_json is not None else {}
    loaded = load_model(checkpoint)
    written = weights_file.save_weights(
        loaded.config,
        loaded.variables,
        out,
        step=loaded.step,
        meta=loaded.meta,
        name=name,
        card=card,
        overwrite=overwrite,
    )
    return written, loaded
