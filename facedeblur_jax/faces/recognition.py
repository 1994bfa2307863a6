"""Face detection, identity distance and recognition of deblurred faces (paper §5.2).

The analogue of the paper's Table 11 (detection success rate, top-1/3/5 recognition) and
Fig. 13 (identity distance to the ground truth), with dlib in place of OpenFace and FaceNet:

- **Detection** — dlib's HOG frontal face detector. Every image is first resized to
  :data:`ANALYSIS_SIZE` (150 px, dlib's face-chip size; Lanczos down, bicubic up), so the rate
  does not depend on the model's working resolution. The detector runs with
  ``upsample_num_times`` 0, then 1, … up to ``upsample`` until it returns a box; the image
  counts as detected when a box overlaps the aligned crop's expected face box
  (:func:`facedeblur_jax.faces.landmarks.fallback_box`) with IoU ≥ 0.3 (a box elsewhere is a
  false detection). On the 200 bundled faces this finds 191 (112 px inputs), 190 (64 and
  128 px) and 184 (32 px) with ``upsample=1``; run at the image's own size with one fixed
  ``upsample_num_times`` the count swings between 173 and 190 with the pyramid's steps.
- **Embedding** — dlib's 68-point shape predictor from the detected box, or from the
  fixed aligned-crop box when nothing was detected (counted as ``fallback``), then
  ``dlib_face_recognition_resnet_model_v1`` (128-D, LFW 99.38 %) through
  ``compute_face_descriptor`` in batches, without jitter. Every image gets an embedding, so
  identity distance and recognition cover all images, detected or not.
- **Identity distance** of a variant to the clear image of the same face: L2 and cosine
  distance ``1 − cos`` of the two embeddings (0 for the clear images themselves).
- **Recognition** — each probe (an image of a variant, or a clear image for the upper bound)
  is compared by L2 distance with every gallery image; each gallery identity is scored by its
  closest image, identities are ranked by that score, and the probe is correct at top-k when
  its identity is among the first k (ties count against it). With ``gallery=None`` the
  gallery is the clear set with the probe's own clear image left out (leave-one-out); a given
  gallery drops any image identical to the probe's clear image. Probes whose identity has no
  gallery image are not counted (``probes`` in each row says how many were).

Results for an image depend only on its pixels and ``upsample``: they are cached per image
(hash of the pixels) in this process, so a clear set reused as gallery, or analysed again
with another variant, is not embedded twice.
"""

from __future__ import annotations

import collections
import hashlib
import time

import numpy as np

from facedeblur_jax.core import imageio
from facedeblur_jax.faces import landmarks as lm

ANALYSIS_SIZE = 150
TOP_K = (1, 3, 5)
EMBED_BATCH = 64
CACHE_SIZE = 100_000  # ~60 MB of embeddings

# (pixel hash, shape, upsample) -> (detected, f32[128] embedding)
_CACHE: collections.OrderedDict[tuple, tuple[bool, np.ndarray]] = collections.OrderedDict()
_EMBEDDED = [0]  # images embedded by this process (not served from the cache)


def _key(image: np.ndarray, upsample: int) -> tuple:
    digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()
    return digest, image.shape, upsample


def detect(image: np.ndarray, upsample: int = 1) -> tuple[int, int, int, int] | None:
    """The face box ``(left, top, right, bottom)`` of an aligned crop, or ``None``.

    Args:
      image: ``uint8[S, S, 3]``, already resized to the analysis size.
      upsample: largest ``upsample_num_times`` tried (0, 1, … until a box is found).
    """
    return lm.detect_face(image, upsample)


