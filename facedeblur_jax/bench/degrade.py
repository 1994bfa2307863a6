"""Time the on-device degradation alone (kernels → blur → noise → augmentation).

    python -m facedeblur_jax.bench.degrade --config paper --batch-sizes 16,64 --unroll 1,8,32,128 \\
        --blur-methods grouped,fft --impls scan,auto --pool-sizes 0,20000 [--json OUT.json]

For each combination: ``jax.jit(synthesize)`` on a uint8 batch already on the device,
compile time, then the median of ``--repeats`` runs of back-to-back calls ended by
``block_until_ready``. Also checks that every ``--unroll`` value and walk implementation
(``--impls``: ``config.degrade.trajectory_impl``; ``unroll`` applies to the scan only, so
the kernel runs once per batch and blur method) gives the same kernels as the first
combination (it must: up to float rounding). ``--pool-sizes N`` (> 0) adds rows drawing
from a kernel pool of N (``config.degrade.kernel_pool_size``; sampled once, its time
reported as ``pool_sample_s``): no walk in the timed call.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from facedeblur_jax.bench import throughput as bench_throughput
from facedeblur_jax.config import load_config, split_overrides
from facedeblur_jax.degrade.kernel_pool import pool_from_config
from facedeblur_jax.degrade.synthesize import synthesize


def time_ms(fn, repeats: int, min_time_s: float) -> float:
    """Warm-up, iteration count for ``min_time_s``, median ms per call (as the throughput
    benchmark times its rows)."""
    jax.block_until_ready(fn())
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    iters = max(1, int(min_time_s / max(time.perf_counter() - t0, 1e-6)))
    return bench_throughput.median_ms(fn, jax.block_until_ready, iters, repeats)[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="paper")
    p.add_argument("--batch-sizes", default="16,64")
    p.add_argument("--unroll", default="1,8,32,128")
    p.add_argument("--blur-methods", default=None, help="default: the config's")
    p.add_argument("--impls", default=None, help="walk implementations; default: the config's")
    p.add_argument("--pool-sizes", default="0", help="0 = fresh kernels; N = a pool of N")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--min-time", type=float, default=0.5)
    p.add_argument("--json", default=None)
    args, rest = p.parse_known_args(argv)
    config = load_config(args.config, split_overrides(rest))
    size = config.image_size
    methods = (args.blur_methods or config.degrade.blur_method).split(",")
    impls = (args.impls or config.degrade.trajectory_impl).split(",")
    first_unroll = int(args.unroll.split(",")[0])
    pools = [int(n) for n in args.pool_sizes.split(",")]
    combos = [
        (0, impl, unroll)
        for impl in impls
        for unroll in (int(u) for u in args.unroll.split(","))
        if 0 in pools and (impl == "scan" or unroll == first_unroll)
    ]
    combos += [(n, impls[0], first_unroll) for n in pools if n > 0]
    pool_cache: dict = {}
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        rng = np.random.default_rng(0)
        sharp = jnp.asarray(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
        labels = jnp.asarray(rng.integers(0, 11, (batch, size, size), dtype=np.uint8))
        key = jax.random.key(0)
        reference = None
        for method in methods:
            for pool_size, impl, unroll in combos:
                cfg = config.degrade.copy_and_resolve_references()
                cfg.blur_method, cfg.trajectory_unroll = method, unroll
                cfg.trajectory_impl, cfg.kernel_pool_size = impl, pool_size
                pool, pool_s = None, None
                if pool_size:
                    if pool_size not in pool_cache:
                        t0 = time.perf_counter()
                        full = config.copy_and_resolve_references()
                        full.degrade = cfg
                        made = jax.block_until_ready(pool_from_config(full))
                        pool_cache[pool_size] = made, time.perf_counter() - t0
                    pool, pool_s = pool_cache[pool_size]
                try:
                    fn = jax.jit(lambda k, s, lab, p, cfg=cfg: synthesize(k, s, lab, cfg, p))
                    t0 = time.perf_counter()
                    compiled = fn.lower(key, sharp, labels, pool).compile()
                    compile_s = time.perf_counter() - t0
                    out = compiled(key, sharp, labels, pool)
                    kernels = np.asarray(out.kernels)
                    if reference is None and not pool_size:
                        reference = kernels
                    # Pool rows draw other kernels: compared with nothing.
                    diff = None if pool_size else float(np.max(np.abs(kernels - reference)))
                    ms = time_ms(
                        lambda c=compiled, a=(key, sharp, labels, pool): c(*a),
                        args.repeats,
                        args.min_time,
                    )
                except Exception as e:  # one failing variant keeps the others
                    # (e.g. the Pallas walk failing to compile on some GPU): the row says why.
                    print(f"batch {batch} blur {method} impl {impl} pool {pool_size}: {e!r}")
                    rows.append(
                        dict(
                            batch=batch,
                            blur_method=method,
                            trajectory_impl=impl,
                            kernel_pool_size=pool_size,
                            error=repr(e)[:2000],
                        )
                    )
                    continue
                row = dict(
                    batch=batch,
                    blur_method=method,
                    trajectory_impl=None if pool_size else impl,
                    unroll=None if pool_size else unroll,
                    kernel_pool_size=pool_size,
                    pool_sample_s=pool_s,
                    ms=ms,
                    compile_s=compile_s,
                    max_kernel_diff_vs_first=diff,
                    device=jax.devices()[0].device_kind,
                )
                rows.append(row)
                if args.json:  # after every row: a run cut short keeps what it measured
                    pathlib.Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
                print(
                    f"batch {batch:4d} blur {method:8s} "
                    + (f"pool {pool_size:6d}    " if pool_size else f"walk {impl:6s} ")
                    + ("" if pool_size else f"unroll {unroll:4d}")
                    + f": {ms:8.3f} ms (compile {compile_s:5.1f} s"
                    + ("" if diff is None else f", max |Δkernel| {diff:.1e}")
                    + ")",
                    flush=True,
                )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
