"""What ``facedeblur eval`` writes: strict JSON, the Markdown report, plots and the grid.

* ``results.json``: the results dict through :func:`to_json_value` — JSON has no ∞/NaN, so
  non-finite numbers become the strings ``"inf"``, ``"-inf"``, ``"nan"`` (``float(s)``
  reads them back) and the file stays strict JSON;
* ``results.md`` (:func:`markdown_report`): the protocol, the Table 9 and Table 10 layouts
  (∞ and n/a where a number is not finite), the parsing F-scores (Table 3 layout), the
  face analysis and the MobileFaceNet identity numbers (``identity.py``) when they were run,
  the files and the runtime;
* ``per_image.npz``: every score, ``f32[methods, faces, kernels]``;
* ``psnr_vs_kernel_size.png``, ``ssim_vs_kernel_size.png`` (:func:`plot_vs_size`);
* ``grid.png`` (:func:`make_grid`): one row per example — blurred, y_c, parsing map, y,
  [extra checkpoints' y], ground truth.

Every file is written atomically (``facedeblur_jax.core.atomic``) at a path resolved inside the
output folder (:func:`output_paths`), never over an existing file unless asked to.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from facedeblur_jax.core import imageio
from facedeblur_jax.core.atomic import atomic_write
from facedeblur_jax.core.digest import sha256_file
from facedeblur_jax.core.outputs import check_output_file
from facedeblur_jax.data import parsing_palette
from facedeblur_jax.evaluators.faceset import FaceSet
from facedeblur_jax.evaluators.identity import markdown_lines
from facedeblur_jax.evaluators.psnr_ssim import (
    BLURRED,
    COARSE,
    EVAL_NOISE_SEED,
    EVAL_NOISE_TAG,
    FULL,
)
from facedeblur_jax.models import priors

RESULTS_FORMAT = 1  # results.json's "format"

OUTPUT_FILES = (
    "results.json",
    "results.md",
    "per_image.npz",
    "psnr_vs_kernel_size.png",
    "ssim_vs_kernel_size.png",
    "grid.png",
)


# ---------------------------------------------------------------------------------------------
# The results record
# ---------------------------------------------------------------------------------------------


def run_record(
    *,
    checkpoint: str,
    loaded,
    trained_priors: Mapping[str, str],
    fed_priors: Sequence[str],
    extra: Mapping[str, Any],
    extra_paths: Mapping[str, str],
    data: str,
    split: str,
    faces: FaceSet,
    max_faces: int | None,
    bank,
    bank_path: pathlib.Path,
    noise_sigma: float,
) -> dict[str, Any]:
    """What an eval run was: the checkpoint (``loaded``, a ``serving.loading.LoadedModel``)
    and the extra ones (``{name: LoadedModel}`` loaded from ``extra_paths``), the priors,
    the faces, the kernel bank and the protocol — the head of ``results.json``."""
    config = loaded.config
    return {
        "format": RESULTS_FORMAT,
        "checkpoint": {
            "path": str(pathlib.Path(checkpoint).resolve()),
            "step": loaded.step,
            "image_size": loaded.image_size,
            "trained_kernel_sizes": [int(k) for k in config.degrade.kernel_sizes],
            "trained_priors": dict(trained_priors),
        },
        "priors": {
            "fed": list(fed_priors),
            "shuffled": priors.DESCRIPTIONS[priors.SHUFFLED],
        },
        "extra_checkpoints": {
            name: {"path": str(pathlib.Path(p).resolve()), "step": extra[name].step}
            for name, p in extra_paths.items()
        },
        "data": {
            "spec": data,
            "split": split,
            "resize": str(config.data.resize),
            "num_faces": len(faces),
            "max_faces": max_faces,
            "split_size": faces.split_size,
            "face_selection": "records floor(i * split_size / max_faces)" if max_faces else "all",
        },
        "bank": {
            "path": str(bank_path),
            "sha256": sha256_file(bank_path),
            "num_kernels": len(bank),
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
    }


def grid_record(faces: FaceSet, bank, shown: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """Which (face, kernel) pairs ``grid.png`` shows; its ``columns`` are filled in when the
    grid is drawn (:func:`write_outputs`)."""
    return {
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
    }


def write_outputs(
    paths: Mapping[str, pathlib.Path],
    results: dict,
    ev: Mapping,
    table: Mapping,
    shown: Sequence[tuple[int, int]],
    faces: FaceSet,
    sizes: np.ndarray,
    extra_names: Sequence[str],
    *,
    overwrite: bool,
) -> None:
    """Writes every file of :data:`OUTPUT_FILES` (``paths`` from :func:`output_paths`):
    ``grid.png`` when ``shown`` names examples (its columns go into ``results``), the two
    plots, ``per_image.npz``, ``results.json`` and ``results.md``."""
    if shown:
        grid, columns = make_grid(ev["kept"], shown, faces, list(extra_names))
        results["grid"]["columns"] = columns
        imageio.save_image(paths["grid.png"], grid, overwrite=overwrite)
    plot_vs_size(table, "psnr", paths["psnr_vs_kernel_size.png"])
    plot_vs_size(table, "ssim", paths["ssim_vs_kernel_size.png"])
    save_per_image(paths["per_image.npz"], ev["per_image"], sizes, faces)
    write_json(
        paths["results.json"], {k: v for k, v in results.items() if not k.endswith("_markdown")}
    )
    write_markdown(paths["results.md"], results)


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


def table3_markdown(parsing: Mapping) -> list[str]:
    """Markdown lines: one row per class, one column per parsing input, then the average
    (``parsing.summary``'s dict)."""
    inputs = parsing["inputs"]
    head = ["Class", *inputs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in parsing["classes"]:
        cells = [name] + [_fmt(parsing["f_score"][i][name], 3) for i in inputs]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["average"] + [_fmt(parsing["average"][i], 3) for i in inputs]
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def face_analysis_markdown(fa: Any) -> list[str]:
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
        *[
            f"- Extra kernel `{e['name']}`: `{e['file']}` ({e['shape'][0]}×{e['shape'][1]}, "
            f"size {e['size']}), its own Table 9 column; not in Table 10's averages."
            for e in bank["provenance"].get("extras", [])
        ],
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
    parsing = results.get("parsing")
    if parsing:
        lines += ["## Parsing F-scores of P (Table 3 layout)", ""]
        if "skipped" in parsing:
            lines += [f"Not computed: {parsing['skipped']}.", ""]
        else:
            lines += [
                f"P applied to the clear face, to the blurred input and to G_c's output of it "
                f"(deblurred: the map G_f gets); {parsing['num_images']} blurred images of "
                f"{parsing['num_faces']} faces with parsing labels. F-score "
                "2TP / (2TP + FP + FN) over all their pixels pooled; the average is over the "
                "classes other than background.",
                "",
                *table3_markdown(parsing),
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
            or "\n".join(face_analysis_markdown(results["face_analysis"])),
            "",
        ]
    if "identity" in results:
        ident = results["identity"]
        lines += ["## Identity with MobileFaceNet (§5.2, Table 11 analogue)", ""]
        if "skipped" in ident:
            lines += [f"Not computed: {ident['skipped']}.", ""]
        else:
            probes = ident.get("probes", {})
            lines += [
                f"Probes: {probes.get('num_probes')} images per kind ({probes.get('pairs')}); "
                f"weights `{ident.get('weights')}`.",
                "",
                *markdown_lines(ident),
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
# Plots and the grid
# ---------------------------------------------------------------------------------------------


def _colorize(parsing: np.ndarray) -> np.ndarray:

    return parsing_palette.colorize(np.asarray(parsing) % len(parsing_palette.palette()))


def make_grid(
    kept: Mapping[tuple[int, int], Mapping[str, np.ndarray]],
    pairs: Sequence[tuple[int, int]],
    faces: FaceSet,
    extra_names: Sequence[str] = (),
) -> tuple[np.ndarray, list[str]]:
    """``uint8`` image grid, one row per pair: blurred, y_c, parsing, y, extras…, GT."""

    first = kept[pairs[0]] if pairs else {}
    stages = [BLURRED, COARSE] if COARSE in first else [BLURRED]  # no G_c: no y_c column
    columns = [*stages, "parsing (P)", FULL, *extra_names, "ground truth"]
    tiles = []
    for pair in pairs:
        got = kept[pair]
        tiles += [*(got[m] for m in stages), _colorize(got["parsing"]), got[FULL]]
        tiles += [got[name] for name in extra_names]
        tiles.append(faces.images[pair[0]])
    return imageio.grid(tiles, columns=len(columns)), columns


def plot_vs_size(table: Mapping, metric: str, path: pathlib.Path) -> None:
    """Mean ``metric`` per kernel size, one line per method (matplotlib Agg, no pyplot)."""

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
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


# ---------------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------------


def output_paths(
    out_dir: str | os.PathLike, *, overwrite: bool = False, names: Sequence[str] = OUTPUT_FILES
) -> dict[str, pathlib.Path]:
    """``{name: path}`` of every output (``names``; default ``facedeblur eval``'s), resolved
    inside ``out_dir``.

    Raises:
      FileExistsError: an output exists and ``overwrite`` is false (the file is named).
      ValueError / NotADirectoryError: ``out_dir`` is a file, an output a folder, or the
        place cannot be written (:func:`facedeblur_jax.core.outputs.check_output_file`;
        nothing is created).
    """
    folder = pathlib.Path(out_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file, not a folder: name a folder")
    paths = {name: imageio.safe_output_path(out_dir, name) for name in names}
    for path in paths.values():
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"refusing to overwrite existing file {str(path)!r} (pass --overwrite)"
            )
        check_output_file(path, overwrite=overwrite)
    return paths


def write_json(path: pathlib.Path, data: Any) -> None:
    """Strict JSON (:func:`to_json_value`), written atomically."""
    text = json.dumps(to_json_value(data), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(text))


def write_markdown(path: pathlib.Path, results: Mapping) -> None:
    """:func:`markdown_report` of ``results``, written atomically."""
    text = markdown_report(results)
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(text))


def save_per_image(path: pathlib.Path, per_image, sizes, faces: FaceSet) -> None:
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

    atomic_write(path, write)
