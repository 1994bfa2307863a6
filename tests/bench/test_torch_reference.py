"""The PyTorch twin (``facedeblur_jax/bench/torch_reference.py``) computes what the Flax
model computes.

Tolerance: both sides run float32 on CPU, XLA's convolutions against oneDNN's, which sum
in different orders (~1e-7 relative per layer, growing with depth and width). We require
``max |flax - torch| <= TOL · max(1, max |flax|)`` with ``TOL = 1e-5`` for every output.
Measured with the random weights below (activations O(0.1–1) everywhere, outputs O(1);
``python -m pytest tests/bench/test_torch_reference.py -s``): <= 4.2e-7 on the tiny model,
<= 2.8e-6 on the paper model at 128 px (18-conv scales, official P), where JAX's float32
result is itself <= 1.5e-6 from a float64 torch run, i.e. the gap is rounding on both
sides. The cvpr18 kind (the released graph at small widths, 64 px, batch 2): <= 6e-6 on
P's logits (|logits| up to ~5, per-image statistics of P's 2×2 deepest maps), <= 3.3e-7 on
G, again as far as JAX's float32 is from a float64 torch run. A wrong padding, kernel
flip, flatten order or resize is off by 1e-2 or more (see the negative controls below).

The untrained model is an exact identity (its last convs start at zero), so every test
draws all parameters and batch statistics at random (``tr.random_flax_variables``).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from facedeblur_jax.bench import torch_reference as tr
from facedeblur_jax.config import load_config
from facedeblur_jax.models import layers
from facedeblur_jax.models.factory import build_discriminator, build_model

TOL = 1e-5


def _close(name, flax_out, torch_out):
    """Asserts closeness as in the module docstring; returns the max abs difference."""
    a = np.asarray(flax_out, np.float32)
    b = tr.to_nhwc(torch_out) if isinstance(torch_out, torch.Tensor) else np.asarray(torch_out)
    assert a.shape == b.shape, f"{name}: shape {a.shape} vs {b.shape}"
    diff = float(np.max(np.abs(a - b)))
    bound = TOL * max(1.0, float(np.max(np.abs(a))))
    assert diff <= bound, f"{name}: max abs diff {diff:.3g} > {bound:.3g}"
    return diff


def _cfg(name, **model):
    cfg = load_config(name)
    with cfg.unlocked():
        for k, v in model.items():
            cfg.model[k] = v
    return cfg


def _setup(cfg, batch, seed=0):
    """(flax model, perturbed variables, input x NHWC) for ``cfg``."""
    model = build_model(cfg.model)
    size = cfg.image_size
    x = jax.random.uniform(jax.random.key(seed), (batch, size, size, 3))
    variables = tr.random_flax_variables(model, x)
    return model, variables, x


def _torch_model(cfg, variables):
    return tr.load_flax_params(tr.build_model(cfg), variables).eval()


def _compare_outputs(out, tout):
    diffs = {}
    for s, (a, b) in enumerate(zip(out.coarse, tout.coarse, strict=True)):
        diffs[f"coarse[{s}]"] = _close(f"coarse[{s}]", a, b)
    diffs["parsing_logits"] = _close("parsing_logits", out.parsing_logits, tout.parsing_logits)
    diffs["prior"] = _close("prior", out.prior, tout.prior)
    assert len(out.fine) == len(tout.fine)
    for n, (fa, fb) in enumerate(zip(out.fine, tout.fine, strict=True)):
        for s, (a, b) in enumerate(zip(fa, fb, strict=True)):
            diffs[f"fine[{n}][{s}]"] = _close(f"fine[{n}][{s}]", a, b)
    return diffs


@pytest.fixture(scope="module")
def tiny():
    """The tiny config, its perturbed Flax model on a batch of 2 and the Flax outputs
    (compiled once for the module: XLA compiles dominate these tests on CPU)."""
    cfg = load_config("tiny")
    model, variables, x = _setup(cfg, batch=2)
    out = jax.jit(model.apply)(variables, x)
    return cfg, model, variables, x, out


# --- building blocks against the Flax / JAX ops they mirror ---------------------------


@pytest.mark.parametrize("kernel,stride", [(4, 2), (3, 2), (2, 2), (5, 3), (3, 1), (1, 3)])
def test_conv_transpose_same_matches_flax(kernel, stride):
    import flax.linen as nn

    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3))
    layer = nn.ConvTranspose(4, (kernel, kernel), strides=(stride, stride), padding="SAME")
    params = layer.init(jax.random.key(1), x)
    params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(2), p.shape), params)
    ref = layer.apply(params, x)
    tlayer = tr.ConvTranspose2dSame(3, 4, kernel, stride)
    tr.load_flax_params(_Wrap(tlayer), {"params": {"layer": params["params"]}})
    with torch.no_grad():
        out = tlayer(tr.from_nhwc(x))
    _close(f"conv_transpose k{kernel} s{stride}", ref, out)


@pytest.mark.parametrize("kernel,stride,size", [(4, 2, 8), (4, 2, 7), (4, 1, 6), (5, 1, 6)])
def test_conv_same_matches_flax(kernel, stride, size):
    import flax.linen as nn

    x = jax.random.normal(jax.random.key(0), (2, size, size + 1, 3))
    layer = nn.Conv(4, (kernel, kernel), strides=(stride, stride), padding="SAME")
    params = layer.init(jax.random.key(1), x)
    ref = layer.apply(params, x)
    tlayer = tr.Conv2dSame(3, 4, kernel, stride)
    tr.load_flax_params(_Wrap(tlayer), {"params": {"layer": params["params"]}})
    with torch.no_grad():
        out = tlayer(tr.from_nhwc(x))
    _close(f"conv k{kernel} s{stride} n{size}", ref, out)


class _Wrap(torch.nn.Module):
    """Puts one layer under the name ``layer`` so the converter can address it."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer


