"""Throughput of the face deblurring model in JAX and PyTorch: images/s, latency, FLOPs, MFU.

    python tools/bench_throughput.py --config configs/paper.py --framework both \\
        --batch-sizes 1,16,64,256 --dtypes fp32,bf16 [--torch-compile] \\
        --out bench.json --markdown bench.md [--repeats 5] [--config.model.upsample=subpixel]

Modes (``--mode``) are entries of :data:`BENCHMARKS`, each a function ``ctx -> rows``;
only ``inference`` exists so far (the full model G_c → P → G_f, eval mode, on random
inputs of the config's ``image_size``). ``train`` (per training phase) is to be added
there; it raises ``NotImplementedError`` until then.

How it measures (``inference``):

* JAX: ``jax.jit(apply).lower(...).compile()`` (timed: ``compile_s``), one warm-up call
  (``warmup_s``), then ``--repeats`` timed runs of ``iters`` back-to-back calls ended by
  ``block_until_ready`` (``iters`` chosen from the warm-up so a run lasts
  ``--min-time`` s); ``ms_per_batch`` is the median over runs. ``latency_ms`` is the
  median of single calls each waited for (no pipelining), the batch-1 row's value being
  the batch-1 latency. The parameters are float32; ``bf16`` sets
  ``config.model.compute_dtype = "bfloat16"``.
* PyTorch: ``tools/torch_reference.py`` with the same (random) weights as the JAX rows,
  ``channels_last``, ``torch.inference_mode``, bf16 by ``torch.autocast``;
  eager, and with ``--torch-compile`` also ``torch.compile(dynamic=False)``, compiled
  afresh per row (``compile_s`` = first call less a steady one; a failure, e.g. no C++
  compiler on CPU, is recorded in the row's ``error`` and the run goes on). Timing is
  closed by ``torch.cuda.synchronize()``.
  ``torch.backends.cudnn.benchmark`` is on (XLA autotunes its convolutions too).
* FLOPs per image: XLA's ``cost_analysis()["flops"]`` of the compiled float32 program at
  batch 1 (the same model in both frameworks; a multiply-add counts 2). XLA leaves out
  the taps that fall on SAME padding: 111.1 GFLOP/image for the paper model at 128 px,
  against 113.8 G from the naive ``2·k²·C_in·C_out·H·W`` (transposed convs counted
  without the inserted zeros).
* MFU = FLOPs/image × images/s ÷ the device's dense peak for the dtype
  (:data:`PEAK_FLOPS`; fp32 against the TF32 tensor-core peak, since both frameworks
  run float32 convolutions in TF32 on Hopper by default). Null where no peak is known
  (CPUs). ``mfu_vs_measured_peak`` divides by the bf16 matmul rate measured on this
  workplace's H100/H200 instead of the spec sheet's.
* Memory: ``jax.devices()[0].memory_stats()["peak_bytes_in_use"]`` (the process-wide
  peak so far, so batch sizes run in increasing order) and XLA's ``memory_analysis()``
  of each compiled program; ``torch.cuda.max_memory_allocated()`` after a reset per
  row. Null on CPU.

Both frameworks can share one GPU: JAX's preallocation is switched off
(``XLA_PYTHON_CLIENT_PREALLOCATE=false``) before JAX is imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse
import dataclasses
import datetime
import json
import math
import pathlib
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from facedeblur_jax.cli import split_overrides
from facedeblur_jax.config import load_config
from facedeblur_jax.models.factory import build_model

# tools/ is not a package; torch_reference (imported lazily: it needs torch) lives beside us.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

DTYPES = {"fp32": "float32", "bf16": "bfloat16"}

# Dense peak FLOP/s by device kind (lower-case substrings of the device name, first match).
# fp32 = TF32 tensor cores (the frameworks' default for float32 convs on these chips).
# "bf16_measured": a large bf16 matmul as measured on this workplace's machines.
PEAK_FLOPS: list[tuple[tuple[str, ...], dict[str, float]]] = [
    (("h100", "pcie"), {"bf16": 756e12, "fp32": 378e12}),
    (("h100",), {"bf16": 989.4e12, "fp32": 494.7e12, "bf16_measured": 800e12}),
    (("h200",), {"bf16": 989.4e12, "fp32": 494.7e12, "bf16_measured": 790e12}),
    (("gh200",), {"bf16": 989.4e12, "fp32": 494.7e12}),
    (("a100",), {"bf16": 312e12, "fp32": 156e12}),
]


def peak_flops(device_name: str | None) -> dict[str, float] | None:
    """Spec-sheet dense peaks for ``device_name`` (``None`` if unknown, e.g. a CPU)."""
    name = (device_name or "").lower()
    for keys, peaks in PEAK_FLOPS:
        if all(k in name for k in keys):
            return dict(peaks)
    return None


# --------------------------------------------------------------------------------------
# Shared state and timing helpers
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class BenchContext:
    """Everything a benchmark function needs; ``cache`` holds what rows share (params)."""

    config: Any
    config_name: str
    frameworks: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    dtypes: tuple[str, ...]
    repeats: int
    min_time_s: float
    torch_compile: bool
    cache: dict = dataclasses.field(default_factory=dict)

    def config_for(self, dtype: str):
        cfg = self.config.copy_and_resolve_references()
        with cfg.unlocked():
            cfg.model.compute_dtype = DTYPES[dtype]
        return cfg


def _median_ms(run: Callable[[], Any], sync: Callable[[Any], Any], iters: int, repeats: int):
    """Median and all of ``repeats`` timings of ``iters`` pipelined calls, ms per call."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = None
        for _ in range(iters):
            out = run()
        sync(out)
        times.append((time.perf_counter() - t0) * 1e3 / iters)
    return statistics.median(times), times


