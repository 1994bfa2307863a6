"""``facedeblur convert-official`` + the ``cvpr18`` model kind against the independent NumPy
reference of ``DL_deblur_net18.m`` (``reference.py``), on synthetic MAT-files in the released
layout (``synthetic_mat.py``): P's logits and both scales of G, batch 1 and batch 4; a batch
of N equals N single images; every refusal names its entry."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax import cli
from facedeblur_jax.serving.loading import describe, load_model

from . import reference, synthetic_mat

RTOL = 1e-5  # float32 against float64, relative to each output's largest magnitude


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """The small synthetic pair, converted; ``(weights file, reference params)``."""
    folder = tmp_path_factory.mktemp("official")
    g_path, p_path = synthetic_mat.write_pair(folder / "release", seed=3)
    out = folder / "official.npz"
    assert cli.main(["convert-official", "--src", str(g_path.parent), "--out", str(out)]) == 0
    net_g, net_p = reference.load_nets(g_path, p_path)
    return out, reference.params_from_structs(net_g, net_p)


def _inputs(batch: int, seed: int = 0) -> np.ndarray:
    """8-bit faces ``uint8[B, 64, 64, 3]`` (any size divisible by 32 runs the graph)."""
    return np.random.default_rng(seed).integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)


def _assert_close(got, want, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, what
    scale = np.abs(want).max()
    err = np.abs(got - want).max()
    assert err <= RTOL * scale, f"{what}: max error {err:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize("batch", [1, 4])
def test_the_converted_model_computes_the_released_graph(converted, batch):
    path, params = converted
    loaded = load_model(path)
    assert loaded.model.kind == "cvpr18" and not loaded.model.has_coarse
    x8 = _inputs(batch)
    # Ours reads x / 255 and scales it by 255/256 inside; the released script divides by 256.
    out = loaded.model.apply(loaded.variables, jnp.asarray(x8, jnp.float32) / 255.0)
    want = reference.forward(params, x8.astype(np.float64) / 256.0)
    _assert_close(out.parsing_logits, want["logits"], "P's logits")
    _assert_close(out.prior, want["prior"], "the prior")
    half, full = out.fine[0]
    _assert_close(half, want["half"], "G's half scale")
    _assert_close(full, want["full"], "G's full scale")
    assert out.coarse == () and out.y is full


def test_a_batch_equals_its_images_one_by_one(converted):
    loaded = load_model(converted[0])
    x = jnp.asarray(_inputs(4, seed=1), jnp.float32) / 255.0
    fn = jax.jit(lambda v, x: loaded.model.apply(v, x).y)
    together = np.asarray(fn(loaded.variables, x))
    for i in range(4):
        alone = np.asarray(fn(loaded.variables, x[i : i + 1]))[0]
        np.testing.assert_allclose(together[i], alone, rtol=0, atol=1e-5)


def test_the_parts_are_reached_through_the_models_methods(converted):
    path, params = converted
    loaded = load_model(path)
    x8 = _inputs(2, seed=2)
    x = jnp.asarray(x8, jnp.float32) / 255.0
    want = reference.forward(params, x8.astype(np.float64) / 256.0)
    _assert_close(loaded.model.apply(loaded.variables, x, method="parse"), want["logits"], "parse")
    prior = jnp.asarray(want["prior"], jnp.float32)
    given = loaded.model.apply(loaded.variables, x, prior, method="deblur_given_prior")
    _assert_close(given.y, want["full"], "deblur_given_prior")
    with pytest.raises(ValueError, match="no coarse net"):
        loaded.model.apply(loaded.variables, x, upto="coarse")


def test_stored_moments_are_the_running_averages(tmp_path):
    g_path, p_path = synthetic_mat.write_pair(tmp_path / "release", seed=4)
    out = tmp_path / "moments.npz"
    argv = ["convert-official", "--g", str(g_path), "--p", str(p_path), "--bn", "moments"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    loaded = load_model(out)
    assert loaded.config.model.parsing_norm == "batch" and "batch_stats" in loaded.variables
    params = reference.params_from_structs(*reference.load_nets(g_path, p_path))
    x8 = _inputs(2, seed=5)
    got = loaded.model.apply(loaded.variables, jnp.asarray(x8, jnp.float32) / 255.0)
    want = reference.forward(params, x8.astype(np.float64) / 256.0, bn="moments")
    _assert_close(got.parsing_logits, want["logits"], "P's logits (moments)")
    _assert_close(got.y, want["full"], "G's output (moments)")


def test_the_card_names_the_sources_and_the_pair(converted, tmp_path):
    loaded = load_model(converted[0])
    card = loaded.meta["card"]
    assert card["pair"] == "plain" and "swapped" in card["trained_with"]
    assert set(card["files"]) == {"net_G", "net_P"}
    assert card["files"]["net_G"]["name"] == "net_G_P_S_F.mat"
    assert len(card["files"]["net_P"]["sha256"]) == 64
    assert card["model"]["parsing_features"] == list(synthetic_mat.SMALL_P.enc)
    assert card["model"]["num_classes"] == synthetic_mat.SMALL_P.classes
    assert "Shen et al. 2018" in describe(loaded) and "128 px" in describe(loaded)
    json.dumps(card)
    gan = synthetic_mat.write_pair(tmp_path / "gan", seed=3, gan=True)[0].parent
    out = tmp_path / "gan.npz"
    argv = ["convert-official", "--src", str(gan), "--pair", "gan", "--out", str(out)]
    assert cli.main(argv) == 0
    assert load_model(out).meta["card"]["pair"] == "gan"


@pytest.mark.parametrize("name", sorted(synthetic_mat.BROKEN))
def test_every_broken_release_is_refused_naming_the_entry(name, tmp_path, capsys):
    g_path, _ = synthetic_mat.write_broken(tmp_path / "release", name)
    out = tmp_path / "x.npz"
    assert cli.main(["convert-official", "--src", str(g_path.parent), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("facedeblur convert-official: error: ")
    entry = synthetic_mat.BROKEN[name][1]
    if entry.startswith("net_"):
        assert entry in err, err
    else:  # a 3×3 net_P(1,3) (the sum at l.55 would not fit): named by its entry
        assert "net_P(1,3).w: expected 5×5×" in err, err
    assert not out.exists()


def test_refusals_of_the_files_themselves(tmp_path, capsys):
    def run(*argv):
        code = cli.main(["convert-official", *argv, "--out", str(tmp_path / "o.npz")])
        return code, capsys.readouterr().err.strip()

    code, err = run("--src", str(tmp_path / "missing"))
    assert code == 2 and "--src folder not found" in err
    (tmp_path / "empty").mkdir()
    code, err = run("--src", str(tmp_path / "empty"))
    assert code == 2 and "net_G file not found" in err
    h5 = tmp_path / "v73"
    h5.mkdir()
    for name in ("net_G_P_S_F.mat", "net_P_P_S_F.mat"):  # the header of a v7.3 MAT-file
        (h5 / name).write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64" + bytes(200))
    code, err = run("--src", str(h5))
    assert code == 2 and "v7.3 (HDF5)" in err and "'-v7'" in err
    other = tmp_path / "other"
    g_path, p_path = synthetic_mat.write_pair(other)
    code, err = run("--g", str(p_path), "--p", str(g_path))
    assert code == 2 and "holds no variable net_G (found: ['net_P'])" in err
    assert not (tmp_path / "o.npz").exists()
