"""Two processes × 4 CPU devices on 127.0.0.1 (gloo) train like one process with 8 devices.

What the README's multi-host section shows, run for real: `facedeblur train` twice with
``train.distributed=True``, the coordinator on loopback, one shared workdir. Checked: one
checkpoint set, process 0 alone prints and logs, each process reads its own shard, the
result equals one 8-device process fed the same global batches, SIGKILL of both processes
after a checkpoint and a restart of both ends exactly where the uninterrupted run ends,
processes that cannot work together stop within the timeout with one line each, and a
peer that stops for a while (before its first step and before the end) is waited for.
Every wait on the children is bounded by their progress (``tests/processes.py``).
"""

import json
import pathlib
import re
import shutil
import signal
import sys
import time

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from facedeblur_jax.config import load_config
from facedeblur_jax.data.pipeline import make_train_iterator
from facedeblur_jax.serving.loading import load_model
from facedeblur_jax.state.checkpoint import Checkpointer
from facedeblur_jax.training.loop import make_mesh, train
from tests import processes

# 6 steps: coarse 2 | joint 4; checkpoints at steps 3 and 6 (the first one inside the joint
# phase). The joint phase trains every network (G_c, P, G_f, D) on every loss, so the
# phases between add nothing multi-host, only compilations: the crossing of phase
# boundaries on resume is tested in test_loop.py, with all five phases.
SIX = {
    "phase_order": ("coarse", "joint"),
    "phases.joint.steps": 4,
    "train.checkpoint_every": 3,
    "train.parsing_eval_faces": 0,  # P's F-score lines: process 0's, tested in test_loop.py
}
TOLERANCE = 5e-5  # max |Δparam| between 2 × 4 and 1 × 8 devices (gloo vs in-process sums)


def _launch(
    workdir,
    logs,
    name,
    extra=None,
    pids=(0, 1),
    per_process=None,
    timeout_s=120,
    cwds=None,
    prefixes=None,
):
    """``facedeblur train`` as processes ``pids`` of 2, coordinator on a free loopback port
    (process ``p`` in folder ``cwds[p]`` and started by ``prefixes[p]`` if given)."""
    port = processes.free_port()
    children = []
    for pid in pids:
        overrides = {
            **SIX,
            **(extra or {}),
            "train.distributed": True,
            "train.coordinator_address": f"127.0.0.1:{port}",
            "train.num_processes": 2,
            "train.process_id": pid,
            "train.distributed_timeout_s": timeout_s,
            **(per_process or {}).get(pid, {}),
        }
        args = processes.train_args(workdir, overrides)
        cwd, prefix = (cwds or {}).get(pid), (prefixes or {}).get(pid, processes.CLI)
        env = processes.child_env(4)
        children.append(processes.start(args, env, logs, f"{name}{pid}", prefix, cwd=cwd))
    return children, port


class TwoShards:
    """The global batches of the 2-process run, built in one process: rows 0–3 from process
    0's shard, rows 4–7 from process 1's (each a real pipeline), on the 8-device mesh."""

    def __init__(self, config, mesh):
        self.parts = [make_train_iterator(config, shard=(h, 2)) for h in range(2)]
        self.sharding = NamedSharding(mesh, P("data"))

    def __next__(self):
        rows = [jax.tree.map(np.asarray, next(p)) for p in self.parts]
        return {
            k: jax.device_put(np.concatenate([r[k] for r in rows]), self.sharding) for k in rows[0]
        }

    def get_state(self):
        return self.parts[0].get_state()

    def set_state(self, state):
        for p in self.parts:
            p.set_state(state)

    def close(self):
        for p in self.parts:
            p.close()


def _params(workdir):
    return jax.tree.map(np.asarray, load_model(workdir).variables)


def reference_main(workdir: str) -> None:
    """The 1-process, 8-device run on the 2-process run's global batches (run as a child
    with the 2-process runs' compiler flags); writes the source records each shard read
    in the 6 steps to ``workdir/shards.json``."""
    config = load_config("tiny", SIX)
    data = TwoShards(config, make_mesh())
    try:
        shards = [sorted({r for k in range(6) for r in p.record_indices(k)}) for p in data.parts]
        train(config, workdir, progress=False, data=data)
    finally:
        data.close()
    (pathlib.Path(workdir) / "shards.json").write_text(json.dumps(shards))


