import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from facedeblur_jax.config import load_config
from facedeblur_jax.models.factory import build_discriminator, build_model
from facedeblur_jax.schedule import phases_from_config
from facedeblur_jax.train_state import create_train_state, net_of
from facedeblur_jax.train_step import build_train_step


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny")


def _mesh(n):
    return Mesh(np.array(jax.devices()[:n]), ("data",))


def _batch(mesh, b=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((b, size, size), np.uint8)
    labels[:, (yy - size // 2) ** 2 + (xx - size // 2) ** 2 < (size // 3) ** 2] = 1
    labels[:, 10:12, 8:12] = 4
    labels[:, 10:12, 20:24] = 5
    labels[:, 16:19, 14:18] = 6
    labels[:, 22:24, 12:20] = 7
    labels[:, 24:26, 12:20] = 9
    image = (rng.random((b, size, size, 3)) * 64 + labels[..., None] * 16).astype(np.uint8)
    batch = {"image": image, "labels": labels, "has_labels": np.ones((b,), bool)}
    sharding = NamedSharding(mesh, P("data"))
    return {k: jax.device_put(v, sharding) for k, v in batch.items()}


def _state(cfg, mesh, seed=0):
    state = create_train_state(
        cfg, build_model(cfg.model), build_discriminator(cfg.model), jax.random.key(seed)
    )
    return jax.device_put(state, NamedSharding(mesh, P()))


def _copy(tree):
    return jax.tree.map(lambda x: np.array(x), tree)


@pytest.mark.parametrize("phase_index", [0, 1, 2, 3])
def test_one_step_of_each_phase_changes_only_trained_nets(cfg, phase_index):
    phase = phases_from_config(cfg)[phase_index]
    mesh = _mesh(2)
    state = _state(cfg, mesh)
    before = _copy(state)
    step = build_train_step(cfg, phase, mesh)
    state, metrics = step(state, _batch(mesh), None)
    after = _copy(state)
    assert int(after.step) == 1 and int(after.nonfinite) == 0
    for key in before.params:
        changed = any(
            not np.array_equal(a, b)
            for a, b in zip(
                jax.tree.leaves(before.params[key]), jax.tree.leaves(after.params[key]), strict=True
            )
        )
        opt_changed = any(
            not np.array_equal(a, b)
            for a, b in zip(
                jax.tree.leaves(before.opt_state[key]),
                jax.tree.leaves(after.opt_state[key]),
                strict=True,
            )
        )
        trained = phase.trains(net_of(key))
        assert changed == trained, (phase.name, key)
        assert opt_changed == trained, (phase.name, key)
    bn_changed = any(
        not np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(before.batch_stats), jax.tree.leaves(after.batch_stats), strict=True
        )
    )
    assert bn_changed == phase.trains("parsing")
    for name, weight in phase.loss.items():
        assert (f"loss/{name}" in metrics) == (weight > 0)
    assert np.isfinite(float(metrics["loss/total"]))


def test_nan_batch_is_skipped(cfg):
    """A NaN pixel (float batches are accepted by the step) poisons the loss: the update is
    skipped, counted, and the next clean batch trains normally."""
    phase = phases_from_config(cfg)[3]  # joint: every net, D and BN statistics
    mesh = _mesh(2)
    state = _state(cfg, mesh)
    step = build_train_step(cfg, phase, mesh)
    state, _ = step(state, _batch(mesh), None)
    before = _copy(state)
    bad = _batch(mesh, seed=1)
    img = np.asarray(bad["image"]).astype(np.float32) / 255.0
    img[3, 5, 5, 1] = np.nan
    bad["image"] = jax.device_put(img, NamedSharding(mesh, P("data")))
    state, metrics = step(state, bad, None)
    after = _copy(state)
    assert float(metrics["skipped"]) == 1.0 and int(after.nonfinite) == 1
    assert int(after.step) == 2
    for a, b in zip(jax.tree.leaves(before.params), jax.tree.leaves(after.params), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        jax.tree.leaves(before.opt_state), jax.tree.leaves(after.opt_state), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    state, metrics = step(state, _batch(mesh, seed=2), None)
    assert float(metrics["skipped"]) == 0.0 and int(state.nonfinite) == 1
    assert not np.array_equal(
        jax.tree.leaves(after.params)[0], np.asarray(jax.tree.leaves(state.params)[0])
    )


def test_eight_devices_match_one_device(cfg):
    """Same global batch of 8 on 8 fake devices (1 sample each, BN synced over "data") and
    on 1 device: after 3 joint-phase steps the params agree. Tolerance: float reductions
    run in a different order (per-device sums + pmean), and Adam divides by √v, so a
    near-zero gradient's rounding can change its update by up to ~lr; we allow 3 steps ×
    2·lr (joint lr 4e-5) absolute and check that the mean difference is far smaller."""
    phase = phases_from_config(cfg)[3]
    results = []
    for n in (8, 1):
        mesh = _mesh(n)
        state = _state(cfg, mesh)
        step = build_train_step(cfg, phase, mesh)
        for i in range(3):
            state, _ = step(state, _batch(mesh, seed=i), None)
        results.append(_copy(state))
    eight, one = results
    diffs = [
        np.abs(a - b)
        for a, b in zip(jax.tree.leaves(eight.params), jax.tree.leaves(one.params), strict=True)
    ]
    max_diff = max(float(d.max()) for d in diffs)
    mean_diff = float(np.mean(np.concatenate([d.ravel() for d in diffs])))
    print(f"8 vs 1 device: max |Δparam| = {max_diff:.3g}, mean = {mean_diff:.3g}")
    assert max_diff < 3 * 2 * 4e-5, max_diff
    assert mean_diff < 1e-6, mean_diff
    for a, b in zip(
        jax.tree.leaves(eight.batch_stats), jax.tree.leaves(one.batch_stats), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bf16_compute_trains_with_fp32_params(cfg):
    """model.compute_dtype = bfloat16: the step runs, params and optimiser state stay f32."""
    c = load_config("tiny", {"model.compute_dtype": "bfloat16"})
    phase = phases_from_config(c)[3]
    mesh = _mesh(2)
    state = _state(c, mesh)
    state, metrics = build_train_step(c, phase, mesh)(state, _batch(mesh), None)
    assert float(metrics["skipped"]) == 0.0
    assert np.isfinite(float(metrics["loss/total"]))
    dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.opt_state))}
    assert dtypes <= {np.dtype("float32"), np.dtype("int32")}, dtypes


def test_kernel_pool_step_matches_on_eight_and_one_device():
    """With degrade.kernel_pool_size > 0 the step takes the replicated pool as its fourth
    argument; per-sample draws are keyed by global sample index, so 8 devices == 1."""
    from facedeblur_jax.degrade.kernel_pool import pool_from_config

    c = load_config("tiny", {"degrade.kernel_pool_size": 16})
    pool = pool_from_config(c)
    phase = phases_from_config(c)[0]
    results = []
    for n in (8, 1):
        mesh = _mesh(n)
        step = build_train_step(c, phase, mesh)
        replicated = jax.device_put(pool, NamedSharding(mesh, P()))
        state, metrics = step(_state(c, mesh), _batch(mesh), None, replicated)
        assert float(metrics["skipped"]) == 0.0
        results.append((_copy(state.params["coarse"]), float(metrics["loss/total"])))
    (eight, loss8), (one, loss1) = results
    assert loss8 == pytest.approx(loss1, rel=1e-4)
    for a, b in zip(jax.tree.leaves(eight), jax.tree.leaves(one), strict=True):
        np.testing.assert_allclose(a, b, atol=2 * 4e-5)
    with pytest.raises(ValueError, match="no kernel pool was passed"):
        build_train_step(c, phase, _mesh(1))(_state(c, _mesh(1)), _batch(_mesh(1)), None)
