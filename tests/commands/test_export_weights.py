"""``facedeblur export-weights`` through the real entry point: writes the tiny checkpoint's
generator with its name, card and step, refuses to replace a file, names bad inputs in one
line and writes nothing then."""

from __future__ import annotations

import json

import numpy as np

from facedeblur_jax import cli
from facedeblur_jax.serving.loading import load_model
from facedeblur_jax.serving.weights_file import FORMAT


def _export(*argv) -> int:
    return cli.main(["export-weights", *argv])


def test_writes_the_generator_with_name_card_and_step(tiny_checkpoint, tmp_path, capsys):
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"data": "sample faces", "metrics": {"psnr": 1.5}}))
    step_dir = tiny_checkpoint / "checkpoints" / "2"
    out = tmp_path / "w" / "model.npz"
    assert _export("--checkpoint", str(step_dir), "--out", str(out), "--card-json", str(card)) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out}: generator 'model' at step 2, 32 px; ")
    assert "BatchNorm statistics" in printed and printed.count("\n") == 1
    with np.load(out, allow_pickle=False) as data:
        assert str(data["__format__"]) == FORMAT == "facedeblur_jax.generator.v2"
        assert not [k for k in data.files if k.startswith(("params/disc", "opt_state"))]
        assert json.loads(str(data["__card__"]))["metrics"] == {"psnr": 1.5}
    loaded = load_model(out)
    assert loaded.meta["name"] == "model" and loaded.step == 2

    # A weights file is a checkpoint too: renamed, without a card.
    again = tmp_path / "renamed.npz"
    assert _export("--checkpoint", str(out), "--out", str(again), "--name", "other") == 0
    assert load_model(again).meta["name"] == "other" and load_model(again).meta["card"] == {}


def test_refuses_to_overwrite_and_names_bad_inputs(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "model.npz"
    out.write_bytes(b"keep me")
    ckpt = str(tiny_checkpoint)

    def error(*argv) -> str:
        assert _export(*argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("facedeblur export-weights: error: ") and err.count("\n") == 1
        return err

    assert "pass --overwrite" in error("--checkpoint", ckpt, "--out", str(out))
    assert out.read_bytes() == b"keep me"
    assert "must end in .npz" in error("--checkpoint", ckpt, "--out", str(tmp_path / "m.bin"))
    new = tmp_path / "new.npz"
    assert "nope" in error("--checkpoint", str(tmp_path / "nope"), "--out", str(new))
    bad_card = tmp_path / "card.json"
    bad_card.write_text("[1, 2")
    err = error("--checkpoint", ckpt, "--out", str(new), "--card-json", str(bad_card))
    assert f"card file {bad_card} is not valid JSON" in err
    bad_card.write_text("[1, 2]")
    err = error("--checkpoint", ckpt, "--out", str(new), "--card-json", str(bad_card))
    assert "must hold a JSON object" in err
    err = error("--checkpoint", ckpt, "--out", str(new), "--card-json", str(tmp_path / "no.json"))
    assert "card file not found" in err
    assert "--name must be" in error("--checkpoint", ckpt, "--out", str(new), "--name", " ")
    assert not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "model.npz"]

    # --overwrite replaces the file (atomically: no temporary file is left beside it).
    assert _export("--checkpoint", ckpt, "--out", str(out), "--overwrite") == 0
    assert load_model(out).step == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "model.npz"]
