"""The gradient all-reduce of the train step: exactly one per compiled step, and a mean.

``build_train_step(...).lower(state, batch, None).compile().as_text()`` is the optimised
per-device program. The step flattens every trained net's gradients (generator and D)
into one ``f32[n_trainable]`` vector and ``pmean``-s it once; the test finds that vector
among the all-reduces (``facedeblur_jax.bench.hlo_collectives``) and checks that no other all-reduce
carries a parameter-shaped array. The other collectives are P's synchronised BatchNorm
statistics (forward: mean and mean of squares, ``f32[2, C]`` per layer; backward: two
``C``-vectors per layer) and scalar metrics, which XLA may combine with anything.

The all-reduced gradient is the mean over devices of per-device gradients, i.e. the
gradient of the global-batch loss: the same on 1 and on 2 devices (before the single
``pmean`` the step summed per-leaf gradients over devices, which Adam's scale invariance
hid from the 8-vs-1-device parameter test).
"""

import math

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from facedeblur_jax.bench import hlo_collectives
from facedeblur_jax.config import load_config
from facedeblur_jax.models.factory import build_discriminator, build_model
from facedeblur_jax.state.train_state import create_train_state, net_of
from facedeblur_jax.training.schedule import phases_from_config
from facedeblur_jax.training.step import build_train_step
from tests.training.test_step import _batch, _mesh, _state

N_DEVICES = 8


def _abstract_inputs(cfg, mesh):
    """State and batch as sharded ``ShapeDtypeStruct``s: lowering needs no real arrays."""
    state = jax.eval_shape(
        lambda k: create_train_state(
            cfg, build_model(cfg.model), build_discriminator(cfg.model), k
        ),
        jax.random.key(0),
    )
    rep, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), state)
    b, size = cfg.train.global_batch_size, cfg.image_size
    batch = {
        "image": jax.ShapeDtypeStruct((b, size, size, 3), np.uint8, sharding=shard),
        "labels": jax.ShapeDtypeStruct((b, size, size), np.uint8, sharding=shard),
        "has_labels": jax.ShapeDtypeStruct((b,), np.bool_, sharding=shard),
    }
    return state, batch


@pytest.mark.parametrize("phase_name", ["coarse", "joint"])
def test_compiled_step_has_exactly_one_gradient_all_reduce(phase_name):
    cfg = load_config("tiny")
    assert cfg.train.global_batch_size % N_DEVICES == 0
    mesh = Mesh(np.array(jax.devices()[:N_DEVICES]), ("data",))
    assert mesh.size == N_DEVICES, "conftest sets 8 fake CPU devices"
    phase = {p.name: p for p in phases_from_config(cfg)}[phase_name]
    state, batch = _abstract_inputs(cfg, mesh)
    hlo = build_train_step(cfg, phase, mesh).lower(state, batch, None).compile().as_text()

    trained = [
        leaf
        for key, net in state.params.items()
        if phase.trains(net_of(key))
        for leaf in jax.tree.leaves(net)
    ]
    n_trainable = sum(math.prod(leaf.shape) for leaf in trained)
    summary = hlo_collectives.gradient_all_reduce_summary(hlo, n_trainable)
    print(
        f"\n{phase_name} on {N_DEVICES} devices: {summary['all_reduces']} all-reduce(s); "
        f"gradients: {summary['gradient']}; others ({summary['other_elements']} elements):"
    )
    for other in summary["other"]:
        print(f"  {other['arrays']}  {other['op_name'][-60:]}")

    # Exactly one all-reduce holds the gradient vector of every trained net ...
    assert summary["gradient_all_reduces"] == 1, summary
    # ... and no other one reduces anything shaped like a parameter kernel (per-leaf
    # gradient all-reduces, as shard_map makes when replicated params are differentiated
    # directly, would show up here).
    kernel_shapes = {tuple(leaf.shape) for leaf in trained if leaf.ndim >= 2}
    others = [a for a in hlo_collectives.all_reduces(hlo) if not a.holds((n_trainable,))]
    for a in others:
        assert not any(shape in kernel_shapes for _, shape in a.arrays), a

    # What is left: BatchNorm statistics of P when it trains (2·C forward and 2·C backward
    # per layer) and scalar metrics.
    bn_channels = (
        sum(cfg.model.parsing_features) * 2
        if phase.trains("parsing") and cfg.model.parsing_use_bn
        else 0
    )
    assert summary["other_elements"] <= 4 * bn_channels + 64, summary
    if not bn_channels:  # only metrics (XLA's combiner usually merges them into the one)
        assert all(shape == () for a in others for _, shape in a.arrays), summary


def test_gradient_is_the_global_batch_mean_on_any_device_count():
    """One coarse step on the same global batch of 8: the gradient norm (after the
    all-reduce) is the same on 1 and 2 devices, not twice as large on 2."""
    cfg = load_config("tiny")
    phase = phases_from_config(cfg)[0]
    host_state = jax.device_get(_state(cfg, _mesh(1)))  # initialised once
    norms = {}
    for n in (1, 2):
        mesh = _mesh(n)
        state = jax.device_put(host_state, NamedSharding(mesh, P()))
        _, metrics = build_train_step(cfg, phase, mesh)(state, _batch(mesh), None)
        norms[n] = float(metrics["grad_norm"])
    assert norms[1] > 0
    assert norms[2] == pytest.approx(norms[1], rel=1e-4), norms
