"""The generator's weights file: a trained model as one ``.npz`` that inference loads alone.

``facedeblur export-weights`` writes it from a training workdir (or one of its checkpoints);
:func:`facedeblur_jax.serving.loading.load_model` reads it like a checkpoint, so ``facedeblur
deblur``, ``eval`` and ``export`` take ``--checkpoint FILE.npz``. The package's bundled model
(``facedeblur_jax/assets/pretrained/``) is such a file.

What it holds (a tagged ``.npz``, :mod:`facedeblur_jax.models.npz_weights`):

* the generator's variables — G_c, P and G_f parameters and P's BatchNorm statistics
  (``params/coarse/...``, ``params/parsing/...``, ``params/fine_0/...``,
  ``batch_stats/parsing/...``), float32. Not the discriminator, not the optimiser states,
  not the PRNG key or data position: the file is for inference, not for resuming training;
* ``__format__`` = :data:`FORMAT`, ``facedeblur_jax.generator.v<model.layout_version>``
  (``models/factory.py``): a file of another network, or of an older layout, is refused by
  name before any array is looked at;
* ``__config__``: the training config as JSON, read back through
  :func:`facedeblur_jax.state.checkpoint.config_from_meta` (so a file of an older config schema
  still loads), except the keys of :data:`LOCAL_KEYS`, which are cleared: they name
  local paths of the training run (data root, weight files, a cache), which are not part
  of the model and must not travel with a file that is passed on;
* ``__step__`` (the checkpoint's global step), ``__phase__`` (its phase, ``"done"`` at the
  end of the schedule), ``__versions__`` (JSON: library versions of the training run);
* ``__name__`` (the model's name) and ``__card__`` (JSON object, ``{}`` when none: free-form
  provenance from ``--card-json``, e.g. ``{"data": "...", "steps": ..., "metrics": {...}}``;
  a string under ``"data"`` is what ``facedeblur deblur`` prints as the training data).

Loading checks every variable the config's model has against the file: a missing or
unexpected key, a wrong shape, a non-float or non-finite array is one ``ValueError`` naming
the file and the key. Reading uses ``np.load(..., allow_pickle=False)``; writing is atomic
and refuses to replace a file unless asked to.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from facedeblur_jax.core import compat
from facedeblur_jax.core.npzfile import READ_ERRORS
from facedeblur_jax.models.factory import LAYOUT_VERSION, build_model
from facedeblur_jax.models.npz_weights import (
    FORMAT_KEY,
    flatten_tree,
    read_tagged_npz,
    unflatten_tree,
    write_tagged_npz,
)
from facedeblur_jax.state import checkpoint as ckpt_lib

FORMAT_PREFIX = "facedeblur_jax.generator.v"
FORMAT = f"{FORMAT_PREFIX}{LAYOUT_VERSION}"
WRITER = "facedeblur export-weights"
WHAT = "generator weights file"
# Config keys holding local paths of the training run; cleared ("") in a weights file.
# ``evals.<name>.kernels`` (a bank file) is cleared for every eval entry.
LOCAL_KEYS = (
    "data.root",
    "data.label_root",
    "loss.vgg_weights_path",
    "loss.identity_weights_path",
    "train.init_from",
    "train.compilation_cache_dir",
    "train.coordinator_address",
)


def shareable_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of ``config`` with the :data:`LOCAL_KEYS` (and every ``evals.*.kernels``)
    set to ``""``."""
    out = ml_collections.ConfigDict(config.to_dict())
    keys = list(LOCAL_KEYS)
    keys += [
        f"evals.{name}.kernels" for name in out.get("evals", {}) if "kernels" in out.evals[name]
    ]
    with out.unlocked():
        for key in keys:
            *parents, leaf = key.split(".")
            node = out
            for p in parents:
                node = node.get(p) if node is not None else None
            if node is not None and leaf in node:
                node[leaf] = ""
    return out


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path`` (``--card-json``); one-line errors naming the file."""
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"card file not found: {path}")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"card file {path} is not valid JSON ({e})") from e
    if not isinstance(card, dict):
        raise ValueError(f"card file {path} must hold a JSON object; got {type(card).__name__}")
    return card


def check_name(name: str) -> str:
    """``name`` stripped; ``ValueError`` unless it is one non-empty printable line."""
    name = name.strip()
    if not name or not name.isprintable():
        raise ValueError(f"--name must be a non-empty single line of text; got {name!r}")
    return name


def save_weights(
    config: ml_collections.ConfigDict,
    variables: Any,
    path: str | os.PathLike,
    *,
    step: int,
    meta: Mapping[str, Any],
    name: str,
    card: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes a generator's ``variables`` with its training ``config``, global ``step`` and
    checkpoint ``meta`` (its ``phase`` and ``versions``) to ``path`` (``.npz``); returns the
    resolved path.

    Raises:
      FileExistsError: ``path`` exists and not ``overwrite`` (nothing is written).
      ValueError: ``path`` does not end in ``.npz``; ``name`` is empty or several lines.
    """
    name = check_name(name)
    arrays = flatten_tree(jax.device_get(variables))
    stored = {
        "config": ckpt_lib.config_to_json(shareable_config(config)),
        "step": int(step),
        "phase": str(meta.get("phase", "")),
        "versions": json.dumps(meta.get("versions", {}), sort_keys=True),
        "name": name,
        "card": json.dumps(dict(card or {})),
    }
    return write_tagged_npz(
        path, arrays, fmt=FORMAT, what=f"the {WHAT}", meta=stored, overwrite=overwrite
    )


