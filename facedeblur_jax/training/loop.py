"""The training loop: ``facedeblur train --config configs/demo.py --workdir DIR``.

Laid out as big_vision's ``train.py``, in numbered sections:

1. devices and the mesh (joining the other processes first with
   ``train.distributed=True``: :mod:`facedeblur_jax.training.distributed`);
2. checks, before anything is written: the processes against each other (same config and
   workdir), the schedule, VGG-Face weights when a phase uses L_VGG (MobileFaceNet weights
   when one uses the optional identity loss), the degradation
   settings; then the input pipeline (grain; each process reads its own shard of the
   records); with several processes, one that failed here stops all (``check_all_ready``);
3. a checkpoint already in ``WORKDIR`` against the config: its stored config is compared
   before Orbax reads an array, so another model is refused with the keys that differ, and
   the data position must fit the pipeline; the train state is restored from the newest
   checkpoint that can be read (params, optimiser states, step, PRNG key, data iterator
   position; a newer unreadable one is passed over with a warning and moved to
   ``WORKDIR/unreadable_checkpoints/``). ``WORKDIR`` is created only after these checks;
4. the train state — that restored one, else fresh;
5. the loop over phases from the restored ``(phase, phase step)``: one jitted step per
   phase built once, metrics to TensorBoard + ``metrics.jsonl`` + a progress bar,
   checkpoints every ``train.checkpoint_every`` steps and at the end. At the first step a
   run takes in a phase (also on resume) the gradient norm each active loss term sends
   into the trained nets is logged, one line per term (``train.log_grad_norms``;
   ``train_step.build_grad_norms``); after the last step of a phase that trains P, P's
   per-class F-scores on held-out clear, blurred and G_c-deblurred faces, one line per
   input (``train.parsing_eval_faces``; ``evaluators/parsing.py``).

With several processes every process runs this same loop on its own rows of each global
batch (docs/design.md §6); process 0 alone prints, logs metrics and shows progress; every
process takes part in each checkpoint, which Orbax writes once. At the end every process
waits for the others after its last checkpoint is saved (``distributed.finish``), so a
late peer delays the shutdown instead of failing it.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from facedeblur_jax import evaluators
from facedeblur_jax.core.compile_cache import enable_compilation_cache
from facedeblur_jax.core.outputs import check_output_folder
from facedeblur_jax.data.pipeline import make_train_iterator
from facedeblur_jax.degrade.kernel_pool import pool_from_config
from facedeblur_jax.degrade.synthesize import check_degrade_config
from facedeblur_jax.evaluators import parsing
from facedeblur_jax.models import mobilefacenet
from facedeblur_jax.models.factory import build_discriminator, build_model, compute_dtype
from facedeblur_jax.models.vgg import VGGFace, load_vgg_face
from facedeblur_jax.serving.loading import load_model
from facedeblur_jax.state import checkpoint as ckpt_lib
from facedeblur_jax.state.train_state import (
    TrainState,
    create_train_state,
    generator_variables,
    net_of,
)
from facedeblur_jax.training import distributed
from facedeblur_jax.training import schedule as schedule_lib
from facedeblur_jax.training.step import AXIS, build_grad_norms, build_train_step

log = logging.getLogger("facedeblur.train")
PyTree = Any


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all (or the given) devices with the axis ``"data"``."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (AXIS,))


def _vgg(config: ml_collections.ConfigDict, phases) -> tuple[Any, PyTree]:
    """``(vgg_apply, vgg_params)`` if a phase uses L_VGG, else ``(None, None)``.

    Fails at start-up — before any step — when L_VGG is on and no weight file is given.
    """
    if not any(p.loss["vgg"] > 0 for p in phases):
        return None, None
    path = config.loss.vgg_weights_path
    if not path:
        users = [p.name for p in phases if p.loss["vgg"] > 0]
        raise ValueError(
            f"phases {users} use the perceptual loss (loss.vgg_weight = "
            f"{config.loss.vgg_weight}) but config.loss.vgg_weights_path is empty: convert "
            "VGG-Face weights with facedeblur convert-vgg and pass "
            "--config.loss.vgg_weights_path=FILE.npz, or turn the loss off with "
            "--config.loss.vgg_weight=0"
        )

    params = load_vgg_face(path)
    net = VGGFace(layers=tuple(config.loss.vgg_layers), dtype=compute_dtype(config.model))
    return (lambda p, images: net.apply({"params": p}, images)), params


def _identity(config: ml_collections.ConfigDict, phases) -> tuple[Any, PyTree]:
    """``(identity_apply, identity_variables)`` if a phase uses the identity loss, else
    ``(None, None)``: with ``loss.identity_weight = 0`` MobileFaceNet is neither loaded nor
    built. Fails at start-up when the loss is on and its weight file is not given or bad.
    """
    if not any(p.loss["identity"] > 0 for p in phases):
        return None, None
    path = config.loss.identity_weights_path
    if not path:
        users = [p.name for p in phases if p.loss["identity"] > 0]
        raise ValueError(
            f"phases {users} use the identity loss (loss.identity_weight = "
            f"{config.loss.identity_weight}) but config.loss.identity_weights_path is empty: "
            "convert MobileFaceNet weights with facedeblur convert-mobilefacenet and pass "
            "--config.loss.identity_weights_path=FILE.npz, or turn the loss off with "
            "--config.loss.identity_weight=0"
        )

    try:
        variables = mobilefacenet.load_mobilefacenet(path)
    except (FileNotFoundError, ValueError) as e:
        raise type(e)(f"config.loss.identity_weights_path: {e}") from e
    return (lambda v, images: mobilefacenet.embed(v, images)), variables


class MetricWriter:
    """TensorBoard scalars (``WORKDIR/tb``) and one JSON line per log step
    (``WORKDIR/metrics.jsonl``), written by process 0 only."""

    def __init__(self, workdir: pathlib.Path, enabled: bool):
        self.enabled = enabled
        if enabled:
            from tensorboardX import SummaryWriter  # deferred: slow to import

            self._tb = SummaryWriter(str(workdir / "tb"))
            self._jsonl = (workdir / "metrics.jsonl").open("a")

    def write(self, step: int, phase: str, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in scalars.items():
            self._tb.add_scalar(f"{phase}/{name}", value, step)
        self._jsonl.write(json.dumps({"step": step, "phase": phase, **scalars}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


def _mean_metrics(history: list[dict]) -> dict[str, float]:
    fetched = jax.device_get(history)
    keys = fetched[-1].keys()
    out = {k: float(np.mean([m[k] for m in fetched if k in m])) for k in keys}
    out["nonfinite_steps"] = float(fetched[-1]["nonfinite_steps"])
    return out


def _warm_start(state: TrainState, init_from: str, nets, sharding) -> TrainState:
    """Copies the nets of ``init_from``'s latest checkpoint into a fresh ``state`` where the
    net is in ``nets`` and its param key exists in both with identical shapes; reports what
    it took and skipped."""

    source = load_model(init_from)

    def same(a, b):
        sa = jax.tree.map(lambda x: (x.shape, x.dtype), a)
        sb = jax.tree.map(lambda x: (x.shape, x.dtype), b)
        return jax.tree.structure(a) == jax.tree.structure(b) and sa == sb

    params, stats = dict(state.params), dict(state.batch_stats)
    taken, skipped = [], []
    # Host copies: a device array cannot be put onto devices of other processes.
    variables = jax.tree.map(np.asarray, source.variables)
    for key, value in variables["params"].items():
        if net_of(key) in nets and key in params and same(params[key], value):
            params[key] = jax.device_put(value, sharding)
            if key in stats and key in variables.get("batch_stats", {}):
                stats[key] = jax.device_put(variables["batch_stats"][key], sharding)
            taken.append(key)
        else:
            skipped.append(key)
    if not taken:
        raise ValueError(
            f"train.init_from={init_from!r}: no net of its checkpoint matches this config"
        )
    if jax.process_index() == 0:
        print(f"initialised {taken} from {init_from} (step {source.step}); not taken: {skipped}")
    return state.replace(params=params, batch_stats=stats)


def _starts(named_steps, before: int) -> list[tuple[str, int]]:
    """``(name, first global step)`` of the phases that start before step ``before``."""
    out, start = [], 0
    for name, steps in named_steps:
        if start < before:
            out.append((name, start))
        start += steps
    return out


def _check_resumed_phase(meta: dict, phases, step: int, where: str) -> None:
    """Raises :class:`CheckpointError` when this config's schedule runs different phases
    over the first ``step`` steps than the run that wrote the checkpoint (at ``where``;
    e.g. a run of the four-phase recipe resumed with one that has parsing_clear): it would
    go on with the wrong nets and losses. Lengthening the phase in progress (or the last
    one) is fine."""
    if "config" not in meta:
        return
    stored = json.loads(meta["config"])
    order = stored.get("phase_order", ())
    was = _starts([(n, int(stored["phases"][n]["steps"])) for n in order], step)
    now = _starts([(p.name, p.steps) for p in phases], step)
    if was != now:
        raise ckpt_lib.CheckpointError(
            f"checkpoint {where!r} was trained with the phases {was} (name, first "
            f"step) but this config's schedule has {now} over those steps; resume with the "
            f"checkpoint's schedule (e.g. --config.phase_order={tuple(order)} and its phase "
            "lengths) or use another --workdir"
        )


def _resume_point(checkpointer, config, data, abstract_state):
    """``(step, meta, state)`` of the newest checkpoint that can be read, checked against
    ``config`` (the state's layout; before any of its arrays is read) and ``data``
    (positioned after the checkpoint's last batch); ``None`` when there is none.

    A newer checkpoint that cannot be read (``UnreadableCheckpoint``: a missing item,
    corrupt or truncated files) is passed over with one warning line naming it and why,
    and moved to ``WORKDIR/unreadable_checkpoints/`` (kept, not deleted) so that the run
    can save that step again. With several processes the run stops instead, with one line
    saying to move it away (they would have to agree on the move). A checkpoint of another
    model or schedule stops the run whatever its age. ``abstract_state()`` gives the
    state's shapes, dtypes and shardings (called only when there is a checkpoint)."""
    if checkpointer.latest_step() is None:
        return None
    phases = schedule_lib.phases_from_config(config)

    def read(step):
        meta = checkpointer.restore_meta(step)
        where = checkpointer.where(step)
        ckpt_lib.check_resumable(meta, config, where)
        _check_resumed_phase(meta, phases, step, where)
        state, _ = checkpointer.restore(abstract_state(), step)
        return meta, state

    step, (meta, state), skipped = ckpt_lib.newest_readable(checkpointer, read)
    if skipped and jax.process_count() > 1:
        why = skipped[0][1]
        raise ckpt_lib.UnreadableCheckpoint(
            f"{why}; with several processes the run does not go back by itself: move that "
            f"folder out of {str(checkpointer.directory)!r} and start again (step {step} can "
            "be read)"
        )
    if skipped:
        aside = checkpointer.set_aside([s for s, _ in skipped])
        for _, why in skipped:
            print(
                f"warning: {why}; resuming from step {step}, the newest one that can be read "
                f"(moved to {aside})",
                flush=True,
            )
    try:
        data.set_state(meta["data_state"])
    except ValueError as e:
        raise ckpt_lib.CheckpointError(f"checkpoint {checkpointer.where(step)!r}: {e}") from e
    return step, meta, state


def _check_cluster_keys(train_config) -> None:
    if train_config.distributed:
        return
    set_keys = [
        f"train.{k}"
        for k in ("coordinator_address", "num_processes", "process_id")
        if train_config[k] not in ("", -1)
    ]
    if set_keys:
        raise ValueError(
            f"{', '.join(set_keys)} set, but train.distributed=False: add "
            "--config.train.distributed=True to run as one of several processes"
        )


def _log_grad_norms(config, phase, step, state, batch, nets, kernel_pool, writer, is_main) -> None:
    """One metrics line per active loss term of ``phase`` (and D): the gradient norm it sends
    into the trained nets at the phase's first step (``train_step.build_grad_norms``; every
    process runs it, process 0 writes and prints)."""
    vgg_apply, vgg_params, identity_apply, identity_params = nets
    norms = build_grad_norms(config, phase, vgg_apply, identity_apply)(
        state, batch, vgg_params, kernel_pool, identity_params
    )
    norms = {k: float(v) for k, v in jax.device_get(norms).items()}
    terms = [t for t in (*schedule_lib.LOSSES, "disc") if f"grad_norm/{t}" in norms]
    for term in terms:
        line = {f"grad_norm/{term}": norms[f"grad_norm/{term}"]}
        if f"weighted_loss/{term}" in norms:
            line[f"weighted_loss/{term}"] = norms[f"weighted_loss/{term}"]
        writer.write(step, phase.name, line)
    if is_main:
        summary = ", ".join(f"{t} {norms[f'grad_norm/{t}']:.3g}" for t in terms)
        print(f"phase {phase.name} (step {step}): gradient norm per loss term: {summary}")


class _ParsingScoresOnce:
    """P's per-class F-scores after a phase that trains P (the parsing evaluator,
    ``evaluators/parsing.py``), on process 0; the held-out faces are read and the kernels
    drawn at the first use. A source without a labelled split gives one note and no
    scores."""

    def __init__(self, config, is_main: bool):
        self.config, self.evaluator = config, None
        self.enabled = is_main and int(config.train.parsing_eval_faces) > 0

    def run(self, phase_name: str, step: int, state: TrainState, writer) -> None:

        if not self.enabled:
            return
        if self.evaluator is None:
            try:
                self.evaluator = parsing.after_phase_evaluator(self.config)
            except (FileNotFoundError, ValueError) as e:
                print(f"note: no parsing F-scores during training: {e}", flush=True)
                self.enabled = False
                return
        device = self.evaluator.device
        variables = jax.device_put(jax.device_get(generator_variables(state)), device)
        ev = self.evaluator.evaluate(variables)
        for line in parsing.metric_lines(ev).values():
            writer.write(step, phase_name, line)
        print(
            f"P's F-scores after phase {phase_name} (step {step}, {ev['num_faces']} held-out "
            f"{self.evaluator.split!r} faces):\n{parsing.table(ev)}",
            flush=True,
        )


def train(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    mesh: Mesh | None = None,
    progress: bool = True,
    data=None,
) -> TrainState:
    """Runs (or resumes) the whole schedule; returns the final state.

    ``data``: an iterator of global batches with ``get_state``/``set_state`` to train on
    instead of the config's pipeline (the caller closes it).
    """
    # 1. Devices and mesh. ------------------------------------------------------------
    _check_cluster_keys(config.train)
    if config.model.kind != "ijcv":
        raise ValueError(
            f"model.kind = {config.model.kind!r} is the authors' released model, not trained "
            "here (its weights come from facedeblur convert-official); training builds the "
            "IJCV cascade, model.kind = 'ijcv'"
        )
    multi = bool(config.train.distributed)
    if multi:
        distributed.initialize(config.train)
    workdir = pathlib.Path(workdir).resolve()

    # 2. Checks and data, before anything is written. ----------------------------------
    check_output_folder(workdir, flag="--workdir")
    if multi:
        distributed.check_same_run(config, str(workdir), config.train.distributed_timeout_s)
    own_data = data is None
    try:
        phases = schedule_lib.phases_from_config(config)
        total = schedule_lib.total_steps(phases)
        vgg_apply, vgg_params = _vgg(config, phases)  # fails early if weights are missing
        identity_apply, identity_params = _identity(config, phases)  # likewise
        check_degrade_config(config.degrade)  # e.g. a bad trajectory_impl, before any work
        # config.evals, run on process 0 only; a bad entry fails here, before any work.
        evals = evaluators.from_config(config, total, enabled=jax.process_index() == 0)
        if config.train.compilation_cache_dir:
            enable_compilation_cache(config.train.compilation_cache_dir)
        mesh = make_mesh() if mesh is None else mesh
        if own_data:
            data = make_train_iterator(config, mesh)
    except Exception as e:
        if multi:
            distributed.check_all_ready(e, config.train.distributed_timeout_s)
        raise
    if multi:  # a check that failed in another process stops this one too
        try:
            distributed.check_all_ready(None, config.train.distributed_timeout_s)
            # Every connection between the processes opened now, all at once: a process
            # that is slower to compile its first step is then waited for.
            distributed.connect_collectives(mesh, config.train.distributed_timeout_s)
        except distributed.ClusterError:
            if own_data:
                data.close()
            raise
    is_main = jax.process_index() == 0

    checkpointer, writer, bar = None, None, None
    try:
        keep = config.train.keep_checkpoints
        checkpointer = ckpt_lib.Checkpointer(
            workdir,
            keep=keep,
            create=False,
            timeout_s=config.train.distributed_checkpoint_timeout_s,
        )
        # 3. The checkpoint to resume from, checked, and restored. --------------------
        model, disc = build_model(config.model), build_discriminator(config.model)
        replicated = NamedSharding(mesh, P())
        init = jax.jit(
            lambda key: create_train_state(config, model, disc, key), out_shardings=replicated
        )

        def abstract_state():
            # Restoring needs only shapes, dtypes and shardings: no initialisation compiled.
            return jax.tree.map(
                lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                jax.eval_shape(init, jax.random.key(config.seed)),
            )

        resume = _resume_point(checkpointer, config, data, abstract_state)
        workdir.mkdir(parents=True, exist_ok=True)  # every check passed

        # The kernel pool (degrade.kernel_pool_size > 0): a function of the config alone,
        # so a resumed run rebuilds the same one (a host copy: placed on every process).
        kernel_pool = None
        if config.degrade.kernel_pool_size:
            t0 = time.time()
            pool = jax.tree.map(np.asarray, pool_from_config(config))
            kernel_pool = jax.device_put(pool, NamedSharding(mesh, P()))
            log.info("kernel pool: %d kernels sampled in %.1f s", pool.size, time.time() - t0)

        # 4. State: restored above, or created. -----------------------------------------
        if resume is not None:
            start, meta, state = resume
            if is_main:
                print(
                    f"resumed from {checkpointer.directory / str(start)}: step {start}, "
                    f"phase {meta['phase']!r} step {meta['phase_step']}",
                    flush=True,
                )
        else:
            state = init(jax.random.key(config.seed))
            if config.train.init_from:
                state = _warm_start(
                    state, config.train.init_from, tuple(config.train.init_nets), replicated
                )
        step = int(jax.device_get(state.step))
        if vgg_params is not None:
            vgg_params = jax.device_put(vgg_params, replicated)
        if identity_params is not None:
            identity_params = jax.device_put(identity_params, replicated)

        # 5. Loop over phases. ---------------------------------------------------------
        writer = MetricWriter(workdir, is_main)
        parsing_scores = _ParsingScoresOnce(config, is_main)
        if progress and is_main:
            bar = tqdm(total=total, initial=step, unit="step", mininterval=2.0, file=sys.stderr)
        batch = config.train.global_batch_size
        index, _ = schedule_lib.locate(phases, step)
        while index < len(phases):
            phase = phases[index]
            phase_end = sum(p.steps for p in phases[: index + 1])
            train_step = build_train_step(config, phase, mesh, vgg_apply, identity_apply)
            history: list[dict] = []
            t_log, steps_since = time.time(), 0
            first = True
            while step < phase_end:
                batch_data = next(data)
                if first and config.train.log_grad_norms:
                    nets = (vgg_apply, vgg_params, identity_apply, identity_params)
                    _log_grad_norms(
                        config, phase, step, state, batch_data, nets, kernel_pool, writer, is_main
                    )
                    t_log = time.time()
                first = False
                state, metrics = train_step(
                    state, batch_data, vgg_params, kernel_pool, identity_params
                )
                step += 1
                steps_since += 1
                history.append(metrics)
                last = step == phase_end
                if step % config.train.log_every == 0 or last:
                    scalars = _mean_metrics(history)
                    elapsed = time.time() - t_log
                    scalars["images_per_s"] = batch * steps_since / max(elapsed, 1e-9)
                    writer.write(step, phase.name, scalars)
                    if bar is not None:
                        # No PSNR where no image is restored (P alone on clear faces).
                        psnr = f"psnr {scalars['psnr']:.2f} " if "psnr" in scalars else ""
                        bar.set_postfix_str(
                            f"{phase.name} {step - (phase_end - phase.steps)}/{phase.steps} "
                            f"loss {scalars['loss/total']:.4g} {psnr}"
                            f"{scalars['images_per_s']:.1f} img/s",
                            refresh=False,
                        )
                    history, t_log, steps_since = [], time.time(), 0
                t_log += evals.maybe_run(step, state, writer)  # eval time is not train time
                if bar is not None:
                    bar.update(1)
                if step % config.train.checkpoint_every == 0 or step == total:
                    p_index, p_step = schedule_lib.locate(phases, step)
                    name = phases[p_index].name if p_index < len(phases) else "done"
                    meta = {
                        "step": step,
                        "phase": name,
                        "phase_index": p_index,
                        "phase_step": p_step,
                        "data_state": data.get_state(),
                        "config": ckpt_lib.config_to_json(config),
                        "versions": {"jax": jax.__version__},
                    }
                    checkpointer.save(step, state, meta)
            if phase.trains("parsing") and step == phase_end:
                parsing_scores.run(phase.name, step, state, writer)
            index += 1
    finally:
        if bar is not None:
            bar.close()
        if checkpointer is not None:
            checkpointer.close()
        if writer is not None:
            writer.close()
        if own_data:
            data.close()
    if multi:
        # The last checkpoint is on disk (closing the checkpointer waited for it), so a
        # peer that is late now costs nothing: wait for it, then shut down together.
        distributed.finish(step, config.train.distributed_shutdown_timeout_s)
    return state
