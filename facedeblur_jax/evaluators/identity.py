"""Identity of deblurred faces with MobileFaceNet: verification AUC, cosine distance, top-1.

The identity part of ``facedeblur eval --identity-weights FILE`` (paper §5.2, Table 11 and
Fig. 13; docs/design.md §8). The paper measures identity with FaceNet; its weights are not
public in a form this package reads, so the converted public MobileFaceNet
(``models/mobilefacenet.py``, ``facedeblur convert-mobilefacenet``) stands in. Every image of
each input kind — ``clear`` (the ground truth), ``blurred input``, ``G_c``, ``full model``
and any extra checkpoint — is embedded and scored against the **clear test faces**:

* **Crop rule.** The faces are the project's aligned square crops (128 px as prepared, the
  model's ``image_size`` in an evaluation, e.g. 64 px). Their 5-point template scales with
  the side and is within 1.8 px of the ArcFace 112×112 template at 112 px
  (``faces/align.py``), which is the 112×96 SphereFace template MobileFaceNet was trained on
  shifted 8 px right. So the whole crop is resized to 112×112 (bilinear, antialiased when
  shrinking) and 8 columns are trimmed from each side (:func:`mobilefacenet.preprocess`):
  no face detector, the same geometry for every input kind. Embedding: the 128-D vector of
  the crop and of its mirror image concatenated (256-D, :data:`mobilefacenet.DEFAULT_FLIP`,
  as the checkpoint's LFW evaluation does); similarity is the cosine.
* **Cosine distance** of an image to the clear image of the same face: ``1 − cos`` of the
  two embeddings; mean, population std, median and max per kind (0 for ``clear`` itself).
* **Verification ROC AUC.** Every ordered pair (image of the kind, clear test face) but
  the image's own face (so ``clear`` is scored the same way, without its trivial
  self-pairs), labelled *same* when the identities agree. The score is the cosine; AUC is
  the Mann–Whitney statistic computed exactly from midranks (:func:`roc_auc`): the
  probability that a same pair scores above a different pair, ties counting one half.
  The numbers of same and different pairs are reported.
* **Top-1 recognition** against a gallery of clear images of the test identities (never
  trained on when the splits are identity-disjoint, as ``facedeblur data prepare celeba``
  writes them; ``identities_in_train`` says how many test identities the train split
  holds): per identity the mean of its clear images' L2-normalised embeddings, the probe's
  own face left out of its identity's mean (leave-one-out; every image serves as a probe,
  no seeded split, so nothing depends on a draw). A probe is correct when its own
  identity's cosine is strictly the highest (ties count against it); probes whose identity
  has no other clear face are not counted (``probes``). The ``clear`` row is the reference line.

The numbers depend only on the pixels and the weights (no randomness).
"""

from __future__ import annotations

import functools
import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from facedeblur_jax.data.sources import make_source
from facedeblur_jax.evaluators.faceset import data_config
from facedeblur_jax.models import mobilefacenet as mfn

CLEAR = "clear"
EMBED_BATCH = 32
# Suffixes of PyTorch checkpoints: such a file gets the converter's command in its message.
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".tar", ".bin")
HOW_TO_ENABLE = (
    "note: identity metrics (MobileFaceNet verification AUC, cosine to clear, top-1) skipped: "
    "pass --identity-weights FILE.npz (facedeblur convert-mobilefacenet --input 068.ckpt "
    "--out FILE.npz)"
)


def load_identity_weights(path: str | os.PathLike) -> dict[str, Any]:
    """The converted MobileFaceNet weights at ``path`` (``--identity-weights``).

    Raises:
      FileNotFoundError / ValueError: one line naming the file; a PyTorch checkpoint gets
        the ``facedeblur convert-mobilefacenet`` command that converts it.
    """
    path = pathlib.Path(path).expanduser()
    if path.suffix.lower() in TORCH_SUFFIXES and path.is_file():
        raise ValueError(
            f"--identity-weights {path} is a PyTorch checkpoint, not converted weights: run "
            f"facedeblur convert-mobilefacenet --input {path} --out mobilefacenet.npz and "
            "pass the .npz"
        )
    return mfn.load_mobilefacenet(path)


@functools.partial(jax.jit, static_argnames="flip")
def _embed(variables, images, flip: bool = mfn.DEFAULT_FLIP):
    return mfn.embed(variables, images, flip=flip)


