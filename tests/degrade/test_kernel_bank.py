"""The test-kernel bank: byte-determinism, layout, key derivation, disjointness from training."""

from __future__ import annotations

import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.core.digest import sha256_file
from facedeblur_jax.degrade import kernel_bank as B
from facedeblur_jax.degrade import kernels as K

SMALL = dict(sizes=(5, 3), per_size=2, canvas=7, num_steps=100)


@pytest.fixture(scope="module")
def small_bank():
    return B.make_bank(**SMALL)


def test_regenerating_gives_identical_bytes(tmp_path, small_bank):
    a = B.save_bank(tmp_path / "a.npz", small_bank)
    b = B.save_bank(tmp_path / "b.npz", B.make_bank(**SMALL))
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        infos = zf.infolist()
    # No wall-clock timestamp inside the zip (np.savez would stamp the current time).
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert [i.filename for i in infos][:3] == ["kernels.npy", "sizes.npy", "index.npy"]


def test_layout_and_round_trip(tmp_path, small_bank):
    path = B.save_bank(tmp_path / "bank.npz", small_bank)
    with np.load(path, allow_pickle=False) as f:
        assert f["kernels"].dtype == np.float32 and f["kernels"].shape == (4, 7, 7)
        assert f["sizes"].dtype == np.int32 and f["sizes"].tolist() == [3, 3, 5, 5]
        assert f["index"].tolist() == [0, 1, 0, 1]
        assert int(f["seed"]) == B.BANK_SEED and int(f["canvas"]) == 7
        assert float(f["anxiety"]) == K.DEFAULT_ANXIETY and int(f["steps"]) == 100
    loaded = B.load_bank(path)
    np.testing.assert_array_equal(loaded.kernels, small_bank.kernels)
    assert loaded.provenance() == small_bank.provenance()
    np.testing.assert_allclose(loaded.kernels.sum(axis=(1, 2)), 1.0, atol=1e-5)
    # Size-3 kernels live in the centred 3×3 of the 7×7 canvas.
    assert np.all(loaded.kernels[:2, :2] == 0) and np.all(loaded.kernels[:2, 5:] == 0)


def test_kernel_is_sample_kernel_of_its_own_key(small_bank):
    """Row (size k, index i) is ``sample_kernel(kernel_key(k, i), sizes=(k,))``."""
    kernel, size = K.sample_kernel(B.kernel_key(5, 1), sizes=(5,), canvas=7, num_steps=100)
    np.testing.assert_allclose(np.asarray(kernel), small_bank.kernels[3], atol=1e-6)
    assert int(size) == 5 and small_bank.sizes[3] == 5 and small_bank.index[3] == 1


def test_larger_bank_starts_with_the_smaller_one(small_bank):
    bigger = B.make_bank(**{**SMALL, "per_size": 3})
    for k in (3, 5):
        np.testing.assert_array_equal(
            bigger.kernels[bigger.sizes == k][:2], small_bank.kernels[small_bank.sizes == k]
        )
    other_seed = B.make_bank(**{**SMALL, "seed": 1})
    assert not np.allclose(other_seed.kernels, small_bank.kernels)


def _training_kernels(config, steps: int) -> np.ndarray:
    """The kernels the train step draws for its first ``steps`` steps (train_step.py's keys:
    ``fold_in(fold_in(state.rng, step), sample)``, state.rng from ``create_train_state``)."""
    from facedeblur_jax.degrade.synthesize import synthesize
    from facedeblur_jax.models.factory import build_discriminator, build_model
    from facedeblur_jax.state.train_state import create_train_state

    model, disc = build_model(config.model), build_discriminator(config.model)
    # Only the state's rng is needed; under jit XLA drops the parameter initialisation.
    rng = jax.jit(lambda k: create_train_state(config, model, disc, k).rng)(
        jax.random.key(config.seed)
    )
    batch = config.train.global_batch_size
    images = jnp.zeros((batch, config.image_size, config.image_size, 3), jnp.uint8)

    @jax.jit
    def kernels_of_step(step):
        step_key = jax.random.fold_in(jax.random.wrap_key_data(rng), step)
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(step_key, jnp.arange(batch))
        return synthesize(keys, images, None, config.degrade).kernels

    return np.concatenate([np.asarray(kernels_of_step(step)) for step in range(steps)])


