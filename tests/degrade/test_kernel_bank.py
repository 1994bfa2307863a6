"""The test-kernel bank: byte-determinism, layout, key derivation, disjointness from training."""

from __future__ import annotations

import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.config import load_config
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
    from facedeblur_jax.train_state import create_train_state

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