def embed_images(
    variables: Mapping[str, Any], images: np.ndarray, batch_size: int = EMBED_BATCH
) -> np.ndarray:
    """L2-normalised embeddings ``f32[N, 256]`` of ``uint8[N, S, S, 3]`` aligned crops (one
    compiled shape: the last batch is padded)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images: expected uint8[N, S, S, 3], got {images.dtype}{images.shape}")
    n = len(images)
    out = []
    for start in range(0, n, batch_size):
        chunk = images[start : start + batch_size]
        pad = batch_size - len(chunk) if n > batch_size else 0
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.uint8)])
        x = jnp.asarray(chunk, jnp.float32) / 255.0
        out.append(np.asarray(_embed(variables, x))[: len(chunk) - pad])
    emb = np.concatenate(out) if out else np.zeros((0, 2 * mfn.EMBED_DIM), np.float32)
    return unit(emb)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, np.float64)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Exact ROC AUC of ``scores`` for the binary labels ``positive``.

    The Mann–Whitney statistic from midranks: ``(R₊ − n₊(n₊ + 1)/2) / (n₊ n₋)`` with ``R₊``
    the sum of the positives' ranks among all scores, tied scores sharing their mean rank —
    the probability that a positive outscores a negative, ties counting one half. ``nan``
    when either class is empty.
    """
    scores = np.asarray(scores, np.float64).ravel()
    positive = np.asarray(positive, bool).ravel()
    if scores.shape != positive.shape:
        raise ValueError(f"scores {scores.shape} and labels {positive.shape} differ in shape")
    n_pos = int(positive.sum())
    n_neg = int(positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranked = scores[order]
    # Midranks: each run of equal scores gets the mean of its 1-based positions.
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    ends = np.r_[starts[1:], ranked.size]
    ranks = np.empty(ranked.size, np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def verification(
    probes: np.ndarray, probe_faces: np.ndarray, clear: np.ndarray, identities: np.ndarray
) -> dict:
    """AUC over the ordered pairs (probe ``p``, clear face ``j``), ``j`` not the probe's own
    face, labelled same when the identities agree.

    Args:
      probes: unit embeddings ``f[P, D]``; ``probe_faces``: ``int[P]``, the clear face each
        probe is a version of.
      clear: unit embeddings ``f[F, D]`` of the clear faces; ``identities``: ``int[F]``.
    Returns:
      ``{"auc", "same_pairs", "different_pairs"}``.
    """
    cos = probes @ clear.T
    other = probe_faces[:, None] != np.arange(len(clear))[None, :]
    same = identities[probe_faces][:, None] == identities[None, :]
    return {
        "auc": roc_auc(cos[other], same[other]),
        "same_pairs": int((same & other).sum()),
        "different_pairs": int((~same & other).sum()),
    }


def recognition(
    probes: np.ndarray, probe_faces: np.ndarray, clear: np.ndarray, identities: np.ndarray
) -> dict:
    """Top-1 of each probe against per-identity means of the clear faces' unit embeddings,
    the probe's own face left out of its identity's mean (arguments as :func:`verification`).

    Returns:
      ``{"top_1", "probes", "correct", "gallery_identities"}``; ``top_1`` is ``nan`` when no
      probe has a gallery entry.
    """
    labels, inverse = np.unique(identities, return_inverse=True)
    sums = np.zeros((len(labels), clear.shape[1]), np.float64)
    np.add.at(sums, inverse, clear)
    counts = np.bincount(inverse, minlength=len(labels)).astype(np.float64)
    correct = counted = 0
    for probe, face in zip(probes, probe_faces, strict=True):
        own = inverse[face]
        means, sizes = sums.copy(), counts.copy()
        means[own] -= clear[face]
        sizes[own] -= 1
        if sizes[own] == 0:
            continue
        keep = np.flatnonzero(sizes > 0)
        gallery = unit(means[keep] / sizes[keep, None]).astype(np.float64)
        scores = gallery @ probe.astype(np.float64)
        mine = keep == own
        counted += 1
        correct += int(not np.any(scores[~mine] >= scores[mine][0]))
    return {
        "top_1": correct / counted if counted else float("nan"),
        "probes": counted,
        "correct": correct,
        "gallery_identities": len(labels),
    }


def analyze(
    variables: Mapping[str, Any],
    clear: np.ndarray,
    variants: Mapping[str, np.ndarray],
    identities: np.ndarray,
    faces: np.ndarray | None = None,
    *,
    batch_size: int = EMBED_BATCH,
) -> dict:
    """The identity numbers of the clear faces and each variant of them.

    Args:
      variables: MobileFaceNet ``{"params", "batch_stats"}`` (:func:`load_identity_weights`).
      clear: ``uint8[N, S, S, 3]`` aligned clear faces; ``identities``: ``int[N]``.
      variants: name -> ``uint8[N, S', S', 3]``, image ``i`` a version of ``clear[i]``.
      faces: ``int[N]``, which face image ``i`` is (several probes of one face, blurred with
        different kernels, share it; default: all different). A probe is never paired
        with, nor recognised against, its own face; the clear reference holds each face once.
      batch_size: images per embedding call.
    Returns:
      JSON-ready ``{"settings", "n_images", "n_faces", "identities", "seconds", "rows"}``;
      ``rows``: for ``clear`` and each variant ``{"auc", "same_pairs", "different_pairs",
      "top_1", "probes", "correct", "gallery_identities", "cosine_mean", "cosine_std",
      "cosine_median", "cosine_max"}``.
    """
    start = time.perf_counter()
    clear = np.asarray(clear)
    identities = np.asarray(identities)
    n = len(clear)
    if identities.shape != (n,) or not np.issubdtype(identities.dtype, np.integer):
        raise ValueError(f"identities: expected int[{n}], got {identities.dtype}{identities.shape}")
    faces = np.arange(n) if faces is None else np.asarray(faces)
    if faces.shape != (n,):
        raise ValueError(f"faces: expected int[{n}], got shape {faces.shape}")
    if CLEAR in variants:
        raise ValueError(f"{CLEAR!r} is the ground-truth row; name the variant otherwise")
    for name, images in variants.items():
        if len(images) != n:
            raise ValueError(f"variant {name!r} has {len(images)} images, clear has {n}")
    # Each face once: the clear reference (verification pairs, gallery means).
    _, first, probe_faces = np.unique(faces, return_index=True, return_inverse=True)
    probe_faces = probe_faces.ravel()
    ref_ids = identities[first]
    if np.any(identities != ref_ids[probe_faces]):
        raise ValueError("faces: one face with two identities")
    ref = embed_images(variables, clear[first], batch_size)
    rows = {}
    for name, images in {CLEAR: None, **variants}.items():
        if name == CLEAR:  # the reference line: each clear face as a probe once
            emb, pf = ref, np.arange(len(first))
        else:
            emb, pf = embed_images(variables, images, batch_size), probe_faces
        distance = np.clip(1.0 - np.sum(emb * ref[pf], axis=1, dtype=np.float64), 0.0, 2.0)
        if name == CLEAR:
            distance = np.zeros(len(emb))
        row = {**verification(emb, pf, ref, ref_ids)}
        row.update(recognition(emb, pf, ref, ref_ids))
        row.update(
            images=len(emb),
            cosine_mean=float(distance.mean()),
            cosine_std=float(distance.std()),
            cosine_median=float(np.median(distance)),
            cosine_max=float(distance.max()),
        )
        rows[name] = row
    return {
        "settings": {
            "network": "MobileFaceNet (converted), 256-D: crop and mirror embeddings",
            "crop": "aligned S×S crop resized to 112×112, 8 columns trimmed each side (112×96)",
            "similarity": "cosine",
            "verification": "ordered pairs (image of the kind, clear face), never its own face",
            "gallery": "clear test faces: per-identity mean of unit embeddings, the probe's own "
            "face left out",
        },
        "n_images": n,
        "n_faces": len(first),
        "identities": len(np.unique(identities)),
        "seconds": round(time.perf_counter() - start, 3),
        "rows": rows,
    }


def markdown_lines(result: Mapping) -> list[str]:
    """The identity table of :func:`analyze`'s result (plus the inputs line)."""
    lines = [
        "| images | verification AUC | same / different pairs | top-1 | probes "
        "| cosine distance to clear |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in result["rows"].items():
        auc = "n/a" if np.isnan(row["auc"]) else f"{row['auc']:.4f}"
        top1 = "n/a" if np.isnan(row["top_1"]) else f"{100 * row['top_1']:.1f}%"
        lines.append(
            f"| {name} | {auc} | {row['same_pairs']} / {row['different_pairs']} | {top1} "
            f"| {row['probes']} | {row['cosine_mean']:.4f} ± {row['cosine_std']:.4f} |"
        )
    lines += [
        "",
        f"{result['n_images']} images of {result['n_faces']} faces of {result['identities']} "
        "identities. " + "; ".join(f"{k}: {v}" for k, v in result["settings"].items()) + ".",
    ]
    if result.get("identities_in_train") is not None:
        lines.append(
            f"Test identities that the train split also holds: {result['identities_in_train']}."
        )
    return lines


def identities_in_split(
    config, overrides: Mapping[str, str], split: str | None, identities: Sequence[int]
) -> int | None:
    """How many of ``identities`` split ``split`` of the evaluated source holds (``None``:
    no such split, or its records carry no identities)."""
    if split is None:
        return None

    cfg = data_config(config, overrides)
    try:
        source = make_source(cfg.data, split, num_classes=int(cfg.model.num_classes))
    except (FileNotFoundError, ValueError):
        return None
    entries = getattr(source, "entries", None)
    if entries is None:
        return None
    held = {e.identity for e in entries if e.identity is not None}
    if not held:
        return None
    return len(held & {int(i) for i in identities})
