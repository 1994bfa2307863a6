"""Parsing F-scores of P per face component (the paper's Table 3 layout, §4.1).

Table 3 scores the parsing network on three inputs; so does :class:`Evaluator`:

* ``clear``: P applied to the sharp face;
* ``blurred``: P applied to the blurred face (how Shen et al. 2018 extract labels);
* ``deblurred``: P applied to G_c's output of the blurred face — the map this model feeds
  G_f (``model.apply(..., upto="parsing")``).

The blurred faces are those of the PSNR / SSIM protocol (``evaluators/psnr_ssim.py``): face
``i`` blurred with bank kernel ``j`` plus the pair's fixed noise, so pair ``(i, j)`` is the
same image in both evaluations. Only faces with parsing labels are scored.

F-score of class ``c``: ``2·TP / (2·TP + FP + FN)`` over all pixels of all scored images
pooled (:func:`f_scores`; NaN for a class absent from both maps). The paper does not say
whether it pools pixels or averages per image; pooling is what the notebooks have used and
is defined for a class missing from some images. The average is the mean over the 10
classes other than background: Table 3 lists those 10 components, and its average row is
their plain mean (clear: 7.132 / 10 = 0.713).

§4.1 trains a parser on clear faces first and then fine-tunes P on G_c's outputs; the
training loop (``train.py``) measures both steps with this evaluator: after the last step
of every phase that trains P (``parsing_clear``, ``parsing``, ``joint``) it scores P on
``config.train.parsing_eval_faces`` faces of the ``config.evals.parsing`` entry's split,
kernels and noise (:func:`after_phase_evaluator`) and writes one metrics line per input
(:func:`metric_lines`: ``parsing_f/<input>/<class>`` for the 10 classes, ``.../mean`` and
``.../num_faces``) and prints :func:`table`. Every call scores the same blurred faces, so
the lines of successive phases compare P, not the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from facedeblur_jax.config import reference_config
from facedeblur_jax.core.batching import padded_batches
from facedeblur_jax.data.labels import BACKGROUND, CLASS_NAMES, NUM_CLASSES
from facedeblur_jax.degrade import kernel_bank as bank_lib
from facedeblur_jax.evaluators.common import Resources
from facedeblur_jax.evaluators.faceset import FaceSet
from facedeblur_jax.evaluators.psnr_ssim import (
    EVAL_NOISE_SEED,
    NOISE_SIGMA,
    bank_pairs,
    pairs_per_face,
)
from facedeblur_jax.models.factory import build_model

PyTree = Any
INPUTS = ("clear", "blurred", "deblurred")
AVERAGED_CLASSES = tuple(c for c in range(NUM_CLASSES) if c != BACKGROUND)


def f_scores(pred: np.ndarray, gt: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Per-class F-score ``2TP / (2TP + FP + FN)`` over all pixels of ``int[..]`` maps;
    NaN for a class absent from both."""
    pred, gt = np.asarray(pred).ravel(), np.asarray(gt).ravel()
    out = np.full(num_classes, np.nan)
    for k in range(num_classes):
        tp = np.sum((pred == k) & (gt == k))
        denom = np.sum(pred == k) + np.sum(gt == k)
        if denom:
            out[k] = 2 * tp / denom
    return out


def class_counts(
    pred: jax.Array, gt: jax.Array, num_classes: int, valid: jax.Array | None = None
) -> jax.Array:
    """``i32[3, K]``: true positives, predicted pixels and ground-truth pixels per class.

    Args:
      pred, gt: ``int[B, H, W]`` label maps.
      num_classes: K.
      valid: ``bool[B]``; rows that are False count nothing (batch padding).
    """
    chex.assert_equal_shape([pred, gt])
    chex.assert_rank(pred, 3)
    classes = jnp.arange(num_classes)
    p = pred[..., None] == classes  # [B, H, W, K]
    g = gt[..., None] == classes
    if valid is not None:
        keep = valid[:, None, None, None]
        p, g = p & keep, g & keep
    axes = tuple(range(p.ndim - 1))
    return jnp.stack([jnp.sum(p & g, axes), jnp.sum(p, axes), jnp.sum(g, axes)]).astype(jnp.int32)


