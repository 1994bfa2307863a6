"""Orbax checkpoints of the whole training run, for exact resume.

Each checkpoint ``WORKDIR/checkpoints/<step>/`` holds two items:

* ``state`` — the :class:`~facedeblur_jax.training.state.TrainState` pytree (params of every
  net, optimiser states, BatchNorm statistics, step, raw PRNG key, NaN-skip count), saved
  with ``StandardSave`` from the replicated device arrays;
* ``meta`` — JSON: the phase name / index / step within the phase, the global step, the
  full config, the data iterator's state (``get_state()``) and library versions.

Orbax writes a checkpoint into a temporary directory and renames it only when complete
(``commit_success.txt``), so a process killed during a save leaves the previous
checkpoint as the latest usable one; unfinished temporaries are ignored (and removed) on
the next start. ``keep`` bounds how many are kept (oldest deleted first).

With several processes (multi-host training) every process calls ``save``; Orbax writes
the replicated state and the JSON ``meta`` once (process 0) into the one shared folder.

Resuming checks the stored config against the run's before Orbax reads any array
(:func:`check_resumable`): a workdir trained with another model is refused with the
config keys that differ, and nothing in it is touched.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

PyTree = Any


class CheckpointError(ValueError):
    """A checkpoint that cannot be used with this config (named in the message; a
    ``ValueError``, so the command line reports it in one line)."""


def checkpoint_dir(workdir: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(workdir).resolve() / "checkpoints"


class Checkpointer:
    """Thin wrapper around ``ocp.CheckpointManager`` with the two items above.

    Use as a context manager (or call :meth:`close`): closing waits for a pending save and
    shuts Orbax's background threads and event loops down while the interpreter is alive.

    Args:
      workdir: the run's folder; checkpoints go to ``workdir/checkpoints``.
      keep: keep the last ``keep`` checkpoints.
      async_save: write in a background thread (the train loop keeps stepping).
      create: create ``workdir/checkpoints`` now; else the first save creates it (a
        missing folder reads as "no checkpoint").
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        keep: int = 3,
        async_save: bool = True,
        create: bool = True,
    ):
        if keep < 1:
            raise ValueError(f"train.keep_checkpoints must be >= 1; got {keep}")
        self.directory = checkpoint_dir(workdir)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=create,
            enable_async_checkpointing=async_save,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )
        self._closed = False

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: PyTree, meta: dict) -> bool:
        """Starts saving ``state`` + ``meta`` at ``step`` (returns at once when async)."""
        return self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )

    def wait(self) -> None:
        """Blocks until the pending save (if any) is committed."""
        self._manager.wait_until_finished()

    def restore_meta(self, step: int | None = None) -> dict:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {str(self.directory)!r}")
        return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]

    def restore(
        self,
        abstract_state: PyTree,
        step: int | None = None,
        config: ml_collections.ConfigDict | None = None,
    ) -> tuple[PyTree, dict]:
        """Restores ``(state, meta)``; ``abstract_state`` gives shapes, dtypes and shardings.

        Raises :class:`CheckpointError` naming the checkpoint when it holds networks of
        another layout or model keys other than ``config``'s (when given; checked on the
        stored config before any array is read), or when its arrays do not fit the state.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {str(self.directory)!r}")
        where = str(self.directory / str(step))
        if config is not None:
            stored = config_from_meta(self.restore_meta(step))
            check_layout(stored, where)
            differences = model_differences(stored, config)
            if differences:
                raise CheckpointError(
                    f"checkpoint {where!r} does not match the model built from the current "
                    f"config: {'; '.join(differences)}; use the config it was trained with "
                    "(stored in its meta) or another --workdir"
                )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError, TypeError) as e:
            first_line = next(iter(str(e).strip().splitlines()), "")
            raise CheckpointError(
                f"checkpoint {where!r} does not match the model built from the current "
                f"config ({type(e).__name__}: {first_line}); use the config it was trained "
                "with (stored in its meta) or another --workdir"
            ) from e
        return restored["state"], restored["meta"]

    def close(self) -> None:
        """Waits for a pending save, then closes the manager (also if the wait fails).
        Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        try:
            self._manager.wait_until_finished()
        finally:
            self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def config_to_json(config: ml_collections.ConfigDict) -> str:
    return config.to_json_best_effort(sort_keys=True)


# Keys whose default changed after they were added: a checkpoint written before the key
# existed ran with the value here, not with today's default (resuming it must not switch
# implementation). degrade.trajectory_impl: added as "scan", default "auto" since the H100
# measurement of the Triton walk. model.layout_version / model.resblock_post_relu: added
# with the official layout (models/factory.py); older checkpoints hold layout 1, whose
# ResBlocks had no ReLU after the add. degrade.center: kernels were centroid-centred before
# the placement became a choice (default "bbox"). loss.structural_min_area: L_s had no floor.
LEGACY_DEFAULTS = {
    "degrade.trajectory_impl": "scan",
    "model.layout_version": 1,
    "model.resblock_post_relu": False,
    "degrade.center": "centroid",
    "loss.structural_min_area": 0.0,
}

# Model keys that say how the networks run, not what they compute: a resumed run may
# change them.
RUNTIME_MODEL_KEYS = ("remat", "compute_dtype")


