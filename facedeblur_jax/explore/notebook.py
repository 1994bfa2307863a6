"""Helpers for exploring what the learned parsing prior does (the notebooks use these).

* :func:`held_back` — the evaluation faces of a config's data source with their parsing
  labels, blurred with a fixed key (no augmentation), so every notebook sees the same data.
* :func:`parse` — P applied directly to any images (clear, blurred or deblurred: Fig. 5).
* :func:`f_scores` — per-class F-scores (Table 3 layout; ``evaluators/parsing.py``).
* :func:`deblur_with_prior` — G_f fed another prior (Table 2 analogue); the priors are
  ``facedeblur_jax.models.priors`` (ground truth, zeros, another face's labels, classes
  permuted).
* :func:`part_error_maps` — |y − y_GT| restricted to each key part (where L_s acts).
* :func:`fine_input_weights` — how strongly G_f's first convolutions weigh each input
  (blurred image, y_c, upsampled estimate, each prior class): does G_f use the prior?
* :func:`official_model` — the authors' released CVPR'18 model, when the user has converted
  it (``$FACEDEBLUR_OFFICIAL_MODEL``).
* :func:`demo_workdir` — a trained checkpoint: ``runs/demo`` from the README's main command
  if it exists, else one trained here (tiny config when ``FACEDEBLUR_NOTEBOOK_TINY=1``).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.io

from facedeblur_jax.config import load_config
from facedeblur_jax.data.labels import CLASS_NAMES
from facedeblur_jax.data.pipeline import make_eval_batches
from facedeblur_jax.degrade.synthesize import Degraded, synthesize
from facedeblur_jax.evaluators.parsing import f_scores  # noqa: F401 (the notebooks use it)
from facedeblur_jax.serving.loading import LoadedModel, load_model
from facedeblur_jax.training.loop import train
from facedeblur_jax.training.losses import KEY_PARTS

TINY_ENV = "FACEDEBLUR_NOTEBOOK_TINY"


OFFICIAL_KERNEL_ENV = "FACEDEBLUR_OFFICIAL_KERNEL"


def official_test_kernel() -> np.ndarray | None:
    """``f32[27, 27]``: the paper's released 27×27 test kernel from the file that
    ``$FACEDEBLUR_OFFICIAL_KERNEL`` names — ``kernel_27_(1).mat`` of the authors'
    repository (its ``kernel`` array) or a ``.npy`` of it — or ``None`` when that is unset."""
    name = os.environ.get(OFFICIAL_KERNEL_ENV, "")
    if not name:
        return None
    path = pathlib.Path(name).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{OFFICIAL_KERNEL_ENV}={name!r}: no such file")
    if path.suffix.lower() == ".mat":
        return np.asarray(scipy.io.loadmat(path)["kernel"], np.float32)
    return np.load(path, allow_pickle=False)


OFFICIAL_MODEL_ENV = "FACEDEBLUR_OFFICIAL_MODEL"


def official_model() -> LoadedModel | None:
    """The authors' released CVPR'18 model from the weights file that
    ``$FACEDEBLUR_OFFICIAL_MODEL`` names (``facedeblur convert-official`` writes it), or
    ``None`` when that is unset.

    Raises:
      FileNotFoundError: the variable names no file.
      ValueError: the file holds another kind of model.
    """
    name = os.environ.get(OFFICIAL_MODEL_ENV, "")
    if not name:
        return None
    path = pathlib.Path(name).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{OFFICIAL_MODEL_ENV}={name!r}: no such file")
    loaded = load_model(path)
    if loaded.model.kind != "cvpr18":
        raise ValueError(
            f"{OFFICIAL_MODEL_ENV}={name!r} holds a model of kind {loaded.model.kind!r}, not "
            "the released CVPR'18 model (facedeblur convert-official)"
        )
    return loaded


def tiny_mode() -> bool:
    """True when notebooks should run their tiny settings (the test suite sets this)."""
    return os.environ.get(TINY_ENV, "") not in ("", "0")


RUNS_ENV = "FACEDEBLUR_RUNS_DIR"


def runs_dir() -> pathlib.Path:
    """Where notebooks keep their runs: ``$FACEDEBLUR_RUNS_DIR``, else the repository's
    ``runs/`` (the README's demo writes ``runs/demo``) when run from ``notebooks/``, else
    ``./runs``."""
    if os.environ.get(RUNS_ENV):
        return pathlib.Path(os.environ[RUNS_ENV])
    cwd = pathlib.Path.cwd()
    return (cwd.parent if cwd.name == "notebooks" else cwd) / "runs"


def demo_workdir() -> pathlib.Path:
    """A workdir with a trained checkpoint for the notebooks.

    Tiny mode trains ``configs/tiny.py`` into ``runs/notebook_tiny`` (~1 min). Otherwise it
    uses ``runs/demo`` (what ``facedeblur demo`` writes) and trains ``configs/demo.py`` there
    (a few minutes) when it is missing. Finished workdirs are reused (training resumes and
    finds nothing left to do).
    """

    name = "notebook_tiny" if tiny_mode() else "demo"
    workdir = runs_dir() / name
    train(load_config("tiny" if tiny_mode() else "demo"), workdir, progress=False)
    return workdir


@dataclasses.dataclass
class HeldBack:
    """Evaluation faces at the config's size: ``sharp f32[N,S,S,3]``, ``labels i32[N,S,S]``,
    ``has_labels bool[N]``, ``identity i32[N]``, ``names``, and their fixed degradation."""

    sharp: np.ndarray
    labels: np.ndarray
    has_labels: np.ndarray
    identity: np.ndarray
    names: list[str]
    degraded: Degraded


def held_back(
    config: ml_collections.ConfigDict,
    split: str = "test",
    limit: int | None = None,
    seed: int = 1234,
) -> HeldBack:
    """Loads ``split`` of ``config.data`` and blurs it with ``key(seed)`` (no augmentation)."""

    parts = {k: [] for k in ("image", "labels", "has_labels", "identity", "name")}
    for batch in make_eval_batches(config, split, batch_size=16):
        keep = batch["valid"]
        for k in parts:
            parts[k].append(batch[k][keep])
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    if limit is not None:
        arrays = {k: v[:limit] for k, v in arrays.items()}
    degrade_cfg = config.degrade.copy_and_resolve_references()
    with degrade_cfg.unlocked():
        degrade_cfg.augment = False
        degrade_cfg.kernel_pool_size = 0  # held-out faces get fresh kernels, not the training pool
    labels = arrays["labels"].astype(np.int32)
    degraded = jax.jit(lambda k, s, lb: synthesize(k, s, lb, degrade_cfg))(
        jax.random.key(seed), jnp.asarray(arrays["image"]), jnp.asarray(labels)
    )
    return HeldBack(
        sharp=np.asarray(degraded.sharp),
        labels=labels,
        has_labels=arrays["has_labels"],
        identity=arrays["identity"],
        names=[str(n) for n in arrays["name"]],
        degraded=degraded,
    )


def parse(loaded: LoadedModel, images: jax.Array) -> jax.Array:
    """P's logits ``f32[B, S, S, K]`` for any images ``f32[B, S, S, 3]`` (P in eval mode;
    the model's ``parse`` method)."""
    fn = jax.jit(lambda v, x: loaded.model.apply(v, x, method="parse"))
    return fn(loaded.variables, jnp.asarray(images))


def deblur_with_prior(loaded: LoadedModel, x: jax.Array, prior: jax.Array | None = None):
    """The full model on ``x``; with ``prior`` (``models/priors.py``) G_f is fed it instead
    of P's prediction (the model's ``deblur_given_prior`` method)."""
    if prior is None:
        return jax.jit(lambda v, x: loaded.model.apply(v, x))(loaded.variables, x)
    fn = jax.jit(lambda v, x, p: loaded.model.apply(v, x, p, method="deblur_given_prior"))
    return fn(loaded.variables, x, prior)


def part_error_maps(
    y: np.ndarray, gt: np.ndarray, labels: np.ndarray, parts=KEY_PARTS
) -> dict[str, np.ndarray]:
    """``{part name: f32[B,S,S]}``: per-pixel L1 error (channels summed) inside each key
    part of the ground-truth labels, zero elsewhere; plus ``"all"`` without the mask."""
    err = np.abs(np.asarray(y, np.float32) - np.asarray(gt, np.float32)).sum(-1)
    out = {"all": err}
    for k in parts:
        out[CLASS_NAMES[k]] = np.where(np.asarray(labels) == k, err, 0.0)
    return out


def fine_input_weights(fine_params, num_classes: int = 11) -> dict[str, dict[str, float]]:
    """RMS of G_f's first-convolution weights per input group, per scale.

    The inputs of scale ``s`` are concatenated as ``[x, y_c, (upsampled), p]``
    (``models/deblur_net.py``): 3, 3, (3,) and ``num_classes`` channels. Weights on the prior
    channels that stay at their initial RMS while the image channels' grow, or that shrink,
    say G_f learned little from the prior.

    Args:
      fine_params: one G_f's params (``variables["params"]["fine_0"]``).
      num_classes: K prior channels.

    Returns:
      ``{"scale<s>": {"image", "guide", ["upsampled"], "prior", "prior/<class name>"}}`` —
      the RMS over each group's slice ``kernel[:, :, channels, :]``.
    """
    out = {}
    for scale in sorted(k for k in fine_params if k.startswith("scale")):
        kernel = np.asarray(fine_params[scale]["conv_in"]["kernel"], np.float64)
        c = kernel.shape[2]
        groups = {"image": slice(0, 3), "guide": slice(3, 6)}
        if c == 9 + num_classes:
            groups["upsampled"] = slice(6, 9)
        elif c != 6 + num_classes:
            raise ValueError(
                f"{scale}: first conv has {c} input channels; expected 3 + 3 (+ 3) + "
                f"{num_classes} (is this a G_f fed a {num_classes}-class prior?)"
            )
        groups["prior"] = slice(c - num_classes, c)
        rms = {k: float(np.sqrt(np.mean(kernel[:, :, v, :] ** 2))) for k, v in groups.items()}
        for i in range(num_classes):
            name = CLASS_NAMES[i] if i < len(CLASS_NAMES) else str(i)
            rms[f"prior/{name}"] = float(
                np.sqrt(np.mean(kernel[:, :, c - num_classes + i, :] ** 2))
            )
        out[scale] = rms
    return out
