"""P's per-class F-scores on held-out faces, after each phase that trains P (paper Table 3).

§4.1 trains a parser on clear faces first and then fine-tunes P on G_c's outputs; this
module measures both steps during training. At the end of every phase that trains P the
training loop (``train.py``) scores P on ``config.train.parsing_eval_faces`` faces of the
data source's ``test`` split that have parsing labels (spread evenly over the split, so every
identity of a split sorted by identity is represented), on two inputs:

* ``clear``: P applied to the sharp face;
* ``deblurred``: P applied to G_c's output of the face blurred with a fixed-seed
  degradation — what the model feeds G_f (``model.apply(..., upto="parsing")``). Face ``i``
  (its position in the split) is degraded by ``synthesize`` with the key
  ``fold_in(key(EVAL_SEED), i)`` and no augmentation: the same blurred faces after every
  phase and in every run of a config.

P's BatchNorm runs in inference mode (running statistics). One metrics line per input:
``parsing_f/<input>/<class>`` for the 10 classes other than background, their mean
``parsing_f/<input>/mean`` and ``parsing_f/<input>/num_faces``.

F-score of class ``c``: ``2·TP / (2·TP + FP + FN)`` over all pixels of all scored faces
pooled (pixel counts summed, not a mean of per-image scores); NaN for a class that occurs in
neither map. The mean is over the 10 classes Table 3 lists (background excluded), NaN
classes skipped. The counting functions have the signatures of the ``evaluators`` package's
parsing evaluator (``class_counts``, ``f_from_counts``, ``average``).

The evaluation runs on one local device of process 0 (no collectives), batched and jitted
once per run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from facedeblur_jax.data.labels import BACKGROUND, CLASS_NAMES, NUM_CLASSES
from facedeblur_jax.degrade.synthesize import synthesize
from facedeblur_jax.models.factory import build_model
from facedeblur_jax.models.parsing_net import ParsingNet

PyTree = Any
INPUTS = ("clear", "deblurred")
AVERAGED_CLASSES = tuple(c for c in range(NUM_CLASSES) if c != BACKGROUND)
EVAL_SEED = 0x9A25_1E
SPLIT = "test"


def class_counts(
    pred: jax.Array, gt: jax.Array, num_classes: int, valid: jax.Array | None = None
) -> jax.Array:
    """``i32[3, K]``: true positives, predicted pixels and ground-truth pixels per class.

    Args:
      pred, gt: ``int[B, H, W]`` label maps.
      num_classes: K.
      valid: ``bool[B]``; rows that are False count nothing (batch padding).
    """
    classes = jnp.arange(num_classes)
    p = pred[..., None] == classes  # [B, H, W, K]
    g = gt[..., None] == classes
    if valid is not None:
        keep = valid[:, None, None, None]
        p, g = p & keep, g & keep
    axes = tuple(range(p.ndim - 1))
    return jnp.stack([jnp.sum(p & g, axes), jnp.sum(p, axes), jnp.sum(g, axes)]).astype(jnp.int32)


def f_from_counts(counts: np.ndarray) -> np.ndarray:
    """``f64[K]`` F-scores from summed :func:`class_counts` (NaN where a class never occurs)."""
    tp, n_pred, n_gt = np.asarray(counts, np.float64)
    denom = n_pred + n_gt
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, np.nan)


def average(f: np.ndarray) -> float:
    """Mean F-score over the classes other than background (Table 3's average row)."""
    values = np.asarray(f, np.float64)[list(AVERAGED_CLASSES)]
    return float(np.nanmean(values)) if np.any(np.isfinite(values)) else float("nan")


def parsing_fscores(
    logits_or_labels: jax.Array | np.ndarray, labels: jax.Array | np.ndarray
) -> np.ndarray:
    """``f64[K]`` per-class F-scores of predictions against ``int[B, H, W]`` labels, pixels
    pooled over the whole set; predictions are ``f32[B, H, W, K]`` logits (argmax taken) or
    ``int[B, H, W]`` label maps."""
    pred = jnp.asarray(logits_or_labels)
    if pred.ndim == 4:
        pred = jnp.argmax(pred, axis=-1)
    gt = jnp.asarray(labels)
    if pred.shape != gt.shape or gt.ndim != 3:
        raise ValueError(
            f"predictions {tuple(pred.shape)} and labels {tuple(gt.shape)} must be [B, H, W]"
        )
    return f_from_counts(np.asarray(class_counts(pred, gt, NUM_CLASSES)))


@dataclasses.dataclass
class HeldOutFaces:
    """``images``: ``uint8[N, S, S, 3]``; ``labels``: ``i32[N, S, S]``; ``index``: ``i32[N]``
    position of each face in its split (its degradation key)."""

    images: np.ndarray
    labels: np.ndarray
    index: np.ndarray


def load_held_out(config: ml_collections.ConfigDict, count: int) -> HeldOutFaces:
    """Up to ``count`` labelled faces of the source's ``test`` split at ``image_size``: the
    records ``⌊j · N / count⌋`` of the split's N, those with parsing labels; unreadable
    records are dropped with a warning.

    Raises:
      FileNotFoundError / ValueError: the source has no such split (the source names it).
      LookupError: none of the faces read has parsing labels.
    """
    from facedeblur_jax.data.pipeline import ReadOrNone
    from facedeblur_jax.data.preprocess import to_eval_example
    from facedeblur_jax.data.sources import make_source

    source = make_source(config.data, SPLIT, num_classes=int(config.model.num_classes))
    total = len(source)
    picked = range(total) if count >= total else [j * total // count for j in range(count)]
    reader = ReadOrNone(source)
    images, labels, index = [], [], []
    for i in picked:
        record = reader[i]
        if record is None:
            continue
        example = to_eval_example(record, int(config.image_size), config.data.resize)
        if example["has_labels"]:
            images.append(example["image"])
            labels.append(example["labels"].astype(np.int32))
            index.append(i)
    if not images:
        raise LookupError(f"none of {len(picked)} {SPLIT!r} faces has parsing labels")
    return HeldOutFaces(np.stack(images), np.stack(labels), np.asarray(index, np.int32))


def _eval_degrade_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The training degradation without augmentation and with fresh kernels (no pool)."""
    cfg = config.degrade.copy_and_resolve_references()
    with cfg.unlocked():
        cfg.augment = False
        cfg.kernel_pool_size = 0
    return cfg


class ParsingScores:
    """Scores P of a train state on held-out faces (module docstring).

    Args:
      config: the run's config (model, degradation, data source, ``image_size``).
      faces: the held-out faces (:func:`load_held_out`).
      batch_size: faces per jitted call (the last batch is padded).
    """

    def __init__(self, config: ml_collections.ConfigDict, faces: HeldOutFaces, batch_size=16):
        self.faces = faces
        self.batch_size = max(1, min(int(batch_size), len(faces.images)))
        self.device = jax.local_devices()[0]
        model = build_model(config.model)
        parser = ParsingNet(
            num_classes=model.num_classes,
            features=tuple(model.parsing_features),
            use_bn=model.parsing_use_bn,
            dtype=model.dtype,
        )
        degrade_cfg = _eval_degrade_config(config)
        k = model.num_classes

        @jax.jit
        def counts(variables, images, labels, index, valid):
            sharp = images.astype(jnp.float32) / 255.0
            root = jax.random.key(EVAL_SEED)
            keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(root, index)
            blurred = synthesize(keys, sharp, None, degrade_cfg).blurred
            p_vars = {"params": variables["params"]["parsing"]}
            if "parsing" in variables.get("batch_stats", {}):
                p_vars["batch_stats"] = variables["batch_stats"]["parsing"]
            logits = {
                "clear": parser.apply(p_vars, sharp),
                "deblurred": model.apply(variables, blurred, upto="parsing").parsing_logits,
            }
            return {
                name: class_counts(jnp.argmax(x, axis=-1), labels, k, valid)
                for name, x in logits.items()
            }

        self._counts = counts

    def __call__(self, params: PyTree, batch_stats: PyTree) -> dict[str, np.ndarray]:
        """``{input: f64[K]}`` F-scores of P with these (replicated or local) variables."""

        def local(a):  # this process's copy of a replicated array, on one device
            return jax.device_put(
                a.addressable_data(0) if isinstance(a, jax.Array) else a, self.device
            )

        variables = {"params": {k: v for k, v in params.items() if k != "disc"}}
        if batch_stats:
            variables["batch_stats"] = batch_stats
        variables = jax.tree.map(local, variables)
        n, b = len(self.faces.images), self.batch_size
        total = {name: np.zeros((3, NUM_CLASSES), np.int64) for name in INPUTS}
        for start in range(0, n, b):
            rows = np.minimum(np.arange(start, start + b), n - 1)  # pad with the last face
            valid = np.arange(start, start + b) < n
            got = self._counts(
                variables,
                self.faces.images[rows],
                self.faces.labels[rows],
                self.faces.index[rows],
                valid,
            )
            for name, c in jax.device_get(got).items():
                total[name] += c
        return {name: f_from_counts(c) for name, c in total.items()}


def metric_lines(scores: dict[str, np.ndarray], num_faces: int) -> dict[str, dict[str, float]]:
    """One scalar dict per input: ``parsing_f/<input>/<class>``, ``.../mean``,
    ``.../num_faces``."""
    out = {}
    for name, f in scores.items():
        line = {f"parsing_f/{name}/{CLASS_NAMES[c]}": float(f[c]) for c in AVERAGED_CLASSES}
        line[f"parsing_f/{name}/mean"] = average(f)
        line[f"parsing_f/{name}/num_faces"] = float(num_faces)
        out[name] = line
    return out


def table(scores: dict[str, np.ndarray]) -> str:
    """A printable table: one row per input, one column per class (background excluded),
    then the mean."""
    head = [CLASS_NAMES[c] for c in AVERAGED_CLASSES] + ["mean"]
    width = max(len(h) for h in head)
    lines = ["input      " + " ".join(h.rjust(width) for h in head)]
    for name, f in scores.items():
        cells = [f[c] for c in AVERAGED_CLASSES] + [average(f)]
        lines.append(f"{name:<10} " + " ".join(f"{v:{width}.3f}" for v in cells))
    return "\n".join(lines)
