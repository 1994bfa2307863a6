"""Where the time of one jitted inference call or training step goes, kernel by kernel.

    python -m facedeblur_jax.bench.profile_step --config paper --mode inference --batch 64 \\
        --dtype bf16
    python -m facedeblur_jax.bench.profile_step --config paper --mode train --phase joint \\
        --batch 64 --dtype bf16 --config.loss.vgg_weight=0 [--trace-dir DIR] [--json OUT.json]

Builds the same compiled program as ``facedeblur_jax/bench/throughput.py`` (random weights, a
synthetic batch already on the device), runs it ``--warmup`` times, then ``--iters`` times
under ``jax.profiler.trace(..., create_perfetto_trace=True)``, reads the Perfetto JSON trace
back and prints: device-busy time per call against wall time per call (the difference is
idle device: launch gaps, host work), the share of each kernel class (convolution and
matrix kernels, XLA fusions, reductions, copies, other) and the top kernels by total time.
On a CPU the trace has no device streams and the tool says so.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse
import collections
import gzip
import json
import pathlib
import re
import sys
import tempfile
import time

import jax

from facedeblur_jax.bench import throughput as bt
from facedeblur_jax.config import load_config, split_overrides

# Kernel classes by name (cuDNN / cuBLAS / CUTLASS kernel names; XLA's fusion names).
CLASSES = (
    (
        "conv/matmul",
        re.compile(r"conv|gemm|cutlass|xmma|cudnn|sm\d+_|implicit|wgrad|dgrad|fprop", re.I),
    ),
    ("reduction", re.compile(r"reduce|reduction", re.I)),
    ("copy/transpose", re.compile(r"copy|transpose|memcpy|memset", re.I)),
    ("fusion", re.compile(r"fusion|loop_|input_|wrapped_", re.I)),
)


def classify(name: str) -> str:
    for label, pattern in CLASSES:
        if pattern.search(name):
            return label
    return "other"


def _find_trace(root: pathlib.Path) -> pathlib.Path | None:
    found = sorted(root.rglob("*.trace.json.gz")) + sorted(root.rglob("perfetto_trace.json.gz"))
    return found[-1] if found else None


def _lane_names(events: list[dict]) -> tuple[dict, dict]:
    procs, threads = {}, {}
    for e in events:
        if e.get("ph") != "M":
            continue
        if e.get("name") == "process_name":
            procs[e.get("pid")] = str(e.get("args", {}).get("name", ""))
        elif e.get("name") == "thread_name":
            threads[(e.get("pid"), e.get("tid"))] = str(e.get("args", {}).get("name", ""))
    return procs, threads


# Lanes of a device process that summarise kernels rather than being kernels (an xprof
# trace may put module and HLO-op spans beside the streams: counting them counts twice).
SUMMARY_LANES = re.compile(r"XLA Modules|XLA Ops|Steps|TF Ops|Framework|Source", re.I)


def device_kernels(trace: dict) -> list[dict]:
    """Complete ('X') kernel events on the device's processes (``/device:GPU:*``).

    Lanes that summarise kernels (:data:`SUMMARY_LANES`: per-module, per-HLO-op spans over
    the same time, which some xprof versions write beside the ``Stream #N`` lanes) do not
    count; the H100 trace of jax 0.11.2 had only the stream lane.
    """
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    procs, threads = _lane_names(events)
    device_pids = {pid for pid, n in procs.items() if "/device:" in n and "CPU" not in n.upper()}
    out = []
    for e in events:
        if e.get("ph") != "X" or e.get("pid") not in device_pids or "dur" not in e:
            continue
        lane = threads.get((e.get("pid"), e.get("tid")), "")
        if lane and SUMMARY_LANES.search(lane) and "stream" not in lane.lower():
            continue
        out.append(e)
    return out


def lanes(trace: dict) -> list[str]:
    """``"process / thread"`` names of the trace's device lanes (what was counted, checkable)."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    procs, threads = _lane_names(events)
    return sorted(
        f"{procs.get(pid, pid)} / {name}"
        for (pid, _), name in threads.items()
        if "/device:" in procs.get(pid, "")
    )


def summarize(kernels: list[dict], iters: int, wall_ms_per_call: float, top: int) -> dict:
    by_name = collections.defaultdict(lambda: [0.0, 0])
    for e in kernels:
        entry = by_name[e["name"]]
        entry[0] += float(e["dur"]) / 1e3  # µs -> ms
        entry[1] += 1
    total = sum(v[0] for v in by_name.values())
    by_class = collections.Counter()
    for name, (ms, _) in by_name.items():
        by_class[classify(name)] += ms
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1][0])
    return {
        "wall_ms_per_call": wall_ms_per_call,
        "device_busy_ms_per_call": total / iters,
        "device_busy_pct_of_wall": 100 * total / iters / wall_ms_per_call,
        "kernels_per_call": sum(v[1] for v in by_name.values()) / iters,
        "classes_pct": {k: 100 * v / total for k, v in by_class.most_common()} if total else {},
        "top": [
            {
                "name": n[:160],
                "ms_per_call": ms / iters,
                "pct": 100 * ms / total,
                "launches_per_call": c / iters,
                "class": classify(n),
            }
            for n, (ms, c) in ranked[:top]
        ],
    }


