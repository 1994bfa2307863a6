import jax
import jax.numpy as jnp
import numpy as np

from facedeblur_jax import explore


def test_f_scores_hand_computed():
    gt = np.array([[0, 0, 1, 1], [2, 2, 2, 0]])
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    f = explore.f_scores(pred, gt, num_classes=4)
    # class 0: tp 2, pred 3, gt 3 → 4/6; class 1: tp 2, pred 3, gt 2 → 4/5; class 2: 4/5.
    np.testing.assert_allclose(f[:3], [4 / 6, 4 / 5, 4 / 5])
    assert np.isnan(f[3])


def test_priors():
    labels = jnp.array([[[0, 4], [6, 10]], [[1, 1], [1, 1]]])
    p = explore.one_hot_prior(labels)
    assert p.shape == (2, 2, 2, 11) and float(p[0, 0, 1, 4]) == 1.0
    assert float(explore.zero_prior(p).sum()) == 0.0
    np.testing.assert_array_equal(explore.other_face_prior(p)[0], p[1])
    shuffled = explore.channel_shuffled_prior(p, jax.random.key(0))
    np.testing.assert_allclose(shuffled.sum(-1), 1.0)
    assert not np.array_equal(shuffled, p)


def test_part_error_maps_mask_only_key_parts():
    labels = np.array([[[4, 1], [6, 0]]])
    y = np.ones((1, 2, 2, 3), np.float32)
    maps = explore.part_error_maps(y, np.zeros_like(y), labels)
    assert float(maps["all"].sum()) == 12.0
    assert float(maps["left_eye"].sum()) == 3.0 and float(maps["nose"].sum()) == 3.0
    assert float(maps["right_eye"].sum()) == 0.0
    assert "skin" not in maps


def test_official_kernel_only_from_the_file_the_variable_names(tmp_path, monkeypatch):
    import pytest
    import scipy.io

    monkeypatch.delenv(explore.OFFICIAL_KERNEL_ENV, raising=False)
    assert explore.official_test_kernel() is None  # no default location
    kernel = np.random.default_rng(0).random((27, 27))
    scipy.io.savemat(tmp_path / "kernel_27_(1).mat", {"kernel": kernel})  # the authors' layout
    np.save(tmp_path / "k.npy", kernel.astype(np.float32))
    for name in ("kernel_27_(1).mat", "k.npy"):
        monkeypatch.setenv(explore.OFFICIAL_KERNEL_ENV, str(tmp_path / name))
        got = explore.official_test_kernel()
        assert got.dtype == np.float32 and np.array_equal(got, kernel.astype(np.float32))
    monkeypatch.setenv(explore.OFFICIAL_KERNEL_ENV, str(tmp_path / "missing.npy"))
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        explore.official_test_kernel()
