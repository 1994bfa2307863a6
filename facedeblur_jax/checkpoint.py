"""Orbax checkpoints of the whole training run, for exact resume.

Each checkpoint ``WORKDIR/checkpoints/<step>/`` holds two items:

* ``state`` — the :class:`~facedeblur_jax.train_state.TrainState` pytree (params of every
  net, optimiser states, BatchNorm statistics, step, raw PRNG key, NaN-skip count), saved
  with ``StandardSave`` from the replicated device arrays;
* ``meta`` — JSON: the phase name / index / step within the phase, the global step, the
  full config, the data iterator's state (``get_state()``) and library versions.

Orbax writes a checkpoint into a temporary directory and renames it only when complete
(``commit_success.txt``), so a process killed during a save leaves the previous
checkpoint as the latest usable one; unfinished temporaries are ignored (and removed) on
the next start. ``keep`` bounds how many are kept (oldest deleted first).
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


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used with this config (named in the message)."""


def checkpoint_dir(workdir: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(workdir).resolve() / "checkpoints"


class Checkpointer:
    """Thin wrapper around ``ocp.CheckpointManager`` with the two items above.

    Args:
      workdir: the run's folder; checkpoints go to ``workdir/checkpoints``.
      keep: keep the last ``keep`` checkpoints.
      async_save: write in a background thread (the train loop keeps stepping).
    """

    def __init__(self, workdir: str | os.PathLike, keep: int = 3, async_save: bool = True):
        if keep < 1:
            raise ValueError(f"train.keep_checkpoints must be >= 1; got {keep}")
        self.directory = checkpoint_dir(workdir)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            enable_async_checkpointing=async_save,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

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

    def restore(self, abstract_state: PyTree, step: int | None = None) -> tuple[PyTree, dict]:
        """Restores ``(state, meta)``; ``abstract_state`` gives shapes, dtypes and shardings.

        Raises :class:`CheckpointError` naming the checkpoint when its arrays do not fit the
        state built from the current config (e.g. other widths).
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {str(self.directory)!r}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {str(self.directory / str(step))!r} does not match the model "
                f"built from the current config ({type(e).__name__}: {e}); use the config it "
                f"was trained with (stored in its meta) or another --workdir"
            ) from e
        return restored["state"], restored["meta"]

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def config_to_json(config: ml_collections.ConfigDict) -> str:
    return config.to_json_best_effort(sort_keys=True)


# Keys whose default changed after they were added: a checkpoint written before the key
# existed ran with the value here, not with today's default (resuming it must not switch
# implementation). degrade.trajectory_impl: added as "scan", default "auto" since the H100
# measurement of the Triton walk. degrade.center: kernels were centroid-centred before the
# placement became a choice (default "bbox"). loss.structural_min_area: L_s had no floor.
LEGACY_DEFAULTS = {
    "degrade.trajectory_impl": "scan",
    "degrade.center": "centroid",
    "loss.structural_min_area": 0.0,
}


def config_from_meta(meta: dict) -> ml_collections.ConfigDict:
    """The config a checkpoint was trained with (tuples come back as tuples).

    Keys added to the schema (``configs/paper.py``) after the checkpoint was written take
    their default values, so older checkpoints keep loading, except keys in
    :data:`LEGACY_DEFAULTS`, which take the value such a checkpoint was trained with; every
    key the checkpoint stored keeps its stored value. The phases are the checkpoint's own
    (``phase_order`` included); a key a phase record lacks takes the reference phase
    record's default (``parsing_input = "coarse"``: what every phase did before the key).
    """
    raw = json.loads(meta["config"])

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