def describe(images: np.ndarray, upsample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Detection and dlib embedding of each aligned face crop (cached per image).

    Args:
      images: ``uint8[N, H, W, 3]`` aligned face crops (any H, W).
      upsample: see :func:`detect`.
    Returns:
      ``(detected bool[N], embeddings f32[N, 128])``.
    """
    images = _check_images(images, "images")
    dlib = lm.dlib_module()
    predictor = lm.shape_predictor()
    keys = [_key(image, upsample) for image in images]
    todo = [i for i, key in enumerate(keys) if key not in _CACHE]
    for start in range(0, len(todo), EMBED_BATCH):
        chunk = todo[start : start + EMBED_BATCH]
        prepared, shapes, flags = [], [], []
        for i in chunk:
            x = np.ascontiguousarray(imageio.resize(images[i], ANALYSIS_SIZE))
            box = detect(x, upsample)
            flags.append(box is not None)
            box = box or lm.fallback_box(ANALYSIS_SIZE, ANALYSIS_SIZE)
            shape = predictor(x, dlib.rectangle(*box))
            prepared.append(x)
            shapes.append(dlib.full_object_detections([shape]))
        vectors = lm.recognition_model().compute_face_descriptor(prepared, shapes)
        _EMBEDDED[0] += len(chunk)
        for i, flag, vector in zip(chunk, flags, vectors, strict=True):
            _CACHE[keys[i]] = (flag, np.asarray(vector[0], np.float32))
            if len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
    found = [_CACHE[key] for key in keys]
    detected = np.array([f for f, _ in found], bool)
    embeddings = np.stack([e for _, e in found]) if found else np.zeros((0, 128), np.float32)
    return detected, embeddings


def identity_distances(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``(L2 f32[N], cosine distance 1 − cos f32[N])`` of embeddings ``f[N, D]``."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    l2 = np.linalg.norm(a - b, axis=-1)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    cosine = 1.0 - np.sum(a * b, axis=-1) / np.maximum(norms, 1e-12)
    return l2.astype(np.float32), np.maximum(cosine, 0.0).astype(np.float32)


def identity_ranks(
    probes: np.ndarray,
    probe_ids: np.ndarray,
    gallery: np.ndarray,
    gallery_ids: np.ndarray,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Rank (1 = best) of each probe's identity among the gallery identities.

    Args:
      probes: ``f[P, D]`` embeddings; ``probe_ids``: ``int[P]``.
      gallery: ``f[M, D]`` embeddings; ``gallery_ids``: ``int[M]``.
      exclude: ``bool[P, M]``, gallery images not to compare with a probe.
    Returns:
      ``int[P]``: 1 + the number of other identities whose closest (L2) gallery image is at
      least as close as the probe identity's closest one; 0 where the probe's identity has no
      gallery image left.
    """
    probe_ids = np.asarray(probe_ids)
    gallery_ids = np.asarray(gallery_ids)
    probes = np.asarray(probes, np.float64)
    gallery = np.asarray(gallery, np.float64)
    squared = (probes**2).sum(1)[:, None] + (gallery**2).sum(1)[None] - 2 * probes @ gallery.T
    dist = np.sqrt(np.maximum(squared, 0.0))
    if exclude is not None:
        dist = np.where(exclude, np.inf, dist)
    labels = np.unique(gallery_ids)
    per_identity = np.stack([dist[:, gallery_ids == u].min(1) for u in labels], axis=1)
    ranks = np.zeros(len(probes), np.int64)
    for p, identity in enumerate(probe_ids):
        column = np.flatnonzero(labels == identity)
        if column.size == 0 or not np.isfinite(per_identity[p, column[0]]):
            continue
        ranks[p] = int(np.sum(per_identity[p] <= per_identity[p, column[0]]))
    return ranks


def _check_images(images, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name}: expected uint8[N, H, W, 3], got {images.dtype}{images.shape}")
    return images


def analyze(
    clear: np.ndarray,
    variants: dict[str, np.ndarray],
    identities: np.ndarray,
    gallery: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    upsample: int = 1,
) -> dict:
    """Table 11 / Fig. 13 numbers for the clear images and each variant of them.

    Args:
      clear: ``uint8[N, H, W, 3]`` aligned ground-truth face crops.
      variants: name (``"blurred"``, ``"G_c"``, ``"full"`` …) -> ``uint8[N, h, w, 3]``, image
        ``i`` being a version of ``clear[i]`` (any size: all are resized for analysis).
      identities: ``int[N]`` identity of each face.
      gallery: ``(uint8[M, H', W', 3] clear faces, int[M] identities)``; default: the clear
        set, leave-one-out.
      upsample: the detector's largest ``upsample_num_times`` (see the module docstring).
    Returns:
      A JSON-serialisable dict: ``settings``, ``n_images``, ``gallery`` (size, identities,
      kind), ``seconds``, ``embedded`` (images embedded in this call, the rest came from the
      cache) and ``rows``: for ``"clear"`` and each variant ``{"images", "detected",
      "detection_rate", "fallback", "probes", "top_1", "top_3", "top_5", "l2_mean", "l2_std",
      "cosine_mean", "cosine_std"}`` (rates as fractions in [0, 1]).
    """
    start = time.perf_counter()
    clear = _check_images(clear, "clear")
    identities = np.asarray(identities)
    n = len(clear)
    if identities.shape != (n,) or not np.issubdtype(identities.dtype, np.integer):
        raise ValueError(f"identities: expected int[{n}], got {identities.dtype}{identities.shape}")
    if "clear" in variants:
        raise ValueError("'clear' is the ground-truth row; name the variant otherwise")
    for name, images in variants.items():
        if len(_check_images(images, name)) != n:
            raise ValueError(f"variant {name!r} has {len(images)} images, clear has {n}")
    if gallery is not None:
        gallery_images = _check_images(gallery[0], "gallery")
        gallery_ids = np.asarray(gallery[1])
        if gallery_ids.shape != (len(gallery_images),) or not np.issubdtype(
            gallery_ids.dtype, np.integer
        ):
            raise ValueError(f"gallery identities: expected int[{len(gallery_images)}]")
        if not len(gallery_images):
            raise ValueError("the gallery is empty")

    embedded_before = _EMBEDDED[0]
    clear_found, clear_emb = describe(clear, upsample)
    if gallery is None:
        gallery_emb, gallery_ids = clear_emb, identities
        exclude = np.eye(n, dtype=bool)
        gallery_kind = "clear images, leave-one-out"
    else:
        _, gallery_emb = describe(gallery_images, upsample)
        # A gallery image identical to a probe's clear image is left out for that probe.
        where = collections.defaultdict(list)
        for j, image in enumerate(gallery_images):
            where[_key(image, upsample)].append(j)
        exclude = np.zeros((n, len(gallery_images)), bool)
        for i, image in enumerate(clear):
            exclude[i, where.get(_key(image, upsample), [])] = True
        gallery_kind = "given"

    rows = {}
    for name, images in {"clear": clear, **variants}.items():
        if name == "clear":
            found, emb = clear_found, clear_emb
        else:
            found, emb = describe(images, upsample)
        l2, cosine = identity_distances(emb, clear_emb)
        ranks = identity_ranks(emb, identities, gallery_emb, gallery_ids, exclude)
        counted = ranks > 0
        row = {
            "images": n,
            "detected": int(found.sum()),
            "detection_rate": float(found.mean()) if n else 0.0,
            "fallback": int(n - found.sum()),
            "probes": int(counted.sum()),
        }
        for k in TOP_K:
            row[f"top_{k}"] = float(np.mean(ranks[counted] <= k)) if counted.any() else 0.0
        row.update(
            l2_mean=float(l2.mean()) if n else 0.0,
            l2_std=float(l2.std()) if n else 0.0,
            cosine_mean=float(cosine.mean()) if n else 0.0,
            cosine_std=float(cosine.std()) if n else 0.0,
        )
        rows[name] = row
    return {
        "settings": {
            "detector": "dlib HOG frontal_face_detector",
            "analysis_size": ANALYSIS_SIZE,
            "upsample": upsample,
            "min_iou_with_aligned_box": lm.MIN_IOU_WITH_EXPECTED,
            "landmarks": lm.PREDICTOR_FILE,
            "embedding": lm.RECOGNITION_MODEL_FILE,
            "recognition_distance": "L2; identity score = closest gallery image",
        },
        "n_images": n,
        "gallery": {
            "kind": gallery_kind,
            "images": len(gallery_ids),
            "identities": len(np.unique(gallery_ids)),
        },
        "embedded": _EMBEDDED[0] - embedded_before,
        "seconds": round(time.perf_counter() - start, 3),
        "rows": rows,
    }


def to_markdown(result: dict) -> str:
    """A Table 11-like Markdown table (plus Fig. 13's identity distances) of :func:`analyze`."""
    lines = [
        "| images | detection | top-1 | top-3 | top-5 | L2 distance | cosine distance |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in result["rows"].items():
        lines.append(
            f"| {name} | {100 * row['detection_rate']:.1f}% | {100 * row['top_1']:.1f}% "
            f"| {100 * row['top_3']:.1f}% | {100 * row['top_5']:.1f}% "
            f"| {row['l2_mean']:.3f} | {row['cosine_mean']:.4f} |"
        )
    g = result["gallery"]
    s = result["settings"]
    lines.append("")
    lines.append(
        f"{result['n_images']} faces; gallery: {g['images']} images of {g['identities']} "
        f"identities ({g['kind']}); dlib HOG detector at {s['analysis_size']} px, upsample "
        f"≤ {s['upsample']}; distances of dlib's 128-D embeddings to the clear image."
    )
    return "\n".join(lines)
