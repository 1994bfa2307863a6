"""Joining a multi-host run: one process per host, ``jax.distributed`` over TCP.

``config.train.distributed=True`` makes every process call :func:`initialize` first thing
(docs/design.md §6). Each setting comes from its config key, else its environment variable,
else JAX's cluster detection (SLURM, Open MPI, Cloud TPU pods, Kubernetes):

- the coordinator ``HOST:PORT``: ``train.coordinator_address`` / ``JAX_COORDINATOR_ADDRESS``;
- the number of processes: ``train.num_processes`` / ``JAX_NUM_PROCESSES``;
- this process's id, ``0 .. n - 1``: ``train.process_id`` / ``JAX_PROCESS_ID``.

Process 0 runs the coordinator; every process must reach it, and all share the workdir
(one folder every host sees: process 0 writes the metrics, Orbax writes each checkpoint
once). On CPUs the processes' collectives run over gloo (JAX's default).

Every wait is bounded by a key of the ``train.distributed_*_s`` family (:func:`timeouts`):

- ``distributed_timeout_s``: joining, the start-up checks and the meeting before the first
  collective. When a peer never comes, JAX ends the process with a C++ abort and a stack
  dump, which Python cannot catch; a watchdog thread therefore ends the process itself
  first, with one ``facedeblur train: error:`` line: "no coordinator answers at ADDR" (a
  process started without process 0, or a wrong address) or "process K did not join" (the
  coordinator waited for a missing process). After joining, :func:`check_same_run`
  compares every process's config and workdir with process 0's through the coordinator's
  key-value store, and :func:`check_all_ready` lets a process whose start-up checks failed
  (a file missing on its host) stop the others: every process raises
  :class:`ClusterError` with the cause instead of stalling in the first collective.
- ``distributed_heartbeat_timeout_s``: how long a process may go unheard (stopped,
  swapped out) before JAX takes it for dead and ends every process.
- ``distributed_checkpoint_timeout_s``: one asynchronous checkpoint save, the barriers
  between the processes included (Orbax, ``state/checkpoint.py``).
- ``distributed_shutdown_timeout_s``: how long a process that has finished waits for the
  others (:func:`finish`, then JAX's own shutdown barrier).

A slow peer is not an error as long as it comes within these. Two waits are JAX's and
not configurable, and both are kept short here: gloo's rendezvous when two processes
first talk over a set of devices (30 s, fixed in gloo), which :func:`connect_collectives`
makes happen at once, right after a meeting with the long deadline; and the gap between
:func:`finish` and JAX's shutdown barrier, which every process enters together.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping

import jax
import ml_collections
import numpy as np
from jax._src import distributed as jax_distributed
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from facedeblur_jax.state.checkpoint import config_diff

ENV = {
    "coordinator_address": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}
# Keys that may differ between the processes of one run.
PER_PROCESS_KEYS = ("train.process_id",)
# The deadlines (train.KEY, in seconds): what each bounds is in the module docstring.
TIMEOUT_KEYS = (
    "distributed_timeout_s",
    "distributed_heartbeat_timeout_s",
    "distributed_checkpoint_timeout_s",
    "distributed_shutdown_timeout_s",
)
# A process that waits this long at the end for a peer says so (one line on stderr).
LATE_S = 10.0


class ClusterError(RuntimeError):
    """The processes of a multi-host run cannot work together (named in the message)."""


def timeouts(train_config: ml_collections.ConfigDict) -> dict[str, int]:
    """``{key: seconds}`` for the :data:`TIMEOUT_KEYS`; raises ``ValueError`` naming a key
    below 1."""
    out = {}
    for key in TIMEOUT_KEYS:
        value = int(train_config[key])
        if value < 1:
            raise ValueError(f"train.{key} must be >= 1; got {value}")
        out[key] = value
    return out


def cluster_settings(
    train_config: ml_collections.ConfigDict, environ: Mapping[str, str] | None = None
) -> dict:
    """``{"coordinator_address": str | None, "num_processes": int | None, "process_id": int
    | None, "timeout_s": int, "heartbeat_s": int, "shutdown_s": int}`` from the config keys,
    else the environment variables (:data:`ENV`); ``None`` leaves a setting to JAX's
    cluster detection. The timeouts are ``train.distributed_timeout_s``,
    ``train.distributed_heartbeat_timeout_s`` and ``train.distributed_shutdown_timeout_s``.

    Raises ``ValueError`` naming the key or variable whose value is not usable.
    """
    environ = os.environ if environ is None else environ
    out: dict = {}
    address = str(train_config.coordinator_address or "") or environ.get(ENV["coordinator_address"])
    if address is not None and (":" not in address or not address.rsplit(":", 1)[1].isdigit()):
        raise ValueError(
            f"coordinator address {address!r} (train.coordinator_address or "
            f"{ENV['coordinator_address']}) must be HOST:PORT"
        )
    out["coordinator_address"] = address or None
    for key in ("num_processes", "process_id"):
        value = int(train_config[key])
        if value < 0 and environ.get(ENV[key], "") != "":
            text = environ[ENV[key]]
            if not text.strip().isdigit():
                raise ValueError(f"{ENV[key]}={text!r} must be a non-negative integer")
            value = int(text)
        out[key] = value if value >= 0 else None
    if out["num_processes"] is not None and out["num_processes"] < 1:
        raise ValueError(f"train.num_processes must be >= 1; got {out['num_processes']}")
    n, pid = out["num_processes"], out["process_id"]
    if n is not None and pid is not None and pid >= n:
        raise ValueError(f"train.process_id={pid} must be below train.num_processes={n}")
    limits = timeouts(train_config)
    out["timeout_s"] = limits["distributed_timeout_s"]
    out["heartbeat_s"] = limits["distributed_heartbeat_timeout_s"]
    out["shutdown_s"] = limits["distributed_shutdown_timeout_s"]
    return out


def _answers(address: str, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``HOST:PORT``."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def _missing_message(settings: dict) -> str:
    address, n, pid = (settings[k] for k in ("coordinator_address", "num_processes", "process_id"))
    waited = f"{settings['timeout_s']} s (train.distributed_timeout_s)"
    if None in (address, n, pid):
        return (
            f"this process did not join the run within {waited} (coordinator, process count "
            "and id as the cluster environment gave them)"
        )
    if pid != 0 and not _answers(address):
        return (
            f"process {pid} of {n}: no coordinator answers at {address} after {waited}; "
            "start process 0 with the same train.coordinator_address, or fix the address"
        )
    if pid == 0:
        others = "process 1" if n == 2 else f"one of the processes 1..{n - 1}"
    else:
        others = f"one of the other {n - 1} processes"
    return (
        f"process {pid} of {n}: {others} did not join the coordinator at {address} within "
        f"{waited}; start all {n} processes with train.num_processes={n}, each with its "
        "own train.process_id"
    )


def initialize(train_config: ml_collections.ConfigDict) -> None:
    """Joins the run's other processes (``jax.distributed.initialize``) within
    ``train.distributed_timeout_s``, else ends this process with one error line (see the
    module docstring). Call before anything touches a JAX device; a second call in a
    process that already joined does nothing.

    Raises:
      ClusterError: no coordinator address, process count or id, neither configured nor
        detected.
      ValueError: a setting that is not usable (named).
    """
    settings = cluster_settings(train_config)
    if jax.distributed.is_initialized():
        return
    timeout = settings["timeout_s"]

    def give_up():
        print(f"facedeblur train: error: {_missing_message(settings)}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(2)

    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=settings["coordinator_address"],
            num_processes=settings["num_processes"],
            process_id=settings["process_id"],
            # JAX's own limit stays above the watchdog's, which speaks first.
            initialization_timeout=timeout + 30,
            heartbeat_timeout_seconds=settings["heartbeat_s"],
            # The coordination service's shutdown barrier. finish() lets every process
            # enter it together, so only a process that fails on its own waits this long.
            shutdown_timeout_seconds=settings["shutdown_s"],
        )
    except ValueError as e:
        missing = [f"train.{k} (or {v})" for k, v in ENV.items() if settings[k] is None]
        verb = "is" if len(missing) == 1 else "are"
        raise ClusterError(
            f"train.distributed=True, but {', '.join(missing)} {verb} not set and no "
            f"cluster was detected ({e})"
        ) from e
    finally:
        watchdog.cancel()


def _client():
    # The coordinator's key-value store. JAX exposes no public handle to it; Orbax uses this
    # same attribute for its multi-host barriers.

    return jax_distributed.global_state.client


def check_same_run(
    config: ml_collections.ConfigDict, workdir: str, timeout_s: int, tag: str = "run"
) -> None:
    """Raises :class:`ClusterError` in every process when some process was started with
    another config (keys other than :data:`PER_PROCESS_KEYS`) or another workdir than
    process 0; the message names the process and up to five differing keys. A process that
    does not publish its config within ``timeout_s`` is named too. No-op with one process.
    """
    n = jax.process_count()
    if n == 1:
        return

    client = _client()
    mine = json.dumps({"config": config.to_json_best_effort(), "workdir": str(workdir)})
    client.key_value_set(f"facedeblur/{tag}/{jax.process_index()}", mine)
    runs = {}
    for p in range(n):
        try:
            runs[p] = json.loads(
                client.blocking_key_value_get(f"facedeblur/{tag}/{p}", timeout_s * 1000)
            )
        except Exception as e:  # JAX raises its runtime error type on a timeout
            raise ClusterError(
                f"process {p} of {n} did not publish its config within {timeout_s} s"
            ) from e
    ref = runs[0]
    problems = []
    for p in range(1, n):
        if runs[p]["workdir"] != ref["workdir"]:
            problems.append(
                f"process {p} has --workdir {runs[p]['workdir']!r}, process 0 {ref['workdir']!r}"
            )
        diff = config_diff(
            ml_collections.ConfigDict(json.loads(ref["config"])),
            ml_collections.ConfigDict(json.loads(runs[p]["config"])),
        )
        diff = {k: v for k, v in diff.items() if k not in PER_PROCESS_KEYS}
        if diff:
            shown = [f"{k}={b!r} (process 0: {a!r})" for k, (a, b) in list(diff.items())[:5]]
            more = f" and {len(diff) - 5} more" if len(diff) > 5 else ""
            problems.append(f"process {p} has {', '.join(shown)}{more}")
    if problems:
        raise ClusterError(
            "the processes were started with different settings: "
            + "; ".join(problems)
            + "; start every process with the same config, overrides and --workdir"
        )


def check_all_ready(error: BaseException | None, timeout_s: int) -> None:
    """Start-up barrier that carries errors: every process publishes whether its start-up
    checks passed (``error`` is ``None``) and waits for the others'. A process whose checks
    passed raises :class:`ClusterError` naming the first process that failed and its
    message, so a file missing on one host stops every process at once instead of leaving
    the others in a collective. A failed process returns (the caller raises its own error).
    No-op with one process."""
    n = jax.process_count()
    if n == 1:
        return
    client, me = _client(), jax.process_index()
    text = "" if error is None else (str(error).strip().splitlines() or [type(error).__name__])[0]
    client.key_value_set(f"facedeblur/ready/{me}", text or ("" if error is None else "error"))
    if error is not None:
        return
    for p in range(n):
        try:
            status = client.blocking_key_value_get(f"facedeblur/ready/{p}", timeout_s * 1000)
        except Exception as e:  # JAX raises its runtime error type on a timeout
            raise ClusterError(
                f"process {p} of {n} did not finish its start-up checks within {timeout_s} s"
            ) from e
        if status:
            raise ClusterError(f"process {p} of {n} stopped: {status}")


def _meet(tag: str, timeout_s: int, what: str) -> None:
    """Every process waits here until all have come (through the key-value store, within
    ``timeout_s``); raises :class:`ClusterError` naming the first process that did not
    ``what`` in time. No-op with one process."""
    n = jax.process_count()
    if n == 1:
        return
    client, me = _client(), jax.process_index()
    client.key_value_set(f"facedeblur/{tag}/{me}", "1")
    deadline = time.monotonic() + timeout_s
    for p in range(n):
        left_ms = max(1, int((deadline - time.monotonic()) * 1000))
        try:
            client.blocking_key_value_get(f"facedeblur/{tag}/{p}", left_ms)
        except Exception as e:  # JAX raises its runtime error type on a timeout
            raise ClusterError(
                f"process {p} of {n} did not {what} within {timeout_s} s "
                "(train.distributed_timeout_s)"
            ) from e


def connect_collectives(mesh: Mesh, timeout_s: int) -> None:
    """Opens every connection between the processes that training uses, all processes at
    once, so that a slow process is waited for with ``timeout_s`` instead of gloo's 30 s.

    Gloo connects a set of devices when a collective first runs over it, and each process
    then waits at most 30 s for the others (gloo's default; JAX has no setting for it): a
    process still compiling its first train step on a busy host, while another loaded
    the step from the compilation cache, failed the run. Here every process compiles a
    tiny program first, meets the others (``timeout_s``), then runs it: a sum over all of
    ``mesh``'s devices (the train step's all-reduce) and a replicated ``device_put`` (one
    connection per local device across the processes, as a replicated state is placed).
    Later collectives over these devices reuse the connections and wait for a slow peer as
    long as gloo's per-operation timeout allows. No-op with one process."""
    if jax.process_count() == 1:
        return
    axes = tuple(mesh.axis_names)
    replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P(axes))
    total = jax.jit(
        jax.shard_map(lambda x: jax.lax.psum(x, axes), mesh=mesh, in_specs=P(axes), out_specs=P()),
        out_shardings=replicated,
    )
    local = np.ones((len(mesh.local_devices),), np.float32)
    ones = jax.make_array_from_process_local_data(rows, local)
    program = total.lower(ones).compile()
    _meet("collectives", timeout_s, "reach its first collective")
    placed = jax.device_put(np.ones((), np.float32), replicated)
    got = float(np.asarray(program(ones).addressable_data(0))[0])
    placed.block_until_ready()
    if got != mesh.devices.size:
        raise ClusterError(f"a sum over the {mesh.devices.size} devices gave {got}")


