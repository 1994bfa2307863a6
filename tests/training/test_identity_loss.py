"""The optional identity loss (loss.identity_weight): the function, its wiring into the tiny
config's step with a random-weight MobileFaceNet from a real .npz, and its start-up checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.models import mobilefacenet as mfn
from facedeblur_jax.state.train_state import net_of
from facedeblur_jax.training import loop as train_lib
from facedeblur_jax.training import losses
from facedeblur_jax.training.schedule import phases_from_config
from facedeblur_jax.training.step import build_train_step
from tests.models.random_mobilefacenet import write_random_mobilefacenet
from tests.training.test_step import _batch, _copy, _mesh, _state


def _mean_colour(images):
    return images.mean(axis=(1, 2))


def test_identity_loss_is_the_mean_cosine_distance():
    red = jnp.zeros((1, 4, 4, 3)).at[..., 0].set(1.0)
    green = jnp.zeros((1, 4, 4, 3)).at[..., 1].set(1.0)
    yellow = red + green
    pred = jnp.concatenate([red, red, yellow])
    target = jnp.concatenate([red, green, red])
    # Per image: same direction 0, orthogonal 1, 45° 1 − 1/√2; mean over the batch.
    expected = (0.0 + 1.0 + (1 - 2**-0.5)) / 3
    assert float(losses.identity_loss(_mean_colour, pred, target)) == pytest.approx(expected)
    g_pred, g_target = jax.grad(losses.identity_loss, argnums=(1, 2))(_mean_colour, pred, target)
    assert float(jnp.abs(g_pred).sum()) > 0
    assert float(jnp.abs(g_target).sum()) == 0  # the target's embedding is stop_gradient-ed


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return write_random_mobilefacenet(tmp_path_factory.mktemp("identity") / "mobilefacenet.npz")


def _only_identity(weights_file, weight=1.0):
    """The tiny config whose fine phase trains G_f on the identity loss alone."""
    cfg = load_config(
        "tiny",
        {
            "loss.identity_weight": weight,
            "loss.identity_weights_path": str(weights_file),
            "phases.fine.train": ("fine",),
            "phases.fine.loss.content_fine": 0.0,
            "phases.fine.loss.structural": 0.0,
            "phases.fine.loss.adv": 0.0,
        },
    )
    return cfg, next(p for p in phases_from_config(cfg) if p.name == "fine")


@pytest.mark.slow  # compiles MobileFaceNet's backward pass into the step: ~50 s of CPU
def test_identity_term_trains_g_f(weights_file):
    cfg, phase = _only_identity(weights_file)
    assert phase.loss["identity"] == 1.0 and phase.upto == "fine"
    identity_apply, variables = train_lib._identity(cfg, phases_from_config(cfg))
    mesh = _mesh(2)
    state = _state(cfg, mesh)
    before = _copy(state.params)
    step = build_train_step(cfg, phase, mesh, identity_apply=identity_apply)
    state, metrics = step(state, _batch(mesh), None, None, variables)
    assert set(k for k in metrics if k.startswith("loss/")) == {"loss/identity", "loss/total"}
    assert 0 < float(metrics["loss/identity"]) <= 2 and float(metrics["grad_norm"]) > 0
    after = _copy(state.params)
    for key in before:
        changed = any(
            not np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(before[key]), jax.tree.leaves(after[key]), strict=True)
        )
        assert changed == (net_of(key) == "fine"), key  # the identity gradient reached G_f


def test_weight_zero_builds_nothing_and_leaves_the_program_unchanged(weights_file):
    cfg = load_config("tiny", {"loss.identity_weights_path": str(weights_file.parent / "none.npz")})
    phases = phases_from_config(cfg)
    assert all(p.loss["identity"] == 0 for p in phases)
    assert train_lib._identity(cfg, phases) == (None, None)  # not loaded: the file is absent
    phase = phases[2]
    mesh = _mesh(2)
    state, batch = _state(cfg, mesh), _batch(mesh)
    identity_apply = lambda v, x: mfn.embed(v, x)
    plain = build_train_step(cfg, phase, mesh).lower(state, batch, None).as_text()
    offered = build_train_step(cfg, phase, mesh, identity_apply=identity_apply)
    assert offered.lower(state, batch, None, None, None).as_text() == plain
    assert "112x96" not in plain  # no MobileFaceNet input anywhere in the step
    # With the weight on, the same phase's program holds the network.
    on, phase_on = _only_identity(weights_file)
    apply_on, variables = train_lib._identity(on, phases_from_config(on))
    lowered = build_train_step(on, phase_on, mesh, identity_apply=apply_on)
    assert "112x96" in lowered.lower(state, batch, None, None, variables).as_text()


def test_start_up_errors_name_the_key(weights_file, tmp_path):
    config = load_config("tiny", {"loss.identity_weight": 0.1})
    with pytest.raises(ValueError, match=r"identity_weights_path is empty.*identity_weight=0"):
        train_lib.train(config, tmp_path / "w1", progress=False)
    assert not (tmp_path / "w1").exists()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"no zip")
    config = load_config(
        "tiny", {"loss.identity_weight": 0.1, "loss.identity_weights_path": str(bad)}
    )
    with pytest.raises(ValueError, match=rf"config.loss.identity_weights_path: {bad}"):
        train_lib.train(config, tmp_path / "w2", progress=False)
    # Both losses listed, VGG-Face weights missing: the L_VGG error still fires.
    config = load_config(
        "tiny",
        {
            "loss.identity_weight": 0.1,
            "loss.identity_weights_path": str(weights_file),
            "loss.vgg_weight": 1e-5,
        },
    )
    with pytest.raises(ValueError, match=r"vgg_weights_path is empty"):
        train_lib.train(config, tmp_path / "w3", progress=False)
