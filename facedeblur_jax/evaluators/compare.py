"""``facedeblur compare``: ablation tables from several ``facedeblur eval`` folders.

An ablation compares rows — (an eval folder, one of its methods) — scored on the same test
faces and the same kernel bank. A spec file (JSON) names them::

    {"tables": {"2": "Effect of the semantic prior", ...},
     "rows": [{"table": "2", "label": "G_f fed zeros", "eval": "evals/B",
               "method": "full model, prior: zeros"}, ...],
     "parsing": [{"label": "P after the parsing phase", "eval": "evals/B"}, ...]}

(``eval`` folders relative to the spec file; ``parsing`` is optional.) For every row, from
the folder's ``per_image.npz`` and ``results.json``:

* PSNR / SSIM mean and std over all (face, kernel) images (the eval's Table 10 numbers);
* the spread over the test faces: each face's mean over the bank's kernels, their std;
* the eval folder and the training step of the row's weights (an ``--extra-checkpoint``
  row: that checkpoint's own step, from ``results.json``'s ``extra_checkpoints``);
* the paired difference to the table's first row, per face: mean Δ and its 95 % interval
  (± 1.96 · std / √N over the N faces) — the rows share faces and blurred inputs, so
  face-to-face variation cancels out of Δ;
* the mean PSNR per kernel size, and the MobileFaceNet identity numbers (verification AUC,
  top-1 with its count of correct probes and of probes, cosine distance to the clear face)
  when the eval ran ``--identity-weights``; top-1's binomial 95 % interval and its
  difference to the first row's with an unpaired 95 % interval (:func:`_top_1_delta`);
* the per-face PSNR and SSIM means themselves (``face_psnr``, ``face_ssim``, in the order
  of the table's ``faces``), so that any paired difference can be computed again from
  ``comparison.json`` alone.

For every table of three rows or more, ``paired`` holds the paired difference of every
pair of its rows (row j − row i for i < j, as above), not only those to the first row.

For every ``parsing`` entry, the eval's F-scores of P (``results.json``'s ``parsing``
section: per class and their average, on clear, blurred and G_c-deblurred inputs; see
``evaluators/parsing.py``), with the eval folder and the step of its checkpoint: the
source of a study's parsing table.

Rows of one table must come from evals of the same faces and bank (the face names and the
bank's sha256 are checked). Writes ``comparison.json``, ``comparison.md`` and
``comparison.png`` (one panel per table: mean PSNR with the 95 % interval of the mean over
faces) into the output folder, atomically, never over an existing file unless asked to.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from facedeblur_jax.core.atomic import atomic_write
from facedeblur_jax.evaluators import report

OUTPUT_FILES = ("comparison.json", "comparison.md", "comparison.png")
Z95 = 1.96
PLOT_COLUMNS = 4  # panels per row of comparison.png


@dataclasses.dataclass(frozen=True)
class ParsingEntry:
    label: str
    eval_dir: pathlib.Path
    eval_name: str = ""


@dataclasses.dataclass(frozen=True)
class Row:
    table: str
    label: str
    eval_dir: pathlib.Path
    method: str
    eval_name: str = ""  # as the spec wrote it (relative to the spec file): what is reported


@dataclasses.dataclass(frozen=True)
class Spec:
    titles: dict[str, str]  # table name -> title
    rows: list[Row]
    parsing: list[ParsingEntry]


def _require_keys(path: pathlib.Path, where: str, entry: Any, keys: Sequence[str]) -> None:
    """``ValueError`` naming the spec file, the entry (``rows[3]``) and the keys it lacks."""
    missing = [k for k in keys if not isinstance(entry, dict) or k not in entry]
    if missing:
        raise ValueError(f"spec file {str(path)!r}: {where} lacks {missing}")


def read_spec(path: str | os.PathLike) -> Spec:
    """A spec file's tables, rows and parsing entries; ``ValueError`` names the file and
    the bad entry."""
    path = pathlib.Path(path).expanduser().resolve()
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"spec file {str(path)!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"spec file {str(path)!r} is not JSON: {e}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("rows"), list) or not spec["rows"]:
        raise ValueError(f"spec file {str(path)!r} needs a non-empty list 'rows'")
    titles = {str(k): str(v) for k, v in dict(spec.get("tables", {})).items()}
    rows = []
    for i, r in enumerate(spec["rows"]):
        _require_keys(path, f"rows[{i}]", r, ("table", "label", "eval", "method"))
        rows.append(
            Row(
                str(r["table"]),
                str(r["label"]),
                path.parent / r["eval"],
                str(r["method"]),
                str(r["eval"]),
            )
        )
    parsing = spec.get("parsing", [])
    if not isinstance(parsing, list):
        raise ValueError(f"spec file {str(path)!r}: 'parsing' must be a list")
    entries = []
    for i, r in enumerate(parsing):
        _require_keys(path, f"parsing[{i}]", r, ("label", "eval"))
        entries.append(ParsingEntry(str(r["label"]), path.parent / r["eval"], str(r["eval"])))
    return Spec(titles, rows, entries)


def _load_eval(eval_dir: pathlib.Path) -> tuple[dict, dict[str, np.ndarray]]:
    results_path, per_image_path = eval_dir / "results.json", eval_dir / "per_image.npz"
    for p in (results_path, per_image_path):
        if not p.is_file():
            raise FileNotFoundError(f"{str(p)!r} does not exist (a 'facedeblur eval' folder?)")
    results = json.loads(results_path.read_text())
    with np.load(per_image_path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in ("methods", "psnr", "ssim", "kernel_sizes", "face_names")}
    return results, arrays


def _number(x: Any) -> float:
    return float(x)  # results.json writes non-finite numbers as "inf" / "nan"


def checkpoint_step(results: Mapping, method: str) -> int | None:
    """The training step of the weights behind ``method``: an ``--extra-checkpoint`` row's
    own checkpoint (``results["extra_checkpoints"][method]``), else the eval's main one."""
    extra = results.get("extra_checkpoints") or {}
    if method in extra:
        return extra[method].get("step")
    return results.get("checkpoint", {}).get("step")


