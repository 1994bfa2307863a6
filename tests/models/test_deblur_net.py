import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.models.deblur_net import MultiScaleDeblurNet
from facedeblur_jax.models.layers import Upsample2x
from facedeblur_jax.models.param_count import count

TINY = dict(first_kernel=5, features=8, num_resblocks=1, kernel_size=3)


@pytest.mark.parametrize("num_scales", [1, 2, 3])
def test_output_shapes_per_scale(num_scales):
    net = MultiScaleDeblurNet(num_scales=num_scales, **TINY)
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    variables = net.init(jax.random.key(1), x)
    outs = net.apply(variables, x)
    assert len(outs) == num_scales
    for s, out in enumerate(outs):
        f = 2 ** (num_scales - 1 - s)
        assert out.shape == (2, 32 // f, 32 // f, 3)
        assert out.dtype == jnp.float32


def test_guide_and_prior_channels_match_paper():
    """G_f: 17 input channels at 0.5×, 20 at 1× (paper §3.2)."""
    net = MultiScaleDeblurNet(**TINY)
    x = jnp.zeros((1, 32, 32, 3))
    y_c = jnp.zeros((1, 32, 32, 3))
    p = jnp.zeros((1, 32, 32, 11))
    params = net.init(jax.random.key(0), x, guide=y_c, prior=p)["params"]
    assert params["scale0"]["conv_in"]["kernel"].shape == (5, 5, 17, 8)
    assert params["scale1"]["conv_in"]["kernel"].shape == (5, 5, 20, 8)
    gc = net.init(jax.random.key(0), x)["params"]
    assert gc["scale0"]["conv_in"]["kernel"].shape == (5, 5, 3, 8)
    assert gc["scale1"]["conv_in"]["kernel"].shape == (5, 5, 6, 8)


def test_paper_deblur_net_param_counts_by_hand():
    """§3.5 + the official layout fix G_c and G_f: per scale an 11×11 conv to 64 ch, 2 5×5
    convs, 6 ResBlocks of two 5×5 convs, 2 5×5 convs (all 64 → 64), a 5×5 conv to 3 ch; a
    4×4 transposed conv (3 → 3) between the scales. Every conv has a bias."""
    conv11 = lambda cin: 11 * 11 * cin * 64 + 64  # conv_in
    conv5 = 5 * 5 * 64 * 64 + 64  # = 102,464; 2 pre + 12 in ResBlocks + 2 post = 16 of them
    out = 5 * 5 * 64 * 3 + 3  # = 4,803
    up = 4 * 4 * 3 * 3 + 3  # = 147
    body = 16 * conv5 + out  # = 1,644,227
    # G_c: 3 channels at 0.5× (x), 6 at 1× (x, upsampled): 23,296 + 46,528 + 2 · body + up.
    assert conv11(3) == 23_296 and conv11(6) == 46_528 and body == 1_644_227
    g_c = conv11(3) + body + up + conv11(6) + body
    assert g_c == 3_358_425
    # G_f: 17 channels at 0.5× (x, y_c, p), 20 at 1× (x, y_c, upsampled, p).
    assert conv11(17) == 131_712 and conv11(20) == 154_944
    g_f = conv11(17) + body + up + conv11(20) + body
    assert g_f == 3_575_257

    x = jnp.zeros((1, 128, 128, 3))
    gc = jax.eval_shape(lambda: MultiScaleDeblurNet().init(jax.random.key(0), x))
    assert count(gc) == g_c
    gf = jax.eval_shape(
        lambda: MultiScaleDeblurNet().init(
            jax.random.key(0), x, guide=x, prior=jnp.zeros((1, 128, 128, 11))
        )
    )
    assert count(gf) == g_f
    scale = gc["params"]["scale1"]
    assert len([k for k in scale if k.startswith("conv")]) + 2 * 6 == 18  # convs per scale


def _record_scale_inputs(net, *args):
    """The inputs each ``ScaleNet`` of ``net`` receives, in call order."""
    seen = []

    def interceptor(next_fun, call_args, kwargs, context):
        if type(context.module).__name__ == "ScaleNet" and context.method_name == "__call__":
            seen.append(call_args[0])
        return next_fun(*call_args, **kwargs)

    variables = net.init(jax.random.key(0), *args)
    with nn.intercept_methods(interceptor):
        net.apply(variables, *args)
    return seen


def test_prior_is_max_pooled_at_half_scale_and_full_at_full():
    """The official feed: 2×2 max-pooled softmax at 0.5×, the full-resolution one at 1×. A
    one-pixel-wide part (an eye line, a lip) keeps its full probability at 0.5× instead
    of being averaged away."""
    net = MultiScaleDeblurNet(**TINY)
    x = jnp.zeros((1, 16, 16, 3))
    prior = jnp.zeros((1, 16, 16, 11)).at[0, 5, 2:14, 4].set(1.0).at[..., 0].set(0.25)
    half, full = _record_scale_inputs(net, x, x, prior)
    assert half.shape == (1, 8, 8, 17) and full.shape == (1, 16, 16, 20)
    np.testing.assert_array_equal(half[..., 6:], prior.reshape(1, 8, 2, 8, 2, 11).max((2, 4)))
    assert np.all(half[0, 2, 1:7, 6 + 4] == 1.0)  # the thin line, not 0.5 or 0.25
    np.testing.assert_array_equal(full[..., 9:], prior)
    three = MultiScaleDeblurNet(num_scales=3, **TINY)
    quarter, _, _ = _record_scale_inputs(three, x, x, prior)
    np.testing.assert_array_equal(quarter[..., 6:], prior.reshape(1, 4, 4, 4, 4, 11).max((2, 4)))


def test_resblock_post_relu_switch():
    """Same params either way; the official ReLU after the add changes the function."""
    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
    on = MultiScaleDeblurNet(residual=False, **TINY)
    off = MultiScaleDeblurNet(residual=False, resblock_post_relu=False, **TINY)
    variables = on.init(jax.random.key(1), x)
    assert jax.tree.structure(off.init(jax.random.key(1), x)) == jax.tree.structure(variables)
    assert not np.allclose(on.apply(variables, x)[-1], off.apply(variables, x)[-1])


def test_residual_identity_at_zero_weights():
    """With residual scales and zero conv weights the net returns its (downsampled) input."""
    net = MultiScaleDeblurNet(**TINY)
    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
    params = net.init(jax.random.key(1), x)
    zeros = jax.tree.map(jnp.zeros_like, params)
    outs = net.apply(zeros, x)
    np.testing.assert_allclose(outs[-1], x, atol=1e-6)
    np.testing.assert_allclose(outs[0], x.reshape(1, 8, 2, 8, 2, 3).mean((2, 4)), atol=1e-6)


def test_bad_input_names_argument():
    net = MultiScaleDeblurNet(**TINY)
    with pytest.raises(ValueError, match=r"x must have shape \[B, H, W, C\].*\(32, 32, 3\)"):
        net.init(jax.random.key(0), jnp.zeros((32, 32, 3)))
    with pytest.raises(ValueError, match="x must have 3 channels.*1"):
        net.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
    with pytest.raises(ValueError, match="divisible by"):
        net.init(jax.random.key(0), jnp.zeros((1, 31, 31, 3)))
    with pytest.raises(ValueError, match="x must be a float array.*uint8"):
        net.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.uint8))


