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

A checkpoint whose files cannot be read — an item folder deleted, a truncated ``_METADATA``,
array files overwritten — raises :class:`UnreadableCheckpoint` (a :class:`CheckpointError`)
naming the step folder and the item, never "does not match the model": the state's stored
tree (names, shapes, dtypes) is read and compared with the expected one before any array,
so a mismatch is named by its key and anything that fails after that is damage.
:func:`newest_readable` goes back from an unreadable newest checkpoint to the newest one that
can be read (inference and resuming use it; each caller says in one warning line which step
it passed over and why). When Orbax's read of a damaged checkpoint fails, the other reads
still in flight complete on an event loop Orbax has already closed; Python would print a
traceback for each and asyncio would log each failed read task, so those echoes (exactly
those) are dropped (:func:`_drop_echoes_of_failed_reads`): the error raised says it once.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import sys
import types
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from facedeblur_jax.config import reference_config
from facedeblur_jax.core import compat
from facedeblur_jax.core.compat import CheckpointError  # re-exported: raised here
from facedeblur_jax.models.factory import LAYOUT_VERSION, build_discriminator, build_model
from facedeblur_jax.state.train_state import create_train_state

PyTree = Any
T = TypeVar("T")

# Where a resumed run moves the checkpoints it could not read (beside checkpoints/).
UNREADABLE_DIR = "unreadable_checkpoints"
# Errors of Orbax / tensorstore reading damaged files (tensorstore raises ValueError).
_READ_ERRORS = (ValueError, KeyError, TypeError, OSError, RuntimeError, AttributeError)


class UnreadableCheckpoint(CheckpointError):
    """A checkpoint whose files cannot be read (missing item, corrupt or truncated file)."""


# How tensorstore prefixes the cause of a failed read with the operations around it.
_WRAPPERS = ('Error opening "', "Error reading ", "Error decoding local file ")


def _reason(e: BaseException) -> str:
    """One short line for a read error: tensorstore's spec dumps and nested "Error opening
    ..." prefixes dropped, the cause kept (the cause of a bare ``Exception`` Orbax wraps
    it in)."""
    while type(e) is Exception and e.__cause__ is not None:
        e = e.__cause__
    text = next(iter(str(e).strip().splitlines()), "")
    text = text.split(" [tensorstore_spec", 1)[0].strip()
    parts = text.split(": ")
    status = [parts.pop(0)] if len(parts) > 1 and parts[0].isupper() else []  # OUT_OF_RANGE
    while len(parts) > 1 and parts[0].startswith(_WRAPPERS):
        parts.pop(0)
    text = ": ".join(status + parts)
    if len(text) > 240:
        text = text[:237] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class _EchoesOfFailedReads(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Task exception was never retrieved") and "orbax" in message)


_ECHOES_DROPPED = False


def _is_orbax_coroutine(obj) -> bool:
    return isinstance(obj, types.CoroutineType) and "orbax" in obj.cr_code.co_filename


def _drop_echoes_of_failed_reads() -> None:
    """Drops (from now on, in this process) the echoes a failed Orbax read leaves: the
    "Event loop is closed" RuntimeError that each late tensorstore completion raises where
    no code can catch it, and the error of each of Orbax's read coroutines that is
    finalised with it (both printed by ``sys.unraisablehook``), and asyncio's "Task
    exception was never retrieved" log record for each of Orbax's failed read tasks.
    Everything else reaches the previous hook and the log unchanged."""
    global _ECHOES_DROPPED
    if _ECHOES_DROPPED:
        return
    _ECHOES_DROPPED = True
    previous = sys.unraisablehook

    def hook(unraisable):
        exc, obj = unraisable.exc_value, unraisable.object
        closed_loop = isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"
        if (closed_loop and obj is None) or _is_orbax_coroutine(obj):
            return
        previous(unraisable)

    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_EchoesOfFailedReads())


def _leaf_name(path) -> str:
    out = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                out.append(str(getattr(entry, attr)))
                break
    return ".".join(out)


