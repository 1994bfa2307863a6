"""Child processes for the crash and multi-host tests: `facedeblur train` runs on loopback,
every wait bounded, every process reaped."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Compiling with LLVM's optimisations off halves XLA's compile time on a CPU; the programs
# are tiny, so running them slower costs nothing. Every process of a comparison uses it.
FAST_COMPILE = "--xla_backend_optimization_level=0"


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


def wait_all(children: list[Child], timeout: float) -> list[int]:
    """Return codes; SIGKILLs everything still running after ``timeout`` seconds (then the
    caller sees -9)."""
    deadline = time.monotonic() + timeout
    codes = []
    for c in children:
        try:
            codes.append(c.proc.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            kill_all(children)
            codes.append(c.proc.wait())
    return codes


def kill_all(children: list[Child]) -> None:
    for c in children:
        if c.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                c.proc.send_signal(signal.SIGKILL)
    for c in children:
        c.proc.wait()


def kill_when(path: pathlib.Path, children: list[Child], timeout: float) -> None:
    """SIGKILLs every child as soon as ``path`` exists (polled every 20 ms). Fails if a
    child exits first or ``path`` does not appear within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    try:
        while not path.exists():
            done = [c for c in children if c.proc.poll() is not None]
            if done:
                raise AssertionError(
                    f"a process ended (rc {done[0].proc.returncode}) before {path} existed:"
                    f"\n{done[0].stderr[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} did not appear within {timeout} s")
            time.sleep(0.02)
    finally:
        kill_all(children)
