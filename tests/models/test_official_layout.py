"""G and P against the authors' official test code ``DL_deblur_net18.m`` (CVPR'18 release).

Two kinds of check:

* layout: every conv / transposed conv the Flax nets run, in execution order, with its
  kernel ``(h, w, in, out)``, equals a list written by hand from the ``.m`` file (kernel
  sizes from its pads, widths from its concatenations and sums);
* function: a float64 NumPy transcription of the ``.m`` file, statement for statement
  (``vl_nnconv``, ``vl_nnconvt``, ``vl_nnpool``, ``vl_nnbnorm``, ``vl_nnrelu``), computes
  what the Flax nets compute with the same weights.

The released file has 5 ResBlocks per scale; the IJCV text's 6 add two convs per scale.
Its G has no ``y_c`` input and no residual (``guide=None, residual=False`` here), and its
0.5× blurred image comes from MATLAB's ``imresize``; the transcription is fed our 2×2
average instead (the one input that differs, documented in models/deblur_net.py).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from facedeblur_jax.config import load_config
from facedeblur_jax.models.deblur_net import MultiScaleDeblurNet
from facedeblur_jax.models.param_count import param_counts
from facedeblur_jax.models.parsing_net import ParsingNet

# --- the layout of DL_deblur_net18.m, by hand --------------------------------------------
# (kind, kh, kw, in, out). "conv" = vl_nnconv (pad 5 → 11×11, pad 2 → 5×5, pad 1 → 3×3),
# "convT" = vl_nnconvt ('upsample' 2, 'crop' 1 → 4×4). Scale 0.5×: the 64×64 blurred image
# (3) + the 2×2 max-pooled softmax (11) = 14 channels; scale 1×: the transposed conv's
# image (3) + the blurred image (3) + the softmax (11) = 17.
RELEASED_G = [
    ("conv", 11, 11, 14, 64),  # net_G(1,1)   G_convImg_1
    ("conv", 5, 5, 64, 64),  # 2              G_convImg_2
    ("conv", 5, 5, 64, 64),  # 3              G_convImg_3
    ("conv", 5, 5, 64, 64),  # 4              G_res1_convImg_1_1
    ("conv", 5, 5, 64, 64),  # 5              G_res1_convImg_1_2 (+ G_reluImg_3)
    ("conv", 5, 5, 64, 64),  # 6              G_res1_convImg_2_1
    ("conv", 5, 5, 64, 64),  # 7              G_res1_convImg_2_2 (+ G_res1_sunImg_1)
    ("conv", 5, 5, 64, 64),  # 8              G_res1_convImg_3_1
    ("conv", 5, 5, 64, 64),  # 9              G_res1_convImg_3_2
    ("conv", 5, 5, 64, 64),  # 10             G_res1_convImg_4_1
    ("conv", 5, 5, 64, 64),  # 11             G_res1_convImg_4_2
    ("conv", 5, 5, 64, 64),  # 12             G_res1_convImg_5_1
    ("conv", 5, 5, 64, 64),  # 13             G_res1_convImg_5_2
    ("conv", 5, 5, 64, 64),  # 14             G_convImg_4
    ("conv", 5, 5, 64, 64),  # 15             G_convImg_5
    ("conv", 5, 5, 64, 3),  # 16              G_convImg_6 (the 0.5× image)
    ("convT", 4, 4, 3, 3),  # 17              de_deconv
    ("conv", 11, 11, 17, 64),  # 18           G_convImg2_1
    ("conv", 5, 5, 64, 64),  # 19             G_convImg2_2
    ("conv", 5, 5, 64, 64),  # 20             G_convImg2_3
    ("conv", 5, 5, 64, 64),  # 21             G_res2_convImg_1_1
    ("conv", 5, 5, 64, 64),  # 22             G_res2_convImg_1_2
    ("conv", 5, 5, 64, 64),  # 23             G_res2_convImg_2_1
    ("conv", 5, 5, 64, 64),  # 24             G_res2_convImg_2_2
    ("conv", 5, 5, 64, 64),  # 25             G_res2_convImg_3_1
    ("conv", 5, 5, 64, 64),  # 26             G_res2_convImg_3_2
    ("conv", 5, 5, 64, 64),  # 27             G_res2_convImg_4_1
    ("conv", 5, 5, 64, 64),  # 28             G_res2_convImg_4_2
    ("conv", 5, 5, 64, 64),  # 29             G_res2_convImg_5_1
    ("conv", 5, 5, 64, 64),  # 30             G_res2_convImg_5_2
    ("conv", 5, 5, 64, 64),  # 31             G_2convImg_4
    ("conv", 5, 5, 64, 64),  # 32             G_2convImg_5
    ("conv", 5, 5, 64, 3),  # 33              G_2convImg_6 (the output)
]


def six_resblocks(layout):
    """The IJCV text's 6 ResBlocks: one more block (two 5×5 convs) after each scale's
    fifth (net_G 13 and 30)."""
    block = [("conv", 5, 5, 64, 64)] * 2
    return layout[:13] + block + layout[13:30] + block + layout[30:]


def official_p_layout(w, classes=11):
    """net_P(1,1) … net_P(1,12) with encoder widths ``w``. The skips fix the width each of
    the first four decoder convs ends at (relu5 … relu2); the transposed convs' widths and
    the fifth stage's are our choice (models/parsing_net.py)."""
    w1, w2, w3, w4, w5, w6 = w
    return [
        ("conv", 3, 3, 3, w1),  # net_P(1,1)  convImg_1 (pad 1), BN, ReLU, pool
        ("conv", 3, 3, w1, w2),  # 2          convImg_2, pool
        ("conv", 5, 5, w2, w3),  # 3          convImg_3 (pad 2), pool
        ("conv", 3, 3, w3, w4),  # 4          convImg_4, pool
        ("conv", 3, 3, w4, w5),  # 5          convImg_5, pool
        ("conv", 3, 3, w5, w6),  # 6          convImg_6, no pool
        ("convT", 4, 4, w6, w5),  # 7 upw     de_deconv_1
        ("conv", 3, 3, w5, w5),  # 7 w        de_convImg_1, BN, ReLU, + reluImg_5
        ("convT", 4, 4, w5, w4),  # 8
        ("conv", 3, 3, w4, w4),  # 8          + reluImg_4
        ("convT", 4, 4, w4, w3),  # 9
        ("conv", 3, 3, w3, w3),  # 9          + reluImg_3
        ("convT", 4, 4, w3, w2),  # 10
        ("conv", 3, 3, w2, w2),  # 10         + reluImg_2
        ("convT", 4, 4, w2, w1),  # 11
        ("conv", 3, 3, w1, w1),  # 11         no skip
        ("conv", 3, 3, w1, classes),  # 12    de_convImg_parsing
    ]