def build(args, config):
    """``(run, sync)`` of the compiled program ``--mode`` names."""
    ctx = bt.BenchContext(
        config=config,
        config_name=args.config,
        frameworks=("jax",),
        batch_sizes=(args.batch,),
        dtypes=(args.dtype,),
        repeats=1,
        min_time_s=0.1,
        torch_compile=False,
        phases=(args.phase,) if args.mode == "train" else None,
    )
    if args.mode == "inference":
        size = config.image_size
        variables = bt.jax_variables(ctx)
        x = jax.random.uniform(jax.random.key(1), (args.batch, size, size, 3))
        compiled, _ = bt.jax_compiled(ctx, args.dtype, args.batch)
        return (lambda: compiled(variables, x)), (lambda o: o.block_until_ready())
    run = bt.jax_train_program(ctx, args.phase, args.batch, args.dtype)[0]
    return run, jax.block_until_ready


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="paper")
    p.add_argument("--mode", choices=("inference", "train"), default="inference")
    p.add_argument("--phase", default="joint", help="train: the phase whose step is profiled")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dtype", choices=tuple(bt.DTYPES), default="bf16")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--trace-dir", default=None, help="keep the trace here (default: temp)")
    p.add_argument("--json", default=None, help="write the summary here")
    args, rest = p.parse_known_args(argv)
    config = load_config(args.config, split_overrides(rest))
    run, sync = build(args, config)
    for _ in range(args.warmup):
        sync(run())
    t0 = time.perf_counter()
    for _ in range(args.iters):
        out = run()
    sync(out)
    wall_ms = (time.perf_counter() - t0) * 1e3 / args.iters
    trace_dir = pathlib.Path(args.trace_dir or tempfile.mkdtemp(prefix="profile_step_"))
    with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
        for _ in range(args.iters):
            out = run()
        sync(out)
    path = _find_trace(trace_dir)
    if path is None:
        print(f"no Perfetto trace under {trace_dir}", file=sys.stderr)
        return 1
    with gzip.open(path, "rt") as f:
        trace = json.load(f)
    kernels = device_kernels(trace)
    if not kernels:
        print(f"the trace {path} has no device kernels (a CPU run?)")
        return 0
    summary = summarize(kernels, args.iters, wall_ms, args.top)
    summary.update(
        mode=args.mode,
        phase=args.phase if args.mode == "train" else None,
        batch=args.batch,
        dtype=args.dtype,
        device=jax.devices()[0].device_kind,
        overrides=rest,
        lanes=lanes(trace),
    )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"{args.mode} {args.phase if args.mode == 'train' else ''} batch {args.batch} "
        f"{args.dtype} on {summary['device']}: wall {wall_ms:.2f} ms/call (unprofiled), "
        f"device busy {summary['device_busy_ms_per_call']:.2f} ms/call "
        f"({summary['device_busy_pct_of_wall']:.0f} %), "
        f"{summary['kernels_per_call']:.0f} kernels/call"
    )
    print("classes: " + ", ".join(f"{k} {v:.1f} %" for k, v in summary["classes_pct"].items()))
    for t in summary["top"]:
        print(
            f"  {t['ms_per_call']:8.3f} ms {t['pct']:5.1f} % x{t['launches_per_call']:<4.0f}"
            f" [{t['class']}] {t['name'][:110]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