def f_from_counts(counts: np.ndarray) -> np.ndarray:
    """``f64[K]`` F-scores from :func:`class_counts` sums (NaN where a class never occurs)."""
    tp, n_pred, n_gt = np.asarray(counts, np.float64)
    denom = n_pred + n_gt
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, np.nan)


def average(f: np.ndarray) -> float:
    """Mean F-score over the classes other than background (Table 3's average row)."""
    values = np.asarray(f, np.float64)[list(AVERAGED_CLASSES)]
    return float(np.nanmean(values)) if np.any(np.isfinite(values)) else float("nan")


def _step(model, noise_sigma: float, seed: int):
    k = model.num_classes

    @jax.jit
    def step(variables, faces, face_ids, labels, kernels, face_idx, kernel_idx, count):
        sharp, blurred = bank_pairs(
            faces, face_ids, kernels, face_idx, kernel_idx, noise_sigma=noise_sigma, seed=seed
        )
        logits = {
            "clear": model.apply(variables, sharp, method="parse"),
            "blurred": model.apply(variables, blurred, method="parse"),
            "deblurred": model.apply(variables, blurred, upto="parsing").parsing_logits,
        }
        gt = labels[face_idx]
        valid = jnp.arange(face_idx.shape[0]) < count
        return {
            name: class_counts(jnp.argmax(x, axis=-1), gt, k, valid) for name, x in logits.items()
        }

    return step


