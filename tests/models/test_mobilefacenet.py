"""MobileFaceNet layout and numerics against an independent PyTorch twin (random weights).

The layer list below is written out from MobileFaceNets Table 1 (bottleneck setting
``(t, c, n, s)`` = (2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2),
(2, 128, 2, 1)) with the 112×96 input, not taken from the module, so the module's layout and
parameter count are checked against it.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.models import mobilefacenet as mfn

torch = pytest.importorskip("torch")

from facedeblur_jax.models.mobilefacenet_convert import convert_state_dict  # noqa: E402
from tests.models.torch_mobilefacenet import (  # noqa: E402
    TorchMobileFaceNet,
    randomize_,
    torch_embed,
)


def _block(i, c_in, hidden, c_out):
    return [
        (f"blocks_{i}/expand", (1, 1, c_in, hidden), True),
        (f"blocks_{i}/depthwise", (3, 3, 1, hidden), True),
        (f"blocks_{i}/project", (1, 1, hidden, c_out), False),
    ]


# (unit, Flax HWIO kernel shape, has PReLU) in network order.
EXPECTED_UNITS = [
    ("conv1", (3, 3, 3, 64), True),
    ("dw_conv1", (3, 3, 1, 64), True),
    # t=2, c=64, n=5: 64 -> 128 -> 64 (blocks 0-4)
    *[u for i in range(0, 5) for u in _block(i, 64, 128, 64)],
    # t=4, c=128, n=1: 64 -> 256 -> 128 (block 5)
    *_block(5, 64, 256, 128),
    # t=2, c=128, n=6: 128 -> 256 -> 128 (blocks 6-11)
    *[u for i in range(6, 12) for u in _block(i, 128, 256, 128)],
    # t=4, c=128, n=1: 128 -> 512 -> 128 (block 12)
    *_block(12, 128, 512, 128),
    # t=2, c=128, n=2: 128 -> 256 -> 128 (blocks 13-14)
    *[u for i in range(13, 15) for u in _block(i, 128, 256, 128)],
    ("conv2", (1, 1, 128, 512), True),
    ("linear7", (7, 6, 1, 512), False),
    ("linear1", (1, 1, 512, 128), False),
]


@functools.partial(jax.jit, static_argnames=("flip", "dtype"))
def _embed(variables, images, flip=True, dtype=jnp.float32):
    return mfn.embed(variables, images, flip=flip, dtype=dtype)


@pytest.fixture(scope="module")
def twin():
    """A PyTorch twin with random weights, BN statistics and PReLU slopes, and its
    conversion."""
    net = randomize_(TorchMobileFaceNet(), seed=0)
    return net, convert_state_dict(net.state_dict())


@pytest.fixture(scope="module")
def crops():
    return np.random.default_rng(0).uniform(size=(3, 112, 112, 3)).astype(np.float32)


def test_layout_and_parameter_count():
    # Parameters from the written-out list: conv kernel, BN scale and bias, PReLU slopes.
    from_list = sum(int(np.prod(k)) + 2 * k[-1] + (k[-1] if prelu else 0)
                    for _, k, prelu in EXPECTED_UNITS)  # fmt: skip
    assert from_list == 999_552
    variables = jax.eval_shape(mfn.init_variables, jax.random.key(0))
    assert sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables["params"])) == 999_552
    assert sum(p.numel() for p in TorchMobileFaceNet().parameters()) == 999_552

    units = mfn.conv_layers()
    assert [u[0] for u in units] == [u[0] for u in EXPECTED_UNITS]  # network order
    for (name, kernel, prelu), unit in zip(EXPECTED_UNITS, units, strict=True):
        leaves = variables["params"]
        for part in name.split("/"):
            leaves = leaves[part]
        assert leaves["conv"]["kernel"].shape == kernel, name
        assert ("prelu" in leaves) == prelu == unit[-1], name
        stats = variables["batch_stats"]
        for part in name.split("/"):
            stats = stats[part]
        assert stats["bn"]["mean"].shape == stats["bn"]["var"].shape == (kernel[-1],), name
    flat = {
        "/".join(k.key for k in path): leaf.shape
        for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]
    }
    assert flat == mfn.expected_variable_shapes()


def test_strides_halve_112x96_down_to_7x6():
    variables = jax.eval_shape(mfn.init_variables, jax.random.key(0))
    x = jax.ShapeDtypeStruct((1, 112, 96, 3), jnp.float32)
    apply = functools.partial(mfn.MobileFaceNet().apply, capture_intermediates=True)
    _, state = jax.eval_shape(apply, variables, x)
    inter = state["intermediates"]
    sizes = {
        name: inter[name]["__call__"][0].shape[1:3]
        for name in ("conv1", "dw_conv1", "blocks_0", "blocks_4", "blocks_5", "blocks_11",
                     "blocks_12", "blocks_14", "conv2", "linear7")
    }  # fmt: skip
    assert sizes == {
        "conv1": (56, 48), "dw_conv1": (56, 48), "blocks_0": (28, 24), "blocks_4": (28, 24),
        "blocks_5": (14, 12), "blocks_11": (14, 12), "blocks_12": (7, 6), "blocks_14": (7, 6),
        "conv2": (7, 6), "linear7": (1, 1),
    }  # fmt: skip


def test_random_weights_match_pytorch(twin, crops):
    net, variables = twin
    ours = np.asarray(_embed(variables, crops, flip=True))
    ref = torch_embed(net, crops, flip=True)
    assert ours.shape == ref.shape == (3, 256)
    assert ref.std() > 0.1  # not a comparison of near-zero vectors
    # Measured max |Δ| 2.7e-6 (embeddings' max |value| 1.9).
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
    plain = np.asarray(_embed(variables, crops, flip=False))
    np.testing.assert_allclose(plain, ours[:, :128], rtol=0, atol=1e-6)
    # The second half is the mirrored crop's embedding.
    mirrored = np.asarray(_embed(variables, crops[:, :, ::-1].copy(), flip=False))
    np.testing.assert_allclose(ours[:, 128:], mirrored, rtol=0, atol=1e-5)


def test_bfloat16_compute_stays_close(twin, crops):
    _, variables = twin
    full = np.asarray(_embed(variables, crops, flip=False))
    half = _embed(variables, crops, flip=False, dtype=jnp.bfloat16)
    assert half.dtype == jnp.float32
    half = np.asarray(half)
    cos = np.sum(full * half, -1) / np.linalg.norm(full, axis=-1) / np.linalg.norm(half, axis=-1)
    assert np.all(cos > 0.99), cos


def test_other_crop_sizes_are_resized_first(twin, crops):
    _, variables = twin
    big = jax.image.resize(crops, (3, 128, 128, 3), "linear")
    ours = np.asarray(_embed(variables, big, flip=False))
    back = jax.image.resize(big, (3, 112, 112, 3), "linear", antialias=True)
    np.testing.assert_allclose(ours, np.asarray(_embed(variables, back, flip=False)), atol=1e-5)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (np.zeros((2, 112, 96, 3), np.float32), "square"),
        (np.zeros((2, 112, 112), np.float32), "rank 4"),
        (np.zeros((2, 112, 112, 1), np.float32), "3 channels"),
        (np.zeros((2, 112, 112, 3), np.uint8), "float"),
        (np.full((2, 112, 112, 3), 255.0, np.float32), r"values in \[0.0, 1.0\]"),
    ],
)
def test_bad_images_are_named(twin, images, match):
    with pytest.raises(ValueError, match=match) as e:
        mfn.embed(twin[1], images)
    assert "images" in str(e.value)
