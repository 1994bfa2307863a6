"""Many ``facedeblur`` runs, each in its own process, without paying the imports each time.

``python -m tests.forked_cli`` imports the package and every subcommand module once (JAX,
Orbax, Flax: ~5 s on a CPU; no JAX backend is started, so the process has one thread), then
reads a JSON list of jobs on stdin and runs each in a process forked from it, at most
``--jobs`` at a time (its objects frozen first, ``gc.freeze``, so that a child copies
few of its pages). A forked child does what ``python -m facedeblur_jax.cli ARGS`` does:
it runs ``facedeblur_jax/cli.py`` as ``__main__`` (``runpy``) with ``sys.argv`` set, in the
job's folder, with stdin from ``/dev/null`` and stdout/stderr in the job's files, and ends
as that interpreter would (an uncaught exception prints its traceback and exits 1; atexit
handlers and late thread output happen as usual). Each result is written as one JSON line
when its job ends.

Permissions: each child drops ``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH`` from its
capabilities, so a test run as root meets read-only folders as any user does (a no-op for
an ordinary user).

Job: ``{"argv": [...], "cwd": DIR, "stdout": FILE, "stderr": FILE}``; result per job:
``{"index": its place in the list, "rc": status (negative: killed by that signal),
"seconds": wall time, "cpu": user + system CPU seconds}``. A child still running after
``--timeout`` seconds is killed (SIGKILL, status -9).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import os
import runpy
import signal
import sys
import time

# Linux capability numbers and the capget/capset header version (linux/capability.h).
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2
_CAPABILITY_VERSION_3 = 0x20080522


def drop_dac_override() -> None:
    """Clears CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this thread's effective set (the
    threads it starts inherit it): file permissions then apply to root as to its owner."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(_CAPABILITY_VERSION_3, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return
    mask = (1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH)
    if data[0].effective & mask:
        data[0].effective &= ~mask
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")


def _preload() -> None:
    """Imports what every run would import (the CLI and each subcommand's module) and loads
    dlib's detector and landmark model (cached in their module) when dlib is installed."""
    from facedeblur_jax import cli
    from facedeblur_jax.faces import landmarks

    for module, _ in cli.COMMANDS.values():
        importlib.import_module(f"facedeblur_jax.commands.{module}")
    try:
        landmarks.detector()
        landmarks.shape_predictor()
    except ModuleNotFoundError:
        pass


def _child(job: dict) -> None:
    """In the forked process: becomes ``python -m facedeblur_jax.cli ARGV``; never returns
    (the SystemExit or uncaught exception ends the interpreter)."""
    os.chdir(job["cwd"])
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for fd, target in ((null, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = open(0, closefd=False)
    drop_dac_override()
    sys.argv = ["facedeblur", *job["argv"]]
    sys.modules.pop("facedeblur_jax.cli", None)  # runpy runs it afresh as __main__
    runpy.run_module("facedeblur_jax.cli", run_name="__main__", alter_sys=True)
    sys.exit(0)


def serve(jobs: list[dict], parallel: int, timeout: float) -> None:
    """Runs ``jobs`` in forked children, ``parallel`` at a time; prints each result."""
    running: dict[int, tuple[int, float]] = {}  # pid -> (job index, start)
    todo = list(range(len(jobs)))
    while todo or running:
        while todo and len(running) < parallel:
            index = todo.pop(0)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(jobs[index])
            running[pid] = (index, time.monotonic())
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for other, (_, start) in running.items():
                if now - start > timeout:
                    os.kill(other, signal.SIGKILL)
            time.sleep(0.01)
            continue
        index, start = running.pop(pid)
        result = {
            "index": index,
            "rc": os.waitstatus_to_exitcode(status),
            "seconds": round(time.monotonic() - start, 2),
            "cpu": round(usage.ru_utime + usage.ru_stime, 2),
        }
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.forked_cli")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args()
    jobs = json.load(sys.stdin)
    _preload()
    # Every object so far to the permanent generation: a child's garbage collections and
    # its shutdown then leave the parent's pages alone instead of copying all of them
    # (~1 s of CPU per child otherwise).
    gc.freeze()
    serve(jobs, max(1, args.jobs), args.timeout)


if __name__ == "__main__":
    main()
