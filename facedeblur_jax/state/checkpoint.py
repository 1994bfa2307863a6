"""Orbax checkpoints of the whole training run, for exact resume.

Each checkpoint ``WORKDIR/checkpoints/<step>/`` holds two items:

* ``state`` — the :class:`~facedeblur_jax.state.train_state.TrainState` pytree (params of every
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

from facedeblur_jax.config import reference_config
from facedeblur_jax.core import compat
from facedeblur_jax.core.compat import CheckpointError  # re-exported: raised here
from facedeblur_jax.models.factory import LAYOUT_VERSION, build_discriminator, build_model
from facedeblur_jax.state.train_state import create_train_state

PyTree = Any


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
      timeout_s: the deadline of one asynchronous save: the write and, with several
        processes, Orbax's barriers between them (``train.distributed_checkpoint_timeout_s``;
        Orbax's ``AsyncOptions.timeout_secs``).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        keep: int = 3,
        async_save: bool = True,
        create: bool = True,
        timeout_s: int = 1200,
    ):
        if keep < 1:
            raise ValueError(f"train.keep_checkpoints must be >= 1; got {keep}")
        if timeout_s < 1:
            raise ValueError(
                f"train.distributed_checkpoint_timeout_s must be >= 1; got {timeout_s}"
            )
        self.directory = checkpoint_dir(workdir)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=create,
            enable_async_checkpointing=async_save,
            async_options=ocp.AsyncOptions(timeout_secs=int(timeout_s)),
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


# Model keys that say how the networks run, not what they compute: a resumed run may
# change them.
RUNTIME_MODEL_KEYS = ("remat", "compute_dtype")


def check_layout(config: ml_collections.ConfigDict, where: str) -> None:
    """Raises :class:`CheckpointError` naming ``where`` and ``model.layout_version`` when a
    checkpoint's stored config is of a network layout this code does not build
    (:func:`facedeblur_jax.core.compat.check_layout`)."""
    compat.check_layout(config.model.layout_version, LAYOUT_VERSION, where)


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


def config_from_meta(meta: dict) -> ml_collections.ConfigDict:
    """The config a checkpoint was trained with, in today's schema (tuples come back as
    tuples): the stored JSON migrated by :func:`facedeblur_jax.core.compat.migrate_config`
    (older checkpoints keep loading)."""
    raw = json.loads(meta["config"])
    return ml_collections.ConfigDict(compat.migrate_config(raw, reference_config().to_dict()))


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