def row_numbers(row: Row, results: Mapping, arrays: Mapping[str, np.ndarray]) -> dict:
    """``(numbers, f64[N] per-face PSNR, f64[N] per-face SSIM)`` of one row (see the module
    docstring)."""
    methods = arrays["methods"].tolist()
    if row.method not in methods:
        raise ValueError(
            f"{str(row.eval_dir)!r} has no method {row.method!r} (row {row.label!r}); it has "
            f"{methods}"
        )
    m = methods.index(row.method)
    psnr, ssim = (
        np.asarray(arrays["psnr"][m], np.float64),
        np.asarray(arrays["ssim"][m], np.float64),
    )
    sizes = np.asarray(arrays["kernel_sizes"])
    face_psnr, face_ssim = psnr.mean(axis=1), ssim.mean(axis=1)
    out = {
        "table": row.table,
        "label": row.label,
        "eval": row.eval_name or str(row.eval_dir),
        "method": row.method,
        "checkpoint_step": checkpoint_step(results, row.method),
        "num_faces": int(psnr.shape[0]),
        "num_images": int(psnr.size),
        "psnr_mean": float(psnr.mean()),
        "psnr_std": float(psnr.std()),
        "psnr_face_std": float(face_psnr.std()),
        "ssim_mean": float(ssim.mean()),
        "ssim_std": float(ssim.std()),
        "ssim_face_std": float(face_ssim.std()),
        "psnr_per_size": {str(int(k)): float(psnr[:, sizes == k].mean()) for k in np.unique(sizes)},
    }
    identity = results.get("identity", {})
    if isinstance(identity, Mapping) and row.method in identity.get("rows", {}):
        r = identity["rows"][row.method]
        out["identity"] = {
            "auc": _number(r["auc"]),
            "top_1": _number(r["top_1"]),
            "cosine_mean": _number(r["cosine_mean"]),
        }
        # top-1 = correct / probes: it moves in steps of 1 / probes.
        out["identity"].update({k: int(r[k]) for k in ("correct", "probes") if k in r})
    return out, face_psnr, face_ssim


def _binomial_var(identity: Mapping) -> float:
    p, n = identity["top_1"], identity["probes"]
    return p * (1 - p) / n if n else float("nan")


def _top_1_delta(numbers: dict, first: Mapping) -> None:
    """Top-1's 95 % interval (Wald: ± 1.96·√(p(1−p)/probes)) and its difference to the
    first row's with an unpaired interval (± 1.96·√(var_a + var_b)), where both rows have
    probe counts. Unpaired, because ``results.json`` keeps no per-probe outcome; on shared
    probes whose outcomes agree more often than chance the paired interval is narrower."""
    a, b = numbers.get("identity"), first.get("identity")
    if not a or "probes" not in a:
        return
    a["top_1_ci95"] = Z95 * float(np.sqrt(_binomial_var(a)))
    if b and "probes" in b:
        a["top_1_delta"] = a["top_1"] - b["top_1"]
        a["top_1_delta_ci95"] = Z95 * float(np.sqrt(_binomial_var(a) + _binomial_var(b)))


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``(mean, half-width of its 95 % interval)`` of the per-face difference ``b − a``
    (``f64[N]`` each, the same faces in the same order): ± 1.96 · std(b − a) / √N."""
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    n = len(d)
    half = Z95 * float(d.std(ddof=1)) / np.sqrt(n) if n > 1 else float("nan")
    return float(d.mean()), half


def _pairs(rows: Sequence[Mapping]) -> list[dict]:
    """Every pair ``i < j`` of a table's rows: row j − row i, paired over faces."""
    out = []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            entry = {"a": a["label"], "b": b["label"]}
            for metric in ("psnr", "ssim"):
                mean, half = paired_difference(a[f"face_{metric}"], b[f"face_{metric}"])
                entry[f"{metric}_delta"], entry[f"{metric}_delta_ci95"] = mean, half
            out.append(entry)
    return out


