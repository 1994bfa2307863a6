"""``facedeblur export``: the inference function as a serialised StableHLO module.

``export_model`` lowers ``x ↦ model.apply(variables, x, upto).y`` with :mod:`jax.export`:

* Parameters (and P's BatchNorm statistics) are **baked in** as constants of the module, so
  the artefact is self-contained: one input, one output, no checkpoint needed to run it.
  (A model of the paper's size adds ~60 MB of fp32 constants.)
* The input is ``f32[b, S, S, 3]`` in [0, 1] with a **symbolic batch** ``b``
  (``jax.export.symbolic_shape("b, S, S, 3")``) and ``S`` the checkpoint's ``image_size``;
  the output is ``f32[b, S, S, 3]`` — G_f's ``y`` (``upto="fine"``) or G_c's ``y_c``
  (``upto="coarse"``), *not* clipped, exactly as the live model returns it (clip to [0, 1]
  before saving an image).
* Lowered for the current backend unless ``platforms`` names others (``("cpu", "cuda")``);
  the module then runs on any of them.

The file holds ``exported.serialize()``; a sidecar ``FILE.json`` records the checkpoint,
step, image size, stage and JAX version. Neither is ever overwritten unless ``overwrite``.
``load_exported(FILE)`` returns a callable ``f32[b, S, S, 3] -> f32[b, S, S, 3]``.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from facedeblur_jax.core.atomic import atomic_write
from facedeblur_jax.core.outputs import check_output_file
from facedeblur_jax.serving.loading import LoadedModel, load_model

STAGES = ("fine", "coarse")


def input_spec(image_size: int) -> jax.ShapeDtypeStruct:
    """``f32[b, S, S, 3]`` with a symbolic batch dimension ``b``."""
    shape = jax.export.symbolic_shape(f"b, {int(image_size)}, {int(image_size)}, 3")
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def export_model(
    loaded: LoadedModel, *, upto: str = "fine", platforms: Sequence[str] | None = None
) -> jax.export.Exported:
    """Lowers the loaded model's ``f32[b, S, S, 3] -> f32[b, S, S, 3]`` (params baked in)."""
    if upto not in STAGES:
        raise ValueError(f"upto must be one of {STAGES}; got {upto!r}")
    model, variables = loaded.model, loaded.variables

    def infer(x):
        return model.apply(variables, x, upto=upto).y

    return jax.export.export(jax.jit(infer), platforms=platforms)(input_spec(loaded.image_size))


def save_exported(
    exported: jax.export.Exported,
    path: str | os.PathLike,
    *,
    metadata: dict | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes ``exported.serialize()`` to ``path`` and ``metadata`` to ``path + ".json"``,
    each atomically (a killed process leaves no half-written file under either name)."""
    path = pathlib.Path(path).expanduser().resolve()
    sidecar = path.with_name(path.name + ".json")
    for p in (path, sidecar):
        if p.exists() and not overwrite:
            raise FileExistsError(f"refusing to overwrite existing file {str(p)!r}")
    data, text = exported.serialize(), json.dumps(metadata or {}, indent=2) + "\n"
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_bytes(data))
    atomic_write(sidecar, lambda tmp: pathlib.Path(tmp).write_text(text))
    return path


def load_exported(path: str | os.PathLike) -> Callable[[jax.Array], jax.Array]:
    """The exported model as a callable ``f32[b, S, S, 3] -> f32[b, S, S, 3]`` (any ``b``)."""
    exported = jax.export.deserialize(bytearray(pathlib.Path(path).read_bytes()))
    return exported.call


def run(
    checkpoint: str,
    out: str,
    *,
    upto: str = "fine",
    platforms: Sequence[str] | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """The ``facedeblur export`` command."""
    path = pathlib.Path(out).expanduser().resolve()
    sidecar = path.with_name(path.name + ".json")
    for p in (path, sidecar):
        if p.exists() and not overwrite:
            raise FileExistsError(f"refusing to overwrite existing file {str(p)!r}")
        check_output_file(p, overwrite=overwrite)
    loaded = load_model(checkpoint)
    exported = export_model(loaded, upto=upto, platforms=platforms)
    metadata = {
        "checkpoint": str(pathlib.Path(checkpoint).resolve()),
        "step": loaded.step,
        "image_size": loaded.image_size,
        "upto": upto,
        "input": f"f32[b, {loaded.image_size}, {loaded.image_size}, 3] in [0, 1]",
        "output": "f32[b, S, S, 3], not clipped (y of G_f, or y_c of G_c with upto=coarse)",
        "params": "baked in as constants",
        "platforms": list(exported.platforms),
        "jax_version": jax.__version__,
        "load": (
            "facedeblur_jax.serving.stablehlo.load_exported(path) or jax.export.deserialize(bytes)"
        ),
    }
    return save_exported(exported, path, metadata=metadata, overwrite=overwrite)