REFERENCE = (
    "import sys; from tests.training.test_multihost import reference_main; "
    "reference_main(sys.argv[1])"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two rounds, each two things at once (the machine has few cores; most of a run is
    compiling): (1) a 2-process run SIGKILLed once its step-3 checkpoint exists, beside
    the 1-process reference; (2) the restart of the killed run, beside an uninterrupted
    2-process run. Process 0 of each later run loads what the killed run's process 0
    compiled from a persistent compilation cache (JAX lets process 0 alone write one);
    the two runs of round 2 use copies of it, as one must not read what the other writes."""
    root = tmp_path_factory.mktemp("multihost")
    logs = root / "logs"
    cache = {"train.compilation_cache_dir": str(root / "xla")}
    out = {"root": root, "seconds": {}}

    t0 = time.monotonic()
    reference = processes.start(
        [str(root / "single")],
        processes.child_env(8),
        logs,
        "single",
        prefix=(sys.executable, "-c", REFERENCE),
    )
    killed, _ = _launch(root / "resumed", logs, "killed", cache)
    try:
        # The reference shares the cores: its progress counts while the two wait on it.
        processes.kill_when(
            root / "resumed" / "checkpoints" / "3",
            killed,
            [root / "resumed", root / "single"],
            others=[reference],
        )
        assert processes.wait([reference], [root / "single"]) == [0], reference.stderr[-3000:]
    finally:
        processes.kill_all([reference])
    out["seconds"]["killed + reference"] = time.monotonic() - t0
    out["killed"] = killed
    out["shards"] = [set(s) for s in json.loads((root / "single" / "shards.json").read_text())]
    with Checkpointer(root / "resumed", async_save=False) as ckpt:
        out["steps_after_kill"] = ckpt.all_steps()
    out["cached"] = sorted(p.name for p in (root / "xla").iterdir())

    t0 = time.monotonic()
    shutil.copytree(root / "xla", root / "xla2")
    out["resumed"], _ = _launch(root / "resumed", logs, "resumed", cache)
    out["straight"], _ = _launch(
        root / "straight", logs, "straight", {"train.compilation_cache_dir": str(root / "xla2")}
    )
    codes = processes.wait(out["resumed"] + out["straight"], [root / "resumed", root / "straight"])
    out["resumed_rc"], out["straight_rc"] = codes[:2], codes[2:]
    out["seconds"]["resumed + straight"] = time.monotonic() - t0
    print("wall seconds:", {k: round(v, 1) for k, v in out["seconds"].items()})
    return out


def _no_tracebacks(children):
    for c in children:
        assert "Traceback" not in c.stderr and "Check failure" not in c.stderr, c.stderr[-3000:]


@pytest.mark.slow
def test_one_checkpoint_set_and_only_process_0_logs(runs):
    straight = runs["root"] / "straight"
    assert runs["straight_rc"] == [0, 0], runs["straight"][0].stderr[-3000:]
    _no_tracebacks(runs["straight"] + runs["resumed"])
    assert sorted(p.name for p in (straight / "checkpoints").iterdir()) == ["3", "6"]
    with Checkpointer(straight, async_save=False) as ckpt:
        meta = ckpt.restore_meta(6)
    assert meta["phase"] == "done"
    assert meta["data_state"]["processes"] == 2 and meta["data_state"]["next_batch"] == 6
    lines = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]  # one writer, not two
    assert len(list((straight / "tb").glob("events.out.tfevents.*"))) == 1
    resumed0, resumed1 = runs["resumed"]
    assert "resumed from" in resumed0.stdout and "step 3" in resumed0.stdout
    assert _ours(resumed1.stdout) == _ours(runs["straight"][1].stdout) == ""


# What gloo prints on stdout when it connects: "[Gloo] Rank 5 is connected to 7 peer ranks.
# Expected number of connected peer ranks is : 7", one line per device, written piece by
# piece from several threads at once, so that pieces of two lines can interleave (a line
# "5 is connected to 7 peer ranks. ..." whose "[Gloo] Rank " went into another line).
_GLOO = re.compile(
    r"\[Gloo\]|Rank|is connected to|Expected number of connected peer ranks is :"
    r"|peer ranks\.|\d+|\s+"
)


def _ours(stdout: str) -> str:
    """What remains of ``stdout`` without gloo's pieces: what this program printed."""
    return _GLOO.sub("", stdout)


def test_gloo_lines_are_not_ours():
    lines = [
        "[Gloo] Rank 0 is connected to 7 peer ranks. Expected number of connected peer ranks"
        " is : 7",
        "[Gloo] Rank [Gloo] Rank 4 is connected to 7 peer ranks. Expected number of connected "
        "peer ranks is : 7",
        "5 is connected to 7 peer ranks. Expected number of connected peer ranks is : 7",
        "[Gloo] Rank 1 is connected to 1 peer ranks. Expected number of connected peer ranks"
        " is : 1",
    ]
    assert _ours("\n".join(lines) + "\n") == ""
    assert _ours("\n".join([*lines[:2], "resumed from /w/checkpoints/3: step 3"])) != ""


@pytest.mark.slow
def test_two_processes_equal_one_process_with_eight_devices(runs):
    # Each process read its own shard: the reference took rows 0–3 of every batch from
    # shard 0 and rows 4–7 from shard 1, and these are disjoint.
    assert not runs["shards"][0] & runs["shards"][1]
    multi, single = _params(runs["root"] / "straight"), _params(runs["root"] / "single")
    deltas = [
        float(np.abs(a - b).max())
        for a, b in zip(jax.tree.leaves(multi), jax.tree.leaves(single), strict=True)
    ]
    print(f"max |Δparam| 2 × 4 vs 1 × 8 devices: {max(deltas):.3g}")
    assert max(deltas) < TOLERANCE
    # The same batches: every step's metrics agree. (They can fail: a loss depends on the
    # images drawn, and differs by far more from one batch of faces to another.)
    logged = [
        [json.loads(x) for x in (runs["root"] / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("straight", "single")
    ]
    assert [x["step"] for x in logged[0]] == [x["step"] for x in logged[1]] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(*logged, strict=True):
        for key in ("loss/total", "psnr"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), (a["step"], key)


@pytest.mark.slow
def test_sigkill_of_both_processes_then_restart_resumes_exactly(runs):
    assert [c.proc.returncode for c in runs["killed"]] == [-signal.SIGKILL] * 2
    assert runs["steps_after_kill"] == [3]
    assert runs["cached"]  # process 0 of the killed run wrote its compiled programs
    with Checkpointer(runs["root"] / "resumed", async_save=False) as ckpt:
        meta = ckpt.restore_meta(3)
        assert ckpt.all_steps() == [3, 6]
    assert (meta["phase"], meta["phase_step"]) == ("joint", 1)
    assert runs["resumed_rc"] == [0, 0], runs["resumed"][0].stderr[-3000:]
    straight, resumed = _params(runs["root"] / "straight"), _params(runs["root"] / "resumed")
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)


def _error_line(child) -> str:
    lines = [x for x in child.stderr.splitlines() if x.startswith("facedeblur train: error: ")]
    assert len(lines) == 1, child.stderr[-3000:]
    assert "Traceback" not in child.stderr and "Check failure" not in child.stderr
    return lines[0][len("facedeblur train: error: ") :]


def test_processes_that_cannot_work_together_stop_with_one_line(tmp_path):
    logs = tmp_path / "logs"
    # A missing process 1, and a process 1 whose coordinator never started: 5 s waits.
    alone0, port0 = _launch(tmp_path / "w0", logs, "alone", pids=(0,), timeout_s=5)
    alone1, port1 = _launch(tmp_path / "w1", logs, "alone", pids=(1,), timeout_s=5)
    # Two processes with different models.
    other, _ = _launch(
        tmp_path / "w2", logs, "other", per_process={1: {"model.features": 4}}, timeout_s=30
    )
    # The same config, but a relative path that is a file where process 1 runs.
    for h in (0, 1):
        (tmp_path / f"host{h}").mkdir()
    (tmp_path / "host1" / "xla").write_text("not a folder")
    one_fails, _ = _launch(
        tmp_path / "w3",
        logs,
        "one_fails",
        {"train.compilation_cache_dir": "xla"},
        timeout_s=30,
        cwds={h: tmp_path / f"host{h}" for h in (0, 1)},
    )
    everyone = alone0 + alone1 + other + one_fails
    t0 = time.monotonic()
    codes = processes.wait(everyone, [tmp_path / f"w{k}" for k in range(4)])
    assert codes == [2] * 6, [c.stderr[-2000:] for c in everyone]
    # Each stops by its own deadline (5 or 30 s), not JAX's (300 s and more); the rest is
    # starting six processes at once, which takes a minute or more on a busy machine.
    assert time.monotonic() - t0 < 240
    assert _error_line(alone0[0]) == (
        f"process 0 of 2: process 1 did not join the coordinator at 127.0.0.1:{port0} within "
        "5 s (train.distributed_timeout_s); start all 2 processes with "
        "train.num_processes=2, each with its own train.process_id"
    )
    assert _error_line(alone1[0]) == (
        f"process 1 of 2: no coordinator answers at 127.0.0.1:{port1} after 5 s "
        "(train.distributed_timeout_s); start process 0 with the same "
        "train.coordinator_address, or fix the address"
    )
    for child in other:
        assert _error_line(child) == (
            "the processes were started with different settings: process 1 has "
            "model.features=4 (process 0: 8); start every process with the same config, "
            "overrides and --workdir"
        )
    problem = f"compilation cache directory {str(tmp_path / 'host1' / 'xla')!r} is a file"
    assert _error_line(one_fails[1]) == problem
    assert _error_line(one_fails[0]) == f"process 1 of 2 stopped: {problem}"
    for name in ("w0", "w1", "w2", "w3"):
        assert not (tmp_path / name).exists()  # nothing written


# `facedeblur train` in a child that stops itself (SIGSTOP) on entering each function named
# in argv[1] ("module.name,..." of facedeblur_jax.training; the first call of each), for
# the test to continue it (SIGCONT): a peer that is slow at a known point, without a config
# key for it.
STOPS_ITSELF = """
import os, signal, sys
from facedeblur_jax import cli
from facedeblur_jax.training import distributed, loop
for point in sys.argv.pop(1).split(","):
    module, name = point.split(".")
    module = {"distributed": distributed, "loop": loop}[module]
    def stop_first(*args, _original=getattr(module, name), _done=[], **kwargs):
        if not _done:
            _done.append(True)
            os.kill(os.getpid(), signal.SIGSTOP)
        return _original(*args, **kwargs)
    setattr(module, name, stop_first)
sys.exit(cli.main(sys.argv[1:]))
"""
# Each stop is longer than gloo's 30-s rendezvous and than train.distributed_timeout_s.
STOP_S = 35


@pytest.mark.slow
def test_a_slowed_peer_is_waited_for_and_the_run_ends_with_its_checkpoint(tmp_path):
    """Process 1 stops for 35 s twice: after the processes connected, before it compiles
    its first step (process 0, done compiling, waits in the step's all-reduce; before
    ``connect_collectives`` gloo gave up on the first connection after 30 s), and after its
    last checkpoint, before the end (process 0 waits in ``distributed.finish`` and says so
    in one line; JAX's shutdown barrier, which used to wait train.distributed_timeout_s,
    30 s here, is entered by both together). Both end with status 0 and the final
    checkpoint."""
    workdir, logs = tmp_path / "w", tmp_path / "logs"
    stops = "loop.build_train_step,distributed.finish"
    children, _ = _launch(
        workdir,
        logs,
        "slowed",
        {"phase_order": ("coarse",), "train.checkpoint_every": 2},
        timeout_s=30,
        prefixes={1: (sys.executable, "-c", STOPS_ITSELF, stops)},
    )
    slow = children[1]
    progress = processes.Progress(children, [workdir])
    try:
        for point in stops.split(","):
            while not processes.is_stopped(slow.proc.pid):
                assert slow.proc.poll() is None, f"ended before {point}:\n{slow.stderr[-3000:]}"
                progress.check(f" before process 1 reached {point}")
                time.sleep(0.1)
            time.sleep(STOP_S)
            slow.proc.send_signal(signal.SIGCONT)
        codes = processes.wait(children, [workdir])
    finally:
        processes.kill_all(children)
    assert codes == [0, 0], [c.stderr[-3000:] for c in children]
    _no_tracebacks(children)
    with Checkpointer(workdir, async_save=False) as ckpt:
        assert ckpt.all_steps() == [2]
        assert ckpt.restore_meta(2)["phase"] == "done"
    waited = [x for x in children[0].stderr.splitlines() if x.startswith("facedeblur train:")]
    assert waited == [
        "facedeblur train: process 0 of 2 finished step 2 (its checkpoint saved) and waits up "
        "to 1200 s (train.distributed_shutdown_timeout_s) for process 1"
    ]
    assert "facedeblur train:" not in slow.stderr