def _parsing_numbers(entry: ParsingEntry, results: Mapping) -> dict:
    parsing = results.get("parsing")
    if not isinstance(parsing, Mapping) or "f_score" not in parsing:
        why = parsing.get("skipped") if isinstance(parsing, Mapping) else None
        raise ValueError(
            f"{str(entry.eval_dir)!r} has no parsing F-scores (parsing entry "
            f"{entry.label!r})" + (f": {why}" if why else "")
        )
    keys = ("inputs", "classes", "f_score", "average", "num_images", "num_faces")
    return {
        "label": entry.label,
        "eval": entry.eval_name or str(entry.eval_dir),
        "checkpoint_step": results.get("checkpoint", {}).get("step"),
        **{k: parsing[k] for k in keys},
    }


def compare(
    titles: Mapping[str, str], rows: Sequence[Row], parsing: Sequence[ParsingEntry] = ()
) -> dict:
    """``{"tables": [{"table", "title", "faces", "rows": [...], "paired": [...]}],
    "parsing": [...]}`` (``paired`` for tables of three rows or more, ``parsing`` when the
    spec has parsing entries)."""
    cache: dict[pathlib.Path, tuple[dict, dict]] = {}

    def load(eval_dir: pathlib.Path) -> tuple[dict, dict]:
        if eval_dir not in cache:
            cache[eval_dir] = _load_eval(eval_dir)
        return cache[eval_dir]

    by_table: dict[str, list] = {}
    for row in rows:
        results, arrays = load(row.eval_dir)
        numbers, face_psnr, face_ssim = row_numbers(row, results, arrays)
        key = (results.get("bank", {}).get("sha256"), tuple(arrays["face_names"].tolist()))
        by_table.setdefault(row.table, []).append((numbers, face_psnr, face_ssim, key))
    tables = []
    for name, entries in by_table.items():
        first_numbers, first_psnr, first_ssim, first_key = entries[0]
        rows_out = []
        for numbers, face_psnr, face_ssim, key in entries:
            if key != first_key:
                raise ValueError(
                    f"table {name}: row {numbers['label']!r} was evaluated on other faces or "
                    f"another kernel bank than row {first_numbers['label']!r}"
                )
            n = len(face_psnr)
            for metric, a, b in (("psnr", face_psnr, first_psnr), ("ssim", face_ssim, first_ssim)):
                mean, half = paired_difference(b, a)
                numbers[f"{metric}_delta"] = mean
                numbers[f"{metric}_delta_ci95"] = half
                numbers[f"{metric}_mean_ci95"] = (
                    Z95 * float(a.std(ddof=1)) / np.sqrt(n) if n > 1 else float("nan")
                )
            numbers["face_psnr"] = [float(x) for x in face_psnr]
            numbers["face_ssim"] = [float(x) for x in face_ssim]
            _top_1_delta(numbers, first_numbers)
            rows_out.append(numbers)
        table = {"table": name, "title": titles.get(name, ""), "faces": list(first_key[1])}
        table["rows"] = rows_out
        if len(rows_out) >= 3:
            table["paired"] = _pairs(rows_out)
        tables.append(table)
    out: dict[str, Any] = {"tables": tables}
    if parsing:
        out["parsing"] = [_parsing_numbers(e, load(e.eval_dir)[0]) for e in parsing]
    return out


