"""The released CVPR'18 model everywhere a model is taken: ``convert-official`` on synthetic
MAT-files in the released layout, then ``deblur``, ``eval`` (as the checkpoint and as an
extra row), ``compare``, ``export``; ``train`` refuses the kind in one line."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax import cli
from facedeblur_jax.core import imageio, sample_data
from facedeblur_jax.evaluators import psnr_ssim
from facedeblur_jax.serving import stablehlo
from facedeblur_jax.serving.loading import load_model
from tests.models.cvpr18 import synthetic_mat


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """``(plain pair's weights file, gan pair's weights file)`` of two synthetic releases."""
    folder = tmp_path_factory.mktemp("released")
    out = []
    for gan, seed in ((False, 0), (True, 1)):
        src = synthetic_mat.write_pair(folder / f"src{int(gan)}", seed=seed, gan=gan)[0].parent
        path = folder / f"official_{'gan' if gan else 'plain'}.npz"
        argv = ["convert-official", "--src", str(src), "--out", str(path)]
        assert cli.main([*argv, "--pair", "gan" if gan else "plain"]) == 0
        out.append(path)
    return tuple(out)


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory):
    path = tmp_path_factory.mktemp("bank") / "bank.npz"
    argv = ["make-kernels", "--config", "tiny", "--per-size", "1", "--out", str(path)]
    assert cli.main(argv) == 0
    return path


def test_deblur_runs_the_released_model_on_aligned_crops(official, tmp_path, capsys):
    faces = sample_data.sample_faces("test")[:2]
    out = tmp_path / "out"
    argv = ["deblur", "--checkpoint", str(official[0]), "--no-align", "--out", str(out)]
    assert cli.main([*argv, *(str(f.path) for f in faces)]) == 0
    text = capsys.readouterr().out
    assert "Shen et al. 2018" in text or "official_plain" in text
    loaded = load_model(official[0])
    for face in faces:
        written = imageio.load_image(out / f"{face.path.stem}.png")
        original = imageio.load_image(face.path)
        assert written.shape == original.shape
        # What the command wrote is the model's output on the face at 128 px, resized back.
        x = imageio.resize(original, 128).astype(np.float32)[None] / 255.0
        y = np.clip(np.asarray(loaded.model.apply(loaded.variables, jnp.asarray(x)).y[0]), 0, 1)
        expected = imageio.resize(imageio.to_uint8(y), original.shape[0])
        assert np.abs(written.astype(int) - expected.astype(int)).mean() < 2.0


def test_eval_scores_it_without_a_g_c_row_and_as_an_extra_row(
    official, small_bank, tmp_path, capsys
):
    plain, gan = official
    out = tmp_path / "eval"
    argv = ["eval", "--checkpoint", str(plain), "--data", "sample", "--kernels", str(small_bank)]
    argv += ["--max-faces", "3", "--batch-size", "4", "--no-progress", "--out", str(out)]
    argv += ["--extra-checkpoint", f"Shen et al. (2018), GAN pair={gan}", "--priors", "zeros"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    results = json.loads((out / "results.json").read_text())
    rows = list(results["table"]["overall"])
    assert psnr_ssim.COARSE not in rows
    assert rows[:2] == [psnr_ssim.BLURRED, psnr_ssim.FULL]
    assert "Shen et al. (2018), GAN pair" in rows and "full model, prior: zeros" in rows
    assert results["checkpoint"]["image_size"] == 128
    per_image = np.load(out / "per_image.npz", allow_pickle=False)
    assert np.all(np.isfinite(per_image["psnr"]))

    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "tables": {"1": "released models"},
                "rows": [
                    {"table": "1", "label": "blurred", "eval": "eval", "method": "blurred input"},
                    {
                        "table": "1",
                        "label": "Shen et al. (2018), released",
                        "eval": "eval",
                        "method": "full model",
                    },
                ],
            }
        )
    )
    assert cli.main(["compare", "--spec", str(spec), "--out", str(tmp_path / "cmp")]) == 0
    assert "Shen et al. (2018), released" in capsys.readouterr().out


def test_export_serialises_the_released_model(official, tmp_path):
    path = tmp_path / "official.stablehlo"
    assert cli.main(["export", "--checkpoint", str(official[0]), "--out", str(path)]) == 0
    fn = stablehlo.load_exported(path)
    loaded = load_model(official[0])
    x = np.random.default_rng(0).random((2, 128, 128, 3)).astype(np.float32)
    want = np.asarray(loaded.model.apply(loaded.variables, jnp.asarray(x)).y)  # not clipped
    np.testing.assert_allclose(np.asarray(fn(x)), want, atol=1e-5)
    assert cli.main(["export", "--checkpoint", str(official[0]), "--out", str(tmp_path / "c"),
                     "--upto", "coarse"]) == 2  # fmt: skip


def test_train_refuses_the_released_kind(tmp_path, capsys):
    argv = ["train", "--config", "tiny", "--workdir", str(tmp_path / "w")]
    assert cli.main([*argv, "--config.model.kind=cvpr18"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.kind = 'cvpr18'" in err and "convert-official" in err
    assert not (tmp_path / "w").exists()