def _latency_ms(run, sync, n: int) -> float:
    """Median of ``n`` single calls, each waited for."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        sync(run())
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _timed_row(run, sync, ctx: BenchContext, batch: int, first_call_s: float) -> dict:
    """Iteration count from the warm-up call, then throughput and latency numbers."""
    t0 = time.perf_counter()
    sync(run())  # a second warm call: the first may include lazy initialisation
    per_call = max(time.perf_counter() - t0, 1e-6)
    iters = max(1, math.ceil(ctx.min_time_s / per_call))
    ms, all_ms = _median_ms(run, sync, iters, ctx.repeats)
    return {
        "warmup_s": first_call_s,
        "iters_per_repeat": iters,
        "ms_per_batch": ms,
        "ms_per_batch_all": all_ms,
        "images_per_s": batch * 1e3 / ms,
        "latency_ms": _latency_ms(run, sync, max(ctx.repeats, min(iters, 20))),
    }


def _add_flops(row: dict, flops_per_image: float | None, peaks: dict | None, dtype: str):
    row["flops_per_image"] = flops_per_image
    ips = row.get("images_per_s")
    achieved = flops_per_image * ips if flops_per_image and ips else None
    row["tflops_per_s"] = achieved / 1e12 if achieved else None
    peak = peaks.get(dtype) if peaks else None
    row["peak_flops"] = peak
    row["mfu"] = achieved / peak if achieved and peak else None
    measured = peaks.get(f"{dtype}_measured") if peaks else None
    row["mfu_vs_measured_peak"] = achieved / measured if achieved and measured else None


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()[:2000]


# --------------------------------------------------------------------------------------
# JAX
# --------------------------------------------------------------------------------------


def _jax_variables(ctx: BenchContext):
    """Random float32 params + batch stats of the generator, shared by all dtypes and torch
    (random everywhere: the zero-initialised last convs of a fresh init would not do)."""
    if "jax_variables" not in ctx.cache:
        import torch_reference as tr

        cfg = ctx.config_for("fp32")
        size = cfg.image_size
        model = build_model(cfg.model)
        x = jax.ShapeDtypeStruct((1, size, size, 3), jax.numpy.float32)
        variables = tr.random_flax_variables(model, x, seed=cfg.seed)
        ctx.cache["jax_variables"] = jax.device_put(variables)
    return ctx.cache["jax_variables"]


def _jax_apply(cfg):
    model = build_model(cfg.model)
    return jax.jit(lambda variables, x: model.apply(variables, x).y)


def _cost_flops(compiled) -> float | None:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per computation
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def _jax_compiled(ctx: BenchContext, dtype: str, batch: int):
    """``(compiled forward, compile seconds)`` for ``dtype`` and ``batch``, compiled once."""
    key = ("jax_compiled", dtype, batch)
    if key not in ctx.cache:
        cfg = ctx.config_for(dtype)
        size = cfg.image_size
        x = jax.ShapeDtypeStruct((batch, size, size, 3), jax.numpy.float32)
        t0 = time.perf_counter()
        compiled = _jax_apply(cfg).lower(_jax_variables(ctx), x).compile()
        ctx.cache[key] = compiled, time.perf_counter() - t0
    return ctx.cache[key]


def flops_per_image(ctx: BenchContext) -> float | None:
    """XLA's FLOP count of the float32 forward pass at batch 1."""
    if "flops_per_image" not in ctx.cache:
        ctx.cache["flops_per_image"] = _cost_flops(_jax_compiled(ctx, "fp32", 1)[0])
    return ctx.cache["flops_per_image"]