def check_layout(config: ml_collections.ConfigDict, where: str) -> None:
    """Raises :class:`CheckpointError` naming ``where`` and ``model.layout_version`` when a
    checkpoint's stored config is of a network layout this code does not build."""
    from facedeblur_jax.models.factory import LAYOUT_VERSION

    version = config.model.layout_version
    if version != LAYOUT_VERSION:
        raise CheckpointError(
            f"checkpoint {where!r} holds networks of model.layout_version = {version!r}; this "
            f"version builds only layout {LAYOUT_VERSION} (18-conv scales, the official "
            "parsing net): load it with the version that wrote it, or train anew in another "
            "workdir"
        )


def model_differences(
    stored: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> list[str]:
    """``"model.KEY = A in the checkpoint, B here"`` for every model key (but the
    :data:`RUNTIME_MODEL_KEYS`) where the checkpoint's config and ``config`` differ."""

    def norm(value):
        return tuple(value) if isinstance(value, list | tuple) else value

    out = []
    for key, value in config.model.items():
        if key in RUNTIME_MODEL_KEYS:
            continue
        before = norm(stored.model.get(key))
        if before != norm(value):
            out.append(f"model.{key} = {before!r} in the checkpoint, {norm(value)!r} here")
    return out


# Keys an older schema had and this one dropped; a stored config loses them on loading.
# train.fault_kill_*: crash-test hooks, never part of what a run computes.
DROPPED_KEYS = ("train.fault_kill_step", "train.fault_kill_when")


def config_from_meta(meta: dict) -> ml_collections.ConfigDict:
    """The config a checkpoint was trained with (tuples come back as tuples).

    Keys added to the schema (``configs/paper.py``) after the checkpoint was written take
    their default values, so older checkpoints keep loading, except keys in
    :data:`LEGACY_DEFAULTS`, which take the value such a checkpoint was trained with; every
    key the checkpoint stored keeps its stored value, except the :data:`DROPPED_KEYS`. The
    phases are the checkpoint's own (``phase_order`` included); a key a phase record lacks
    takes the reference phase record's default (``parsing_input = "coarse"``: what every
    phase did before the key).
    """
    raw = json.loads(meta["config"])
    for key in DROPPED_KEYS:
        *parents, leaf = key.split(".")
        node = raw
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)

    def fix(node, ref):
        if isinstance(node, dict):
            ref = ref if isinstance(ref, dict) else {}
            merged = {k: v for k, v in ref.items() if k not in node}  # newer keys: defaults
            merged.update({k: fix(v, ref.get(k)) for k, v in node.items()})
            return merged
        if isinstance(node, list) and (ref is None or isinstance(ref, tuple)):
            return tuple(node)
        return node

    from facedeblur_jax.config import apply_overrides, reference_config

    ref = apply_overrides(reference_config(), LEGACY_DEFAULTS).to_dict()
    # Each stored phase takes missing keys from the reference's first phase record, whatever
    # its name (a phase added to the reference later, e.g. parsing_clear with
    # parsing_input = "clear", must not lend its values to an older same-named phase).
    template = ref["phases"]["coarse"]
    ref["phases"] = {name: template for name in raw.get("phases", {})}
    return ml_collections.ConfigDict(fix(raw, ref))


def config_diff(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict) -> dict[str, tuple]:
    """``{dotted key: (value in a, value in b)}`` for every leaf that differs (a key missing
    on one side has the value ``"<absent>"`` there)."""

    def flat(node, prefix=""):
        out = {}
        for k, v in node.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
        return out

    fa, fb = flat(a.to_dict()), flat(b.to_dict())
    missing = "<absent>"
    return {
        k: (fa.get(k, missing), fb.get(k, missing))
        for k in sorted(fa.keys() | fb.keys())
        if fa.get(k, missing) != fb.get(k, missing)
    }


def _state_layout(config: ml_collections.ConfigDict):
    """The train state's tree structure with every leaf's shape and dtype (no arrays)."""
    from facedeblur_jax.models.factory import build_discriminator, build_model
    from facedeblur_jax.training.state import create_train_state

    model, disc = build_model(config.model), build_discriminator(config.model)
    abstract = jax.eval_shape(
        lambda key: create_train_state(config, model, disc, key), jax.random.key(0)
    )
    leaves, tree = jax.tree.flatten(abstract)
    return tree, [(x.shape, x.dtype) for x in leaves]


def check_resumable(meta: dict, config: ml_collections.ConfigDict, where: str) -> None:
    """Raises :class:`CheckpointError` when the checkpoint whose ``meta`` is given (at
    ``where``) holds a train state of another layout than ``config`` builds — other nets,
    widths, depths or optimiser — naming the config keys that differ. Reads no arrays, so
    it runs before any restore. Other differences (schedule length, logging, data
    workers, ...) are allowed: a resumed run may change them."""
    stored = config_from_meta(meta)
    check_layout(stored, where)
    differences = model_differences(stored, config)
    if differences:
        raise CheckpointError(
            f"checkpoint {where!r} was trained with another model: {'; '.join(differences)}; "
            "resume with the config it was trained with (stored in its meta) or use another "
            "--workdir"
        )
    if _state_layout(stored) == _state_layout(config):
        return
    diff = config_diff(stored, config)
    shaping = {k: v for k, v in diff.items() if k.startswith(("model.", "optim."))}
    shown = shaping or diff
    items = [f"{k}={old!r} (this run: {new!r})" for k, (old, new) in list(shown.items())[:6]]
    more = f" and {len(shown) - 6} more" if len(shown) > 6 else ""
    raise CheckpointError(
        f"checkpoint {where!r} was trained with another model: {', '.join(items)}{more}; "
        "resume with the config it was trained with (stored in its meta) or use another "
        "--workdir"
    )