def test_transposed_upsample_starts_bilinear():
    img = jax.random.uniform(jax.random.key(0), (2, 8, 8, 3))
    up = Upsample2x("transposed")
    out = up.apply(up.init(jax.random.key(1), img), img)
    ref = jax.image.resize(img, (2, 16, 16, 3), "linear")
    np.testing.assert_allclose(out[:, 1:-1, 1:-1], ref[:, 1:-1, 1:-1], atol=1e-5)


@pytest.mark.parametrize("method", ["transposed", "subpixel", "bicubic"])
def test_upsample_methods_shape(method):
    img = jnp.ones((1, 4, 6, 3))
    up = Upsample2x(method)
    out = up.apply(up.init(jax.random.key(0), img), img)
    assert out.shape == (1, 8, 12, 3)
    # Each starts as an interpolator: a constant image stays constant away from the border.
    np.testing.assert_allclose(out[:, 1:-1, 1:-1], 1.0, atol=1e-5)


def test_unknown_upsample_method():
    with pytest.raises(ValueError, match="upsample must be"):
        Upsample2x("nearest").init(jax.random.key(0), jnp.ones((1, 4, 4, 3)))


def test_bf16_compute_keeps_fp32_params_and_outputs():
    net = MultiScaleDeblurNet(dtype=jnp.bfloat16, **TINY)
    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
    variables = net.init(jax.random.key(1), x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    out32 = MultiScaleDeblurNet(**TINY).apply(variables, x)[-1]
    out16 = net.apply(variables, x)[-1]
    assert out16.dtype == jnp.float32
    np.testing.assert_allclose(out16, out32, atol=5e-2)


def test_untrained_residual_net_is_identity():
    net = MultiScaleDeblurNet(**TINY)
    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
    outs = net.apply(net.init(jax.random.key(1), x), x)
    np.testing.assert_allclose(outs[-1], x, atol=1e-6)
    not_residual = MultiScaleDeblurNet(residual=False, **TINY)
    y = not_residual.apply(not_residual.init(jax.random.key(1), x), x)[-1]
    assert float(jnp.abs(y).max()) > 0  # its last conv is randomly initialised


def test_untrained_fine_net_returns_its_guide():
    """G_f's residual base is the previous estimate: untrained, G_f(x, y_c, p) = y_c."""
    net = MultiScaleDeblurNet(**TINY)
    x = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3))
    y_c = jax.random.uniform(jax.random.key(1), (1, 16, 16, 3))
    p = jnp.zeros((1, 16, 16, 11))
    outs = net.apply(net.init(jax.random.key(2), x, guide=y_c, prior=p), x, guide=y_c, prior=p)
    np.testing.assert_allclose(outs[-1], y_c, atol=1e-6)


def test_remat_is_the_same_function_with_recomputation():
    """remat changes how the backward pass is computed, not the params, outputs or grads."""
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    plain = MultiScaleDeblurNet(features=8, num_resblocks=2, first_kernel=5, residual=False)
    remat = MultiScaleDeblurNet(
        features=8, num_resblocks=2, first_kernel=5, residual=False, remat=True
    )
    variables = plain.init(jax.random.key(1), x)
    assert jax.tree.structure(remat.init(jax.random.key(1), x)) == jax.tree.structure(variables)

    def loss(net):
        return lambda v: sum(jnp.sum(o**2) for o in net.apply(v, x))

    np.testing.assert_allclose(
        remat.apply(variables, x)[-1], plain.apply(variables, x)[-1], rtol=1e-6
    )
    g_plain, g_remat = jax.grad(loss(plain))(variables), jax.grad(loss(remat))(variables)
    for a, b in zip(jax.tree.leaves(g_plain), jax.tree.leaves(g_remat), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    # The remat version really checkpoints: one remat region per ResBlock and scale.
    jaxpr = str(jax.make_jaxpr(jax.grad(loss(remat)))(variables))
    assert jaxpr.count("checkpoint[") + jaxpr.count("remat2[") == 2 * 2
    assert "checkpoint[" not in str(jax.make_jaxpr(jax.grad(loss(plain)))(variables))