@pytest.mark.parametrize("method", ["linear", "cubic"])
@pytest.mark.parametrize("src,dst", [(4, 8), (4, 16), (6, 12), (8, 5)])
def test_resize_matches_jax_image_resize(method, src, dst):
    x = jax.random.normal(jax.random.key(0), (1, src, src + 2, 2))
    ref = layers.resize_to(x, dst, dst + 1, method=method)
    with torch.no_grad():
        out = tr.resize_to(tr.from_nhwc(x), dst, dst + 1, method=method)
    _close(f"resize {method} {src}->{dst}", ref, out)


@pytest.mark.parametrize("method", ["transposed", "subpixel", "bicubic"])
def test_upsample2x_matches_flax(method):
    x = jax.random.normal(jax.random.key(0), (2, 6, 8, 3))
    layer = layers.Upsample2x(method)
    variables = tr.random_flax_variables(layer, x)
    ref = layer.apply(variables, x)
    tlayer = tr.Upsample2x(3, method)
    tr.load_flax_params(_Wrap(tlayer), {"params": {"layer": variables.get("params", {})}})
    with torch.no_grad():
        out = tlayer(tr.from_nhwc(x))
    _close(f"Upsample2x {method}", ref, out)


# --- whole networks -------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"upsample": "subpixel", "num_scales": 3, "num_fine_stages": 2, "share_fine_weights": True},
    ],
    ids=["default", "subpixel-S3-N2-shared"],
)
def test_tiny_model_every_intermediate_matches(overrides, tiny):
    if overrides:
        cfg = _cfg("tiny", **overrides)
        model, variables, x = _setup(cfg, batch=2)
        out = jax.jit(model.apply)(variables, x)
    else:
        cfg, model, variables, x, out = tiny
    with torch.no_grad():
        tout = _torch_model(cfg, variables)(tr.from_nhwc(x))
    print(overrides, "max abs diffs:", _compare_outputs(out, tout))
    # The perturbed model is far from the identity and the prior far from uniform, so the
    # comparison above exercises every weight.
    assert float(jnp.max(jnp.abs(out.y - x))) > 0.1
    assert float(jnp.max(jnp.abs(out.prior - 1.0 / cfg.model.num_classes))) > 200 * TOL


def test_tiny_model_prior_override_and_upto(tiny):
    cfg, model, variables, x, ref = tiny
    tmodel = _torch_model(cfg, variables)
    prior = jax.nn.one_hot(jax.random.randint(jax.random.key(3), (2, 32, 32), 0, 11), 11)
    out = jax.jit(lambda v, x, p: model.apply(v, x, prior=p))(variables, x, prior)
    with torch.no_grad():
        tout = tmodel(tr.from_nhwc(x), prior=tr.from_nhwc(prior))
        tparse = tmodel(tr.from_nhwc(x), upto="parsing")
    _close("y with prior override", out.y, tout.y)
    assert tparse.fine == () and tparse.parsing_logits is not None
    _close("parsing logits (upto=parsing)", ref.parsing_logits, tparse.parsing_logits)
    assert np.max(np.abs(np.asarray(out.y - ref.y))) > 0.01  # the override mattered


