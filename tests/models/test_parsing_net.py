import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.models.parsing_net import ParsingNet


def test_logit_shape_and_batch_stats():
    net = ParsingNet(num_classes=11, features=(8, 16, 16))
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    variables = net.init(jax.random.key(1), x)
    assert set(variables) == {"params", "batch_stats"}
    logits = net.apply(variables, x)
    assert logits.shape == (2, 32, 32, 11)
    logits, updates = net.apply(variables, x, train=True, mutable=["batch_stats"])
    changed = jax.tree.map(
        lambda a, b: bool(jnp.any(a != b)), variables["batch_stats"], updates["batch_stats"]
    )
    assert any(jax.tree.leaves(changed))


def test_without_bn_has_no_state():
    net = ParsingNet(features=(8, 8), use_bn=False)
    variables = net.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    assert set(variables) == {"params"}


def test_skips_are_additive_and_every_stage_downsamples():
    net = ParsingNet(num_classes=5, features=(4, 6, 8))
    params = net.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    assert params["enc0"]["kernel"].shape == (3, 3, 3, 4)
    assert params["enc2"]["kernel"].shape == (3, 3, 6, 8)
    # Decoder stage i maps stage i+1's width (the bottleneck's for the last) to stage i's.
    assert params["dec2"]["kernel"].shape == (4, 4, 8, 8)
    assert params["dec0"]["kernel"].shape == (4, 4, 6, 4)
    assert params["logits"]["kernel"].shape == (1, 1, 4, 5)


def test_size_must_divide():
    with pytest.raises(ValueError, match="divisible by 8"):
        ParsingNet(features=(4, 4, 4)).init(jax.random.key(0), jnp.zeros((1, 20, 20, 3)))


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