def conv_sequence(module, *args):
    """``[(kind, kh, kw, in, out)]`` of every Conv / ConvTranspose ``module`` runs on
    ``args``, in execution order (traced with ``jax.eval_shape``: nothing is compiled)."""
    seen = []

    def interceptor(next_fun, call_args, kwargs, context):
        out = next_fun(*call_args, **kwargs)
        layer = context.module
        if context.method_name == "__call__" and isinstance(layer, nn.Conv | nn.ConvTranspose):
            assert layer.padding == "SAME"
            kind = "convT" if isinstance(layer, nn.ConvTranspose) else "conv"
            stride = 2 if kind == "convT" else 1
            strides = layer.strides or 1
            strides = tuple(strides) if isinstance(strides, tuple | list) else (strides,) * 2
            assert strides == (stride, stride)
            seen.append((kind, *layer.variables["params"]["kernel"].shape))
        return out

    with nn.intercept_methods(interceptor):
        jax.eval_shape(module.init, jax.random.key(0), *args)
    return seen


def test_g_matches_the_released_file_conv_for_conv():
    x = jnp.zeros((1, 128, 128, 3))
    prior = jnp.zeros((1, 128, 128, 11))
    released = MultiScaleDeblurNet(num_resblocks=5)
    assert conv_sequence(released, x, None, prior) == RELEASED_G
    paper = MultiScaleDeblurNet(num_resblocks=6)
    layout = six_resblocks(RELEASED_G)
    assert len(layout) == 2 * 18 + 1  # "18 convolutional layers" per scale + the upsampler
    assert conv_sequence(paper, x, None, prior) == layout


def test_paper_gc_and_gf_differ_from_g_only_in_the_first_convs():
    """G_c (no prior: 3 / 6 input channels) and G_f (+ y_c: 17 / 20) of the paper config."""
    cfg = load_config("paper").model
    x = jnp.zeros((1, 128, 128, 3))
    layout = six_resblocks(RELEASED_G)
    g_c = [list(c) for c in layout]
    g_c[0][3], g_c[19][3] = 3, 6
    g_f = [list(c) for c in layout]
    g_f[0][3], g_f[19][3] = 17, 20
    net = MultiScaleDeblurNet(num_resblocks=cfg.num_resblocks, first_kernel=cfg.first_kernel)
    assert conv_sequence(net, x) == [tuple(c) for c in g_c]
    assert conv_sequence(net, x, x, jnp.zeros((1, 128, 128, 11))) == [tuple(c) for c in g_f]