def test_tiny_model_batchnorm_train_mode_matches(tiny):
    cfg, model, variables, x, _ = tiny
    tmodel = _torch_model(cfg, variables)
    apply = functools.partial(model.apply, train_parsing=True, mutable=["batch_stats"])
    out, updates = jax.jit(apply)(variables, x)
    tmodel.train()
    with torch.no_grad():
        tout = tmodel(tr.from_nhwc(x))
    _compare_outputs(out, tout)
    new_stats = tr.torch_to_flax(tmodel)["batch_stats"]
    flat_ref = jax.tree_util.tree_flatten_with_path(updates["batch_stats"])[0]
    flat_new = dict(jax.tree_util.tree_flatten_with_path(new_stats)[0])
    assert len(flat_ref) == len(flat_new) > 0
    for path, ref in flat_ref:
        _close(f"batch_stats{jax.tree_util.keystr(path)}", ref, flat_new[path])
    # Train mode really used batch statistics: the running stats moved.
    assert not np.allclose(updates["batch_stats"]["parsing"]["enc0_bn"]["var"],
                           variables["batch_stats"]["parsing"]["enc0_bn"]["var"])  # fmt: skip


def test_tiny_discriminator_matches(tiny):
    cfg = tiny[0]
    disc = build_discriminator(cfg.model)
    x = jax.random.uniform(jax.random.key(0), (3, 32, 32, 3))
    variables = tr.random_flax_variables(disc, x)
    ref = jax.jit(disc.apply)(variables, x)
    tdisc = tr.load_flax_params(tr.build_discriminator(cfg), variables)
    with torch.no_grad():
        out = tdisc(tr.from_nhwc(x))
    assert tuple(out.shape) == (3,)
    _close("D logits", ref, out)
    # Negative control: flattening in NCHW order instead of NHWC gives other logits.
    with torch.no_grad():
        h = tr.from_nhwc(x)
        for i in range(len(tdisc.features)):
            h = torch.nn.functional.leaky_relu(getattr(tdisc, f"conv{i}")(h), 0.2)
        wrong = tdisc.logit(h.reshape(h.shape[0], -1))[:, 0]
    assert np.max(np.abs(np.asarray(ref) - wrong.numpy())) > 10 * TOL


def test_unflipped_transposed_kernel_is_caught(tiny):
    """Negative control: loading the Flax ConvTranspose kernels without the spatial flip
    moves the outputs far outside the tolerance."""
    cfg, _, variables, x, out = tiny
    tmodel = _torch_model(cfg, variables)
    with torch.no_grad():
        for module in tmodel.modules():
            if isinstance(module, torch.nn.ConvTranspose2d):
                module.weight.copy_(module.weight.flip(2, 3))
        tout = tmodel(tr.from_nhwc(x))
    assert np.max(np.abs(np.asarray(out.y) - tr.to_nhwc(tout.y))) > 10 * TOL


def test_conversion_round_trip_and_errors(tiny):
    cfg, _, variables, _, _ = tiny
    tmodel = _torch_model(cfg, variables)
    back = tr.torch_to_flax(tmodel)
    ref = jax.tree_util.tree_flatten_with_path(variables)[0]
    got = dict(jax.tree_util.tree_flatten_with_path(back)[0])
    assert len(ref) == len(got)
    for path, leaf in ref:
        np.testing.assert_array_equal(np.asarray(leaf), got[path], err_msg=str(path))
    sd = tr.flax_to_torch(variables, cfg)
    assert set(sd) == set(tmodel.state_dict())
    with pytest.raises(ValueError, match="torch expects"):
        tr.flax_to_torch(variables, _cfg("tiny", features=16))
    extra = {**variables, "params": {**variables["params"], "stray": {"kernel": np.zeros(1)}}}
    with pytest.raises(ValueError, match="not used by the torch model"):
        tr.flax_to_torch(extra, cfg)


@pytest.mark.slow
def test_paper_model_matches_at_128px():
    """Full G_c → P → G_f at the paper's size, eval mode; also against a float64 torch run,
    which shows that the remaining float32 difference is rounding on both sides."""
    cfg = load_config("paper")
    model, variables, x = _setup(cfg, batch=1)
    out = jax.jit(model.apply)(variables, x)
    tmodel = _torch_model(cfg, variables)
    with torch.no_grad():
        tout = tmodel(tr.from_nhwc(x))
        tout64 = tmodel.double()(tr.from_nhwc(x).double())
    diffs = _compare_outputs(out, tout)
    diffs64 = _compare_outputs(out, tout64)
    assert float(jnp.max(jnp.abs(out.y - x))) > 0.1
    print("paper max abs diffs vs torch fp32:", diffs)
    print("paper max abs diffs vs torch fp64:", diffs64)