def finish(step: int, timeout_s: int) -> None:
    """The end of a run: every process waits here, after its last checkpoint is saved
    (the caller closed its checkpointer), until all have finished, so that they enter
    JAX's shutdown barrier together. Waits up to ``timeout_s``
    (``train.distributed_shutdown_timeout_s``); a process that has waited :data:`LATE_S`
    says for whom in one line on stderr. If a peer does not finish in time, ends this
    process with one ``facedeblur train: error:`` line and status 2, without JAX's shutdown
    barrier (which would wait as long again and then abort). No-op with one process."""
    n = jax.process_count()
    if n == 1:
        return
    client, me = _client(), jax.process_index()
    prefix = "facedeblur/finished/"
    client.key_value_set(f"{prefix}{me}", str(step))
    t0, said = time.monotonic(), False
    for p in range(n):
        while True:
            elapsed = time.monotonic() - t0
            wait_s = timeout_s - elapsed if said else min(timeout_s, LATE_S) - elapsed
            try:
                client.blocking_key_value_get(f"{prefix}{p}", max(1, int(wait_s * 1000)))
                break
            except Exception:  # JAX raises its runtime error type on a timeout
                done = {int(k.rsplit("/", 1)[1]) for k, _ in client.key_value_dir_get(prefix)}
                late = [q for q in range(n) if q not in done]
                who = ", ".join(f"process {q}" for q in late)
                if time.monotonic() - t0 >= timeout_s:
                    print(
                        f"facedeblur train: error: {who} of {n} did not finish within "
                        f"{timeout_s} s (train.distributed_shutdown_timeout_s) after process "
                        f"{me}; the checkpoint of step {step} is saved",
                        file=sys.stderr,
                    )
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(2)
                if not said:
                    print(
                        f"facedeblur train: process {me} of {n} finished step {step} (its "
                        f"checkpoint saved) and waits up to {timeout_s} s "
                        f"(train.distributed_shutdown_timeout_s) for {who}",
                        file=sys.stderr,
                        flush=True,
                    )
                    said = True
