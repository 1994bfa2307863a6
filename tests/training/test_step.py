import jax
import numpy as np
import optax
import pytest
from jax.extend.core import jaxprs_in_params
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from facedeblur_jax.config import load_config
from facedeblur_jax.models.factory import build_discriminator, build_model
from facedeblur_jax.state.train_state import create_train_state, net_of
from facedeblur_jax.training.schedule import phases_from_config
from facedeblur_jax.training.step import build_train_step


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


def _phase(cfg, name):
    return {p.name: p for p in phases_from_config(cfg)}[name]


@pytest.mark.parametrize("name", ["coarse", "parsing_clear", "parsing", "fine", "joint"])
def test_one_step_of_each_phase_changes_only_trained_nets(cfg, name):
    phase = _phase(cfg, name)
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
    phase = _phase(cfg, "joint")  # every net, D and BN statistics
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
    phase = _phase(cfg, "joint")
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
    phase = _phase(c, "joint")
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
    phase = _phase(c, "coarse")
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


# ---------------------------------------------------------------------------------------------
# P on clear faces (phase parsing_clear)
# ---------------------------------------------------------------------------------------------


def _primitives(jaxpr) -> set[str]:
    """Every primitive name in a (closed) jaxpr, sub-jaxprs included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for sub in jaxprs_in_params(eqn.params):
            names |= _primitives(sub)
    return names


def test_parsing_clear_step_neither_blurs_nor_runs_the_coarse_net(cfg):
    """The clear phase's program has no kernel walk (scan) and no blur (FFT), the parsing
    phase's has both; and it saves at least G_c's forward pass in FLOPs."""
    from facedeblur_jax.models.factory import build_model

    mesh = _mesh(1)
    state, batch = _state(cfg, mesh), _batch(mesh)
    programs = {}
    for name in ("parsing_clear", "parsing"):
        step = build_train_step(cfg, _phase(cfg, name), mesh)
        jaxpr = jax.make_jaxpr(step)(state, batch, None)
        flops = step.lower(state, batch, None).compile().cost_analysis()["flops"]
        programs[name] = (_primitives(jaxpr.jaxpr), flops)
    clear, coarse = programs["parsing_clear"], programs["parsing"]
    assert "fft" in coarse[0] and "scan" in coarse[0]
    assert "fft" not in clear[0] and "scan" not in clear[0]
    model = build_model(cfg.model)
    x = np.zeros((8, 32, 32, 3), np.float32)
    g_c = jax.jit(lambda v: model.apply(v, x, upto="coarse").coarse[-1])
    variables = {"params": {k: v for k, v in state.params.items() if k != "disc"}}
    variables["batch_stats"] = state.batch_stats
    gc_flops = g_c.lower(variables).compile().cost_analysis()["flops"]
    assert coarse[1] - clear[1] >= 0.9 * gc_flops, (coarse[1], clear[1], gc_flops)


def test_parsing_clear_step_trains_p_on_the_augmented_sharp_face(cfg):
    """The step's L_p is P (BatchNorm in training mode) on ``augment_only`` of the batch with
    the step's sample keys — the sharp face, warped, not blurred."""
    from facedeblur_jax.degrade.synthesize import augment_only
    from facedeblur_jax.training import losses
    from facedeblur_jax.training.step import sample_keys

    mesh = _mesh(2)
    state, batch = _state(cfg, mesh), _batch(mesh)
    keys = sample_keys(state.rng, state.step, 8, None)
    deg = augment_only(keys, batch["image"], batch["labels"], cfg.degrade)
    assert deg.blurred is deg.sharp and deg.kernels is None
    sharp = np.asarray(batch["image"], np.float32) / 255
    assert not np.allclose(np.asarray(deg.sharp), sharp, atol=0.05)  # augmented
    model = build_model(cfg.model)
    logits, _ = model.apply(
        {"params": state.params, "batch_stats": state.batch_stats},
        deg.sharp,
        method="parse",
        train=True,
        mutable=["batch_stats"],
    )
    want = losses.parsing_loss(logits, deg.labels, batch["has_labels"])
    _, metrics = build_train_step(cfg, _phase(cfg, "parsing_clear"), mesh)(state, batch, None)
    assert float(metrics["loss/parsing"]) == pytest.approx(float(want), rel=1e-4)
    assert "psnr" not in metrics  # no output image in this phase


# ---------------------------------------------------------------------------------------------
# Loss diagnostics
# ---------------------------------------------------------------------------------------------