# --- the released CVPR'18 graph (model.kind = "cvpr18") -------------------------------

# Small widths in the released layout: decoder widths that do not mirror the encoder, a
# class count other than 11; 64 px so that P's deepest stage still has 2×2 pixels for its
# per-image statistics.
CVPR18_SMALL = {
    "image_size": 64,
    "model.features": 8,
    "model.num_resblocks": 2,
    "model.first_kernel": 5,
    "model.kernel_size": 3,
    "model.num_classes": 5,
    "model.parsing_features": (8, 16, 16, 16, 16, 16),
    "model.parsing_up_features": (6, 12, 10, 8, 14),
    "model.parsing_last_features": 5,
}


def _cvpr18_cfg(**overrides):
    return load_config("cvpr18", {**CVPR18_SMALL, **overrides})


@pytest.fixture(scope="module")
def cvpr18():
    """The small cvpr18 config, its random Flax model on a batch of 2 and its outputs."""
    cfg = _cvpr18_cfg()
    model, variables, x = _setup(cfg, batch=2)
    out = jax.jit(model.apply)(variables, x)
    return cfg, model, variables, x, out


def _compare_cvpr18(out, tout):
    assert out.coarse == () and tout.coarse == ()
    diffs = {
        "parsing_logits": _close("parsing_logits", out.parsing_logits, tout.parsing_logits),
        "prior": _close("prior", out.prior, tout.prior),
    }
    ((half, full),) = out.fine
    ((thalf, tfull),) = tout.fine
    diffs["G half"] = _close("G half", half, thalf)
    diffs["G full"] = _close("G full", full, tfull)
    return diffs


def test_cvpr18_twin_matches_every_output(cvpr18):
    """P (per-image normalisation, decoder widths of their own), the prior, both scales of
    G (MATLAB-bicubic half scale, max-pooled prior, no residual), input scale 255/256."""
    cfg, _, variables, x, out = cvpr18
    tmodel = _torch_model(cfg, variables)
    assert isinstance(tmodel, tr.Cvpr18Model) and not tmodel.has_coarse
    assert isinstance(tmodel.parsing.enc0_bn, tr.PerImageNorm2d)
    assert "batch_stats" not in variables  # per-image norm keeps no statistics
    with torch.no_grad():
        tout = tmodel(tr.from_nhwc(x))
    print("cvpr18 max abs diffs:", _compare_cvpr18(out, tout))
    assert float(jnp.max(jnp.abs(out.y - x))) > 0.1
    assert float(jnp.max(jnp.abs(out.prior - 1.0 / cfg.model.num_classes))) > 200 * TOL
    with pytest.raises(ValueError, match="no coarse net G_c"):
        _ = tout.y_coarse


def test_cvpr18_twin_prior_override_upto_and_batch_independence(cvpr18):
    cfg, model, variables, x, ref = cvpr18
    tmodel = _torch_model(cfg, variables)
    k = cfg.model.num_classes
    prior = jax.nn.one_hot(jax.random.randint(jax.random.key(3), (2, 64, 64), 0, k), k)
    out = jax.jit(lambda v, x, p: model.apply(v, x, prior=p))(variables, x, prior)
    with torch.no_grad():
        tout = tmodel(tr.from_nhwc(x), prior=tr.from_nhwc(prior))
        tparse = tmodel(tr.from_nhwc(x), upto="parsing")
        tfirst = tmodel(tr.from_nhwc(x[:1]), train_parsing=True)  # per-image: no train mode
    _close("y with prior override", out.y, tout.y)
    assert np.max(np.abs(np.asarray(out.y - ref.y))) > 0.01  # the override mattered
    assert tparse.fine == () and tparse.prior is None
    _close("parsing logits (upto=parsing)", ref.parsing_logits, tparse.parsing_logits)
    # Per-image statistics: the first image alone gives its row of the batch's outputs.
    _close("first image alone", ref.y[:1], tfirst.y)
    with pytest.raises(ValueError, match="no coarse net"):
        tmodel(tr.from_nhwc(x), upto="coarse")


def test_cvpr18_twin_with_stored_moments_matches():
    """``parsing_norm = "batch"`` (what convert-official --bn moments writes): P's BatchNorm
    on running statistics (eval mode), batch_stats converted too."""
    cfg = _cvpr18_cfg(**{"model.parsing_norm": "batch"})
    model, variables, x = _setup(cfg, batch=2)
    out = jax.jit(model.apply)(variables, x)
    assert "parsing" in variables["batch_stats"]
    with torch.no_grad():
        tout = _torch_model(cfg, variables)(tr.from_nhwc(x))
    _compare_cvpr18(out, tout)


