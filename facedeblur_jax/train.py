"""The training loop: ``facedeblur train --config configs/demo.py --workdir DIR``.

Laid out as big_vision's ``train.py``, in numbered sections:

1. devices and the mesh (``jax.distributed.initialize()`` first when configured);
2. the input pipeline (grain, sharded over hosts; sharp uint8 crops + labels only);
3. the train state — restored from the latest checkpoint in ``WORKDIR`` if there is one
   (params, optimiser states, step, PRNG key, data iterator position), else fresh;
4. VGG-Face for the perceptual loss, only when a phase uses it;
5. the loop over phases from the restored ``(phase, phase step)``: one jitted step per
   phase built once, metrics to TensorBoard + ``metrics.jsonl`` + a progress bar,
   checkpoints every ``train.checkpoint_every`` steps and at the end. At the first step a
   run takes in a phase (also on resume) the gradient norm each active loss term sends
   into the trained nets is logged, one line per term (``train.log_grad_norms``;
   ``train_step.build_grad_norms``); after the last step of a phase that trains P, P's
   per-class F-scores on held-out clear and G_c-deblurred faces, one line per input
   (``train.parsing_eval_faces``; ``parsing_scores.py``).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import signal
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from facedeblur_jax import checkpoint as ckpt_lib
from facedeblur_jax import schedule as schedule_lib
from facedeblur_jax.compile_cache import enable_compilation_cache
from facedeblur_jax.degrade.kernel_pool import pool_from_config
from facedeblur_jax.degrade.synthesize import check_degrade_config
from facedeblur_jax.models.factory import build_discriminator, build_model
from facedeblur_jax.train_state import TrainState, create_train_state
from facedeblur_jax.train_step import AXIS, build_grad_norms, build_train_step

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
            "VGG-Face weights with tools/convert_vgg_face.py and pass "
            "--config.loss.vgg_weights_path=FILE.npz, or turn the loss off with "
            "--config.loss.vgg_weight=0"
        )
    from facedeblur_jax.models.factory import compute_dtype
    from facedeblur_jax.models.vgg import VGGFace, load_vgg_face

    params = load_vgg_face(path)
    net = VGGFace(layers=tuple(config.loss.vgg_layers), dtype=compute_dtype(config.model))
    return (lambda p, images: net.apply({"params": p}, images)), params


class MetricWriter:
    """TensorBoard scalars (``WORKDIR/tb``) and one JSON line per log step
    (``WORKDIR/metrics.jsonl``), written by process 0 only."""

    def __init__(self, workdir: pathlib.Path, enabled: bool):
        self.enabled = enabled
        if enabled:
            from tensorboardX import SummaryWriter

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


def _fault_injection(config, step: int, when: str, checkpointer) -> None:
    """SIGKILLs this process at a checkpoint (crash/resume tests; off by default)."""
    if config.train.fault_kill_step != step or config.train.fault_kill_when != when:
        return
    if when == "after":
        checkpointer.wait()
    print(f"fault injection: SIGKILL at step {step} ({when} checkpoint)", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _warm_start(state: TrainState, init_from: str, nets, sharding) -> TrainState:
    """Copies the nets of ``init_from``'s latest checkpoint into a fresh ``state`` where the
    net is in ``nets`` and its param key exists in both with identical shapes; reports what
    it took and skipped."""
    from facedeblur_jax.inference import load_model
    from facedeblur_jax.train_state import net_of

    source = load_model(init_from)

    def same(a, b):
        sa = jax.tree.map(lambda x: (x.shape, x.dtype), a)
        sb = jax.tree.map(lambda x: (x.shape, x.dtype), b)
        return jax.tree.structure(a) == jax.tree.structure(b) and sa == sb

    params, stats = dict(state.params), dict(state.batch_stats)
    taken, skipped = [], []
    for key, value in source.variables["params"].items():
        if net_of(key) in nets and key in params and same(params[key], value):
            params[key] = jax.device_put(value, sharding)
            if key in stats and key in source.variables.get("batch_stats", {}):
                stats[key] = jax.device_put(source.variables["batch_stats"][key], sharding)
            taken.append(key)
        else:
            skipped.append(key)
    if not taken:
        raise ValueError(
            f"train.init_from={init_from!r}: no net of its checkpoint matches this config"
        )
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


def _check_resumed_phase(meta: dict, phases, step: int) -> None:
    """``ValueError`` when this config's schedule runs different phases over the checkpoint's
    first ``step`` steps than the run that wrote it (e.g. a run of the four-phase recipe
    resumed with one that has parsing_clear): it would go on with the wrong nets and losses.
    Lengthening the phase in progress (or the last one) is fine."""
    if "config" not in meta:
        return
    stored = json.loads(meta["config"])
    order = stored.get("phase_order", ())
    was = _starts([(n, int(stored["phases"][n]["steps"])) for n in order], step)
    now = _starts([(p.name, p.steps) for p in phases], step)
    if was != now:
        raise ValueError(
            f"the checkpoint at step {step} was trained with the phases {was} (name, first "
            f"step) but this config's schedule has {now} over those steps; resume with the "
            f"checkpoint's schedule (e.g. --config.phase_order={tuple(order)} and its phase "
            "lengths) or use another --workdir"
        )


def _restore(checkpointer, state: TrainState, data, phases) -> TrainState:
    """The latest checkpoint's state (and the data iterator's position), or ``state``."""
    start = checkpointer.latest_step()
    if start is None:
        return state
    _check_resumed_phase(checkpointer.restore_meta(start), phases, start)
    state, meta = checkpointer.restore(state, start)
    data.set_state(meta["data_state"])
    print(
        f"resumed from {checkpointer.directory / str(start)}: step {start}, phase "
        f"{meta['phase']!r} step {meta['phase_step']}",
        flush=True,
    )
    return state


def _log_grad_norms(
    config, phase, step, state, batch, vgg_apply, vgg_params, kernel_pool, writer, is_main
) -> None:
    """One metrics line per active loss term of ``phase`` (and D): the gradient norm it sends
    into the trained nets at the phase's first step (``train_step.build_grad_norms``; every
    process runs it, process 0 writes and prints)."""
    norms = build_grad_norms(config, phase, vgg_apply)(state, batch, vgg_params, kernel_pool)
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
    """P's F-scores after a phase that trains P (``parsing_scores.py``), on process 0; the
    held-out faces are read at the first use. A source without a labelled ``test`` split
    gives one note and no scores."""

    def __init__(self, config, is_main: bool):
        self.config, self.scorer = config, None
        self.enabled = is_main and int(config.train.parsing_eval_faces) > 0

    def run(self, phase_name: str, step: int, state: TrainState, writer) -> None:
        from facedeblur_jax import parsing_scores as ps

        if not self.enabled:
            return
        if self.scorer is None:
            try:
                faces = ps.load_held_out(self.config, int(self.config.train.parsing_eval_faces))
            except (FileNotFoundError, ValueError, LookupError) as e:
                print(f"note: no parsing F-scores during training: {e}", flush=True)
                self.enabled = False
                return
            self.scorer = ps.ParsingScores(self.config, faces)
        scores = self.scorer(state.params, state.batch_stats)
        num = len(self.scorer.faces.images)
        for line in ps.metric_lines(scores, num).values():
            writer.write(step, phase_name, line)
        print(
            f"P's F-scores after phase {phase_name} (step {step}, {num} held-out "
            f"{ps.SPLIT!r} faces):\n{ps.table(scores)}",
            flush=True,
        )


def train(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    mesh: Mesh | None = None,
    progress: bool = True,
) -> TrainState:
    """Runs (or resumes) the whole schedule; returns the final state."""
    # 1. Devices and mesh. ------------------------------------------------------------
    if config.train.distributed:
        jax.distributed.initialize()
    if config.train.compilation_cache_dir:
        enable_compilation_cache(config.train.compilation_cache_dir)
    mesh = make_mesh() if mesh is None else mesh
    workdir = pathlib.Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    is_main = jax.process_index() == 0
    phases = schedule_lib.phases_from_config(config)
    total = schedule_lib.total_steps(phases)
    vgg_apply, vgg_params = _vgg(config, phases)  # fails early if weights are missing
    check_degrade_config(config.degrade)  # e.g. a bad trajectory_impl, before any work

    # The kernel pool (degrade.kernel_pool_size > 0): a function of the config alone, so a
    # resumed run rebuilds the same one.
    kernel_pool = None
    if config.degrade.kernel_pool_size:
        t0 = time.time()
        kernel_pool = jax.device_put(pool_from_config(config), NamedSharding(mesh, P()))
        log.info("kernel pool: %d kernels sampled in %.1f s", kernel_pool.size, time.time() - t0)

    # 2. Data. -------------------------------------------------------------------------
    from facedeblur_jax.data.pipeline import make_train_iterator

    data = make_train_iterator(config, mesh)

    # 3. State: restore or create. -----------------------------------------------------
    model, disc = build_model(config.model), build_discriminator(config.model)
    replicated = NamedSharding(mesh, P())
    state = jax.jit(
        lambda key: create_train_state(config, model, disc, key), out_shardings=replicated
    )(jax.random.key(config.seed))
    checkpointer = ckpt_lib.Checkpointer(workdir, keep=config.train.keep_checkpoints)
    try:
        resumed = _restore(checkpointer, state, data, phases)
        if resumed is state and config.train.init_from:
            resumed = _warm_start(
                state, config.train.init_from, tuple(config.train.init_nets), replicated
            )
        state = resumed
    except BaseException:
        checkpointer.close()
        getattr(data, "close", lambda: None)()
        raise
    step = int(jax.device_get(state.step))
    if vgg_params is not None:
        vgg_params = jax.device_put(vgg_params, replicated)

    # 4. Loop over phases. -------------------------------------------------------------
    writer = MetricWriter(workdir, is_main)
    parsing_scores = _ParsingScoresOnce(config, is_main)
    bar = None
    if progress and is_main:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, unit="step", mininterval=2.0, file=sys.stderr)
    batch = config.train.global_batch_size
    index, _ = schedule_lib.locate(phases, step)
    try:
        while index < len(phases):
            phase = phases[index]
            phase_end = sum(p.steps for p in phases[: index + 1])
            train_step = build_train_step(config, phase, mesh, vgg_apply)
            history: list[dict] = []
            t_log, steps_since = time.time(), 0
            first = True
            while step < phase_end:
                batch_data = next(data)
                if first and config.train.log_grad_norms:
                    _log_grad_norms(
                        config,
                        phase,
                        step,
                        state,
                        batch_data,
                        vgg_apply,
                        vgg_params,
                        kernel_pool,
                        writer,
                        is_main,
                    )
                    t_log = time.time()
                first = False
                state, metrics = train_step(state, batch_data, vgg_params, kernel_pool)
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
                        bar.set_postfix_str(
                            f"{phase.name} {step - (phase_end - phase.steps)}/{phase.steps} "
                            f"loss {scalars['loss/total']:.4g} "
                            f"psnr {scalars.get('psnr', float('nan')):.2f} "
                            f"{scalars['images_per_s']:.1f} img/s",
                            refresh=False,
                        )
                    history, t_log, steps_since = [], time.time(), 0
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
                    _fault_injection(config, step, "during", checkpointer)
                    _fault_injection(config, step, "after", checkpointer)
            if phase.trains("parsing") and step == phase_end:
                parsing_scores.run(phase.name, step, state, writer)
            index += 1
    finally:
        if bar is not None:
            bar.close()
        checkpointer.close()
        writer.close()
        closer = getattr(data, "close", None)
        if closer is not None:
            closer()
    return state