def test_bank_meets_no_training_draw():
    config = load_config("tiny")
    bank = B.make_bank(**B.bank_kwargs_from_config(config), per_size=10)
    train = _training_kernels(config, steps=4)
    assert train.shape == (32, 7, 7) and bank.kernels.shape == (30, 7, 7)
    # max |difference| between every bank kernel and every training kernel.
    diff = np.abs(bank.kernels[:, None] - train[None]).max(axis=(2, 3))
    assert diff.min() > 1e-3
    # The same comparison does find a kernel that is drawn twice.
    again = np.abs(bank.kernels[:, None] - bank.kernels[None, :3]).max(axis=(2, 3))
    assert np.sum(again < 1e-6) == 3


def test_bank_kwargs_from_config_follow_degrade_section():
    kw = B.bank_kwargs_from_config(load_config("demo"))
    assert kw == {
        "sizes": (7, 9, 11, 13),
        "canvas": 13,
        "anxiety": 0.005,
        "num_steps": 2000,
        "max_total_length": 60.0,
        "center": "bbox",
    }


def test_bad_arguments_and_files(tmp_path, small_bank):
    with pytest.raises(ValueError, match="must not repeat"):
        B.make_bank(sizes=(3, 3), canvas=7)
    with pytest.raises(ValueError, match="odd ints"):
        B.make_bank(sizes=(9,), canvas=7)
    with pytest.raises(ValueError, match="per_size"):
        B.make_bank(sizes=(3,), per_size=0, canvas=7)
    path = B.save_bank(tmp_path / "bank.npz", small_bank)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        B.save_bank(path, small_bank)
    with pytest.raises(FileNotFoundError):
        B.load_bank(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a kernel bank"):
        B.load_bank(tmp_path / "other.npz")
    fields = {k: v for k, v in np.load(path).items()}
    fields["kernels"] = fields["kernels"] * 2
    np.savez(tmp_path / "unnormalised.npz", **fields)
    with pytest.raises(ValueError, match="sum to 1"):
        B.load_bank(tmp_path / "unnormalised.npz")
    fields["kernels"] = fields["kernels"] / 2
    fields["provenance"] = np.asarray([{"a": 1}], dtype=object)  # a pickled member
    np.savez(tmp_path / "pickled.npz", **fields)
    with pytest.raises(ValueError, match="not a kernel bank"):
        B.load_bank(tmp_path / "pickled.npz")


def test_center_is_drawn_with_recorded_and_read_back(tmp_path, small_bank):
    assert small_bank.center == K.DEFAULT_CENTER == "bbox"
    centroid = B.make_bank(**SMALL, center="centroid")
    assert centroid.provenance()["center"] == "centroid"
    # Same walks, another placement: the kernels differ but have the same sizes.
    assert not np.allclose(centroid.kernels, small_bank.kernels)
    np.testing.assert_array_equal(centroid.sizes, small_bank.sizes)
    loaded = B.load_bank(B.save_bank(tmp_path / "c.npz", centroid))
    assert loaded.center == "centroid" and loaded.provenance() == centroid.provenance()
    kernel, _ = K.sample_kernel(
        B.kernel_key(5, 1), sizes=(5,), canvas=7, num_steps=100, center="centroid"
    )
    np.testing.assert_allclose(np.asarray(kernel), centroid.kernels[3], atol=1e-6)
    with pytest.raises(ValueError, match="degrade.center"):
        B.make_bank(**SMALL, center="middle")
    assert B.bank_kwargs_from_config(load_config("tiny"))["center"] == "bbox"


def test_a_version_1_bank_loads_as_centroid_without_extras(tmp_path, small_bank):
    """A bank written before ``center``/``groups``/``extras`` existed (format 1)."""
    path = B.save_bank(tmp_path / "v2.npz", small_bank)
    old = {k: v for k, v in np.load(path).items() if k not in ("center", "groups", "extras")}
    old["version"] = np.asarray(1, np.int32)
    np.savez(tmp_path / "v1.npz", **old)
    loaded = B.load_bank(tmp_path / "v1.npz")
    assert loaded.center == "centroid" and loaded.extras == () and loaded.extra_groups == ()
    assert loaded.group_labels.tolist() == ["3", "3", "5", "5"] and loaded.drawn.all()


def _write(path, array):
    np.save(path, array, allow_pickle=False)
    return path


def test_extra_kernels_are_centred_renormalised_and_recorded(tmp_path, small_bank):
    box = np.zeros((4, 3), np.float64)
    box[1:3, :] = 0.5  # sum 3: renormalised; 4×3 padded into 7×7
    wide = np.zeros((9, 9), np.float32)
    wide[4, 2:7] = 0.2  # a 5 px horizontal line on a 9×9 grid: cropped by zero borders
    extras = [
        ("boxy", _write(tmp_path / "box.npy", box)),
        ("line", _write(tmp_path / "l.npy", wide)),
    ]
    bank = B.with_extras(small_bank, extras)
    assert len(bank) == 6 and bank.extra_groups == ("boxy", "line")
    assert bank.group_labels.tolist() == ["3", "3", "5", "5", "boxy", "line"]
    assert bank.unique_sizes == (3, 5) and bank.per_size == 2  # the drawn kernels only
    np.testing.assert_array_equal(bank.kernels[:4], small_bank.kernels)
    want_box = np.zeros((7, 7), np.float32)
    want_box[2:4, 2:5] = 1 / 6  # rows 1..2 of 4 padded (1, 2); columns padded (2, 2)
    np.testing.assert_allclose(bank.kernels[4], want_box, atol=1e-7)
    want_line = np.zeros((7, 7), np.float32)
    want_line[3, 1:6] = 0.2
    np.testing.assert_allclose(bank.kernels[5], want_line, atol=1e-7)
    assert bank.sizes[4:].tolist() == [3, 5]  # smallest centred odd squares holding them
    info = {e["name"]: e for e in bank.extras}
    assert info["boxy"]["sum"] == pytest.approx(3.0) and info["boxy"]["renormalised"]
    assert info["boxy"]["shape"] == [4, 3] and info["boxy"]["file"] == "box.npy"
    assert not info["line"]["renormalised"]
    assert info["line"]["sha256"] == sha256_file(tmp_path / "l.npy")
    # Round trip, byte-identical on a rewrite; no folder of the machine in the file.
    a = B.save_bank(tmp_path / "a.npz", bank)
    b = B.save_bank(tmp_path / "b.npz", B.with_extras(small_bank, extras))
    assert a.read_bytes() == b.read_bytes() and str(tmp_path).encode() not in a.read_bytes()
    loaded = B.load_bank(a)
    np.testing.assert_array_equal(loaded.kernels, bank.kernels)
    assert loaded.extra_groups == ("boxy", "line") and loaded.provenance() == bank.provenance()


def test_bad_extra_kernels_are_named(tmp_path, small_bank):
    good = _write(tmp_path / "good.npy", np.ones((3, 3)))
    cases = {
        "flat.npy": (np.ones(5), "2-D"),
        "neg.npy": (np.asarray([[1.0, -0.5]]), ">= 0"),
        "nan.npy": (np.asarray([[1.0, np.nan]]), "finite"),
        "zero.npy": (np.zeros((3, 3)), "positive mass"),
        "big.npy": (np.ones((9, 9)), "larger --canvas"),
        "text.npy": (np.asarray([["a"]]), "real numbers"),
    }
    for name, (array, message) in cases.items():
        path = _write(tmp_path / name, array)
        with pytest.raises(ValueError, match=message) as e:
            B.with_extras(small_bank, [("x", path)])
        assert name in str(e.value)
    np.save(tmp_path / "obj.npy", np.asarray([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy"):  # never unpickled
        B.with_extras(small_bank, [("x", tmp_path / "obj.npy")])
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="junk.npy"):
        B.with_extras(small_bank, [("x", tmp_path / "junk.npy")])
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        B.with_extras(small_bank, [("x", tmp_path / "missing.npy")])
    for name in ("27", "", "a b", "../x"):
        with pytest.raises(ValueError, match="not all digits"):
            B.with_extras(small_bank, [(name, good)])
    with pytest.raises(ValueError, match="repeat"):
        B.with_extras(small_bank, [("x", good), ("x", good)])
