"""One jitted, data-parallel training step per phase (docs/design.md §5–6).

The step is per-device SPMD code under ``jax.shard_map`` over the mesh axis ``"data"``,
inside ``jax.jit`` — the current form of ``pmap``: the batch is sharded on ``"data"``, the
state is replicated, gradients and metrics are ``lax.pmean``-ed, P's BatchNorm averages
its batch statistics over ``"data"``, and the state buffer is donated.

Degradation runs inside the step. Randomness: the per-step key is
``fold_in(state.rng, step)``; each device derives one key per sample from it with
``fold_in(step_key, global sample index)``, the index being
``axis_index("data") · local_batch + i`` (docs/design.md §6): unique per device and
sample, and independent of the number of devices: a run on 1, 8 or 256 devices with the
same global batch sees exactly the same blur, so it computes the same update (tested) and a
run can resume on a different topology.

Gradients cross devices in exactly one all-reduce per step (checked on the compiled HLO
by ``tests/training/test_step_hlo.py``): the step differentiates with respect to a
device-*varying* view of the replicated params (``lax.pcast(..., to="varying")``), so the
gradients stay per-device, then every trained net's gradients — the generator's and D's —
are flattened into one ``f32[n_trainable]`` vector (``ravel_pytree``) that is ``pmean``-ed
once and unflattened. Differentiating the replicated params directly would let
``shard_map`` transpose their implicit replicated→varying broadcast into a ``psum`` per
leaf: one all-reduce per parameter array, and the *sum* over devices, not the mean.
The other collectives of a step are small: P's synchronised BatchNorm statistics
(forward and backward) and the scalar metrics.

A step whose loss or gradient norm is NaN/Inf (after the cross-device mean, so every
replica agrees) leaves params, optimiser states and BatchNorm statistics unchanged and
increments ``state.nonfinite``; the step counter still advances.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from facedeblur_jax.core import metrics
from facedeblur_jax.degrade.synthesize import Degraded, augment_only, synthesize
from facedeblur_jax.models import priors
from facedeblur_jax.models.face_deblur import DeblurOutputs
from facedeblur_jax.models.factory import build_discriminator, build_model
from facedeblur_jax.state.train_state import (
    TrainState,
    generator_params,
    make_optimizer,
    net_of,
)
from facedeblur_jax.training import losses
from facedeblur_jax.training.schedule import Phase

AXIS = "data"
PyTree = Any
VggApply = Callable[[PyTree, jax.Array], dict[str, jax.Array]]
# (MobileFaceNet variables, f32[B, H, W, 3] in [0, 1]) -> f32[B, D] (the identity loss).
IdentityApply = Callable[[PyTree, jax.Array], jax.Array]


def _sum(values):
    total = jnp.zeros((), jnp.float32)
    for v in values:
        total = total + v
    return total


def sample_keys(rng: jax.Array, step: jax.Array, local_b: int, axis_name: str | None):
    """This device's per-sample degradation keys of a step: ``fold_in(fold_in(rng, step),
    global sample index)``, the index being ``axis_index · local_b + i`` (so a sample's key
    does not depend on how the batch is split over devices). ``rng``: raw key data
    (``TrainState.rng``). Returns ``key[local_b]``."""
    step_key = jax.random.fold_in(jax.random.wrap_key_data(rng), step)
    first = 0 if axis_name is None else jax.lax.axis_index(axis_name) * local_b
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(step_key, first + jnp.arange(local_b))


class PhaseLosses(NamedTuple):
    """The losses of one phase, shared by the train step and :func:`build_grad_norms`.

    Attributes:
      degrade: ``(state, batch, kernel_pool) -> Degraded``: this device's (or, with
        ``axis_name=None``, the whole) batch made into training examples with the step's
        per-sample keys — blurred by :func:`synthesize`, or only augmented
        (:func:`augment_only`) when P parses clear faces.
      split: ``params -> (trained generator nets, the rest)`` by top-level key.
      terms: ``(trained, frozen, batch_stats, deg, has_labels, vgg_params,
        identity_params=None) -> (terms, new_batch_stats, y)``: every active loss term *unweighted*
        (``{name: f32[]}``, names of ``schedule.LOSSES``), P's updated BatchNorm
        statistics and the output image (``None`` when no deblurring net ran).
      weights: ``phase.loss``: the weight of each term.
      disc_loss: ``(d_params, real, fake) -> (loss, logits)``.
    """

    degrade: Callable
    split: Callable
    terms: Callable
    weights: dict
    disc_loss: Callable


def phase_losses(
    config: ml_collections.ConfigDict,
    phase: Phase,
    vgg_apply: VggApply | None = None,
    axis_name: str | None = AXIS,
    identity_apply: IdentityApply | None = None,
) -> PhaseLosses:
    """:class:`PhaseLosses` of ``phase`` (P's BatchNorm averages over ``axis_name``).

    With ``phase.parsing_clear`` P is applied alone to the augmented sharp face: G_c is
    not part of the program and nothing is blurred.
    """
    model = build_model(config.model, bn_axis_name=axis_name)
    disc = build_discriminator(config.model)
    w = phase.loss
    train_parsing = phase.trains("parsing") and config.model.parsing_use_bn
    if w["vgg"] > 0 and vgg_apply is None:
        raise ValueError(f"phase {phase.name!r} uses L_VGG but no VGG-Face network was given")
    if w["identity"] > 0 and identity_apply is None:
        raise ValueError(f"phase {phase.name!r} uses the identity loss but no network was given")
    lcfg = config.loss

    def degrade(state: TrainState, batch: dict, kernel_pool=None) -> Degraded:
        local_b = batch["image"].shape[0]
        keys = sample_keys(state.rng, state.step, local_b, axis_name)
        if phase.parsing_clear:
            return augment_only(keys, batch["image"], batch["labels"], config.degrade)
        return synthesize(keys, batch["image"], batch["labels"], config.degrade, kernel_pool)

    def split(params):
        keys = [k for k in params if k != "disc" and phase.trains(net_of(k))]
        return {k: params[k] for k in keys}, {k: v for k, v in params.items() if k not in keys}

    def forward(params, batch_stats, x, prior=None):
        """``(DeblurOutputs, new batch_stats)`` of the nets this phase runs on input ``x``
        (G_f fed ``prior`` instead of P's prediction when given)."""
        variables = {"params": generator_params(params)}
        if batch_stats:
            variables["batch_stats"] = batch_stats
        if phase.parsing_clear:
            if not train_parsing:
                logits = model.apply(variables, x, method="parse")
                return DeblurOutputs(coarse=(), parsing_logits=logits), batch_stats
            logits, updates = model.apply(
                variables, x, method="parse", train=True, mutable=["batch_stats"]
            )
            return DeblurOutputs(coarse=(), parsing_logits=logits), updates["batch_stats"]
        if train_parsing:
            out, updates = model.apply(
                variables,
                x,
                upto=phase.upto,
                train_parsing=True,
                prior=prior,
                mutable=["batch_stats"],
            )
            return out, updates["batch_stats"]
        return model.apply(variables, x, upto=phase.upto, prior=prior), batch_stats

    def fed_prior(deg: Degraded):
        """G_f's prior override of ``phase.prior`` (``None``: P's prediction)."""
        if phase.upto != "fine":
            return None
        return priors.fed(
            phase.prior,
            num_classes=model.num_classes,
            batch_hw=deg.blurred.shape[:3],
            labels=deg.labels,
        )

    def terms_of(trained, frozen, batch_stats, deg, has_labels, vgg_params, id_params=None):
        params = {**jax.tree.map(jax.lax.stop_gradient, frozen), **trained}
        out, new_stats = forward(params, batch_stats, deg.blurred, fed_prior(deg))
        sharp, labels = deg.sharp, deg.labels
        terms = {}
        if w["content_coarse"]:
            terms["content_coarse"] = losses.content_loss(out.coarse, sharp)
        if w["content_fine"]:
            terms["content_fine"] = _sum(losses.content_loss(s, sharp) for s in out.fine)
        if w["structural"]:
            terms["structural"] = _sum(
                losses.structural_loss(
                    pred,
                    sharp,
                    labels,
                    c=lcfg.structural_c,
                    adaptive=lcfg.structural_adaptive,
                    has_labels=has_labels,
                    min_area=float(lcfg.structural_min_area),
                )
                for stage in out.fine
                for pred in stage
            )
        if w["parsing"]:
            terms["parsing"] = losses.parsing_loss(out.parsing_logits, labels, has_labels)
        if w["vgg"]:
            terms["vgg"] = losses.perceptual_loss(
                lambda im: vgg_apply(vgg_params, im), out.y, sharp, tuple(lcfg.vgg_layers)
            )
        if w["identity"]:
            terms["identity"] = losses.identity_loss(
                lambda im: identity_apply(id_params, im), out.y, sharp
            )
        if w["adv"]:
            fake = disc.apply({"params": params["disc"]}, out.y)
            terms["adv"] = losses.generator_adversarial_loss(fake)
        y = None if phase.parsing_clear else out.y
        return terms, new_stats, y

    def disc_loss(d_params, real, fake):
        logits = disc.apply({"params": d_params}, jnp.concatenate([real, fake], axis=0))
        b = real.shape[0]
        return losses.discriminator_loss(logits[:b], logits[b:]), logits

    return PhaseLosses(degrade, split, terms_of, dict(w), disc_loss)


def make_step_body(
    config: ml_collections.ConfigDict,
    phase: Phase,
    vgg_apply: VggApply | None = None,
    axis_name: str | None = AXIS,
    identity_apply: IdentityApply | None = None,
) -> Callable[[TrainState, dict, PyTree], tuple[TrainState, dict]]:
    """The per-device step ``(state, local batch, vgg_params, kernel_pool=None,
    identity_params=None) -> (state, metrics)``.

    ``batch``: ``{"image": uint8[b, S, S, 3], "labels": uint8[b, S, S], "has_labels":
    bool[b]}`` — this device's shard. With ``axis_name=None`` it is a plain single-device
    step (no collectives).
    """
    tx = make_optimizer(config.optim)
    phase_loss = phase_losses(config, phase, vgg_apply, axis_name, identity_apply)
    w = phase_loss.weights

    def pmean(x):
        return x if axis_name is None else jax.lax.pmean(x, axis_name)

    def varying(tree):
        # A per-device view of replicated params: their gradients stay local (see module doc).
        return tree if axis_name is None else jax.lax.pcast(tree, axis_name, to="varying")

    def pmean_flat(grads):
        # All gradients (G and D) as one vector: a single all-reduce per step.
        if axis_name is None:
            return grads
        flat, unravel = ravel_pytree(grads)
        return unravel(jax.lax.pmean(flat, axis_name))

    def generator_loss(trained, frozen, batch_stats, deg, has_labels, vgg_params, id_params):
        terms, new_stats, y = phase_loss.terms(
            trained, frozen, batch_stats, deg, has_labels, vgg_params, id_params
        )
        total = _sum(w[k] * v for k, v in terms.items())
        return total, (terms, new_stats, y)

    def body(
        state: TrainState, batch: dict, vgg_params: PyTree, kernel_pool=None, identity_params=None
    ):
        local_b = batch["image"].shape[0]
        deg = phase_loss.degrade(state, batch, kernel_pool)
        has_labels = batch["has_labels"]

        trained, frozen = phase_loss.split(state.params)
        (total, (terms, new_stats, y)), grads = jax.value_and_grad(generator_loss, has_aux=True)(
            varying(trained), frozen, state.batch_stats, deg, has_labels, vgg_params,
            identity_params,
        )  # fmt: skip
        metric = {f"loss/{k}": v for k, v in terms.items()}
        metric["loss/total"] = total
        if y is not None:  # no output image when P alone parses clear faces
            metric["psnr"] = jnp.mean(metrics.psnr(y, deg.sharp))
        ok_values = [total]
        if phase.trains("disc"):
            (d_loss, logits), d_grads = jax.value_and_grad(phase_loss.disc_loss, has_aux=True)(
                varying(state.params["disc"]), deg.sharp, jax.lax.stop_gradient(y)
            )
            grads["disc"] = d_grads
            metric["loss/disc"] = d_loss
            metric["disc/real_prob"] = jnp.mean(jax.nn.sigmoid(logits[:local_b]))
            metric["disc/fake_prob"] = jnp.mean(jax.nn.sigmoid(logits[local_b:]))
            ok_values.append(d_loss)
        grads = pmean_flat(grads)  # local → global-batch mean: the step's one gradient all-reduce
        metric = pmean(metric)
        metric["grad_norm"] = optax.tree.norm(grads)
        ok = jnp.isfinite(metric["grad_norm"])
        for v in ok_values:
            ok &= jnp.isfinite(pmean(v))

        new_params, new_opt = dict(state.params), dict(state.opt_state)
        for k, g in grads.items():
            updates, new_opt[k] = tx.update(g, state.opt_state[k], state.params[k])
            lr = phase.lr[net_of(k)]
            new_params[k] = optax.apply_updates(
                state.params[k], jax.tree.map(lambda u, lr=lr: -lr * u, updates)
            )

        def keep_if_bad(new, old):
            return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)

        new_state = state.replace(
            step=state.step + 1,
            params=keep_if_bad(new_params, state.params),
            opt_state=keep_if_bad(new_opt, state.opt_state),
            batch_stats=keep_if_bad(new_stats, state.batch_stats),
            nonfinite=state.nonfinite + (~ok).astype(jnp.int32),
        )
        metric["nonfinite_steps"] = new_state.nonfinite
        metric["skipped"] = (~ok).astype(jnp.float32)
        return new_state, metric

    return body


def build_train_step(
    config: ml_collections.ConfigDict,
    phase: Phase,
    mesh: Mesh,
    vgg_apply: VggApply | None = None,
    identity_apply: IdentityApply | None = None,
):
    """``jit(shard_map(step))`` for ``phase`` on ``mesh`` (axis ``"data"``).

    Returns ``step(state, batch, vgg_params, kernel_pool=None, identity_params=None) ->
    (state, metrics)``; ``identity_params`` (replicated) are the frozen MobileFaceNet's
    variables when the phase uses the identity loss (``identity_apply``);
    ``batch`` holds global arrays sharded along ``"data"``, ``state`` is replicated and
    donated, ``kernel_pool`` (replicated) is the run's pool when
    ``degrade.kernel_pool_size > 0`` (``degrade/kernel_pool.py``).
    """
    n = mesh.shape[AXIS]
    if config.train.global_batch_size % n:
        raise ValueError(
            f"train.global_batch_size = {config.train.global_batch_size} must be divisible "
            f"by the {n} devices of the mesh axis {AXIS!r}"
        )
    body = make_step_body(config, phase, vgg_apply, AXIS, identity_apply)
    sharded = jax.shard_map(
        body, mesh=mesh, in_specs=(P(), P(AXIS), P(), P(), P()), out_specs=(P(), P())
    )

    def step(state, batch, vgg_params, kernel_pool=None, identity_params=None):
        return sharded(state, batch, vgg_params, kernel_pool, identity_params)

    return jax.jit(step, donate_argnums=(0,))


def build_grad_norms(
    config: ml_collections.ConfigDict,
    phase: Phase,
    vgg_apply: VggApply | None = None,
    identity_apply: IdentityApply | None = None,
):
    """Loss diagnostics: how hard each active loss term pulls on the trained nets.

    Returns ``jit(fn)`` with ``fn(state, batch, vgg_params, kernel_pool=None,
    identity_params=None) -> {
    "grad_norm/<term>": f32[], "weighted_loss/<term>": f32[], ["grad_norm/disc": f32[]]}``
    for the same arguments as the train step (call it *before* the step, which donates the
    state). ``grad_norm/<term>`` is the global L2 norm of ``∂(w_t · L_t)/∂θ`` over the
    params θ of the generator nets the phase trains, ``w_t`` the term's weight
    (``phase.loss``), so a λ too small to matter (e.g. an inert L_adv) shows as a norm
    orders of magnitude below the others; ``grad_norm/disc`` is that of D's own loss.

    It differentiates the train step's own loss code (:func:`phase_losses`: the same
    degradation keys, forward pass and terms) on the whole global batch as one jitted
    program without ``shard_map`` (``axis_name=None``): the per-sample keys depend on the
    global sample index only, and P's BatchNorm statistics over the global batch are what
    the synchronised BatchNorm of the sharded step computes, so these are the gradients
    the step's single all-reduce produces, term by term (tested against the step's
    ``grad_norm``). One forward pass, one backward pass per term (``jax.vjp``); one compile
    per phase.
    """
    phase_loss = phase_losses(config, phase, vgg_apply, None, identity_apply)
    w = phase_loss.weights

    def fn(
        state: TrainState, batch: dict, vgg_params: PyTree, kernel_pool=None, identity_params=None
    ) -> dict:
        deg = phase_loss.degrade(state, batch, kernel_pool)
        has_labels = batch["has_labels"]
        trained, frozen = phase_loss.split(state.params)

        def weighted(params):
            terms, _, y = phase_loss.terms(
                params, frozen, state.batch_stats, deg, has_labels, vgg_params, identity_params
            )
            return {k: w[k] * v for k, v in terms.items()}, y

        values, pullback, y = jax.vjp(weighted, trained, has_aux=True)
        out = {}
        for name, value in values.items():
            cotangent = {k: jnp.zeros_like(v) for k, v in values.items()}
            cotangent[name] = jnp.ones_like(value)
            (grad,) = pullback(cotangent)
            out[f"grad_norm/{name}"] = optax.tree.norm(grad)
            out[f"weighted_loss/{name}"] = value
        if phase.trains("disc"):
            d_grad, _ = jax.grad(phase_loss.disc_loss, has_aux=True)(
                state.params["disc"], deg.sharp, jax.lax.stop_gradient(y)
            )
            out["grad_norm/disc"] = optax.tree.norm(d_grad)
        return out

    return jax.jit(fn)