def test_p_matches_the_official_layout_and_its_count():
    cfg = load_config("paper")
    widths = tuple(cfg.model.parsing_features)
    layout = official_p_layout(widths)
    net = ParsingNet(num_classes=11, features=widths)
    assert conv_sequence(net, jnp.zeros((1, 128, 128, 3))) == layout
    # Parameters by hand: every conv has a bias; BatchNorm (scale, bias) after each of the
    # 6 encoder convs and 5 decoder convs.
    convs = sum(kh * kw * cin * cout + cout for _, kh, kw, cin, cout in layout)
    bn = 2 * (sum(widths) + sum(widths[:5]))
    assert convs + bn == param_counts(cfg)["parsing"]


# --- DL_deblur_net18.m in NumPy -------------------------------------------------------------


def vl_nnconv(x, w, b, pad):
    """Correlation of ``f64[N, H, W, C]`` with ``w[kh, kw, C, O]``, symmetric ``pad``."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    windows = sliding_window_view(xp, w.shape[:2], axis=(1, 2))  # [N, H, W, C, kh, kw]
    return np.einsum("nhwcij,ijco->nhwo", windows, w) + b


def vl_nnconvt(x, f, b, crop=1, up=2):
    """Transposed conv, ``f[kh, kw, O, C]`` (MatConvNet's order), ``'upsample' up``,
    ``'crop' crop`` on every side: input pixel ``i`` adds ``f[u]`` at ``up·i + u - crop``."""
    n, h, w, _ = x.shape
    kh, kw, out, _ = f.shape
    y = np.zeros((n, (h - 1) * up + kh, (w - 1) * up + kw, out))
    for u in range(kh):
        for v in range(kw):
            y[:, u : u + (h - 1) * up + 1 : up, v : v + (w - 1) * up + 1 : up] += np.einsum(
                "nhwc,oc->nhwo", x, f[u, v]
            )
    return y[:, crop : y.shape[1] - crop, crop : y.shape[2] - crop] + b


def vl_nnpool_max2(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def vl_nnbnorm(x, g, b, eps=1e-4):
    """Without 'moments' (as the released file calls it): the batch's own statistics."""
    mu, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    return g * (x - mu) / np.sqrt(var + eps) + b


def relu(x):
    return np.maximum(x, 0.0)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def g_scale_forward(inp, net_g, first):
    """net_G(1, first+1) … net_G(1, first+16): one scale of the released G (5 ResBlocks)."""
    k = iter(net_g[first : first + 16])
    h = relu(vl_nnconv(inp, *next(k), 5))  # G_reluImg_1
    h = relu(vl_nnconv(h, *next(k), 2))  # G_reluImg_2
    h = relu(vl_nnconv(h, *next(k), 2))  # G_reluImg_3
    total, act = h, h  # the first block adds to G_reluImg_3 and convolves it
    for _ in range(5):
        t = relu(vl_nnconv(act, *next(k), 2))  # G_res1_reluImg_i_1
        total = vl_nnconv(t, *next(k), 2) + total  # G_res1_sunImg_i
        act = relu(total)  # G_res1_reluImg_i_2
    h = relu(vl_nnconv(act, *next(k), 2))  # G_reluImg_4
    h = relu(vl_nnconv(h, *next(k), 2))  # G_reluImg_5
    return vl_nnconv(h, *next(k), 2)  # G_convImg_6


def g_forward(blur, blur0, soft, net_g):
    """The G half of DL_deblur_net18.m: ``(scale-0.5× output, scale-1× output)``."""
    out0 = g_scale_forward(np.concatenate([blur0, vl_nnpool_max2(soft)], -1), net_g, 0)
    up = vl_nnconvt(out0, *net_g[16])  # de_deconv
    out1 = g_scale_forward(np.concatenate([up, blur, soft], -1), net_g, 17)
    return out0, out1


def p_forward(img, net_p):
    """The P half of DL_deblur_net18.m: logits (before G_softImg_1)."""
    relus, h = [], img
    for j in range(6):
        layer = net_p[j]
        h = relu(vl_nnbnorm(vl_nnconv(h, layer["w"], layer["b"], 2 if j == 2 else 1), *layer["bn"]))
        relus.append(h)
        if j < 5:
            h = vl_nnpool_max2(h)
    skips = [relus[4], relus[3], relus[2], relus[1], None]  # reluImg_5 … reluImg_2, none
    for layer, skip in zip(net_p[6:11], skips, strict=True):
        h = vl_nnconvt(h, layer["upw"], layer["upb"])
        h = relu(vl_nnbnorm(vl_nnconv(h, layer["w"], layer["b"], 1), *layer["bn"]))
        if skip is not None:
            h = h + skip
    return vl_nnconv(h, net_p[11]["w"], net_p[11]["b"], 1)


def _random(shapes, seed):
    """float32 variables for ``shapes`` far from init: kernels ``N(0, 1 / fan_in)``,
    biases and BatchNorm offsets ``N(0, 0.1²)``, BatchNorm scales ``1 + N(0, 0.1²)``."""
    rng = np.random.default_rng(seed)

    def one(path, leaf):
        name = jax.tree_util.keystr(path[-1:])
        noise = rng.standard_normal(leaf.shape)
        if "kernel" in name:
            return (noise / np.sqrt(np.prod(leaf.shape[:-1]))).astype(np.float32)
        return ((1.0 if "scale" in name else 0.0) + 0.1 * noise).astype(np.float32)

    return jax.tree_util.tree_map_with_path(one, shapes)


def _wb(p):
    return np.asarray(p["kernel"], np.float64), np.asarray(p["bias"], np.float64)


def _mcn_convt(p):
    """A Flax ConvTranspose kernel ``[kh, kw, in, out]`` as vl_nnconvt's ``[kh, kw, out, in]``:
    the same filter turned by 180° (Flax correlates the dilated input, MatConvNet scatters)."""
    k, b = _wb(p)
    return k[::-1, ::-1].transpose(0, 1, 3, 2), b


def _net_g(params, features):
    """Flax G params as the ``net_G`` list, in the .m file's order."""
    out = []
    for s in (0, 1):
        sc = params[f"scale{s}"]
        w, b = _wb(sc["conv_in"])
        if s == 1:  # ours concatenates [x, upsampled, p], the .m file [upsampled, x, p]
            w = np.concatenate([w[:, :, 3:6], w[:, :, 0:3], w[:, :, 6:]], axis=2)
        out.append((w, b))
        out += [_wb(sc[f"conv_pre{i}"]) for i in range(2)]
        for i in range(5):
            out += [_wb(sc[f"res{i}"]["conv1"]), _wb(sc[f"res{i}"]["conv2"])]
        out += [_wb(sc[f"conv_post{i}"]) for i in range(2)] + [_wb(sc["conv_out"])]
        if s == 0:
            out.append(_mcn_convt(params["up1"]["ConvTranspose_0"]))
    expected = [
        (kh, kw, *(features if c == 64 else c for c in (cin, cout)))
        for _, kh, kw, cin, cout in RELEASED_G
    ]
    assert [w.shape for w, _ in out] == expected
    return out


def test_g_computes_the_released_file():
    """Pre-activation ResBlocks + one ReLU after the last = the file's ReLU after each add
    with the skip carrying the sum; max-pooled prior at 0.5×, full one at 1×."""
    features = 4
    net = MultiScaleDeblurNet(features=features, num_resblocks=5, residual=False)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(2, 16, 16, 3)).astype(np.float32)
    soft = softmax(2.0 * rng.standard_normal((2, 16, 16, 11))).astype(np.float32)
    variables = _random(jax.eval_shape(net.init, jax.random.key(0), x, None, soft), seed=2)
    out0, out1 = jax.jit(lambda v: net.apply(v, x, None, soft))(variables)
    blur0 = x.reshape(2, 8, 2, 8, 2, 3).mean(axis=(2, 4))  # our 2×2 average, not imresize
    net_g = _net_g(variables["params"], features)
    ref0, ref1 = g_forward(x.astype(np.float64), blur0, soft.astype(np.float64), net_g)
    assert np.abs(ref1).max() > 0.1
    np.testing.assert_allclose(out0, ref0, rtol=1e-4, atol=1e-4 * np.abs(ref0).max())
    np.testing.assert_allclose(out1, ref1, rtol=1e-4, atol=1e-4 * np.abs(ref1).max())