def _layout(tree: PyTree) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"params.coarse....": (shape, dtype name)}`` of every leaf (arrays or metadata)."""
    return {
        _leaf_name(path): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _first_difference(stored: dict, expected: dict) -> str | None:
    for key in sorted(expected):
        if key not in stored:
            return f"{key} is missing"
        if stored[key] != expected[key]:
            (s_shape, s_dtype), (e_shape, e_dtype) = stored[key], expected[key]
            return f"{key} is {s_dtype}{list(s_shape)} there, {e_dtype}{list(e_shape)} in the model"
    extra = sorted(set(stored) - set(expected))
    return f"{extra[0]} is not part of the model" if extra else None


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

    def where(self, step: int) -> str:
        """The step's folder, as messages name it."""
        return str(self.directory / str(step))

    def restore_meta(self, step: int | None = None) -> dict:
        """The ``meta`` item of ``step`` (default: the latest).

        Raises:
          CheckpointError: there is no checkpoint.
          UnreadableCheckpoint: the item is missing or cannot be read.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {str(self.directory)!r}")
        _drop_echoes_of_failed_reads()
        try:
            meta = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )["meta"]
        except _READ_ERRORS as e:
            raise UnreadableCheckpoint(
                f"checkpoint {self.where(step)!r} cannot be read: its 'meta' item is missing "
                f"or corrupt ({_reason(e)})"
            ) from e
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), str):
            raise UnreadableCheckpoint(
                f"checkpoint {self.where(step)!r} cannot be read: its 'meta' item holds no config"
            )
        return meta

    def state_layout(self, step: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """``{leaf name: (shape, dtype)}`` of the stored train state, from its metadata (no
        array is read). :class:`UnreadableCheckpoint` when the metadata cannot be read."""
        _drop_echoes_of_failed_reads()
        try:
            stored = ocp.StandardCheckpointHandler().metadata(self.directory / str(step) / "state")
            return _layout(stored)
        except _READ_ERRORS as e:
            raise UnreadableCheckpoint(
                f"checkpoint {self.where(step)!r} cannot be read: its 'state' item is missing "
                f"or corrupt ({_reason(e)})"
            ) from e

    def restore(
        self,
        abstract_state: PyTree,
        step: int | None = None,
        config: ml_collections.ConfigDict | None = None,
    ) -> tuple[PyTree, dict]:
        """Restores ``(state, meta)``; ``abstract_state`` gives shapes, dtypes and shardings.

        Raises :class:`CheckpointError` naming the checkpoint when it holds networks of
        another layout or model keys other than ``config``'s (when given; checked on the
        stored config before any array is read), or a state whose stored tree (names,
        shapes, dtypes; read from its metadata) differs from ``abstract_state``'s, naming
        the first key that differs; :class:`UnreadableCheckpoint` when an item or array
        cannot be read.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {str(self.directory)!r}")
        where = self.where(step)
        meta = self.restore_meta(step)
        if config is not None:
            stored = config_from_meta(meta)
            check_layout(stored, where)
            differences = model_differences(stored, config)
            if differences:
                raise CheckpointError(
                    f"checkpoint {where!r} does not match the model built from the current "
                    f"config: {'; '.join(differences)}; use the config it was trained with "
                    "(stored in its meta) or another --workdir"
                )
        difference = _first_difference(self.state_layout(step), _layout(abstract_state))
        if difference is not None:
            raise CheckpointError(
                f"checkpoint {where!r} does not match the model built from the current "
                f"config ({difference}); use the config it was trained with (stored in its "
                "meta) or another --workdir"
            )
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as e:  # the tree matched: any failure now is damage (Orbax wraps
            # tensorstore's ValueError in a bare Exception)
            raise UnreadableCheckpoint(
                f"checkpoint {where!r} cannot be read: its arrays are corrupt or truncated "
                f"({_reason(e)})"
            ) from e
        return restored["state"], restored["meta"]

    def set_aside(self, steps: list[int]) -> pathlib.Path:
        """Moves the folders of ``steps`` to ``WORKDIR/unreadable_checkpoints/`` (kept, not
        deleted; a name taken there gets a ``.N`` suffix) and rereads the step list, so
        that a resumed run can save those steps again. Returns that folder."""
        aside = self.directory.parent / UNREADABLE_DIR
        aside.mkdir(exist_ok=True)
        for step in steps:
            target, n = aside / str(step), 1
            while target.exists():
                target, n = aside / f"{step}.{n}", n + 1
            shutil.move(str(self.directory / str(step)), str(target))
        self._manager.reload()
        return aside

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


def newest_readable(
    checkpointer: Checkpointer, read: Callable[[int], T]
) -> tuple[int, T, list[tuple[int, str]]]:
    """``read(step)`` of the newest checkpoint that can be read.

    Steps are tried newest first; one whose ``read`` raises :class:`UnreadableCheckpoint`
    is passed over for the one before it. Any other error (a checkpoint of another model,
    say) is raised at once: an older step of the same run would not do better.

    Returns:
      ``(step, read(step), [(passed-over step, why), ...])``; the caller says, in one
      warning line per passed-over step, which step it used instead.
    Raises:
      CheckpointError: there is no checkpoint.
      UnreadableCheckpoint: none can be read (one line listing every step and why).
    """
    steps = sorted(checkpointer.all_steps(), reverse=True)
    if not steps:
        raise CheckpointError(f"no checkpoint in {str(checkpointer.directory)!r}")
    skipped: list[tuple[int, str]] = []
    for step in steps:
        try:
            return step, read(step), skipped
        except UnreadableCheckpoint as e:
            skipped.append((step, str(e)))
    if len(skipped) == 1:
        raise UnreadableCheckpoint(
            f"{skipped[0][1]}; it is the only checkpoint in {str(checkpointer.directory)!r}: "
            "restore it from a copy, or train anew in another --workdir"
        )
    reasons = "; ".join(
        why.replace(f"checkpoint {checkpointer.where(step)!r} cannot be read: ", f"step {step}: ")
        for step, why in skipped
    )
    raise UnreadableCheckpoint(
        f"no checkpoint in {str(checkpointer.directory)!r} can be read ({reasons}): restore "
        "them from a copy, or train anew in another --workdir"
    )


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