def _jax_memory(compiled) -> dict | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    if m is None:
        return None
    keys = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes")
    return {k: int(getattr(m, k)) for k in keys if hasattr(m, k)}


def _jax_peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def jax_inference_row(ctx: BenchContext, batch: int, dtype: str) -> dict:
    size = ctx.config.image_size
    variables = _jax_variables(ctx)
    x = jax.random.uniform(jax.random.key(1), (batch, size, size, 3), jax.numpy.float32)
    compiled, compile_s = _jax_compiled(ctx, dtype, batch)
    run = lambda: compiled(variables, x)
    sync = lambda out: out.block_until_ready()
    t0 = time.perf_counter()
    sync(run())
    row = {"compile_s": compile_s, **_timed_row(run, sync, ctx, batch, time.perf_counter() - t0)}
    xla_flops = _cost_flops(compiled)
    row["xla_flops_per_image_this_program"] = xla_flops / batch if xla_flops else None
    row["xla_memory"] = _jax_memory(compiled)
    row["peak_device_bytes"] = _jax_peak_bytes()
    return row


# --------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------


def _torch_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _torch_model(ctx: BenchContext):
    """Eval-mode torch model with the JAX init's weights (shared by dtypes and variants)."""
    if "torch_model" not in ctx.cache:
        import torch_reference as tr

        cfg = ctx.config_for("fp32")
        model = tr.load_flax_params(tr.build_model(cfg), _jax_variables(ctx))
        ctx.cache["torch_model"] = model.to(_torch_device()).eval()
    return ctx.cache["torch_model"]


def torch_inference_row(ctx: BenchContext, batch: int, dtype: str, compiled: bool) -> dict:
    import torch

    device = _torch_device()
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    model = _torch_model(ctx)
    size = ctx.config.image_size
    gen = torch.Generator(device="cpu").manual_seed(1)
    x = torch.rand(batch, 3, size, size, generator=gen).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    forward = lambda inp: model(inp).y
    if compiled:
        torch._dynamo.reset()  # a fresh, static-shape compile per row (no dynamic batch dim)
        forward = torch.compile(forward, dynamic=False)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16")

    def run():
        with torch.inference_mode(), autocast:
            return forward(x)

    sync = lambda _: torch.cuda.synchronize() if cuda else None
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    sync(run())  # torch.compile traces and compiles here
    row = _timed_row(run, sync, ctx, batch, time.perf_counter() - t0)
    # Eager has nothing to compile; for torch.compile: the first call less a steady one.
    row = {"compile_s": row["warmup_s"] - row["ms_per_batch"] / 1e3 if compiled else None, **row}
    row["peak_device_bytes"] = int(torch.cuda.max_memory_allocated()) if cuda else None
    return row


# --------------------------------------------------------------------------------------
# Benchmarks (modes)
# --------------------------------------------------------------------------------------