def test_cvpr18_matlab_resize_matches_flax():
    """The torch MATLAB-bicubic resize equals ``layers.matlab_resize`` (and is not a box)."""
    x = jax.random.normal(jax.random.key(0), (2, 16, 12, 3))
    ref = layers.downsample(x, 2, "matlab_bicubic")
    with torch.no_grad():
        out = tr.downsample(tr.from_nhwc(x), 2, "matlab_bicubic")
        box = tr.downsample(tr.from_nhwc(x), 2, "box")
    _close("matlab_bicubic 2x", ref, out)
    _close("matlab_resize 16x12 -> 5x7", layers.matlab_resize(x, 5, 7),
           tr.matlab_resize(tr.from_nhwc(x), 5, 7))  # fmt: skip
    assert np.max(np.abs(np.asarray(ref) - tr.to_nhwc(box))) > 10 * TOL
    with pytest.raises(ValueError, match="downsample method"):
        tr.downsample(tr.from_nhwc(x), 2, "lanczos")


def test_cvpr18_box_downsample_is_caught(cvpr18):
    """Negative control: the twin's G with box downsampling instead of MATLAB's bicubic
    moves the outputs far outside the tolerance."""
    cfg, _, variables, x, out = cvpr18
    tmodel = _torch_model(cfg, variables)
    tmodel.generator.downsample_method = "box"
    with torch.no_grad():
        tout = tmodel(tr.from_nhwc(x))
    assert np.max(np.abs(np.asarray(out.y) - tr.to_nhwc(tout.y))) > 10 * TOL


def test_cvpr18_conversion_both_directions(cvpr18):
    """Flax → torch → Flax is exact and names every leaf (``generator/...``, P's PerImageNorm
    ``scale`` / ``bias``); torch → Flax: a torch model with its own random weights, converted,
    gives the Flax model the torch outputs."""
    cfg, model, variables, x, _ = cvpr18
    tmodel = _torch_model(cfg, variables)
    back = tr.torch_to_flax(tmodel)
    assert set(back) == {"params"} and set(back["params"]) == {"parsing", "generator"}
    assert set(back["params"]["parsing"]["dec0_bn"]) == {"scale", "bias"}
    ref = jax.tree_util.tree_flatten_with_path(variables)[0]
    got = dict(jax.tree_util.tree_flatten_with_path(back)[0])
    assert len(ref) == len(got)
    for path, leaf in ref:
        np.testing.assert_array_equal(np.asarray(leaf), got[path], err_msg=str(path))
    sd = tr.flax_to_torch(variables, cfg)
    assert set(sd) == set(tmodel.state_dict())
    assert "parsing.enc0_bn.weight" in sd and "parsing.enc0_bn.running_mean" not in sd
    with pytest.raises(ValueError, match="torch expects"):
        tr.flax_to_torch(variables, _cvpr18_cfg(**{"model.parsing_up_features": (6,) * 5}))

    # torch -> Flax: torch's own init, norms and biases perturbed so none is trivial.
    torch.manual_seed(0)
    own = tr.build_model(cfg).eval()
    with torch.no_grad():
        for name, prm in own.named_parameters():
            if prm.ndim == 1:
                prm.copy_(
                    (1.0 if name.endswith("_bn.weight") else 0.0) + 0.1 * torch.randn_like(prm)
                )
            else:
                prm.mul_(2.0)  # torch's default init is small; keep activations O(1)
        tout = own(tr.from_nhwc(x))
    flax_vars = tr.torch_to_flax(own)
    out = jax.jit(model.apply)(flax_vars, x)
    _compare_cvpr18(out, tout)
    assert float(jnp.max(jnp.abs(out.y - x))) > 0.1


def test_cvpr18_twin_traces_as_one_graph(cvpr18):
    """The MATLAB-bicubic weights of the config's image size are the twin's buffers (not in
    the state_dict), so torch.compile traces the whole model without a break (NumPy
    cannot be traced); another input size still runs eagerly."""
    cfg, _, variables, x, _ = cvpr18
    tmodel = _torch_model(cfg, variables)
    assert [n for n, _ in tmodel.named_buffers()] == ["generator.matlab_resize_64_to_32"]
    with torch.inference_mode():
        explained = torch._dynamo.explain(lambda t: tmodel(t).y)(tr.from_nhwc(x))
        small = tmodel(tr.from_nhwc(x[:, :32, :32]))  # weights made on the fly
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    assert tuple(small.y.shape) == (2, 3, 32, 32)
