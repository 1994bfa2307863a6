"""evaluators.compare: ablation tables from eval folders, numbers checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from facedeblur_jax import cli
from facedeblur_jax.evaluators import compare

FACES = ["test/a", "test/b", "test/c"]


def _eval_dir(path, methods, psnr, *, faces=FACES, sha="bank1", identity=None, extra=None):
    """A folder shaped like 'facedeblur eval' output: per_image.npz and results.json."""
    path.mkdir(parents=True)
    psnr = np.asarray(psnr, np.float32)
    np.savez(
        path / "per_image.npz",
        methods=np.asarray(methods),
        psnr=psnr,
        ssim=psnr / 100,
        kernel_sizes=np.asarray([7, 9], np.int32),
        face_names=np.asarray(faces),
        face_index=np.arange(len(faces), dtype=np.int32),
        identities=np.zeros(len(faces), np.int32),
    )
    results = {"checkpoint": {"step": 7}, "bank": {"sha256": sha}}
    if extra:  # {name: step}, as 'facedeblur eval --extra-checkpoint NAME=DIR' records them
        results["extra_checkpoints"] = {
            n: {"path": f"/runs/{n}", "step": s} for n, s in extra.items()
        }
    if identity:
        results["identity"] = {"rows": identity}
    (path / "results.json").write_text(json.dumps(results))
    return path


def _spec(tmp_path, rows, name="spec.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"tables": {"2": "prior"}, "rows": rows}))
    return path


def test_rows_spread_and_paired_difference_by_hand(tmp_path):
    # faces × kernels; method 0 = "full model", 1 = "full model, prior: zeros"
    a = [[20, 22], [24, 26], [30, 30]]
    b = [[19, 21], [24, 24], [29, 29]]
    idn = {"full model": {"auc": 0.9, "top_1": 0.5, "cosine_mean": 0.25}}
    idn["full model, prior: zeros"] = {"auc": 0.8, "top_1": 2 / 3, "cosine_mean": 0.3}
    idn["full model, prior: zeros"].update(correct=2, probes=3)
    _eval_dir(tmp_path / "e1", ["full model", "full model, prior: zeros"], [a, b], identity=idn)
    spec = _spec(
        tmp_path,
        [
            {"table": "2", "label": "predicted", "eval": "e1", "method": "full model"},
            {"table": "2", "label": "zeros", "eval": "e1", "method": "full model, prior: zeros"},
        ],
    )
    out = compare.run(spec, tmp_path / "out")
    first, second = out["tables"][0]["rows"]
    assert first["psnr_mean"] == pytest.approx(np.mean(a))
    assert first["psnr_std"] == pytest.approx(np.std(a))
    assert first["psnr_face_std"] == pytest.approx(np.std([21, 25, 30]))
    assert first["psnr_per_size"] == {"7": pytest.approx(74 / 3), "9": pytest.approx(26)}
    assert first["identity"] == {"auc": 0.9, "top_1": 0.5, "cosine_mean": 0.25}
    assert first["psnr_delta"] == 0
    assert second["identity"] == {
        "auc": 0.8,
        "top_1": pytest.approx(2 / 3),
        "cosine_mean": 0.3,
        "correct": 2,
        "probes": 3,
        "top_1_ci95": pytest.approx(1.96 * np.sqrt(2 / 9 / 3)),
    }  # no Δtop-1: the first row has no probe count
    assert first["eval"] == "e1"  # as the spec names it: no absolute path in the outputs
    d = np.asarray([20, 24, 29]) - np.asarray([21, 25, 30])  # per-face means
    assert second["psnr_delta"] == pytest.approx(d.mean())
    assert second["psnr_delta_ci95"] == pytest.approx(1.96 * d.std(ddof=1) / np.sqrt(3))
    assert second["ssim_delta"] == pytest.approx(d.mean() / 100, abs=1e-6)
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "### Table 2: prior" in md and "| zeros | e1 | 7 | 24.33 ± 3.68 |" in md
    assert "| 0.800 | 66.7 % (2/3) | — | 0.300 |" in md  # top-1 moves in steps of 1 / probes
    assert (
        "| predicted | e1 | 7 | 25.33 ± 3.68 | 0.2533 ± 0.0368 | — | — | 0.900 | 50.0 % | — |" in md
    )
    assert json.loads((tmp_path / "out" / "comparison.json").read_text()) == json.loads(
        json.dumps(out)
    )
    assert Image.open(tmp_path / "out" / "comparison.png").size[0] > 300


def test_an_extra_checkpoint_row_has_its_own_step(tmp_path):
    # One eval: the main checkpoint at step 7 (its full model and a fed prior) and an
    # --extra-checkpoint "joint" at step 11; each row names the step of the weights behind it.
    a = [[20, 22], [24, 26], [30, 30]]
    methods = ["full model", "full model, prior: zeros", "joint"]
    _eval_dir(tmp_path / "e1", methods, [a, a, a], extra={"joint": 11})
    spec = _spec(tmp_path, [{"table": "2", "label": m, "eval": "e1", "method": m} for m in methods])
    out = compare.run(spec, tmp_path / "out")
    steps = [r["checkpoint_step"] for r in out["tables"][0]["rows"]]
    assert steps == [7, 7, 11]
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "| joint | e1 | 11 |" in md and "| full model | e1 | 7 |" in md


def test_top_1_intervals_by_hand(tmp_path):
    # 51 of 92 probes right against 66 of 92: Δ = 15/92, unpaired Wald interval.
    a = [[20, 22], [24, 26], [30, 30]]
    idn = {
        "zeros": {"auc": 0.9, "top_1": 51 / 92, "cosine_mean": 0.5, "correct": 51, "probes": 92},
        "gt": {"auc": 0.9, "top_1": 66 / 92, "cosine_mean": 0.5, "correct": 66, "probes": 92},
    }
    _eval_dir(tmp_path / "e1", ["zeros", "gt"], [a, a], identity=idn)
    spec = _spec(tmp_path, [{"table": "2", "label": m, "eval": "e1", "method": m} for m in idn])
    first, second = compare.run(spec, tmp_path / "out")["tables"][0]["rows"]
    pa, pb = 51 / 92, 66 / 92
    assert first["identity"]["top_1_ci95"] == pytest.approx(1.96 * np.sqrt(pa * (1 - pa) / 92))
    assert first["identity"]["top_1_delta"] == 0
    assert second["identity"]["top_1_delta"] == pytest.approx(15 / 92)
    half = 1.96 * np.sqrt(pa * (1 - pa) / 92 + pb * (1 - pb) / 92)
    assert second["identity"]["top_1_delta_ci95"] == pytest.approx(half)
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "| 71.7 % (66/92) | +16.3 ± 13.7 pts |" in md and "| 55.4 % (51/92) | — |" in md


def test_bad_specs_and_mismatched_rows_are_named(tmp_path, capsys):
    _eval_dir(tmp_path / "e1", ["full model"], [[[20, 22], [24, 26], [30, 30]]])
    _eval_dir(tmp_path / "e2", ["full model"], [[[20, 22], [24, 26]]], faces=FACES[:2])
    row = {"table": "2", "label": "one", "eval": "e1", "method": "full model"}
    with pytest.raises(ValueError, match=r"has no method 'G_f' \(row 'one'\)"):
        compare.compare({}, compare.read_spec(_spec(tmp_path, [{**row, "method": "G_f"}]))[1])
    other = {**row, "label": "two", "eval": "e2"}
    with pytest.raises(ValueError, match="row 'two' was evaluated on other faces"):
        compare.compare({}, compare.read_spec(_spec(tmp_path, [row, other]))[1])
    with pytest.raises(ValueError, match=r"rows\[0\] lacks \['method'\]"):
        compare.read_spec(_spec(tmp_path, [{"table": "2", "label": "x", "eval": "e1"}]))
    missing = _spec(tmp_path, [{**row, "eval": "nowhere"}])
    assert cli.main(["compare", "--spec", str(missing), "--out", str(tmp_path / "o")]) != 0
    assert "nowhere/results.json' does not exist" in capsys.readouterr().err
    spec = _spec(tmp_path, [row])
    assert cli.main(["compare", "--spec", str(spec), "--out", str(tmp_path / "o")]) == 0
    before = (tmp_path / "o" / "comparison.md").read_text()
    assert cli.main(["compare", "--spec", str(spec), "--out", str(tmp_path / "o")]) != 0
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "o" / "comparison.md").read_text() == before
