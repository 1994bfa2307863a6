import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.models.parsing_net import ParsingNet


def test_logit_shape_and_batch_stats():
    net = ParsingNet(num_classes=11, features=(8, 16, 16, 16, 16, 16))
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    variables = jax.jit(net.init)(jax.random.key(1), x)
    assert set(variables) == {"params", "batch_stats"}
    logits = jax.jit(net.apply)(variables, x)
    assert logits.shape == (2, 32, 32, 11)
    train = jax.jit(lambda v, x: net.apply(v, x, train=True, mutable=["batch_stats"]))
    logits, updates = train(variables, x)
    changed = jax.tree.map(
        lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], updates["batch_stats"]
    )
    assert any(jax.tree.leaves(changed))


def test_without_bn_has_no_state():
    net = ParsingNet(features=(8, 8), use_bn=False)
    variables = net.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    assert set(variables) == {"params"}


def test_official_stage_shapes():
    """enc2 is 5×5; decoder stage j ends at encoder stage j's width; 3×3 logits."""
    net = ParsingNet(num_classes=5, features=(4, 6, 8, 10, 12, 14))
    variables = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    params = variables["params"]
    assert params["enc0"]["kernel"].shape == (3, 3, 3, 4)
    assert params["enc2"]["kernel"].shape == (5, 5, 6, 8)
    assert params["enc5"]["kernel"].shape == (3, 3, 12, 14)
    assert params["up4"]["kernel"].shape == (4, 4, 14, 12)
    assert params["dec4"]["kernel"].shape == (3, 3, 12, 12)
    assert params["up0"]["kernel"].shape == (4, 4, 6, 4)
    assert params["dec0"]["kernel"].shape == (3, 3, 4, 4)
    assert params["logits"]["kernel"].shape == (3, 3, 4, 5)
    assert "up5" not in params and "dec5" not in params  # 5 decoder stages for 6 convs
    assert set(variables["batch_stats"]) == {f"enc{i}_bn" for i in range(6)} | {
        f"dec{j}_bn" for j in range(5)
    }


def test_skips_are_additive_for_all_but_the_last_decoder_stage():
    """Zeroing a skip source changes the output only through the skips: with enc1's BN
    shifted, the logits move (skip into dec1); enc0 feeds only the next conv (no skip)."""
    net = ParsingNet(num_classes=3, features=(4, 4, 4), use_bn=False)
    x = jax.random.uniform(jax.random.key(0), (1, 8, 8, 3))
    variables = net.init(jax.random.key(1), x)
    hits = {}

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        name = context.module.name
        if context.method_name == "__call__" and name in ("dec0", "dec1", "up0"):
            hits[name] = (args[0], out)
        return out

    import flax.linen as nn

    with nn.intercept_methods(interceptor):
        _, inter = net.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    enc = inter["intermediates"]
    relu_enc1 = jax.nn.relu(enc["enc1"]["__call__"][0])
    # up0's input is relu(dec1) + relu(enc1): the additive skip of stage 1.
    np.testing.assert_allclose(hits["up0"][0], jax.nn.relu(hits["dec1"][1]) + relu_enc1, 1e-6)
    # The logits see relu(dec0) alone: stage 0 has no skip.
    logits = net.apply(variables, x)
    ref = nn.Conv(3, (3, 3), padding="SAME").apply(
        {"params": variables["params"]["logits"]}, jax.nn.relu(hits["dec0"][1])
    )
    np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-6)


def test_size_must_divide():
    with pytest.raises(ValueError, match="divisible by 4"):
        ParsingNet(features=(4, 4, 4)).init(jax.random.key(0), jnp.zeros((1, 22, 22, 3)))


def test_bn_statistics_sync_over_device_axis():
    """Under shard_map with bn_axis_name, every device sees the global batch statistics."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    devices = np.array(jax.devices()[:4])
    mesh = Mesh(devices, ("data",))
    net = ParsingNet(num_classes=3, features=(4,), bn_axis_name="data")
    x = jax.random.uniform(jax.random.key(0), (8, 4, 4, 3))
    variables = net.init(jax.random.key(1), x[:2])

    def step(xs):
        _, upd = net.apply(variables, xs, train=True, mutable=["batch_stats"])
        return upd["batch_stats"]["enc0_bn"]["mean"][None]

    per_device = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=P("data"), out_specs=P("data")))(x)
    _, single = ParsingNet(num_classes=3, features=(4,)).apply(
        variables, x, train=True, mutable=["batch_stats"]
    )
    for d in range(4):
        np.testing.assert_allclose(
            per_device[d], single["batch_stats"]["enc0_bn"]["mean"], rtol=1e-5, atol=1e-6
        )