class Evaluator:
    """Parsing F-scores of P on clear, blurred and deblurred faces (Table 3 layout).

    Args:
      model: the generator (G_c, P, G_f).
      faces: the faces; only those with parsing labels are scored.
      bank: the kernels that blur them.
      pairs: ``(face, kernel)`` pairs to score, face a position in ``faces`` (it must
        have labels); default: ``per_face`` kernels per labelled face (``pairs_per_face``).
      per_face: kernels per face when ``pairs`` is not given.
      batch_size, noise_sigma, seed, device: as ``psnr_ssim.Evaluator``.
      split: the name of the faces' split (for messages only).

    Raises:
      ValueError: no face has parsing labels, or a pair names a face without them.
    """

    def __init__(
        self,
        model,
        faces: FaceSet,
        bank: bank_lib.KernelBank,
        *,
        pairs: Sequence[tuple[int, int]] | None = None,
        per_face: int = 1,
        batch_size: int = 64,
        noise_sigma: float = NOISE_SIGMA,
        seed: int = EVAL_NOISE_SEED,
        device: jax.Device | None = None,
        split: str = "",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        has = np.zeros(len(faces), bool) if faces.has_labels is None else faces.has_labels
        labelled = np.flatnonzero(has)
        if labelled.size == 0:
            raise ValueError("none of the faces has parsing labels: no parsing F-scores")
        if pairs is None:
            local = pairs_per_face(labelled.size, len(bank), per_face)
            pairs = [(int(labelled[i]), j) for i, j in local]
        pairs = [(int(i), int(j)) for i, j in pairs]
        if not pairs or any(not has[i] for i, _ in pairs):
            raise ValueError("parsing F-scores need pairs of faces with parsing labels")
        self.model, self.faces, self.bank, self.pairs = model, faces, bank, pairs
        self.split = split
        self.batch_size = batch_size
        self.device = device or jax.local_devices()[0]
        put = lambda x: jax.device_put(x, self.device)
        self._faces = put(faces.images)
        self._face_ids = put(np.asarray(faces.index, np.int32))
        self._labels = put(np.asarray(faces.labels, np.int32))
        self._kernels = put(np.asarray(bank.kernels, np.float32))
        self._face_idx = np.asarray([i for i, _ in pairs], np.int32)
        self._kernel_idx = np.asarray([j for _, j in pairs], np.int32)
        self._step = _step(model, float(noise_sigma), int(seed))

    def evaluate(self, variables: PyTree) -> dict:
        """``{"counts": {input: i64[3, K]}, "f_scores": {input: f64[K]},
        "average": {input: float}, "num_images": int, "num_faces": int}``."""
        k = self.model.num_classes
        counts = {name: np.zeros((3, k), np.int64) for name in INPUTS}
        for index, count in padded_batches(len(self.pairs), self.batch_size):
            got = self._step(
                variables,
                self._faces,
                self._face_ids,
                self._labels,
                self._kernels,
                self._face_idx[index],
                self._kernel_idx[index],
                count,
            )
            for name, c in jax.device_get(got).items():
                counts[name] += c
        f = {name: f_from_counts(c) for name, c in counts.items()}
        return {
            "counts": counts,
            "f_scores": f,
            "average": {name: average(v) for name, v in f.items()},
            "num_images": len(self.pairs),
            "num_faces": len(set(self._face_idx.tolist())),
        }

    def run(self, variables: PyTree) -> dict[str, float]:
        """The scalars logged during training: ``f_<input>`` (average F-score) for clear,
        blurred and deblurred."""
        return {f"f_{name}": v for name, v in self.evaluate(variables)["average"].items()}


def summary(ev: dict, class_names: Sequence[str] = CLASS_NAMES) -> dict:
    """JSON-ready: ``{"inputs", "classes", "f_score": {input: {class: f}}, "average":
    {input: f}, "num_images", "num_faces"}`` (classes other than background, as Table 3)."""
    classes = [class_names[c] for c in AVERAGED_CLASSES]
    return {
        "inputs": list(INPUTS),
        "classes": classes,
        "f_score": {
            name: {class_names[c]: float(ev["f_scores"][name][c]) for c in AVERAGED_CLASSES}
            for name in INPUTS
        },
        "average": {name: float(ev["average"][name]) for name in INPUTS},
        "num_images": int(ev["num_images"]),
        "num_faces": int(ev["num_faces"]),
    }


def from_spec(
    config: ml_collections.ConfigDict, spec: ml_collections.ConfigDict, model, resources
) -> Evaluator:
    """The evaluator of a ``config.evals`` entry (``evaluators/common.py``)."""
    return Evaluator(
        model,
        resources.faces(spec.split, spec.max_faces),
        resources.bank(spec.kernels, spec.kernels_per_size),
        per_face=1,
        batch_size=int(spec.batch_size),
        noise_sigma=float(spec.noise_sigma),
        split=str(spec.split),
    )


def after_phase_evaluator(config: ml_collections.ConfigDict) -> Evaluator:
    """The evaluator the training loop runs after each phase that trains P: the
    ``config.evals.parsing`` entry (the schema's defaults where the config has none)
    on ``config.train.parsing_eval_faces`` faces of its split, one bank kernel per face.

    Raises:
      FileNotFoundError / ValueError: the split is missing or has no labelled face.
    """

    evals = config.get("evals", None) or {}
    entry = evals["parsing"] if "parsing" in evals else reference_config().evals.parsing
    spec = entry.copy_and_resolve_references()
    with spec.unlocked():
        spec.max_faces = int(config.train.parsing_eval_faces)
    return from_spec(config, spec, build_model(config.model), Resources(config))


def metric_lines(ev: dict) -> dict[str, dict[str, float]]:
    """One scalar dict per input of :meth:`Evaluator.evaluate`'s ``ev``:
    ``parsing_f/<input>/<class>`` (the 10 classes other than background),
    ``parsing_f/<input>/mean`` (Table 3's average) and ``parsing_f/<input>/num_faces``."""
    out = {}
    for name in INPUTS:
        f = ev["f_scores"][name]
        line = {f"parsing_f/{name}/{CLASS_NAMES[c]}": float(f[c]) for c in AVERAGED_CLASSES}
        line[f"parsing_f/{name}/mean"] = float(ev["average"][name])
        line[f"parsing_f/{name}/num_faces"] = float(ev["num_faces"])
        out[name] = line
    return out


def table(ev: dict) -> str:
    """A printable table of ``ev``: one row per input, one column per class (background
    excluded), then the mean."""
    head = [CLASS_NAMES[c] for c in AVERAGED_CLASSES] + ["mean"]
    width = max(len(h) for h in head)
    lines = ["input      " + " ".join(h.rjust(width) for h in head)]
    for name in INPUTS:
        f = ev["f_scores"][name]
        cells = [f[c] for c in AVERAGED_CLASSES] + [ev["average"][name]]
        lines.append(f"{name:<10} " + " ".join(f"{v:{width}.3f}" for v in cells))
    return "\n".join(lines)
