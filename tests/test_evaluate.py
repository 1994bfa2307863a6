"""facedeblur eval: degradation per pair, hand-made metric cases, aggregation, the command."""

from __future__ import annotations

import json
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from facedeblur_jax import cli, evaluate
from facedeblur_jax.degrade import blur as blur_lib
from facedeblur_jax.degrade import kernel_bank

SIZES = np.asarray([3, 3, 5, 5])


def _strict_json(text: str):
    """``json.loads`` that rejects the non-standard ``Infinity`` / ``NaN`` tokens."""

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------------------------------------
# Degradation
# ---------------------------------------------------------------------------------------------


def test_blur_with_bank_depends_only_on_the_pair():
    rng = np.random.default_rng(0)
    sharp = jnp.asarray(rng.uniform(size=(4, 16, 16, 3)), jnp.float32)
    kernels = jnp.asarray(rng.dirichlet(np.ones(25), size=4).reshape(4, 5, 5), jnp.float32)
    faces, ks = jnp.asarray([0, 1, 2, 0]), jnp.asarray([0, 0, 1, 1])
    fn = jax.jit(evaluate.blur_with_bank)
    batch = np.asarray(fn(sharp, kernels, faces, ks))
    for b in range(4):  # the same pair alone, in a batch of one
        one = fn(sharp[b : b + 1], kernels[b : b + 1], faces[b : b + 1], ks[b : b + 1])
        np.testing.assert_allclose(batch[b], np.asarray(one)[0], atol=1e-6)
    # Noise: std σ around the plain blur, and different for different pairs.
    plain = np.asarray(blur_lib.blur(sharp, kernels))
    noise = batch - plain
    inside = (plain > 0.05) & (plain < 0.95)  # away from the clip at 0 and 1
    assert abs(noise[inside].std() - 0.01) < 1e-3
    assert not np.allclose(noise[0], noise[3])
    silent = fn(sharp, kernels, faces, ks, noise_sigma=0.0)
    np.testing.assert_allclose(np.asarray(silent), np.clip(plain, 0, 1), atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Hand-made metric cases through the aggregation
# ---------------------------------------------------------------------------------------------


def _scores(pred, target) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in evaluate.per_image_metrics(pred, target).items()}


def test_constant_offset_of_0_1_is_20_db():
    gt = jnp.full((8, 16, 16, 3), 0.5, jnp.float32)
    s = _scores(gt + 0.1, gt)  # MSE 0.01 -> 10 log10(1 / 0.01) = 20 dB
    per_image = {"offset": {"psnr": s["psnr"].reshape(2, 4), "ssim": s["ssim"].reshape(2, 4)}}
    table = evaluate.aggregate(per_image, SIZES)
    for k in ("3", "5"):
        assert table["per_size"]["offset"][k]["psnr"] == pytest.approx(20.0, abs=1e-3)
        assert table["per_size"]["offset"][k]["count"] == 4
    o = table["overall"]["offset"]
    assert o["psnr_mean"] == pytest.approx(20.0, abs=1e-3)
    assert o["psnr_worst"] == pytest.approx(20.0, abs=1e-3)
    assert o["psnr_std"] == pytest.approx(0.0, abs=1e-3)
    assert o["num_images"] == 8 and o["psnr_inf"] == 0


