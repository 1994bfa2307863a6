"""The persistent XLA compilation cache (``config.train.compilation_cache_dir``).

With a cache directory, every program that took at least ``min_compile_time_s`` to compile
is written there and a later process (a restart, a resumed run, the next benchmark) loads it
instead of compiling again. JAX treats the cache as trusted code: keep it in a directory
only you can write to.
"""

from __future__ import annotations

import os
import pathlib

import jax


def enable_compilation_cache(
    directory: str | os.PathLike, *, min_compile_time_s: float = 1.0
) -> pathlib.Path:
    """Turns the persistent compilation cache on in ``directory`` (created if missing).

    Takes effect for compilations after the call (also when some already happened in this
    process). Returns the resolved directory.
    """
    path = pathlib.Path(directory).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"compilation cache directory {str(path)!r} is a file")
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    return path
