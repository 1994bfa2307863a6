"""The train state and its optimiser: everything a checkpoint must hold to resume exactly.

Parameters are one dict keyed by sub-network — ``coarse``, ``parsing``, ``fine_*`` (or
``fine``) and ``disc`` — with one Adam state per key. A phase updates only the keys of the
nets it trains; the others' parameters *and* optimiser states are passed through
untouched (not merely given zero updates), so a frozen net's Adam moments and step count
do not move (docs/design.md §5). ``optax.multi_transform`` with ``set_to_zero`` for the
frozen nets would give the same updates; one ``scale_by_adam`` per net also keeps each net's
moments across phases (P resumes its own Adam state in the joint phase) and lets the
learning rate come from the phase record.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from facedeblur_jax.models.discriminator import Discriminator
from facedeblur_jax.models.face_deblur import FaceDeblurModel

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Attributes:
    step: ``i32[]`` optimisation steps done (global, over all phases).
    params: ``{net key: params}`` for G_c, P, G_f stage(s) and D.
    batch_stats: P's BatchNorm running statistics (``{}`` without BN).
    opt_state: ``{net key: scale_by_adam state}``.
    rng: ``u32[2]`` raw base PRNG key (per-step keys are ``fold_in(rng, step)``).
    nonfinite: ``i32[]`` steps skipped because a loss or gradient was NaN/Inf.
    """

    step: jax.Array
    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    rng: jax.Array
    nonfinite: jax.Array


def make_optimizer(optim_cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam's moment scaling (the learning rate is applied by the step, per phase and net),
    optionally after per-net global-norm clipping."""
    adam = optax.scale_by_adam(b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps)
    if optim_cfg.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(optim_cfg.grad_clip_norm), adam)
    return adam


def net_of(param_key: str) -> str:
    """The schedule's net name (``coarse``/``parsing``/``fine``/``disc``) of a param key."""
    return "fine" if param_key.startswith("fine") else param_key


def init_variables(
    model: FaceDeblurModel, disc: Discriminator, key: jax.Array, image_size: int
) -> tuple[PyTree, PyTree]:
    """``(params, batch_stats)`` freshly initialised; params include ``disc``."""
    k_model, k_disc = jax.random.split(key)
    x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    variables = model.init(k_model, x, upto="fine")
    params = dict(variables["params"])
    params["disc"] = disc.init(k_disc, x)["params"]
    return params, dict(variables.get("batch_stats", {}))


def create_train_state(
    config: ml_collections.ConfigDict,
    model: FaceDeblurModel,
    disc: Discriminator,
    key: jax.Array,
) -> TrainState:
    """A fresh state at step 0 (host arrays; the caller places it on the mesh)."""
    k_init, k_rng = jax.random.split(key)
    params, batch_stats = init_variables(model, disc, k_init, config.image_size)
    tx = make_optimizer(config.optim)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state={k: tx.init(v) for k, v in params.items()},
        rng=jax.random.key_data(k_rng),
        nonfinite=jnp.zeros((), jnp.int32),
    )


# The discriminator's top-level param key; every other key is the generator's.
DISCRIMINATOR = "disc"


def generator_params(params: PyTree) -> PyTree:
    """The generator's params (G_c, P, G_f, or the released model's) out of a train state's
    ``params`` dict: every net but the discriminator."""
    return {k: v for k, v in params.items() if k != DISCRIMINATOR}


def generator_variables(state) -> PyTree:
    """``{"params": ..., ["batch_stats": ...]}`` of G_c, P and G_f from a train state (its
    params without the discriminator's ``disc``; batch statistics when P has BatchNorm)."""
    variables = {"params": generator_params(state.params)}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables
