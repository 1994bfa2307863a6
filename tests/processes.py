"""Child processes for the crash and multi-host tests: `facedeblur train` runs on loopback,
every process reaped, every wait bounded by *progress* rather than by wall clock.

A child that is slow because the machine is busy (other jobs, a CPU hog, the other
processes of the same test) keeps making progress: it writes output, its workdir changes
(checkpoint folders, ``metrics.jsonl``), or it burns CPU time compiling. :func:`wait` and
:func:`run` watch for that and kill the children only when nothing moved for
:data:`IDLE_S` seconds (a hang), or at :data:`CEILING_S` seconds in all (a hang that still
twitches); both are far above what the tests need on an idle machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Compiling with LLVM's optimisations off halves XLA's compile time on a CPU; the programs
# are tiny, so running them slower costs nothing. Every process of a comparison uses it.
FAST_COMPILE = "--xla_backend_optimization_level=0"

# No output, no change in the watched paths and (almost) no CPU time for this long: hung.
IDLE_S = 180.0
# The hard ceiling of one wait, for a hang that still shows signs of life: 20 × IDLE_S (a
# tiny training run took 17 min beside other work at a load average of 9 on 2 cores).
CEILING_S = 3600.0
# CPU seconds per second (summed over the children) that count as working: a process that
# compiles uses most of a core, one that waits in a barrier or a collective almost none.
CPU_BUSY = 0.05
POLL_S = 0.5


def child_env(devices: int) -> dict[str, str]:
    """This environment with ``devices`` CPU devices per process, :data:`FAST_COMPILE`, and
    no inherited cluster settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    return env


CLI = (sys.executable, "-m", "facedeblur_jax.cli")


def train_args(workdir, overrides: dict) -> list[str]:
    """``train --config tiny --workdir WORKDIR --no-progress --config.KEY=VALUE ...``."""
    args = ["train", "--config", "tiny", "--workdir", str(workdir), "--no-progress"]
    for k, v in overrides.items():
        args.append(f"--config.{k}={v!r}" if isinstance(v, str) else f"--config.{k}={v}")
    return args


@dataclasses.dataclass
class Child:
    proc: subprocess.Popen
    out: pathlib.Path
    err: pathlib.Path

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()


def start(args: list[str], env: dict, logs: pathlib.Path, name: str, prefix=CLI, cwd=None) -> Child:
    """Starts ``prefix + args`` (in ``cwd``) with stdout/stderr in ``logs/name.out|err``."""
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen([*prefix, *args], stdout=o, stderr=e, env=env, cwd=cwd)
    return Child(proc, out, err)


class Stalled(AssertionError):
    """Children that made no progress (or ran past the ceiling); they were killed."""


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) of a running process; 0 where /proc has none
    (another OS, or the process is gone)."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def is_stopped(pid: int) -> bool:
    """Whether a process is stopped (SIGSTOP), from /proc."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"
    except (OSError, IndexError):
        return False


def _snapshot(paths: Iterable[pathlib.Path]) -> tuple:
    """What progress looks like on disk: every file under ``paths`` with its size and
    modification time (a folder's own entry too, so a file appearing or going counts)."""
    seen = []
    for root in paths:
        root = pathlib.Path(root)
        if root.is_file():
            with contextlib.suppress(OSError):
                st = root.stat()
                seen.append((str(root), st.st_size, st.st_mtime_ns))
            continue
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                with contextlib.suppress(OSError):
                    st = os.stat(os.path.join(folder, name))
                    seen.append((os.path.join(folder, name), st.st_size, st.st_mtime_ns))
            seen.append((folder, len(dirs), len(files)))
    return tuple(seen)


class Progress:
    """Tells a hung group of children from a slow one. Progress is any change in the
    children's output files or under ``watch`` (files or folders: a workdir), or CPU time
    spent by a child at :data:`CPU_BUSY` or more. :meth:`check` raises :class:`Stalled`
    when there was none for ``idle`` seconds, or ``ceiling`` seconds after the start."""

    def __init__(
        self,
        children: Sequence[Child],
        watch: Iterable[os.PathLike] = (),
        idle: float = IDLE_S,
        ceiling: float = CEILING_S,
    ):
        self.children, self.idle, self.ceiling = list(children), idle, ceiling
        self.paths = [pathlib.Path(p) for p in watch]
        for c in self.children:
            self.paths += [c.out, c.err]
        self.t0 = self.last = self.t_cpu = time.monotonic()
        self.seen = _snapshot(self.paths)
        self.cpu = self._cpu()

    def _cpu(self) -> float:
        return sum(cpu_seconds(c.proc.pid) for c in self.children if c.proc.poll() is None)

    def check(self, what: str = "") -> None:
        now = time.monotonic()
        seen = _snapshot(self.paths)
        if seen != self.seen:
            self.seen, self.last = seen, now
        if now - self.t_cpu >= 5 * POLL_S:  # CPU time over a few polls, not one tick
            cpu = self._cpu()
            if cpu - self.cpu >= CPU_BUSY * (now - self.t_cpu):
                self.last = now
            self.cpu, self.t_cpu = cpu, now
        if now - self.last > self.idle:
            reason = f"no progress for {self.idle:.0f} s"
        elif now - self.t0 > self.ceiling:
            reason = f"still running after the ceiling of {self.ceiling:.0f} s"
        else:
            return
        kill_all(self.children)
        tails = "\n".join(
            f"--- {c.err.name} (rc {c.proc.returncode}):\n{c.stderr[-2000:]}" for c in self.children
        )
        raise Stalled(
            f"{reason} (output, {[str(p) for p in self.paths[: -2 * len(self.children)]]}, CPU "
            f"time){what}: killed {len(self.children)} process(es)\n{tails}"
        )


def wait(
    children: Sequence[Child],
    watch: Iterable[os.PathLike] = (),
    idle: float = IDLE_S,
    ceiling: float = CEILING_S,
) -> list[int]:
    """The children's return codes once all have ended. Kills them all and raises
    :class:`Stalled` when they stop making progress (:class:`Progress`)."""
    progress = Progress(children, watch, idle, ceiling)
    while any(c.proc.poll() is None for c in children):
        progress.check()
        time.sleep(POLL_S)
    return [c.proc.wait() for c in children]


def run(
    args: Sequence[str],
    *,
    env: dict | None = None,
    cwd=None,
    watch: Iterable[os.PathLike] = (),
    idle: float = IDLE_S,
    ceiling: float = CEILING_S,
) -> subprocess.CompletedProcess:
    """``subprocess.run(args, capture_output=True, text=True)`` whose time limit is
    progress (:func:`wait`) instead of a fixed number of seconds."""
    with tempfile.TemporaryDirectory(prefix="facedeblur-child-") as logs:
        child = start(
            list(args), os.environ if env is None else env, pathlib.Path(logs), "child", (), cwd
        )
        try:
            (code,) = wait([child], watch, idle, ceiling)
        finally:
            kill_all([child])
        return subprocess.CompletedProcess(list(args), code, child.stdout, child.stderr)


def kill_all(children: list[Child]) -> None:
    for c in children:
        if c.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                c.proc.send_signal(signal.SIGKILL)
    for c in children:
        c.proc.wait()


def kill_when(
    path: pathlib.Path,
    children: list[Child],
    watch: Iterable[os.PathLike] = (),
    idle: float = IDLE_S,
    ceiling: float = CEILING_S,
    others: Sequence[Child] = (),
) -> None:
    """SIGKILLs every child as soon as ``path`` exists (polled every 20 ms). Fails if a
    child exits first or the children stop making progress before ``path`` appears
    (:class:`Progress`, watching ``watch`` and the folder ``path`` is in; the progress of
    ``others``, running beside them, counts too, and they are killed only then)."""
    progress = Progress([*children, *others], [*watch, path.parent], idle, ceiling)
    t_check = time.monotonic()
    try:
        while not path.exists():
            done = [c for c in children if c.proc.poll() is not None]
            if done:
                raise AssertionError(
                    f"a process ended (rc {done[0].proc.returncode}) before {path} existed:"
                    f"\n{done[0].stderr[-3000:]}"
                )
            if time.monotonic() - t_check >= POLL_S:
                progress.check(f" before {path} existed")
                t_check = time.monotonic()
            time.sleep(0.02)
    finally:
        kill_all(children)
