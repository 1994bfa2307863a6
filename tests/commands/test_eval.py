"""facedeblur eval end to end on a tiny checkpoint: tables, plots, grid, parsing F-scores,
scores independent of batching, never overwriting, bad inputs named."""

from __future__ import annotations

import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from facedeblur_jax import cli
from facedeblur_jax.core.digest import sha256_file
from facedeblur_jax.degrade import kernel_bank
from facedeblur_jax.evaluators import psnr_ssim
from facedeblur_jax.evaluators.faceset import load_faces
from tests.evaluators import strict_json


def _eval(ckpt, bank, out, *extra):
    argv = ["eval", "--checkpoint", str(ckpt), "--data", "sample", "--kernels", str(bank)]
    return cli.main([*argv, "--out", str(out), "--max-faces", "3", "--no-progress", *extra])


@pytest.fixture(scope="module")
def evaluated(tiny_checkpoint, bank_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    extra = ["--extra-checkpoint", f"same={tiny_checkpoint}", "--batch-size", "4"]
    extra += ["--priors", "zeros,shuffled"]
    assert _eval(tiny_checkpoint, bank_path, out, *extra) == 0
    return out


def test_eval_writes_tables_plot_and_grid(evaluated, bank_path):
    results = strict_json.loads((evaluated / "results.json").read_text())
    fed = ["full model, prior: zeros", "full model, prior: shuffled"]
    methods = ["blurred input", "G_c", "full model", *fed, "same"]
    table = results["table"]
    assert results["priors"]["fed"] == ["zeros", "shuffled"]
    assert set(results["checkpoint"]["trained_priors"].values()) == {"predicted"}
    assert table["methods"] == methods and table["sizes"] == [3, 5, 7]
    assert results["data"]["num_faces"] == 3 and results["bank"]["num_kernels"] == 6
    assert results["bank"]["sha256"] == sha256_file(bank_path)
    assert results["checkpoint"]["image_size"] == 32 and results["checkpoint"]["step"] == 2
    for m in methods:
        o = table["overall"][m]
        assert o["num_images"] == 18 and 10 < o["psnr_worst"] <= o["psnr_mean"] < 60
        assert 0 < o["ssim_worst"] <= o["ssim_mean"] <= 1
        assert all(table["per_size"][m][str(k)]["count"] == 6 for k in (3, 5, 7))
    # The extra checkpoint is the same model on the same blurred inputs: the same numbers.
    # (Up to float rounding: the two are compiled as different XLA programs.)
    # So is the untrained G_f fed other priors: its zero last convs make it the identity.
    for key, value in table["overall"]["full model"].items():
        for m in ["same", *fed]:
            assert table["overall"][m][key] == pytest.approx(value, rel=1e-5, abs=1e-6)
    # Bigger kernels blur more.
    blurred = table["per_size"]["blurred input"]
    assert blurred["3"]["psnr"] > blurred["7"]["psnr"]

    md = (evaluated / "results.md").read_text()
    assert "| Method | 3×3 PSNR | 3×3 SSIM | 5×5 PSNR" in md
    assert "| Method | Average PSNR | Worst PSNR | Average SSIM | Worst SSIM |" in md
    for m in methods:
        assert md.count(f"\n| {m} | ") == 2  # one row in each table
    assert "dm-pix" in md and "∞" in md  # the metric conventions are stated

    # Parsing F-scores (Table 3 layout) over the same 18 blurred images: the sample faces
    # have parsing labels.
    parsing = results["parsing"]
    assert parsing["inputs"] == ["clear", "blurred", "deblurred"]
    assert parsing["num_images"] == 18 and parsing["num_faces"] == 3
    assert parsing["classes"] == [
        "skin",
        "left_brow",
        "right_brow",
        "left_eye",
        "right_eye",
        "nose",
        "upper_lip",
        "inner_mouth",
        "lower_lip",
        "hair",
    ]
    for name in parsing["inputs"]:
        assert 0 <= float(parsing["average"][name]) <= 1
    assert "## Parsing F-scores of P (Table 3 layout)" in md
    assert "| Class | clear | blurred | deblurred |" in md and "\n| average | " in md

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
    from facedeblur_jax.serving.loading import load_model

    with np.load(evaluated / "per_image.npz") as f:
        psnr, ssim, methods = f["psnr"], f["ssim"], f["methods"].tolist()
        assert psnr.shape == (6, 3, 6) and f["kernel_sizes"].tolist() == [3, 3, 5, 5, 7, 7]
        names, index = f["face_names"].tolist(), f["face_index"].tolist()
    # --max-faces 3 of the 40 test faces: records 0, 13, 26 (spread over the identities).
    assert names == ["test/id00_0000", "test/id07_0001", "test/id16_0000"]
    assert index == [0, 13, 26]
    loaded = load_model(tiny_checkpoint)
    bank = kernel_bank.load_bank(bank_path)
    faces = load_faces(loaded.config, {"source": "sample"}, "test", max_faces=3)
    assert faces.names == names and faces.split_size == 40
    i, j = 2, 5
    sharp = jnp.asarray(faces.images[i : i + 1], jnp.float32) / 255.0
    blurred = psnr_ssim.blur_with_bank(
        sharp, jnp.asarray(bank.kernels[j : j + 1]), jnp.asarray([26]), jnp.asarray([j])
    )
    y = jnp.clip(loaded.model.apply(loaded.variables, blurred).y, 0, 1)
    for method, image in (("blurred input", blurred), ("full model", y)):
        s = psnr_ssim.per_image_metrics(image, sharp)
        m = methods.index(method)
        assert psnr[m, i, j] == pytest.approx(float(s["psnr"][0]), abs=1e-3)
        assert ssim[m, i, j] == pytest.approx(float(s["ssim"][0]), abs=1e-4)


def test_compare_reads_a_real_eval_every_pair_and_its_parsing(evaluated, tmp_path, capsys):
    """``facedeblur compare`` on this eval's folder: the paired differences of a three-row
    table from per_image.npz directly, and the parsing table as the eval wrote it."""
    import json

    spec = tmp_path / "spec.json"
    rows = [
        {"table": "5", "label": m, "eval": str(evaluated), "method": m}
        for m in ("blurred input", "G_c", "full model")
    ]
    parsing = [{"label": "P", "eval": str(evaluated)}]
    spec.write_text(json.dumps({"tables": {"5": "strategy"}, "rows": rows, "parsing": parsing}))
    assert cli.main(["compare", "--spec", str(spec), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    saved = strict_json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    with np.load(evaluated / "per_image.npz") as f:
        methods = f["methods"].tolist()
        per_face = {m: f["psnr"][methods.index(m)].astype(np.float64).mean(1) for m in methods}
    (table,) = saved["tables"]
    pairs = {(p["a"], p["b"]): p for p in table["paired"]}
    assert len(pairs) == 3
    for (a, b), p in pairs.items():
        d = per_face[b] - per_face[a]
        assert p["psnr_delta"] == pytest.approx(d.mean(), abs=1e-9)
        assert p["psnr_delta_ci95"] == pytest.approx(1.96 * d.std(ddof=1) / np.sqrt(3))
    results = strict_json.loads((evaluated / "results.json").read_text())
    (got,) = saved["parsing"]
    assert got["checkpoint_step"] == 2 and got["num_images"] == 18
    assert got["f_score"] == results["parsing"]["f_score"]
    assert got["average"] == results["parsing"]["average"]
    assert "### P's parsing F-scores: P" in out and "Paired differences within Table 5" in out


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
    """A bank with an extra kernel (``facedeblur make-kernels --extra``): its own Table 9
    column, outside Table 10's numbers."""
    line = np.zeros((7, 7), np.float32)
    line[3, 1:6] = 0.2
    np.save(tmp_path / "line.npy", line)
    bank = kernel_bank.make_bank(sizes=(3, 5), per_size=1, canvas=7, num_steps=200)
    bank = kernel_bank.with_extras(bank, [("line5", tmp_path / "line.npy")])
    path = kernel_bank.save_bank(tmp_path / "bank.npz", bank)
    assert _eval(tiny_checkpoint, path, tmp_path / "out", "--max-faces", "2") == 0
    results = strict_json.loads((tmp_path / "out" / "results.json").read_text())
    table = results["table"]
    assert table["sizes"] == [3, 5] and table["extra_groups"] == ["line5"]
    for m in table["methods"]:
        assert table["per_size"][m]["line5"]["count"] == 2
        assert table["overall"][m]["num_images"] == 4  # the drawn kernels only
    assert results["bank"]["provenance"]["extras"][0]["file"] == "line.npy"
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| line5 PSNR | line5 SSIM |" in md
    assert "- Extra kernel `line5`: `line.npy` (7×7, size 5)" in md


def test_eval_never_overwrites(evaluated, bank_path, tiny_checkpoint, capsys):
    before = {p.name: p.read_bytes() for p in evaluated.iterdir()}
    assert _eval(tiny_checkpoint, bank_path, evaluated) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite existing file" in err and "results.json" in err
    assert {p.name: p.read_bytes() for p in evaluated.iterdir()} == before


def test_bad_inputs_are_named(bank_path, tiny_checkpoint, tmp_path, capsys):
    assert _eval(tiny_checkpoint, bank_path, tmp_path / "a", "--data", "/no/such") == 2
    assert "neither 'sample', 'faces' nor an existing folder" in capsys.readouterr().err
    assert _eval(tiny_checkpoint, tmp_path / "missing.npz", tmp_path / "b") == 2
    assert "kernel bank" in capsys.readouterr().err
    escape = ["--extra-checkpoint", "x"]
    assert _eval(tiny_checkpoint, bank_path, tmp_path / "c", *escape) == 2
    assert "NAME=DIR" in capsys.readouterr().err


def test_eval_of_a_folder_without_parsing_labels(bank_path, tiny_checkpoint, tmp_path):
    """An image folder with a test/ split and no labels: scored, the parsing table skipped."""
    import shutil

    from facedeblur_jax.core import sample_data

    for face in sample_data.sample_faces("test")[:2]:
        (tmp_path / "faces" / "test").mkdir(parents=True, exist_ok=True)
        shutil.copy(face.path, tmp_path / "faces" / "test" / pathlib.Path(face.path).name)
    out = tmp_path / "out"
    assert _eval(tiny_checkpoint, bank_path, out, "--data", str(tmp_path / "faces")) == 0
    results = strict_json.loads((out / "results.json").read_text())
    assert results["data"]["num_faces"] == 2 and results["data"]["split"] == "test"
    assert results["parsing"] == {"skipped": "the test faces have no parsing labels"}
    md = (out / "results.md").read_text()
    assert "Not computed: the test faces have no parsing labels." in md