def test_p_computes_the_official_code():
    """BatchNorm in training mode: the released file normalises with the batch's own
    statistics (ε = 1e-4), which Flax's train mode does too."""
    widths = (4, 5, 6, 6, 7, 8)
    net = ParsingNet(num_classes=11, features=widths)
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(2, 32, 32, 3)).astype(np.float32)
    variables = _random(jax.eval_shape(net.init, jax.random.key(0), x), seed=3)
    logits, _ = jax.jit(lambda v: net.apply(v, x, train=True, mutable=["batch_stats"]))(variables)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])

    def bn(name):
        return p[name]["scale"], p[name]["bias"]

    net_p = [{"w": p[f"enc{j}"]["kernel"], "b": p[f"enc{j}"]["bias"], "bn": bn(f"enc{j}_bn")}
             for j in range(6)]  # fmt: skip
    for j in reversed(range(5)):  # net_P(1,7) is our stage 4, …, net_P(1,11) stage 0
        upw, upb = _mcn_convt(p[f"up{j}"])
        net_p.append(
            {"upw": upw, "upb": upb, "w": p[f"dec{j}"]["kernel"], "b": p[f"dec{j}"]["bias"],
             "bn": bn(f"dec{j}_bn")}
        )  # fmt: skip
    net_p.append({"w": p["logits"]["kernel"], "b": p["logits"]["bias"]})
    ref = p_forward(x.astype(np.float64), net_p)
    assert ref.shape == (2, 32, 32, 11) and np.abs(ref).max() > 0.1
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
