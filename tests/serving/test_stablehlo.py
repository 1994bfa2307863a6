"""facedeblur export: StableHLO round trip with a symbolic batch, equal to the live model."""

import json

import jax
import numpy as np
import pytest

from facedeblur_jax import cli
from facedeblur_jax.serving import stablehlo as export
from facedeblur_jax.serving.loading import load_model


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_model(tiny_checkpoint)


@pytest.mark.parametrize("upto", ["fine", "coarse"])
def test_round_trip_matches_live_model_for_two_batch_sizes(
    tiny_checkpoint, loaded, tmp_path, upto, capsys
):
    path = tmp_path / f"{upto}.stablehlo"
    argv = ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(path)]
    assert cli.main([*argv, "--upto", upto]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    (aval,) = exported.in_avals
    assert str(aval.shape[0]) == "b" and aval.shape[1:] == (32, 32, 3)
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    assert meta["upto"] == upto and meta["image_size"] == 32 and meta["platforms"] == ["cpu"]
    reloaded = export.load_exported(path)
    for batch in (1, 3):
        x = jax.random.uniform(jax.random.key(batch), (batch, 32, 32, 3))
        live = loaded.model.apply(loaded.variables, x, upto=upto).y
        out = exported.call(x)
        assert out.shape == (batch, 32, 32, 3)
        np.testing.assert_allclose(np.asarray(out), np.asarray(live), atol=1e-5)
        np.testing.assert_array_equal(np.asarray(reloaded(x)), np.asarray(out))


def test_export_never_overwrites(tiny_checkpoint, tmp_path, capsys):
    path = tmp_path / "model.stablehlo"
    path.write_bytes(b"keep")
    argv = ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(path)]
    assert cli.main(argv) == 2
    assert "refusing to overwrite existing file" in capsys.readouterr().err
    assert path.read_bytes() == b"keep"
    assert cli.main([*argv, "--overwrite"]) == 0
    assert export.load_exported(path)(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 32, 32, 3)
