import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.explore import notebook as explore
from facedeblur_jax.models import priors


def test_f_scores_hand_computed():
    gt = np.array([[0, 0, 1, 1], [2, 2, 2, 0]])
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    f = explore.f_scores(pred, gt, num_classes=4)
    # class 0: tp 2, pred 3, gt 3 → 4/6; class 1: tp 2, pred 3, gt 2 → 4/5; class 2: 4/5.
    np.testing.assert_allclose(f[:3], [4 / 6, 4 / 5, 4 / 5])
    assert np.isnan(f[3])


def test_priors():
    labels = jnp.array([[[0, 4], [6, 10]], [[1, 1], [1, 1]], [[2, 3], [5, 7]]])
    p = priors.ground_truth(labels, 11)
    assert p.shape == (3, 2, 2, 11) and float(p[0, 0, 1, 4]) == 1.0
    assert float(priors.zeros(labels.shape, 11).sum()) == 0.0
    # Face i gets face (i + 3 // 2) mod 3's labels: 0 <- 1, 1 <- 2, 2 <- 0.
    other = priors.shuffled(labels, jnp.arange(3), 11)
    for i, j in [(0, 1), (1, 2), (2, 0)]:
        np.testing.assert_array_equal(other[i], p[j])
    permuted = priors.permute_classes(p, jax.random.key(0))
    np.testing.assert_allclose(permuted.sum(-1), 1.0)
    assert not np.array_equal(permuted, p)
    assert priors.fed("predicted", num_classes=11, batch_hw=(3, 2, 2)) is None
    np.testing.assert_array_equal(
        priors.fed("ground_truth", num_classes=11, batch_hw=(3, 2, 2), labels=labels), p
    )
    with pytest.raises(ValueError, match="unknown prior 'maybe'"):
        priors.fed("maybe", num_classes=11, batch_hw=(3, 2, 2))
    with pytest.raises(ValueError, match="needs the labels of the whole face set"):
        priors.fed("shuffled", num_classes=11, batch_hw=(3, 2, 2), labels=labels)


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


def test_fine_input_weights_read_each_input_group():
    """The RMS per group is the RMS of that slice of the first conv's input channels, on a
    real G_f of the tiny config (scale 0: x, y_c, p; scale 1: x, y_c, upsampled, p)."""
    import jax

    from facedeblur_jax.config import load_config
    from facedeblur_jax.models.factory import build_model

    model = build_model(load_config("tiny").model)
    params = model.init(jax.random.key(0), jax.numpy.zeros((1, 32, 32, 3)))["params"]
    fine = jax.tree.map(np.array, params["fine_0"])
    k1 = fine["scale1"]["conv_in"]["kernel"]
    k1[:, :, 9:, :] = 0.0
    k1[:, :, 9 + 4, :] = 2.0  # left_eye
    w = explore.fine_input_weights(fine)
    assert set(w) == {"scale0", "scale1"} and "upsampled" not in w["scale0"]
    assert w["scale1"]["prior/left_eye"] == pytest.approx(2.0)
    assert w["scale1"]["prior/skin"] == 0.0
    assert w["scale1"]["prior"] == pytest.approx(np.sqrt(4.0 / 11))
    want = np.sqrt(np.mean(np.asarray(k1[:, :, 6:9, :], np.float64) ** 2))
    assert w["scale1"]["upsampled"] == pytest.approx(want)
    with pytest.raises(ValueError, match="expected 3 \\+ 3 \\(\\+ 3\\) \\+ 5"):
        explore.fine_input_weights(fine, num_classes=5)
