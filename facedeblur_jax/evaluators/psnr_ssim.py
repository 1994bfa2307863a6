"""PSNR / SSIM over test faces × a fixed kernel bank: the paper's synthetic test protocol
(§5.1, Tables 9 and 10).

Every face is blurred with every kernel of a fixed bank (``degrade/kernel_bank.py``; the
paper: 100 faces × 80 kernels, 10 per size 13…27), deblurred, and scored against the sharp
face. Scored per method — the blurred input, G_c's output, the full model's output, plus
the full-model output of any extra checkpoints:

* Table 9 layout: mean PSNR / SSIM per kernel size;
* Table 10 layout: mean ± std and worst (minimum) PSNR / SSIM over all images.

Protocol (choices the paper leaves open, written down here and in ``results.md``):

* Faces: a split in source order at the model's ``image_size`` (``evaluators/data.py``);
  ``max_faces`` takes faces spread evenly over the split.
* Degradation: ``blur.blur`` (true convolution, reflect border, output H×W) with the bank
  kernel, plus Gaussian noise σ = 0.01, clipped to [0, 1]; not quantised to 8 bits. The noise
  of pair (face i, kernel j) — i the face's position in its whole split, j the bank row —
  comes from ``noise_key(i, j)`` =
  ``fold_in(fold_in(fold_in(key(EVAL_NOISE_SEED), EVAL_NOISE_TAG), i), j)``, so results do
  not depend on the batch size or on which other pairs share a batch, and a face scored in a
  ``max_faces`` run gets exactly the blurred input it gets in the full run.
* Metrics (``facedeblur_jax.core.metrics``): RGB, outputs clipped to [0, 1], whole image (no
  border crop, no Y channel), PSNR with peak 1, dm-pix SSIM (Gaussian 11×11, σ = 1.5);
  per image, then averaged. std is the population std (ddof 0) over all images.
* PSNR = ∞ (an output identical to the ground truth): kept as ``inf`` per image; a mean
  over a set containing ∞ is ∞, its std undefined (NaN), the worst value is the minimum as
  usual; ``psnr_inf`` counts such images.
* Priors (``priors=``, ``facedeblur eval --priors``): the full model run again on the same
  blurred input with G_f fed one of ``models/priors.py`` ``TEST`` instead of
  ``softmax(P(y_c))`` (``deblur_given_prior``: G_c unchanged, P not run), so only G_f's use
  of the prior differs between these rows.
* Models without G_c (``model.has_coarse`` False: the released CVPR'18 model) have no
  ``G_c`` row (:func:`builtin_methods`).
* Batching: the (face, kernel) pairs are enumerated kernel-major and deblurred in jitted
  batches of one fixed shape (``core.batching.padded_batches``); the padding is dropped.

:class:`Evaluator` compiles its step once and scores any variables of its model:
:meth:`Evaluator.evaluate` returns every score (``facedeblur eval``), :meth:`Evaluator.run`
the scalars logged during training (``psnr_full``, ``ssim_coarse``, ...).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from facedeblur_jax.core import imageio, metrics
from facedeblur_jax.core.batching import padded_batches
from facedeblur_jax.degrade import blur as blur_lib
from facedeblur_jax.degrade import kernel_bank as bank_lib
from facedeblur_jax.evaluators.faceset import FaceSet
from facedeblur_jax.models import priors as priors_lib
from facedeblur_jax.serving.loading import LoadedModel

PyTree = Any
BLURRED, COARSE, FULL = "blurred input", "G_c", "full model"
SHORT_NAMES = {BLURRED: "blurred", COARSE: "coarse", FULL: "full"}  # logged scalar names


def builtin_methods(model) -> tuple[str, ...]:
    """The rows every evaluation of ``model`` has: the blurred input, G_c (when the model
    has one) and the full model."""
    return (BLURRED, COARSE, FULL) if model.has_coarse else (BLURRED, FULL)


def prior_method(name: str) -> str:
    """The method name of the full model fed prior ``name`` (``models/priors.py`` ``TEST``)."""
    return f"{FULL}, prior: {name}"


EVAL_NOISE_SEED = 2**31 - 1
EVAL_NOISE_TAG = 0x0015E  # differs from kernel_bank.BANK_TAG: noise never reuses a kernel key
NOISE_SIGMA = 0.01


# ---------------------------------------------------------------------------------------------
# Degradation and scoring (pure, jittable)
# ---------------------------------------------------------------------------------------------


def noise_key(face_index, kernel_index, seed: int = EVAL_NOISE_SEED) -> jax.Array:
    """The noise key of pair (face ``face_index``, bank kernel ``kernel_index``)."""
    key = jax.random.fold_in(jax.random.key(seed), EVAL_NOISE_TAG)
    return jax.random.fold_in(jax.random.fold_in(key, face_index), kernel_index)


def blur_with_bank(
    sharp: jax.Array,
    kernels: jax.Array,
    face_index: jax.Array,
    kernel_index: jax.Array,
    *,
    noise_sigma: float = NOISE_SIGMA,
    seed: int = EVAL_NOISE_SEED,
) -> jax.Array:
    """Blurs each face with its kernel and adds the pair's fixed noise.

    Args:
      sharp: ``f32[B, S, S, 3]`` in [0, 1].
      kernels: ``f32[B, c, c]`` (bank rows, ``c`` odd, ``c // 2 < S``).
      face_index: ``i32[B]`` index of each face in the test set.
      kernel_index: ``i32[B]`` row of each kernel in the bank.
      noise_sigma: Gaussian noise std (paper: 0.01).
      seed: root of :func:`noise_key`.

    Returns:
      ``f32[B, S, S, 3]`` in [0, 1]: ``clip(blur(sharp, k) + σ·n, 0, 1)``, each sample a
      function of its own pair only.
    """
    b = sharp.shape[0]
    chex.assert_rank(sharp, 4)
    chex.assert_shape(kernels, (b, None, None))
    chex.assert_shape([face_index, kernel_index], (b,))
    blurred = blur_lib.blur(sharp, kernels)
    keys = jax.vmap(lambda i, j: noise_key(i, j, seed))(face_index, kernel_index)
    noise = jax.vmap(lambda k: jax.random.normal(k, sharp.shape[1:], jnp.float32))(keys)
    return jnp.clip(blurred + noise_sigma * noise, 0.0, 1.0)


def bank_pairs(
    faces: jax.Array,
    face_ids: jax.Array,
    kernels: jax.Array,
    face_idx: jax.Array,
    kernel_idx: jax.Array,
    *,
    noise_sigma: float = NOISE_SIGMA,
    seed: int = EVAL_NOISE_SEED,
) -> tuple[jax.Array, jax.Array]:
    """``(sharp, blurred)`` ``f32[B, S, S, 3]`` of a batch of (face, bank kernel) pairs: the
    faces ``uint8[N, S, S, 3]`` at rows ``face_idx``, blurred with bank rows ``kernel_idx``
    of ``kernels`` by :func:`blur_with_bank` (``face_ids``: each face's position in the
    test set, which keys its noise). Inside the evaluators' jitted steps."""
    sharp = faces[face_idx].astype(jnp.float32) / 255.0
    blurred = blur_with_bank(
        sharp,
        kernels[kernel_idx],
        face_ids[face_idx],
        kernel_idx,
        noise_sigma=noise_sigma,
        seed=seed,
    )
    return sharp, blurred


def per_image_metrics(pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """``{"psnr": f32[B], "ssim": f32[B]}`` of ``f32[B, H, W, 3]`` images (clipped to [0, 1])."""
    return {"psnr": metrics.psnr(pred, target), "ssim": metrics.ssim(pred, target)}


# ---------------------------------------------------------------------------------------------
# Aggregation (Tables 9 and 10)
# ---------------------------------------------------------------------------------------------


def summarize(values: np.ndarray) -> dict[str, float | int]:
    """``{"mean", "std", "worst", "count", "inf"}`` of a set of scores.

    ``+inf`` entries (PSNR of identical images) make the mean ``inf`` and the std ``nan``
    (undefined); ``worst`` is the minimum.
    """
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0:
        raise ValueError("no scores to summarise")
    n_inf = int(np.sum(np.isposinf(v)))
    if n_inf:
        mean, std = math.inf, math.nan
    else:
        mean, std = float(np.mean(v)), float(np.std(v))
    return {"mean": mean, "std": std, "worst": float(np.min(v)), "count": int(v.size), "inf": n_inf}


def aggregate(
    per_image: Mapping[str, Mapping[str, np.ndarray]],
    sizes: Sequence[int],
    groups: Sequence[str] | None = None,
) -> dict:
    """The Table 9 / Table 10 numbers from per-image scores.

    Args:
      per_image: ``{method: {"psnr": f[N, K], "ssim": f[N, K]}}`` (face × bank kernel).
      sizes: ``int[K]`` support size of each bank kernel.
      groups: ``str[K]`` group of each kernel (``KernelBank.group_labels``): ``"<size>"``
        for drawn kernels, a name for an extra kernel (e.g. a released one); default: the
        sizes. An extra group gets its own ``per_size`` entry after the sizes and is left
        out of ``overall`` (Table 10 averages the drawn kernels, as the paper's 80).

    Returns:
      ``{"sizes": [k, ...], "extra_groups": [name, ...], "methods": [...],
      "per_size": {method: {"<k>" or name: {"psnr", "ssim", "count"}}},
      "overall": {method: {"psnr_mean", "psnr_std", "psnr_worst", "ssim_mean", "ssim_std",
      "ssim_worst", "num_images", "psnr_inf"}}}``.
    """
    sizes = np.asarray(sizes)
    labels = np.asarray([str(int(k)) for k in sizes])
    groups = labels if groups is None else np.asarray(groups, str)
    if groups.shape != labels.shape:
        raise ValueError(f"groups must be [K] with K = {labels.shape[0]}; got {groups.shape}")
    drawn = groups == labels
    unique = sorted(int(k) for k in np.unique(sizes[drawn]))
    extras = list(dict.fromkeys(groups[~drawn].tolist()))
    table: dict[str, Any] = {"sizes": unique, "extra_groups": extras, "methods": list(per_image)}
    table["per_size"], table["overall"] = {}, {}
    for method, scores in per_image.items():
        psnr, ssim = np.asarray(scores["psnr"]), np.asarray(scores["ssim"])
        if psnr.shape != ssim.shape or psnr.ndim != 2 or psnr.shape[1] != sizes.shape[0]:
            raise ValueError(
                f"{method}: scores must be [N, K] with K = {sizes.shape[0]} kernels; got "
                f"psnr {psnr.shape}, ssim {ssim.shape}"
            )
        rows = {}
        for label in [str(k) for k in unique] + extras:
            cols = groups == label
            p, s = summarize(psnr[:, cols]), summarize(ssim[:, cols])
            rows[label] = {"psnr": p["mean"], "ssim": s["mean"], "count": p["count"]}
        table["per_size"][method] = rows
        p, s = summarize(psnr[:, drawn]), summarize(ssim[:, drawn])
        table["overall"][method] = {
            "psnr_mean": p["mean"],
            "psnr_std": p["std"],
            "psnr_worst": p["worst"],
            "ssim_mean": s["mean"],
            "ssim_std": s["std"],
            "ssim_worst": s["worst"],
            "num_images": p["count"],
            "psnr_inf": p["inf"],
        }
    return table


def grid_pairs(num_faces: int, num_kernels: int, rows: int = 8) -> list[tuple[int, int]]:
    """``rows`` (face, kernel) pairs: faces and kernels spread evenly (the bank is sorted by
    size, so the rows go from the smallest to the largest kernels)."""
    rows = max(0, min(rows, num_faces * num_kernels))
    if rows == 0:
        return []
    out = []
    for r in range(rows):
        face = r * num_faces // rows
        kernel = round(r * (num_kernels - 1) / max(rows - 1, 1))
        out.append((face, kernel))
    return list(dict.fromkeys(out))


def pairs_per_face(num_faces: int, num_kernels: int, per_face: int) -> list[tuple[int, int]]:
    """Face ``i`` with kernels ``(i·per_face + t) mod K``, ``t < per_face``: every face gets
    the same number of kernels, and consecutive faces walk through all sizes."""
    per_face = max(1, min(per_face, num_kernels))
    return [
        (i, (i * per_face + t) % num_kernels) for i in range(num_faces) for t in range(per_face)
    ]


# ---------------------------------------------------------------------------------------------
# The evaluator
# ---------------------------------------------------------------------------------------------


def _main_step(model, noise_sigma: float, seed: int, fed: Sequence[str] = ()) -> Callable:
    @jax.jit
    def step(variables, faces, face_ids, labels, kernels, face_idx, kernel_idx):
        sharp, blurred = bank_pairs(
            faces, face_ids, kernels, face_idx, kernel_idx, noise_sigma=noise_sigma, seed=seed
        )
        out = model.apply(variables, blurred, upto="fine")
        y = jnp.clip(out.y, 0.0, 1.0)
        scores = {BLURRED: per_image_metrics(blurred, sharp), FULL: per_image_metrics(y, sharp)}
        images = {BLURRED: blurred, FULL: y}
        if model.has_coarse:
            y_c = jnp.clip(out.y_coarse, 0.0, 1.0)
            scores[COARSE], images[COARSE] = per_image_metrics(y_c, sharp), y_c
        for name in fed:
            prior = priors_lib.fed(
                name,
                num_classes=model.num_classes,
                batch_hw=blurred.shape[:3],
                all_labels=labels,
                index=face_idx,
            )
            y_p = model.apply(variables, blurred, prior, method="deblur_given_prior").y
            y_p = jnp.clip(y_p, 0.0, 1.0)
            scores[prior_method(name)] = per_image_metrics(y_p, sharp)
            images[prior_method(name)] = y_p
        images["parsing"] = jnp.argmax(out.prior, axis=-1).astype(jnp.uint8)
        return scores, images

    return step


def _extra_step(model) -> Callable:
    @jax.jit
    def step(variables, faces, face_idx, blurred):
        sharp = faces[face_idx].astype(jnp.float32) / 255.0
        y = jnp.clip(model.apply(variables, blurred, upto="fine").y, 0.0, 1.0)
        return per_image_metrics(y, sharp), y

    return step


class Evaluator:
    """PSNR / SSIM of the blurred input, G_c and the full model over ``faces`` × ``bank``.

    Built once (the faces and kernels go to the device, the step is jitted); then scores
    any variables of ``model``.

    Args:
      model: the generator (G_c, P, G_f; or any model kind, ``models/factory.py``).
      faces: ``N`` test faces at the model's image size.
      bank: ``K`` kernels (``bank.canvas // 2`` smaller than the image size).
      batch_size: pairs per jitted call (one fixed shape; the last call is padded).
      noise_sigma, seed: the noise of :func:`blur_with_bank`.
      priors: names from ``models/priors.py`` ``TEST``: the full model is also scored fed
        each of them
        (methods :func:`prior_method`); ``ground_truth`` and ``shuffled`` need every face's
        parsing label.
      device: where the faces, the kernels and the computation live (default: the first
        local device); the variables passed in must be there too.
    """

    def __init__(
        self,
        model,
        faces: FaceSet,
        bank: bank_lib.KernelBank,
        *,
        batch_size: int = 64,
        noise_sigma: float = NOISE_SIGMA,
        seed: int = EVAL_NOISE_SEED,
        priors: Sequence[str] = (),
        device: jax.Device | None = None,
    ):
        priors = tuple(dict.fromkeys(priors))
        unknown = [p for p in priors if p not in priors_lib.TEST]
        if unknown:
            raise ValueError(f"unknown prior(s) {unknown}; known: {list(priors_lib.TEST)}")
        if set(priors) - {priors_lib.ZEROS}:
            has = faces.has_labels if faces.has_labels is not None else np.zeros(len(faces))
            missing = [faces.names[i] for i in range(len(faces)) if not has[i]]
            if missing:
                labelled = [p for p in priors if p != priors_lib.ZEROS]
                raise ValueError(
                    f"priors {labelled} need the parsing label of every test face; "
                    f"{len(missing)} have none (first: {missing[0]})"
                )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if not 0 <= noise_sigma < 1:
            raise ValueError(f"noise sigma must be in [0, 1); got {noise_sigma}")
        size = int(faces.images.shape[1])
        if faces.images.dtype != np.uint8 or faces.images.shape[1:] != (size, size, 3):
            raise ValueError(f"faces must be uint8[N, S, S, 3]; got {faces.images.shape}")
        if bank.canvas // 2 >= size:
            raise ValueError(f"kernel canvas {bank.canvas} is too large for {size} px images")
        self.model, self.faces, self.bank = model, faces, bank
        self.batch_size, self.noise_sigma, self.seed = batch_size, float(noise_sigma), int(seed)
        self.image_size = size
        self.priors = priors
        self.builtin = builtin_methods(model)
        self.methods = [*self.builtin, *(prior_method(p) for p in priors)]
        self.device = device or jax.local_devices()[0]
        put = lambda x: jax.device_put(x, self.device)
        self._faces = put(faces.images)
        self._face_ids = put(np.asarray(faces.index, np.int32))
        self._kernels = put(np.asarray(bank.kernels, np.float32))
        labels = faces.labels if faces.labels is not None else np.zeros(faces.images.shape[:3])
        self._labels = put(np.asarray(labels, np.int32))
        self._step = _main_step(model, self.noise_sigma, self.seed, priors)

    def evaluate(
        self,
        variables: PyTree,
        *,
        extra: Mapping[str, LoadedModel] | None = None,
        keep: Sequence[tuple[int, int]] = (),
        progress: bool = False,
    ) -> dict:
        """Blurs every face with every bank kernel, deblurs, scores.

        Args:
          variables: the model's ``{"params", ["batch_stats"]}``.
          extra: more checkpoints (same image size) whose full model runs on the same
            blurred inputs.
          keep: ``(face, kernel)`` pairs whose images to return (grid, face analysis).
          progress: a tqdm bar over the kernel bank.

        Returns:
          ``{"per_image": {method: {"psnr": f32[N, K], "ssim": f32[N, K]}},
          "kept": {(face, kernel): {method: uint8[S, S, 3], "parsing": uint8[S, S]}},
          "timing": {...}}``; methods are ``blurred input``, ``G_c``, ``full model``, the
          full model fed each of ``priors`` and the names of ``extra``.
        """
        extra = dict(extra or {})
        n, k = len(self.faces), len(self.bank)
        for name, other in extra.items():
            if other.image_size != self.image_size:
                raise ValueError(
                    f"extra checkpoint {name!r} works at {other.image_size} px, the checkpoint "
                    f"at {self.image_size} px; compare models of one image size"
                )
        methods = [*self.methods, *extra]
        psnr = {m: np.full((n, k), np.nan, np.float32) for m in methods}
        ssim = {m: np.full((n, k), np.nan, np.float32) for m in methods}
        keep_flat = {j * n + i: (i, j) for i, j in keep}
        kept: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        others = {name: _extra_step(m.model) for name, m in extra.items()}

        bar = None
        if progress:
            bar = tqdm(total=k, unit="kernel", desc="eval", mininterval=1.0, file=sys.stderr)
        total, batch_size = n * k, self.batch_size
        t0 = time.perf_counter()
        t_first = None
        try:
            for flat, count in padded_batches(total, batch_size):
                start = int(flat[0])
                face_idx, kernel_idx = flat % n, flat // n
                scores, images = self._step(
                    variables,
                    self._faces,
                    self._face_ids,
                    self._labels,
                    self._kernels,
                    face_idx,
                    kernel_idx,
                )
                scores = dict(scores)
                for name, step in others.items():
                    s, y = step(extra[name].variables, self._faces, face_idx, images[BLURRED])
                    scores[name], images[name] = s, y
                scores = jax.device_get(scores)
                fi, kj = face_idx[:count], kernel_idx[:count]
                for m in methods:
                    psnr[m][fi, kj] = scores[m]["psnr"][:count]
                    ssim[m][fi, kj] = scores[m]["ssim"][:count]
                rows = [r for r in range(count) if start + r in keep_flat]
                if rows:
                    sel = np.asarray(rows)
                    fetched = {
                        m: np.asarray(images[m][sel]) for m in (*methods, "parsing")
                    }  # one transfer per method
                    for t, r in enumerate(rows):
                        kept[keep_flat[start + r]] = {
                            m: (v[t] if m == "parsing" else imageio.to_uint8(v[t]))
                            for m, v in fetched.items()
                        }
                if t_first is None:
                    t_first = time.perf_counter() - t0
                if bar is not None:
                    done = min(total, start + batch_size) // n
                    bar.update(done - bar.n)
        finally:
            if bar is not None:
                bar.close()
        elapsed = time.perf_counter() - t0
        steady = elapsed - (t_first or 0.0)
        steady_images = total - min(total, batch_size)
        timing = {
            "deblur_s": elapsed,
            "first_call_s": t_first,
            "num_calls": -(-total // batch_size),
            "batch_size": batch_size,
            "images": total,
            "images_per_s": (steady_images / steady) if steady_images and steady > 0 else None,
            "device": str(self.device.device_kind),
        }
        per_image = {m: {"psnr": psnr[m], "ssim": ssim[m]} for m in methods}
        return {"per_image": per_image, "kept": kept, "timing": timing}

    def run(self, variables: PyTree) -> dict[str, float]:
        """The scalars logged during training: ``psnr_<m>`` / ``ssim_<m>`` (means over all
        images) for ``m`` in blurred, coarse, full, and the worst ``psnr_full_worst`` /
        ``ssim_full_worst``."""
        per_image = self.evaluate(variables)["per_image"]
        table = aggregate(per_image, self.bank.sizes, self.bank.group_labels)
        out = {}
        for method, short in SHORT_NAMES.items():
            if method not in self.builtin:
                continue
            o = table["overall"][method]
            out[f"psnr_{short}"], out[f"ssim_{short}"] = o["psnr_mean"], o["ssim_mean"]
        full = table["overall"][FULL]
        out["psnr_full_worst"], out["ssim_full_worst"] = full["psnr_worst"], full["ssim_worst"]
        return out


def from_spec(
    config: ml_collections.ConfigDict, spec: ml_collections.ConfigDict, model, resources
) -> Evaluator:
    """The evaluator of a ``config.evals`` entry (``evaluators/common.py``)."""
    return Evaluator(
        model,
        resources.faces(spec.split, spec.max_faces),
        resources.bank(spec.kernels, spec.kernels_per_size),
        batch_size=int(spec.batch_size),
        noise_sigma=float(spec.noise_sigma),
    )
