"""weights_file: the tiny checkpoint's generator through a weights file loads back equal to
the Orbax restore (variables, config, deblurred images, eval scores, the exported module);
files of another network, an older layout, a missing, extra or wrong-shaped variable or
pickled objects are refused in one message naming the file and the key."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from facedeblur_jax import cli
from facedeblur_jax.config import load_config
from facedeblur_jax.core.imageio import load_image, resize_hw
from facedeblur_jax.core.sample_data import sample_faces
from facedeblur_jax.degrade import kernel_bank
from facedeblur_jax.models.npz_weights import read_tagged_npz, write_tagged_npz
from facedeblur_jax.serving import loading, weights_file
from facedeblur_jax.serving import stablehlo as export
from facedeblur_jax.serving.loading import deblur_array, load_model
from facedeblur_jax.state import checkpoint as ckpt_lib


@pytest.fixture(scope="module")
def orbax(tiny_checkpoint):
    return load_model(tiny_checkpoint)


@pytest.fixture(scope="module")
def from_file(tiny_weights_file):
    return load_model(tiny_weights_file)


def _faces(n: int, size: int) -> np.ndarray:
    """``uint8[n, size, size, 3]``: bundled test faces resized to the model's input."""
    return np.stack([resize_hw(load_image(f.path), size, size) for f in sample_faces("test")[:n]])


def test_round_trip_gives_the_checkpoints_variables_config_and_outputs(orbax, from_file):
    assert jax.tree.structure(from_file.variables) == jax.tree.structure(orbax.variables)
    for a, b in zip(
        jax.tree.leaves(from_file.variables), jax.tree.leaves(orbax.variables), strict=True
    ):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert set(from_file.variables["params"]) == {"coarse", "parsing", "fine_0"}
    assert from_file.config.to_dict() == orbax.config.to_dict()
    assert from_file.step == orbax.step == 2
    assert from_file.meta["name"] == "tiny" and from_file.meta["phase"] == "done"
    assert from_file.meta["card"] == {"data": "the bundled sample faces"}
    assert loading.describe(from_file) == "'tiny' (the bundled sample faces; 32 px; step 2)"
    faces = _faces(5, 32)
    # G_c was trained two steps: the output is not the input, and the same from both.
    out = deblur_array(from_file, faces, batch_size=4)
    np.testing.assert_array_equal(out, deblur_array(orbax, faces, batch_size=4))
    assert np.abs(out - faces / 255.0).mean() > 1e-4


def test_eval_takes_the_file(tiny_weights_file, tmp_path):
    bank = kernel_bank.make_bank(sizes=(3, 5), per_size=1, canvas=5, num_steps=200)
    bank_path = kernel_bank.save_bank(tmp_path / "bank.npz", bank)
    argv = ["eval", "--checkpoint", str(tiny_weights_file), "--data", "sample", "--no-progress"]
    argv += ["--kernels", str(bank_path), "--out", str(tmp_path / "eval"), "--max-faces", "2"]
    assert cli.main(argv) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["checkpoint"]["step"] == 2 and results["checkpoint"]["image_size"] == 32
    assert results["table"]["overall"]["full model"]["num_images"] == 4


def test_export_takes_the_file(tiny_weights_file, orbax, tmp_path):
    path = tmp_path / "m.stablehlo"
    assert cli.main(["export", "--checkpoint", str(tiny_weights_file), "--out", str(path)]) == 0
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    live = orbax.model.apply(orbax.variables, x).y
    np.testing.assert_allclose(np.asarray(export.load_exported(path)(x)), live, atol=1e-5)


def test_local_paths_are_cleared_and_the_rest_kept():
    config = load_config("tiny", {"data.root": "/home/me/faces", "train.init_from": "runs/a"})
    config.evals.psnr_ssim.kernels = "/home/me/bank.npz"
    shared = weights_file.shareable_config(config)
    assert shared.data.root == shared.train.init_from == shared.evals.psnr_ssim.kernels == ""
    assert config.data.root == "/home/me/faces"  # the copy is cleared, not the config
    diff = ckpt_lib.config_diff(config, shared)
    assert set(diff) == {"data.root", "train.init_from", "evals.psnr_ssim.kernels"}


def _rewrite(src, dst, *, fmt=weights_file.FORMAT, edit=None):
    """``src``'s arrays and metadata written to ``dst`` with ``fmt``, after ``edit(arrays)``."""
    arrays, meta = read_tagged_npz(src, fmt=weights_file.FORMAT, what="x", writer="x")
    if edit is not None:
        edit(arrays)
    return write_tagged_npz(dst, arrays, fmt=fmt, what="x", meta=meta)


def _refused(path, *words):
    with pytest.raises(ValueError) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message


def test_bad_files_are_refused_naming_file_and_key(tiny_weights_file, tmp_path):
    key = "params/coarse/scale0/conv_in/kernel"
    arrays, _ = read_tagged_npz(tiny_weights_file, fmt=weights_file.FORMAT, what="x", writer="x")
    assert key in arrays

    other = _rewrite(tiny_weights_file, tmp_path / "other.npz", fmt="facedeblur_jax.vgg_face.v1")
    _refused(other, "not a generator weights file", "'facedeblur_jax.vgg_face.v1'")
    older = _rewrite(tiny_weights_file, tmp_path / "older.npz", fmt="facedeblur_jax.generator.v1")
    _refused(older, "layout '1'", "builds only layout 2")

    missing = _rewrite(tiny_weights_file, tmp_path / "missing.npz", edit=lambda a: a.pop(key))
    _refused(missing, f"{key} is missing")

    def reshape(a):
        a[key] = a[key][..., :1]

    wrong = _rewrite(tiny_weights_file, tmp_path / "shape.npz", edit=reshape)
    _refused(wrong, key, "has shape", "the model's is")

    def add(a):
        a["params/coarse/extra/kernel"] = np.zeros(3, np.float32)

    extra = _rewrite(tiny_weights_file, tmp_path / "extra.npz", edit=add)
    _refused(extra, "params/coarse/extra/kernel is not a variable of the model")

    def poison(a):
        a[key] = np.full_like(a[key], np.nan)

    _refused(_rewrite(tiny_weights_file, tmp_path / "nan.npz", edit=poison), key, "non-finite")

    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __format__=weights_file.FORMAT, obj=np.array([{"a": 1}], dtype=object))
    _refused(pickled, "not a generator weights file", "pickled Python objects, which are never")

    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    _refused(text, "not a generator weights file")
    with pytest.raises(FileNotFoundError, match="generator weights file not found"):
        load_model(tmp_path / "absent.npz")


def test_a_file_whose_config_has_an_older_layout_is_refused(tiny_weights_file, tmp_path):
    arrays, meta = read_tagged_npz(tiny_weights_file, fmt=weights_file.FORMAT, what="x", writer="x")
    config = json.loads(str(meta["config"]))
    config["model"]["layout_version"] = 1
    meta["config"] = np.asarray(json.dumps(config))
    path = write_tagged_npz(
        tmp_path / "old.npz", arrays, fmt=weights_file.FORMAT, what="x", meta=meta
    )
    with pytest.raises(ckpt_lib.CheckpointError, match="model.layout_version = 1"):
        load_model(path)