def test_grad_norms_are_the_gradients_of_the_step(cfg):
    """Coarse phase (one term): the diagnostic's norm is the sharded step's gradient norm and
    a direct jax.grad of λ·L_c through the model on the same degraded batch."""
    from facedeblur_jax.degrade.synthesize import synthesize
    from facedeblur_jax.models.factory import build_model
    from facedeblur_jax.training import losses
    from facedeblur_jax.training.step import build_grad_norms, sample_keys

    phase = _phase(cfg, "coarse")
    mesh = _mesh(2)
    state, batch = _state(cfg, mesh), _batch(mesh)
    norms = jax.device_get(build_grad_norms(cfg, phase)(state, batch, None))
    assert set(norms) == {"grad_norm/content_coarse", "weighted_loss/content_coarse"}

    keys = sample_keys(state.rng, state.step, 8, None)
    deg = synthesize(keys, batch["image"], batch["labels"], cfg.degrade)
    model = build_model(cfg.model)

    def loss(coarse_params):
        out = model.apply({"params": {"coarse": coarse_params}}, deg.blurred, upto="coarse")
        return phase.loss["content_coarse"] * losses.content_loss(out.coarse, deg.sharp)

    direct = float(optax.tree.norm(jax.grad(loss)(state.params["coarse"])))
    assert float(norms["grad_norm/content_coarse"]) == pytest.approx(direct, rel=1e-4)
    _, metrics = build_train_step(cfg, phase, mesh)(state, batch, None)
    assert float(metrics["grad_norm"]) == pytest.approx(direct, rel=1e-4)
    assert float(norms["weighted_loss/content_coarse"]) == pytest.approx(
        float(metrics["loss/total"]), rel=1e-5
    )


def test_grad_norms_show_an_inert_weight(cfg):
    """Fine phase with λ_adv = 1e-12: a line for every active term and D, and L_adv's norm
    orders of magnitude below the others'."""
    from facedeblur_jax.training.step import build_grad_norms

    c = load_config("tiny", {"loss.adv_weight": 1e-12})
    mesh = _mesh(2)
    norms = jax.device_get(
        build_grad_norms(c, _phase(c, "fine"))(_state(c, mesh), _batch(mesh), None)
    )
    names = {k.split("/")[1] for k in norms if k.startswith("grad_norm/")}
    assert names == {"content_fine", "structural", "adv", "disc"}
    assert all(np.isfinite(v) and v > 0 for v in norms.values() if np.ndim(v) == 0)
    assert norms["grad_norm/adv"] < 1e-6 * norms["grad_norm/content_fine"]
    assert norms["grad_norm/adv"] < 1e-6 * norms["grad_norm/structural"]


@pytest.mark.parametrize("prior", ["zeros", "ground_truth"])
def test_fine_phase_feeds_g_f_the_configured_prior(prior):
    """``phases.fine.prior`` (the Table 2 ablations): G_f's output in the loss is the model's
    output fed that prior — zeros, or the one-hot of the step's augmented labels — not P's
    prediction."""
    from facedeblur_jax.degrade.synthesize import synthesize
    from facedeblur_jax.training.step import phase_losses, sample_keys

    c = load_config("tiny", {"phases.fine.prior": prior})
    phase = _phase(c, "fine")
    assert phase.prior == prior
    mesh = _mesh(1)
    state, batch = _state(c, mesh), _batch(mesh)
    # A fresh G_f is the identity (zero last convs), blind to its prior: perturb it.
    params = dict(state.params)
    leaves, tree = jax.tree.flatten(params["fine_0"])
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [x + 0.02 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    params["fine_0"] = jax.tree.unflatten(tree, noisy)
    state = state.replace(params=params)
    losses_ = phase_losses(c, phase, axis_name=None)
    keys = sample_keys(state.rng, state.step, 8, None)
    deg = synthesize(keys, batch["image"], batch["labels"], c.degrade)
    trained, frozen = losses_.split(state.params)
    _, _, y = losses_.terms(trained, frozen, state.batch_stats, deg, batch["has_labels"], None)
    model = build_model(c.model)
    variables = {
        "params": {k: v for k, v in state.params.items() if k != "disc"},
        "batch_stats": state.batch_stats,
    }
    k = c.model.num_classes
    fed = (
        jax.numpy.zeros((*deg.blurred.shape[:3], k))
        if prior == "zeros"
        else jax.nn.one_hot(deg.labels, k)
    )
    want = model.apply(variables, deg.blurred, prior=fed).y
    np.testing.assert_allclose(np.asarray(y), np.asarray(want), atol=1e-5)
    predicted = model.apply(variables, deg.blurred).y
    assert not np.allclose(np.asarray(y), np.asarray(predicted), atol=1e-5)