def test_identity_deblurring_gives_inf_psnr_handled_everywhere(tmp_path):
    from facedeblur_jax import imageio, sample_data

    faces = [imageio.load_image(f.path) for f in sample_data.sample_faces("test")[:2]]
    sharp = jnp.asarray(np.stack(faces), jnp.float32) / 255.0
    same = _scores(sharp, sharp)  # "deblurring" that returns the unblurred ground truth
    assert np.all(np.isposinf(same["psnr"])) and np.allclose(same["ssim"], 1.0, atol=1e-5)
    offset = _scores(jnp.clip(sharp + 0.1, 0, 1), sharp)
    per_image = {
        "identity": {"psnr": np.tile(same["psnr"][:, None], (1, 4)), "ssim": np.ones((2, 4))},
        "mixed": {  # one perfect image among finite ones
            "psnr": np.asarray([[np.inf, 20.0, 30.0, 40.0], [25.0, 35.0, 45.0, 50.0]]),
            "ssim": np.full((2, 4), 0.5),
        },
        "finite": {"psnr": np.tile(offset["psnr"][:, None], (1, 4)), "ssim": np.ones((2, 4))},
    }
    table = evaluate.aggregate(per_image, SIZES)
    o = table["overall"]
    assert math.isinf(o["identity"]["psnr_mean"]) and math.isinf(o["identity"]["psnr_worst"])
    assert math.isnan(o["identity"]["psnr_std"]) and o["identity"]["psnr_inf"] == 8
    assert math.isinf(o["mixed"]["psnr_mean"]) and o["mixed"]["psnr_worst"] == 20.0
    assert o["mixed"]["psnr_inf"] == 1 and math.isinf(table["per_size"]["mixed"]["3"]["psnr"])
    assert table["per_size"]["mixed"]["5"]["psnr"] == pytest.approx(41.25)  # (30+40+45+50)/4
    assert math.isfinite(o["finite"]["psnr_mean"]) and o["finite"]["psnr_inf"] == 0

    path = tmp_path / "t.json"
    evaluate.write_json(path, {"table": table})
    back = _strict_json(path.read_text())["table"]["overall"]
    assert back["identity"]["psnr_mean"] == "inf" and back["identity"]["psnr_std"] == "nan"
    assert float(back["mixed"]["psnr_mean"]) == math.inf and back["mixed"]["psnr_worst"] == 20.0
    md = "\n".join(evaluate.table10_markdown(table))
    assert "| identity | ∞ | ∞ | 1.000 ± 0.000 | 1.000 |" in md
    assert "| mixed | ∞ | 20.00 |" in md


def test_aggregate_by_hand():
    psnr = np.asarray([[10.0, 20.0, 30.0, 40.0], [20.0, 30.0, 40.0, 50.0]])
    ssim = psnr / 100.0
    table = evaluate.aggregate({"m": {"psnr": psnr, "ssim": ssim}}, SIZES)
    assert table["sizes"] == [3, 5] and table["methods"] == ["m"]
    assert table["per_size"]["m"]["3"]["psnr"] == pytest.approx(20.0)  # (10+20+20+30)/4
    assert table["per_size"]["m"]["5"]["ssim"] == pytest.approx(0.40)  # (30+40+40+50)/400
    o = table["overall"]["m"]
    assert o["psnr_mean"] == pytest.approx(30.0) and o["psnr_worst"] == 10.0
    assert o["psnr_std"] == pytest.approx(math.sqrt(1200 / 8))  # population std
    assert o["ssim_worst"] == pytest.approx(0.10)
    with pytest.raises(ValueError, match="K = 4 kernels"):
        evaluate.aggregate({"m": {"psnr": psnr[:, :3], "ssim": ssim[:, :3]}}, SIZES)


def test_aggregate_reports_an_extra_group_beside_the_sizes():
    """A released kernel as its own group: its own per-size entry and Table 9 columns, left
    out of Table 10's overall numbers (the drawn kernels, as the paper's 80)."""
    psnr = np.asarray([[10.0, 20.0, 30.0, 40.0, 99.0], [20.0, 30.0, 40.0, 50.0, 97.0]])
    sizes, groups = np.asarray([3, 3, 5, 5, 5]), ["3", "3", "5", "5", "released27"]
    table = evaluate.aggregate({"m": {"psnr": psnr, "ssim": psnr / 100}}, sizes, groups)
    assert table["sizes"] == [3, 5] and table["extra_groups"] == ["released27"]
    assert table["per_size"]["m"]["5"]["psnr"] == pytest.approx(40.0)  # not the extra's 98
    assert table["per_size"]["m"]["released27"] == {"psnr": 98.0, "ssim": 0.98, "count": 2}
    assert table["overall"]["m"]["psnr_mean"] == pytest.approx(30.0)
    assert table["overall"]["m"]["num_images"] == 8
    t9 = evaluate.table9_markdown(table)
    assert t9[0].endswith("| 5×5 SSIM | released27 PSNR | released27 SSIM |")
    assert t9[2].endswith("| 98.00 | 0.980 |")