def markdown(comparison: Mapping) -> str:
    lines = []
    for t in comparison["tables"]:
        first = t["rows"][0]["label"]
        lines += [f"### Table {t['table']}" + (f": {t['title']}" if t["title"] else ""), ""]
        has_id = any("identity" in r for r in t["rows"])
        head = "| Model | eval | step | PSNR (dB) | SSIM | ΔPSNR vs first row (95 % CI) | ΔSSIM |"
        rule = "|---|---|---|---|---|---|---|"
        if has_id:
            head += " ID AUC | ID top-1 (correct/probes) | Δtop-1 (unpaired 95 % CI) | cos. dist. |"
            rule += "---|---|---|---|"
        lines += [head, rule]
        for r in t["rows"]:
            delta = (
                "—"
                if r["label"] == first
                else f"{r['psnr_delta']:+.3f} ± {r['psnr_delta_ci95']:.3f}"
            )
            dssim = "—" if r["label"] == first else f"{r['ssim_delta']:+.4f}"
            line = (
                f"| {r['label']} | {r['eval']} | {r['checkpoint_step']} | "
                f"{r['psnr_mean']:.2f} ± {r['psnr_face_std']:.2f} | "
                f"{r['ssim_mean']:.4f} ± {r['ssim_face_std']:.4f} | {delta} | {dssim} |"
            )
            if has_id:
                i = r.get("identity")
                count = f" ({i['correct']}/{i['probes']})" if i and "probes" in i else ""
                dtop = (
                    f"{100 * i['top_1_delta']:+.1f} ± {100 * i['top_1_delta_ci95']:.1f} pts"
                    if i and "top_1_delta" in i and r["label"] != first
                    else "—"
                )
                line += (
                    f" {i['auc']:.3f} | {100 * i['top_1']:.1f} %{count} | {dtop} |"
                    f" {i['cosine_mean']:.3f} |"
                    if i
                    else " — | — | — | — |"
                )
            lines.append(line)
        n = t["rows"][0]["num_faces"]
        lines += [
            "",
            f"Means over {t['rows'][0]['num_images']} images ({n} faces × the bank); ± after a "
            f"mean: std of the per-face means over the {n} faces. Δ: mean per-face difference "
            f"to '{first}' ± 1.96·std/√{n}. eval: the 'facedeblur eval' folder; step: the "
            "training step of the weights behind the row."
            + (
                " Top-1 moves in steps of 1/probes; Δtop-1: difference to the first row in "
                "percentage points ± 1.96·√(p₁(1−p₁)/N₁ + p₂(1−p₂)/N₂) (unpaired: the "
                "per-probe outcomes are not kept)."
                if has_id
                else ""
            ),
            "",
        ]
        if t.get("paired"):
            lines += [
                f"Paired differences within Table {t['table']} (per face, {n} faces; "
                "± 1.96·std/√N):",
                "",
                "| row b | row a | ΔPSNR b − a (dB) | ΔSSIM b − a |",
                "|---|---|---|---|",
                *(
                    f"| {p['b']} | {p['a']} | {p['psnr_delta']:+.3f} ± "
                    f"{p['psnr_delta_ci95']:.3f} | {p['ssim_delta']:+.4f} ± "
                    f"{p['ssim_delta_ci95']:.4f} |"
                    for p in t["paired"]
                ),
                "",
            ]
    for p in comparison.get("parsing", []):
        lines += [
            f"### P's parsing F-scores: {p['label']}",
            "",
            f"eval: {p['eval']}, step {p['checkpoint_step']}; {p['num_images']} blurred images "
            f"of {p['num_faces']} faces with parsing labels. P applied to the clear face, the "
            "blurred face and G_c's output of it (deblurred: the map G_f gets); F-score "
            "2TP / (2TP + FP + FN) over all pixels pooled.",
            "",
            *report.table3_markdown(p),
            "",
        ]
    return "\n".join(lines)


def plot(comparison: Mapping, path: pathlib.Path) -> None:
    """One horizontal bar panel per table (``PLOT_COLUMNS`` to a row): mean PSNR ± the 95 %
    interval over faces."""

    tables = comparison["tables"]
    cols = min(len(tables), PLOT_COLUMNS)
    grid_rows = -(-len(tables) // cols)
    panel_h = 0.5 * max(len(t["rows"]) for t in tables) + 1.6
    fig = Figure(figsize=(4.6 * cols, panel_h * grid_rows))
    FigureCanvasAgg(fig)
    for i, t in enumerate(tables):
        ax = fig.add_subplot(grid_rows, cols, i + 1)
        labels = [r["label"] for r in t["rows"]]
        means = [r["psnr_mean"] for r in t["rows"]]
        errs = [r["psnr_mean_ci95"] for r in t["rows"]]
        ax.barh(labels, means, xerr=errs, color="tab:blue", alpha=0.8, capsize=3)
        lo, hi = min(means) - max(errs) - 0.3, max(means) + max(errs) + 0.2
        ax.set_xlim(lo, hi)
        ax.invert_yaxis()
        ax.set_xlabel("PSNR (dB)")
        ax.set_title(f"Table {t['table']}" + (f": {t['title']}" if t["title"] else ""), fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def run(spec: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False) -> dict:
    """The ``facedeblur compare`` command; returns the comparison it wrote."""
    paths = report.output_paths(out_dir, overwrite=overwrite, names=OUTPUT_FILES)
    parsed = read_spec(spec)
    comparison = compare(parsed.titles, parsed.rows, parsed.parsing)
    report.write_json(paths["comparison.json"], comparison)
    text = markdown(comparison)
    atomic_write(paths["comparison.md"], lambda tmp: pathlib.Path(tmp).write_text(text))
    plot(comparison, paths["comparison.png"])
    return comparison