def _variants(ctx: BenchContext) -> list[tuple[str, str, Callable]]:
    out = []
    if "jax" in ctx.frameworks:
        out.append(("jax", "jit", jax_inference_row))
    if "torch" in ctx.frameworks:
        out.append(("torch", "eager", lambda c, b, d: torch_inference_row(c, b, d, False)))
        if ctx.torch_compile:
            out.append(("torch", "compile", lambda c, b, d: torch_inference_row(c, b, d, True)))
    return out


def bench_inference(ctx: BenchContext) -> list[dict]:
    """Rows of the full model's forward pass (eval mode), every framework × dtype × batch."""
    peaks = peak_flops(device_info()["accelerator"])
    try:
        fpi = flops_per_image(ctx)
    except Exception as e:  # keep measuring even without a FLOP count
        print(f"FLOP count failed: {_error(e)}", file=sys.stderr)
        fpi = None
    rows = []
    for framework, variant, fn in _variants(ctx):
        for dtype in ctx.dtypes:
            for batch in sorted(ctx.batch_sizes):
                row = {"framework": framework, "variant": variant, "dtype": dtype}
                row["batch_size"] = batch
                print(f"[inference] {framework}/{variant} {dtype} batch {batch} ...", flush=True)
                try:
                    row.update(fn(ctx, batch, dtype))
                    row["error"] = None
                except Exception as e:  # OOM or a failed torch.compile
                    row["error"] = _error(e)
                    print(f"  failed: {row['error']}", file=sys.stderr)
                    traceback.print_exc(file=sys.stderr)
                _add_flops(row, fpi, peaks, dtype)
                if row["error"] is None:
                    print(
                        f"  {row['images_per_s']:.1f} images/s, {row['ms_per_batch']:.2f} "
                        f"ms/batch, latency {row['latency_ms']:.2f} ms",
                        flush=True,
                    )
                rows.append(row)
    return rows


def bench_train(ctx: BenchContext) -> list[dict]:
    """Training throughput per phase of the schedule: not written yet."""
    raise NotImplementedError(
        "training throughput (--mode train) is not implemented yet: add bench_train(ctx) in "
        "tools/bench_throughput.py once train.py and schedule.py exist (DESIGN.md §8)"
    )