def test_markdown_tables_layout():
    psnr = np.asarray([[21.0, 22.0, 23.0, 24.0]])
    per_image = {
        "blurred input": {"psnr": psnr, "ssim": psnr / 30},
        "full model": {"psnr": psnr + 1, "ssim": psnr / 29},
    }
    table = evaluate.aggregate(per_image, SIZES)
    t9 = evaluate.table9_markdown(table)
    assert t9[0] == "| Method | 3×3 PSNR | 3×3 SSIM | 5×5 PSNR | 5×5 SSIM |"
    assert t9[2] == "| blurred input | 21.50 | 0.717 | 23.50 | 0.783 |"
    assert t9[3].startswith("| full model | 22.50 | 0.741 | 24.50 |")
    t10 = evaluate.table10_markdown(table)
    assert t10[0] == "| Method | Average PSNR | Worst PSNR | Average SSIM | Worst SSIM |"
    assert t10[2] == "| blurred input | 22.50 ± 1.12 | 21.00 | 0.750 ± 0.037 | 0.700 |"


def test_pairs_and_argument_parsing():
    assert evaluate.grid_pairs(10, 4, rows=4) == [(0, 0), (2, 1), (5, 2), (7, 3)]
    assert evaluate.spread_indices(40, 3).tolist() == [0, 13, 26]
    assert evaluate.spread_indices(5, None).tolist() == evaluate.spread_indices(5, 9).tolist()
    assert evaluate.analysis_pairs(3, 4, 2) == [(0, 0), (0, 1), (1, 2), (1, 3), (2, 0), (2, 1)]
    assert evaluate.parse_extra(["b=/x/y", "c=z"]) == {"b": "/x/y", "c": "z"}
    for bad in (["nodir"], ["G_c=/x"], ["a=/x", "a=/y"]):
        with pytest.raises(ValueError, match="extra-checkpoint"):
            evaluate.parse_extra(bad)


# ---------------------------------------------------------------------------------------------
# The command, end to end on a tiny checkpoint
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory):
    bank = kernel_bank.make_bank(sizes=(3, 5, 7), per_size=2, canvas=7, num_steps=200)
    return kernel_bank.save_bank(tmp_path_factory.mktemp("bank") / "bank.npz", bank)


def _eval(ckpt, bank, out, *extra):
    argv = ["eval", "--checkpoint", str(ckpt), "--data", "sample", "--kernels", str(bank)]
    return cli.main([*argv, "--out", str(out), "--max-faces", "3", "--no-progress", *extra])


