"""The persistent compilation cache: a second process loads what the first compiled."""

import os
import sys

import pytest

from facedeblur_jax.core.compile_cache import enable_compilation_cache
from tests import processes

SCRIPT = """
import sys
import jax, jax.numpy as jnp
from facedeblur_jax.core.compile_cache import enable_compilation_cache

hits = []
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event.endswith("/cache_hits") else None
)
jnp.zeros(3).block_until_ready()  # a compilation before the cache is switched on
enable_compilation_cache(sys.argv[1], min_compile_time_s=0.0)
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(axis=0) + 1.0)
f(jnp.ones((32, 32))).block_until_ready()
print("hits", len(hits))
"""


def _run(cache_dir) -> int:
    proc = processes.run(
        [sys.executable, "-c", SCRIPT, str(cache_dir)],
        # Without the test session's own cache: this process sees only the cache under test.
        env={k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.split("hits")[-1])


def test_second_process_hits_the_cache(tmp_path):
    cache = tmp_path / "a" / "xla"
    assert _run(cache) == 0
    written = {p.name for p in cache.iterdir()}
    assert written
    assert _run(cache) >= 1
    assert {p.name for p in cache.iterdir()} == written  # nothing new compiled
    assert _run(tmp_path / "other") == 0  # another directory: no hit


def test_a_file_is_refused(tmp_path):
    path = tmp_path / "cache"
    path.write_text("not a directory")
    with pytest.raises(ValueError, match="compilation cache directory .*cache.* is a file"):
        enable_compilation_cache(path)
    assert path.read_text() == "not a directory"