BENCHMARKS: dict[str, Callable[[BenchContext], list[dict]]] = {
    "inference": bench_inference,
    "train": bench_train,
}


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def device_info() -> dict:
    """Names and versions of what the numbers were measured on."""
    dev = jax.devices()[0]
    info = {
        "jax_platform": dev.platform,
        "jax_device": getattr(dev, "device_kind", str(dev)),
        "jax_device_count": jax.device_count(),
        "jax_version": jax.__version__,
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        # CPU timings are only as good as the machine is idle: the 1-minute load average.
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        import flax

        info["flax_version"] = flax.__version__
    except ImportError:
        info["flax_version"] = None
    try:
        import torch

        info["torch_version"] = torch.__version__
        info["torch_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        info["torch_num_threads"] = torch.get_num_threads()
        info["torch_cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
    except ImportError:
        info["torch_version"] = info["torch_device"] = None
    accel = info["jax_device"] if dev.platform != "cpu" else info.get("torch_device")
    info["accelerator"] = None if accel in (None, "cpu") else accel
    info["device"] = info["accelerator"] or f"CPU: {info['processor']}"
    return info


def _cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def markdown(report: dict) -> str:
    env = report["env"]
    lines = [
        f"# Throughput: {report['config']} ({report['image_size']}×{report['image_size']})",
        "",
        f"- device: {env['device']} (jax {env['jax_version']} on {env['jax_platform']}, "
        f"torch {env.get('torch_version')} on {env.get('torch_device')})",
        f"- generator parameters: {report['generator_params']:,}; FLOPs/image (XLA): "
        f"{_fmt(report['flops_per_image'] and report['flops_per_image'] / 1e9, '.2f')} G",
        f"- median of {report['settings']['repeats']} runs; {report['timestamp']}",
        "",
    ]
    for mode, rows in report["results"].items():
        lines += [f"## {mode}", ""]
        if isinstance(rows, dict):  # a mode that failed as a whole
            lines += [f"not measured: {rows.get('error')}", ""]
            continue
        lines += [
            "| framework | variant | dtype | batch | images/s | ms/batch | latency ms | "
            "compile s | warm-up s | peak mem MiB | TFLOP/s | MFU |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            head = f"| {r['framework']} | {r['variant']} | {r['dtype']} | {r['batch_size']} |"
            if r.get("error"):
                lines.append(f"{head} error: {r['error'][:120]} |||||||||")
                continue
            mem = r.get("peak_device_bytes")
            lines.append(
                f"{head} {r['images_per_s']:.1f} | {r['ms_per_batch']:.2f} | "
                f"{r['latency_ms']:.2f} | {_fmt(r.get('compile_s'), '.1f')} | "
                f"{r['warmup_s']:.1f} | {_fmt(mem and mem / 2**20, '.0f')} | "
                f"{_fmt(r['tflops_per_s'], '.2f')} | {_fmt(r['mfu'], '.1%')} |"
            )
        lines.append("")
    return "\n".join(lines)


def _csv(text: str, cast=str) -> tuple:
    return tuple(cast(t.strip()) for t in text.split(",") if t.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="paper", help="config file or built-in name")
    p.add_argument("--mode", choices=[*BENCHMARKS, "all"], default="inference")
    p.add_argument("--framework", choices=["jax", "torch", "both"], default="both")
    p.add_argument("--batch-sizes", default="1,16,64,256", help="comma-separated")
    p.add_argument("--dtypes", default="fp32,bf16", help=f"comma-separated of {list(DTYPES)}")
    p.add_argument("--torch-compile", action="store_true", help="also time torch.compile")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row (median)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per timed run")
    p.add_argument("--out", default=None, help="JSON report path")
    p.add_argument("--markdown", default=None, help="Markdown table path")
    return p


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    overrides = split_overrides(rest)
    config = load_config(args.config, overrides)
    dtypes = _csv(args.dtypes)
    bad = [d for d in dtypes if d not in DTYPES]
    if bad or not dtypes:
        raise SystemExit(f"--dtypes must be a comma-separated subset of {list(DTYPES)}")
    batch_sizes = _csv(args.batch_sizes, int)
    if not batch_sizes or min(batch_sizes) < 1:
        raise SystemExit("--batch-sizes must be positive integers")
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    frameworks = ("jax", "torch") if args.framework == "both" else (args.framework,)
    ctx = BenchContext(
        config=config,
        config_name=args.config,
        frameworks=frameworks,
        batch_sizes=batch_sizes,
        dtypes=dtypes,
        repeats=args.repeats,
        min_time_s=args.min_time,
        torch_compile=args.torch_compile,
    )
    modes = list(BENCHMARKS) if args.mode == "all" else [args.mode]
    results: dict[str, Any] = {}
    for mode in modes:
        try:
            results[mode] = BENCHMARKS[mode](ctx)
        except NotImplementedError as e:
            if args.mode != "all":
                raise
            results[mode] = {"error": _error(e)}
    env = device_info()
    variables = _jax_variables(ctx)
    report = {
        "tool": "tools/bench_throughput.py",
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": args.config,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "image_size": config.image_size,
        "model": config.model.to_dict(),
        "generator_params": int(
            sum(np.prod(p.shape) for p in jax.tree.leaves(variables["params"]))
        ),
        "flops_per_image": ctx.cache.get("flops_per_image"),
        "peak_flops": peak_flops(env["accelerator"]),
        "env": env,
        "settings": {
            "mode": args.mode,
            "frameworks": list(frameworks),
            "batch_sizes": list(batch_sizes),
            "dtypes": list(dtypes),
            "repeats": args.repeats,
            "min_time_s": args.min_time,
            "torch_compile": args.torch_compile,
        },
        "results": results,
    }
    text = json.dumps(
        report, indent=2, default=lambda o: list(o) if isinstance(o, tuple) else str(o)
    )
    if args.out:
        pathlib.Path(args.out).write_text(text + "\n")
    md = markdown(report)
    if args.markdown:
        pathlib.Path(args.markdown).write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