@pytest.fixture(scope="module")
def evaluated(tiny_checkpoint, bank_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    extra = ["--extra-checkpoint", f"same={tiny_checkpoint}", "--batch-size", "4"]
    assert _eval(tiny_checkpoint, bank_path, out, *extra) == 0
    return out


def test_eval_writes_tables_plot_and_grid(evaluated, bank_path):
    results = _strict_json((evaluated / "results.json").read_text())
    methods = ["blurred input", "G_c", "full model", "same"]
    table = results["table"]
    assert table["methods"] == methods and table["sizes"] == [3, 5, 7]
    assert results["data"]["num_faces"] == 3 and results["bank"]["num_kernels"] == 6
    assert results["bank"]["sha256"] == kernel_bank.file_sha256(bank_path)
    assert results["checkpoint"]["image_size"] == 32 and results["checkpoint"]["step"] == 2
    for m in methods:
        o = table["overall"][m]
        assert o["num_images"] == 18 and 10 < o["psnr_worst"] <= o["psnr_mean"] < 60
        assert 0 < o["ssim_worst"] <= o["ssim_mean"] <= 1
        assert all(table["per_size"][m][str(k)]["count"] == 6 for k in (3, 5, 7))
    # The extra checkpoint is the same model on the same blurred inputs: the same numbers.
    # (Up to float rounding: the two are compiled as different XLA programs.)
    for key, value in table["overall"]["full model"].items():
        assert table["overall"]["same"][key] == pytest.approx(value, rel=1e-5, abs=1e-6)
    # Bigger kernels blur more.
    blurred = table["per_size"]["blurred input"]
    assert blurred["3"]["psnr"] > blurred["7"]["psnr"]

    md = (evaluated / "results.md").read_text()
    assert "| Method | 3×3 PSNR | 3×3 SSIM | 5×5 PSNR" in md
    assert "| Method | Average PSNR | Worst PSNR | Average SSIM | Worst SSIM |" in md
    for m in methods:
        assert md.count(f"\n| {m} | ") == 2  # one row in each table
    assert "dm-pix" in md and "∞" in md  # the metric conventions are stated

    for name in ("psnr_vs_kernel_size.png", "ssim_vs_kernel_size.png"):
        assert Image.open(evaluated / name).size[0] > 300
    grid = np.asarray(Image.open(evaluated / "grid.png"))
    rows = len(results["grid"]["pairs"])
    assert results["grid"]["columns"] == [
        "blurred input",
        "G_c",
        "parsing (P)",
        "full model",
        "same",
        "ground truth",
    ]
    assert grid.shape == (2 + rows * 34, 2 + 6 * 34, 3)  # 32 px tiles, 2 px gaps


def test_eval_scores_match_a_direct_computation(evaluated, bank_path, tiny_checkpoint):
    """One pair recomputed outside the batched loop: same blurred input, same scores."""
    from facedeblur_jax.inference import load_model

    with np.load(evaluated / "per_image.npz") as f:
        psnr, ssim, methods = f["psnr"], f["ssim"], f["methods"].tolist()
        assert psnr.shape == (4, 3, 6) and f["kernel_sizes"].tolist() == [3, 3, 5, 5, 7, 7]
        names, index = f["face_names"].tolist(), f["face_index"].tolist()
    # --max-faces 3 of the 40 test faces: records 0, 13, 26 (spread over the identities).
    assert names == ["test/id00_0000", "test/id07_0001", "test/id16_0000"]
    assert index == [0, 13, 26]
    loaded = load_model(tiny_checkpoint)
    bank = kernel_bank.load_bank(bank_path)
    faces = evaluate.load_faces(loaded.config, {"source": "sample"}, "test", max_faces=3)
    assert faces.names == names and faces.split_size == 40
    i, j = 2, 5
    sharp = jnp.asarray(faces.images[i : i + 1], jnp.float32) / 255.0
    blurred = evaluate.blur_with_bank(
        sharp, jnp.asarray(bank.kernels[j : j + 1]), jnp.asarray([26]), jnp.asarray([j])
    )
    y = jnp.clip(loaded.model.apply(loaded.variables, blurred).y, 0, 1)
    for method, image in (("blurred input", blurred), ("full model", y)):
        s = evaluate.per_image_metrics(image, sharp)
        m = methods.index(method)
        assert psnr[m, i, j] == pytest.approx(float(s["psnr"][0]), abs=1e-3)
        assert ssim[m, i, j] == pytest.approx(float(s["ssim"][0]), abs=1e-4)


def test_scores_do_not_depend_on_batch_size_or_subset(
    evaluated, bank_path, tiny_checkpoint, tmp_path
):
    """All 40 test faces in batches of 7 vs 3 of them in batches of 4: the same scores."""
    assert (
        _eval(tiny_checkpoint, bank_path, tmp_path, "--batch-size", "7", "--max-faces", "40") == 0
    )
    with np.load(evaluated / "per_image.npz") as a, np.load(tmp_path / "per_image.npz") as b:
        assert b["psnr"].shape == (3, 40, 6)
        rows = a["face_index"]
        np.testing.assert_allclose(a["psnr"][:3], b["psnr"][:, rows], atol=1e-4)
        np.testing.assert_allclose(a["ssim"][:3], b["ssim"][:, rows], atol=1e-5)


def test_eval_reports_an_extra_kernel_of_the_bank(tiny_checkpoint, tmp_path):
    """A bank with an extra kernel (``make_test_kernels.py --extra``): its own column."""
    line = np.zeros((7, 7), np.float32)
    line[3, 1:6] = 0.2
    np.save(tmp_path / "line.npy", line)
    bank = kernel_bank.make_bank(sizes=(3, 5), per_size=1, canvas=7, num_steps=200)
    bank = kernel_bank.with_extras(bank, [("line5", tmp_path / "line.npy")])
    path = kernel_bank.save_bank(tmp_path / "bank.npz", bank)
    assert _eval(tiny_checkpoint, path, tmp_path / "out", "--max-faces", "2") == 0
    results = _strict_json((tmp_path / "out" / "results.json").read_text())
    table = results["table"]
    assert table["sizes"] == [3, 5] and table["extra_groups"] == ["line5"]
    for m in table["methods"]:
        assert table["per_size"][m]["line5"]["count"] == 2
        assert table["overall"][m]["num_images"] == 4  # the drawn kernels only
    assert results["bank"]["provenance"]["extras"][0]["file"] == "line.npy"
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| line5 PSNR | line5 SSIM |" in md


def test_eval_never_overwrites(evaluated, bank_path, tiny_checkpoint, capsys):
    before = {p.name: p.read_bytes() for p in evaluated.iterdir()}
    assert _eval(tiny_checkpoint, bank_path, evaluated) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite existing file" in err and "results.json" in err
    assert {p.name: p.read_bytes() for p in evaluated.iterdir()} == before


def test_face_analysis_hook(bank_path, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    calls = {}

    def analyze(clear, variants, identities, gallery):
        calls.update(clear=clear, variants=variants, identities=identities, gallery=gallery)
        return {
            "detection_rate": {"clear": {"rate": 1.0}, "blurred input": {"rate": 0.5}},
            "note": np.float32(0.25),
        }

    fake = types.ModuleType(evaluate.FACE_ANALYSIS_MODULE)
    fake.analyze = analyze
    fake.to_markdown = lambda result: f"TABLE OF {sorted(result)}"
    monkeypatch.setitem(__import__("sys").modules, evaluate.FACE_ANALYSIS_MODULE, fake)
    monkeypatch.setattr(evaluate, "FACE_ANALYSIS_PACKAGES", ())  # the fake needs no dlib
    flags = ["--face-analysis", "--face-analysis-per-face", "2"]
    assert _eval(tiny_checkpoint, bank_path, tmp_path / "fa", *flags) == 0
    clear, variants = calls["clear"], calls["variants"]
    assert clear.dtype == np.uint8 and clear.shape == (6, 32, 32, 3)  # 3 faces × 2 kernels
    assert list(variants) == ["blurred input", "G_c", "full model"]
    assert all(v.dtype == np.uint8 and v.shape == clear.shape for v in variants.values())
    a, b, c = sorted(set(calls["identities"].tolist()))
    assert calls["identities"].tolist() == [a, a, b, b, c, c]
    # Gallery: the clear train faces of every identity of the test split (20 × 8).
    g_images, g_ids = calls["gallery"]
    assert g_images.shape == (160, 32, 32, 3) and len(set(g_ids.tolist())) == 20
    results = _strict_json((tmp_path / "fa" / "results.json").read_text())
    assert results["face_analysis"]["detection_rate"]["blurred input"]["rate"] == 0.5
    assert results["face_analysis"]["note"] == 0.25
    assert results["face_analysis_input"]["num_probes"] == 6
    md = (tmp_path / "fa" / "results.md").read_text()
    assert "## Face analysis" in md and "TABLE OF ['detection_rate', 'note']" in md
    assert "face_analysis_markdown" not in results
    # A module without to_markdown: tables for {row: {column: value}}, JSON for the rest.
    generic = "\n".join(evaluate._face_analysis_markdown(analyze(None, None, None, None)))
    assert "| blurred input | 0.500 |" in generic and '"note": 0.25' in generic

    # A package the module needs at run time is missing: an error before any work.
    monkeypatch.setattr(evaluate, "FACE_ANALYSIS_PACKAGES", ("no_such_package_4f2a",))
    assert _eval(tiny_checkpoint, bank_path, tmp_path / "nodlib", "--face-analysis") == 2
    assert "needs ['no_such_package_4f2a']: pip install" in capsys.readouterr().err
    assert not (tmp_path / "nodlib").exists()
    # Without the module: a clear error before any work, nothing written.
    monkeypatch.setitem(__import__("sys").modules, evaluate.FACE_ANALYSIS_MODULE, None)
    assert _eval(tiny_checkpoint, bank_path, tmp_path / "none", "--face-analysis") == 2
    assert f"needs the module {evaluate.FACE_ANALYSIS_MODULE}" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_bad_inputs_are_named(bank_path, tiny_checkpoint, tmp_path, capsys):
    assert _eval(tiny_checkpoint, bank_path, tmp_path / "a", "--data", "/no/such") == 2
    assert "neither 'sample', 'faces' nor an existing folder" in capsys.readouterr().err
    assert _eval(tiny_checkpoint, tmp_path / "missing.npz", tmp_path / "b") == 2
    assert "kernel bank" in capsys.readouterr().err
    escape = ["--extra-checkpoint", "x"]
    assert _eval(tiny_checkpoint, bank_path, tmp_path / "c", *escape) == 2
    assert "NAME=DIR" in capsys.readouterr().err
