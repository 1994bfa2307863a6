"""evaluators.compare: ablation tables from eval folders, numbers checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from facedeblur_jax import cli
from facedeblur_jax.evaluators import compare

FACES = ["test/a", "test/b", "test/c"]


def _eval_dir(
    path, methods, psnr, *, faces=FACES, sha="bank1", identity=None, extra=None, parsing=None
):
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
    if parsing is not None:
        results["parsing"] = parsing
    (path / "results.json").write_text(json.dumps(results))
    return path


def _spec(tmp_path, rows, name="spec.json", parsing=None):
    path = tmp_path / name
    spec = {"tables": {"2": "prior"}, "rows": rows}
    if parsing is not None:
        spec["parsing"] = parsing
    path.write_text(json.dumps(spec))
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
        compare.compare({}, compare.read_spec(_spec(tmp_path, [{**row, "method": "G_f"}])).rows)
    other = {**row, "label": "two", "eval": "e2"}
    with pytest.raises(ValueError, match="row 'two' was evaluated on other faces"):
        compare.compare({}, compare.read_spec(_spec(tmp_path, [row, other])).rows)
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


def test_every_pair_of_a_three_row_table_by_hand(tmp_path):
    # Table 5's question: G_c, staged G_f and joint G_f, compared pairwise on the same faces.
    g_c = [[20, 22], [24, 26], [30, 30]]  # per-face means 21, 25, 30
    staged = [[20, 21], [25, 26], [29, 30]]  # 20.5, 25.5, 29.5
    joint = [[21, 22], [24, 25], [31, 31]]  # 21.5, 24.5, 31
    _eval_dir(tmp_path / "e1", ["G_c", "full model", "joint"], [g_c, staged, joint])
    rows = [
        {"table": "5", "label": lab, "eval": "e1", "method": m}
        for lab, m in (("G_c", "G_c"), ("staged", "full model"), ("joint", "joint"))
    ]
    out = compare.run(_spec(tmp_path, rows), tmp_path / "out")
    table = out["tables"][0]
    assert table["faces"] == FACES
    assert [r["face_psnr"] for r in table["rows"]] == [
        [21, 25, 30],
        [20.5, 25.5, 29.5],
        [21.5, 24.5, 31],
    ]
    faces = {"G_c": [21, 25, 30], "staged": [20.5, 25.5, 29.5], "joint": [21.5, 24.5, 31]}
    pairs = {(p["a"], p["b"]): p for p in table["paired"]}
    assert sorted(pairs) == [("G_c", "joint"), ("G_c", "staged"), ("staged", "joint")]
    for (a, b), p in pairs.items():
        d = [y - x for x, y in zip(faces[a], faces[b], strict=True)]
        sd = (sum((v - sum(d) / 3) ** 2 for v in d) / 2) ** 0.5
        assert p["psnr_delta"] == pytest.approx(sum(d) / 3)
        assert p["psnr_delta_ci95"] == pytest.approx(1.96 * sd / 3**0.5)
        assert p["ssim_delta"] == pytest.approx(sum(d) / 300, abs=1e-6)
    # joint − staged = (1, −1, 1.5): mean 0.5, sd 1.3229, half 1.4970
    assert pairs[("staged", "joint")]["psnr_delta"] == pytest.approx(0.5)
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "Paired differences within Table 5 (per face, 3 faces" in md
    assert "| joint | staged | +0.500 ± 1.497 |" in md
    saved = json.loads((tmp_path / "out" / "comparison.json").read_text())
    again = compare.paired_difference(
        np.asarray(saved["tables"][0]["rows"][1]["face_psnr"]),
        np.asarray(saved["tables"][0]["rows"][2]["face_psnr"]),
    )  # any pair again from comparison.json alone
    assert again == pytest.approx((0.5, 1.96 * np.std([1, -1, 1.5], ddof=1) / np.sqrt(3)))


def test_a_two_row_table_has_no_pair_list(tmp_path):
    a = [[20, 22], [24, 26], [30, 30]]
    _eval_dir(tmp_path / "e1", ["x", "y"], [a, a])
    spec = _spec(tmp_path, [{"table": "2", "label": m, "eval": "e1", "method": m} for m in "xy"])
    table = compare.run(spec, tmp_path / "out")["tables"][0]
    assert "paired" not in table  # the Δ column is its only pair
    assert "Paired differences" not in (tmp_path / "out" / "comparison.md").read_text()


PARSING = {
    "inputs": ["clear", "blurred", "deblurred"],
    "classes": ["skin", "left_eye"],
    "f_score": {
        "clear": {"skin": 0.9, "left_eye": 0.68},
        "blurred": {"skin": 0.8, "left_eye": 0.46},
        "deblurred": {"skin": 0.85, "left_eye": 0.51},
    },
    "average": {"clear": 0.79, "blurred": 0.63, "deblurred": 0.68},
    "num_images": 6,
    "num_faces": 3,
}


def test_a_parsing_entry_is_the_evals_table_3(tmp_path):
    a = [[20, 22], [24, 26], [30, 30]]
    _eval_dir(tmp_path / "e1", ["full model"], [a], parsing=PARSING)
    row = {"table": "2", "label": "full", "eval": "e1", "method": "full model"}
    spec = _spec(tmp_path, [row], parsing=[{"label": "P after its phase", "eval": "e1"}])
    out = compare.run(spec, tmp_path / "out")
    (entry,) = out["parsing"]
    assert entry["eval"] == "e1" and entry["checkpoint_step"] == 7
    assert entry["f_score"] == PARSING["f_score"] and entry["average"] == PARSING["average"]
    md = (tmp_path / "out" / "comparison.md").read_text()
    assert "### P's parsing F-scores: P after its phase" in md
    assert "eval: e1, step 7; 6 blurred images of 3 faces" in md
    assert "| left_eye | 0.680 | 0.460 | 0.510 |" in md
    assert "| average | 0.790 | 0.630 | 0.680 |" in md


def test_a_parsing_entry_without_f_scores_is_named(tmp_path):
    a = [[20, 22], [24, 26], [30, 30]]
    skipped = {"skipped": "the test faces have no parsing labels"}
    _eval_dir(tmp_path / "e1", ["full model"], [a], parsing=skipped)
    row = {"table": "2", "label": "full", "eval": "e1", "method": "full model"}
    spec = _spec(tmp_path, [row], parsing=[{"label": "P", "eval": "e1"}])
    with pytest.raises(
        ValueError,
        match=r"e1' has no parsing F-scores \(parsing entry 'P'\): "
        "the test faces have no parsing labels",
    ):
        compare.run(spec, tmp_path / "out")
    assert not (tmp_path / "out" / "comparison.json").exists()
    with pytest.raises(ValueError, match=r"parsing\[0\] lacks \['eval'\]"):
        compare.read_spec(_spec(tmp_path, [row], parsing=[{"label": "P"}]))
    with pytest.raises(ValueError, match="'parsing' must be a list"):
        compare.read_spec(_spec(tmp_path, [row], parsing={"label": "P"}))