def _stored_tag(path: pathlib.Path) -> str:
    """The file's ``__format__`` string, or ``""`` when it cannot be read (then
    :func:`read_tagged_npz` says why)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data[FORMAT_KEY]) if FORMAT_KEY in data.files else ""
    except (*READ_ERRORS, AttributeError, TypeError):
        return ""


def _expected_shapes(model, image_size: int) -> dict[str, tuple[int, ...]]:
    """``{"params/coarse/...": shape}`` of every variable the model has (no arrays made)."""
    x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    abstract = jax.eval_shape(lambda k, x: model.init(k, x, upto="fine"), jax.random.key(0), x)
    flat = {}
    for keys, leaf in jax.tree_util.tree_flatten_with_path(dict(abstract))[0]:
        flat["/".join(str(k.key) for k in keys)] = tuple(leaf.shape)
    return flat


def _meta_text(meta: Mapping[str, np.ndarray], key: str, path: pathlib.Path) -> str:
    if key not in meta:
        raise ValueError(f"{path}: the metadata entry __{key}__ is missing")
    value = meta[key]
    if value.ndim != 0 or value.dtype.kind != "U":
        raise ValueError(f"{path}: the metadata entry __{key}__ is not a string")
    return str(value)


def _meta_json(meta: Mapping[str, np.ndarray], key: str, path: pathlib.Path) -> Any:
    try:
        return json.loads(_meta_text(meta, key, path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: the metadata entry __{key}__ is not valid JSON ({e})") from e


def read_weights(path: str | os.PathLike) -> tuple[ml_collections.ConfigDict, Any, int, dict]:
    """Reads a generator weights file: ``(config, variables, step, info)`` (arrays on the
    default device), the same a checkpoint it was written from restores to.

    ``info`` holds ``config`` (the JSON), ``step``, ``phase``, ``versions``, ``name``,
    ``card`` (a dict) and ``file`` (the resolved path).

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: not such a file (another tag, another layout version, pickled objects,
        not an ``.npz``), or a metadata entry or variable is missing, unexpected,
        wrong-shaped, not float or not finite — one line naming the file and the key.
    """
    path = pathlib.Path(path).expanduser().resolve()
    compat.check_weights_tag(_stored_tag(path), FORMAT_PREFIX, FORMAT, str(path))
    flat, meta = read_tagged_npz(path, fmt=FORMAT, what=WHAT, writer=WRITER)
    config_json = _meta_text(meta, "config", path)
    try:
        config = ckpt_lib.config_from_meta({"config": config_json})
    except (json.JSONDecodeError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: the metadata entry __config__ is not a config ({e})") from e
    ckpt_lib.check_layout(config, str(path))
    if "step" not in meta or meta["step"].ndim != 0 or meta["step"].dtype.kind not in "iu":
        raise ValueError(f"{path}: the metadata entry __step__ is missing or not an integer")
    card = _meta_json(meta, "card", path)
    if not isinstance(card, dict):
        raise ValueError(f"{path}: the metadata entry __card__ is not a JSON object")
    model = build_model(config.model)
    expected = _expected_shapes(model, int(config.image_size))
    for key, shape in expected.items():
        if key not in flat:
            raise ValueError(f"{path}: {key} is missing (a {WHAT} of another model?)")
        value = flat[key]
        if tuple(value.shape) != shape:
            raise ValueError(
                f"{path}: {key} has shape {tuple(value.shape)}; the model's is {shape}"
            )
        if value.dtype != np.float32:
            raise ValueError(f"{path}: {key} has dtype {value.dtype}, not float32")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: {key} holds non-finite values")
    extra = sorted(set(flat) - set(expected))
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise ValueError(f"{path}: {extra[0]}{more} is not a variable of the model")
    device = jax.devices()[0]
    variables = jax.device_put(unflatten_tree(flat, str(path)), device)
    info = {
        "config": config_json,
        "step": int(meta["step"]),
        "phase": str(meta.get("phase", "")),
        "versions": _meta_json(meta, "versions", path) if "versions" in meta else {},
        "name": _meta_text(meta, "name", path),
        "card": card,
        "file": str(path),
    }
    return config, variables, int(meta["step"]), info
