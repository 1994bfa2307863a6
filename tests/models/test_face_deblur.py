import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.models.factory import build_model
from facedeblur_jax.models.param_count import PAPER_TOTAL, param_counts


@pytest.fixture(scope="module")
def tiny():
    return load_config("tiny")


def _model(cfg, **overrides):
    m = cfg.model.copy_and_resolve_references()
    with m.unlocked():
        for k, v in overrides.items():
            m[k] = v
    return build_model(m)


def _randomize(variables, scale=0.05):
    leaves, treedef = jax.tree.flatten(variables["params"])
    keys = jax.random.split(jax.random.key(42), len(leaves))
    noisy = [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    return {**variables, "params": jax.tree.unflatten(treedef, noisy)}


def test_all_intermediates_have_documented_shapes(tiny):
    model = _model(tiny)
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    variables = model.init(jax.random.key(1), x)
    assert set(variables["params"]) == {"coarse", "parsing", "fine_0"}
    out = model.apply(variables, x)
    assert [o.shape for o in out.coarse] == [(2, 16, 16, 3), (2, 32, 32, 3)]
    assert out.parsing_logits.shape == (2, 32, 32, 11)
    assert out.prior.shape == (2, 32, 32, 11)
    np.testing.assert_allclose(out.prior.sum(-1), 1.0, atol=1e-5)
    assert len(out.fine) == 1
    assert [o.shape for o in out.fine[0]] == [(2, 16, 16, 3), (2, 32, 32, 3)]
    assert out.y.shape == (2, 32, 32, 3)
    assert out.y_coarse.shape == (2, 32, 32, 3)


def test_upto_skips_later_nets(tiny):
    model = _model(tiny)
    x = jnp.zeros((1, 32, 32, 3))
    variables = model.init(jax.random.key(1), x)
    coarse = model.apply(variables, x, upto="coarse")
    assert coarse.parsing_logits is None and coarse.fine == ()
    parsing = model.apply(variables, x, upto="parsing")
    assert parsing.parsing_logits.shape == (1, 32, 32, 11) and parsing.fine == ()
    with pytest.raises(ValueError, match="upto must be one of"):
        model.apply(variables, x, upto="all")


@pytest.mark.parametrize("shared", [False, True])
def test_fine_stages(tiny, shared):
    model = _model(tiny, num_fine_stages=3, share_fine_weights=shared)
    x = jax.random.uniform(jax.random.key(0), (1, 32, 32, 3))
    variables = model.init(jax.random.key(1), x)
    expected = {"fine"} if shared else {"fine_0", "fine_1", "fine_2"}
    assert set(variables["params"]) - {"coarse", "parsing"} == expected
    variables = _randomize(variables)  # untrained residual nets are exact identities
    out = model.apply(variables, x)
    assert len(out.fine) == 3
    # Stage n is fed stage n-1's output, so the three differ.
    assert not np.allclose(out.fine[0][-1], out.fine[1][-1])


def test_prior_override_is_used(tiny):
    model = _model(tiny)
    x = jax.random.uniform(jax.random.key(0), (1, 32, 32, 3))
    variables = _randomize(model.init(jax.random.key(1), x))
    zeros = jnp.zeros((1, 32, 32, 11))
    out = model.apply(variables, x, prior=zeros)
    assert bool(jnp.all(out.prior == 0))
    assert not np.allclose(out.y, model.apply(variables, x).y)
    with pytest.raises(ValueError, match="prior must have shape"):
        model.apply(variables, x, prior=jnp.zeros((1, 32, 32, 4)))


def test_paper_param_counts():
    """Table 8: 14.80 M for G_c + P + G_f (N = 1). G_c and G_f are fixed by §3.5 and the
    official layout (derived by hand in test_deblur_net, P in test_official_layout); P's
    widths are not in the paper, so the total is only compared, within 15 %."""
    cfg = load_config("paper")
    counts = param_counts(cfg)
    assert counts["coarse"] == 3_358_425
    assert counts["fine_0"] == 3_575_257
    total = counts["coarse"] + counts["parsing"] + counts["fine_0"]
    assert counts["generator_total"] == total
    assert abs(total / PAPER_TOTAL[1] - 1) < 0.15


def test_paper_model_one_forward_shapes():
    cfg = load_config("paper")
    model = build_model(cfg.model)
    x = jnp.zeros((2, 128, 128, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    out = jax.eval_shape(lambda v: model.apply(v, x), variables)
    assert out.y.shape == (2, 128, 128, 3)
    assert out.parsing_logits.shape == (2, 128, 128, 11)
    assert [o.shape for o in out.fine[0]] == [(2, 64, 64, 3), (2, 128, 128, 3)]


def test_cpu_study_model_is_the_paper_topology_at_half_width():
    """configs/cpu_study.py: every layer of the paper's G_c, P and G_f, same kernel sizes,
    every width halved (input and output channels of the image and prior ends excepted)."""
    paper, study = load_config("paper"), load_config("cpu_study")
    x = jnp.zeros((1, 64, 64, 3))

    def shapes(cfg):
        model = build_model(cfg.model)
        params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]
        return {jax.tree_util.keystr(p): v.shape for p, v in jax.tree.leaves_with_path(params)}

    big, small = shapes(paper), shapes(study)
    assert big.keys() == small.keys()
    fixed = {3, 6, 9, 11, 17, 20}  # image, guide, upsampled and prior channels at the ends
    for key, shape in big.items():
        want = tuple(d if d in fixed or i < len(shape) - 2 else d // 2 for i, d in enumerate(shape))
        if len(shape) == 1:
            want = (shape[0] if shape[0] in fixed else shape[0] // 2,)
        assert small[key] == want, key
    counts = param_counts(study)
    assert counts["generator_total"] == sum(counts[k] for k in ("coarse", "parsing", "fine_0"))
