"""Old formats, migrated or refused in one place.

Files this package wrote in an earlier version either still load — migrated here to what
the current code reads — or are refused here with one line that names the key or tag and
says what to do. Nothing else in the package knows an old format:

* **Training configs** stored in checkpoints and weights files (:func:`migrate_config`):
  keys added since take their defaults, except the :data:`LEGACY_DEFAULTS` (what such a
  run actually ran with); :data:`DROPPED_KEYS` are removed; every phase record takes
  missing keys from the reference phase record.
* **Network layouts** (:func:`check_layout`, :func:`check_weights_tag`): checkpoints and
  weights files of a ``model.layout_version`` this code no longer builds (1: 14-conv
  scales, an average-pooled prior, another P) are refused by name.
* **The data pipeline's iterator state** (:func:`pipeline_state_v1`): a version-1 state (one
  process, grain's own shuffle seed) is recognised and resumed.
* **Kernel banks** (:func:`bank_center`): format-1 banks have no ``center`` entry; their
  kernels were centroid-placed.

The functions are pure (dicts and numbers in, dicts or errors out): the callers pass the
current schema or version, so this module sits below every other.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used here (named in the message; a
    ``ValueError``, so the command line reports it in one line)."""


# --- training configs ----------------------------------------------------------------------

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

# Keys an older schema had and this one dropped; a stored config loses them on loading.
# train.fault_kill_*: crash-test hooks, never part of what a run computes.
DROPPED_KEYS = ("train.fault_kill_step", "train.fault_kill_when")


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def migrate_config(raw: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, Any]:
    """A stored config (``raw``, the JSON of a checkpoint's ``meta``) in today's schema.

    Args:
      raw: the stored config as plain JSON data (lists for tuples).
      reference: today's schema with its defaults (``config.reference_config().to_dict()``;
        tuples stay tuples).

    Returns:
      The config as a plain dict: every key ``raw`` stored keeps its stored value (lists
      become tuples where the schema holds a tuple), but the :data:`DROPPED_KEYS`; keys
      added to the schema since take their defaults, or the :data:`LEGACY_DEFAULTS` value
      where there is one. The phases are the stored ones (``phase_order`` included); a key a
      stored phase record lacks takes the reference's first phase record's default, whatever
      the phase's name (a phase added to the schema later, e.g. ``parsing_clear``, must not
      lend its values to an older same-named phase).
    """
    raw = copy.deepcopy(dict(raw))
    for key in DROPPED_KEYS:
        *parents, leaf = key.split(".")
        node: Any = raw
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    ref = copy.deepcopy(dict(reference))
    for key, value in LEGACY_DEFAULTS.items():
        _set(ref, key, value)
    template = ref["phases"]["coarse"]
    ref["phases"] = {name: template for name in raw.get("phases", {})}

    def fix(node, ref_node):
        if isinstance(node, dict):
            ref_node = ref_node if isinstance(ref_node, dict) else {}
            merged = {k: v for k, v in ref_node.items() if k not in node}  # newer keys
            merged.update({k: fix(v, ref_node.get(k)) for k, v in node.items()})
            return merged
        if isinstance(node, list) and (ref_node is None or isinstance(ref_node, tuple)):
            return tuple(node)
        return node

    return fix(raw, ref)


# --- network layouts -----------------------------------------------------------------------


def check_layout(stored: Any, current: int, where: str) -> None:
    """Raises :class:`CheckpointError` naming ``where`` and ``model.layout_version`` when a
    stored config's layout (``stored``) is not the one this code builds (``current``)."""
    if stored != current:
        raise CheckpointError(
            f"checkpoint {where!r} holds networks of model.layout_version = {stored!r}; this "
            f"version builds only layout {current} (18-conv scales, the official parsing "
            "net): load it with the version that wrote it, or train anew in another workdir"
        )


def check_weights_tag(tag: str, prefix: str, current: str, where: str) -> None:
    """Raises :class:`CheckpointError` when a weights file's format ``tag`` is of this
    family (``prefix``, e.g. ``facedeblur_jax.generator.v``) but of another layout than
    ``current``; other tags are left to the file reader (which says what the file is not)."""
    if tag.startswith(prefix) and tag != current:
        raise CheckpointError(
            f"{where} holds generator weights of model layout {tag[len(prefix) :]!r} "
            f"(format tag {tag!r}); this version builds only layout {current[len(prefix) :]}: "
            "load it with the version that wrote it, or export a checkpoint of this version"
        )


# --- the data pipeline's iterator state ----------------------------------------------------


def pipeline_state_v1(
    *,
    num_records: int,
    seed: int,
    data_stream: int,
    local_batch: int,
    image_size: int,
    host: int,
    hosts: int,
) -> dict[str, Any] | None:
    """What a version-1 iterator state of this pipeline held (``None`` with several
    processes: version 1 was single-process). Version 1 stored grain's shuffle seed, derived
    from the run's ``seed`` and the data stream's tag (``data_stream``)."""
    if hosts != 1:
        return None
    return {
        "version": 1,
        "num_records": num_records,
        "seed": int(np.random.SeedSequence([int(seed) % 2**64, data_stream]).generate_state(1)[0]),
        "local_batch": local_batch,
        "image_size": image_size,
        "shard": [host, hosts],
    }


# --- kernel banks --------------------------------------------------------------------------


def bank_center(data: Mapping[str, Any]) -> str:
    """The kernel placement a bank file was drawn with: its ``center`` entry, or
    ``"centroid"`` for a format-1 bank (no such entry)."""
    return str(data["center"]) if "center" in data else "centroid"
