"""Throughput of the face deblurring model in JAX and PyTorch: images/s, latency, FLOPs, MFU.

    python -m facedeblur_jax.bench.throughput --config configs/paper.py --framework both \\
        --batch-sizes 1,16,64,256 --dtypes fp32,bf16 [--torch-compile] \\
        --out bench.json --markdown bench.md [--repeats 5] [--config.model.upsample=subpixel]
    python -m facedeblur_jax.bench.throughput --config cvpr18 --framework both [...]
    python -m facedeblur_jax.bench.throughput --config paper --mode train --framework both \
        [--batch-sizes 16,64,256] [--phases coarse,joint] [--devices N] [--torch-compile] \
        [--config.loss.vgg_weights_path=vgg_face.npz | --config.loss.vgg_weight=0]

Modes (``--mode``) are entries of :data:`BENCHMARKS`, each a function ``ctx -> rows``:
``inference`` (the config's whole model, eval mode, on random inputs of the config's
``image_size``: G_c → P → G_f for ``model.kind = "ijcv"``; P → G for ``"cvpr18"``, the
released CVPR'18 graph, e.g. ``--config cvpr18``, timed the same way in both frameworks)
and ``train`` (one training step of each phase of the schedule, on-device degradation
included; see "How it measures (``train``)" below; the ``ijcv`` kind only: training builds
the IJCV cascade, and any other kind is refused in one line).

How it measures (``inference``):

* JAX: ``jax.jit(apply).lower(...).compile()`` (timed: ``compile_s``), one warm-up call
  (``warmup_s``), then ``--repeats`` timed runs of ``iters`` back-to-back calls ended by
  ``block_until_ready`` (``iters`` chosen from the warm-up so a run lasts
  ``--min-time`` s); ``ms_per_batch`` is the median over runs. ``latency_ms`` is the
  median of single calls each waited for (no pipelining), the batch-1 row's value being
  the batch-1 latency. The parameters are float32; ``bf16`` sets
  ``config.model.compute_dtype = "bfloat16"``.
* PyTorch: ``torch_reference.py`` (beside this file) with the same (random) weights as the JAX rows,
  ``channels_last``, ``torch.inference_mode``, bf16 by ``torch.autocast``;
  eager, and with ``--torch-compile`` also ``torch.compile(dynamic=False)``, compiled
  afresh per row (``compile_s`` = first call less a steady one; a failure, e.g. no C++
  compiler on CPU, is recorded in the row's ``error`` and the run goes on). Timing is
  closed by ``torch.cuda.synchronize()``.
  ``torch.backends.cudnn.benchmark`` is on (XLA autotunes its convolutions too).
* FLOPs per image: XLA's ``cost_analysis()["flops"]`` of the float32 program at batch 1
  compiled for the host CPU (the same model in both frameworks; a multiply-add counts 2).
  Always the CPU backend's count: the GPU backend's analysis leaves out the convolutions
  that become cuDNN calls (0.06 GFLOP/image on an H100). ``xla_flops_per_image_this_program``
  in each row is what the backend running the row reports, for comparison only. XLA leaves out
  the taps that fall on SAME padding: 111.1 GFLOP/image for the paper model at 128 px,
  against 113.8 G from the naive ``2·k²·C_in·C_out·H·W`` (transposed convs counted
  without the inserted zeros).
* MFU = FLOPs/image × images/s ÷ the device's dense peak for the dtype
  (:data:`PEAK_FLOPS`; fp32 against the TF32 tensor-core peak, since both frameworks
  run float32 convolutions in TF32 on Hopper by default). Null where no peak is known
  (CPUs). ``mfu_vs_measured_peak`` divides by the bf16 matmul rate measured on an
  H100 / H200 (docs/benchmarks/h100_2026-11-24.md) instead of the spec sheet's
  (Markdown: "MFU (spec)", "MFU (measured)").
* Memory: ``jax.devices()[0].memory_stats()["peak_bytes_in_use"]`` (the process-wide
  peak so far, so batch sizes run in increasing order) and XLA's ``memory_analysis()``
  of each compiled program; ``torch.cuda.max_memory_allocated()`` after a reset per
  row. Null on CPU.

How it measures (``train``), per phase of ``config.phase_order`` (``--phases``) × dtype ×
global batch size (``--batch-sizes``; default 16, 64, 256 on an accelerator, 2 on a CPU):

* JAX: the real step, ``facedeblur_jax.training.step.build_train_step(config, phase, mesh,
  vgg_apply)`` — ``jit(shard_map(...))`` on a mesh of all local devices (``--devices N``:
  the first N) — lowered and compiled (``compile_s``), then timed like inference with
  ``jax.block_until_ready`` on the returned (donated) state. The batch is synthetic:
  random ``uint8`` sharp faces and label maps (``has_labels`` all true) already on the
  devices, so no data loading is timed; everything else of a training step is: kernel
  sampling, blur, noise and augmentation on the device, forward, losses, backward, the
  gradient all-reduce, Adam, the NaN/Inf guard. State: random float32 weights
  (``random_flax_variables``), fresh Adam moments.
* Degradation share: ``synthesize`` alone, jitted and sharded the same way (per-sample
  keys as in the step), timed for the same global batch: ``degrade_ms`` and
  ``degrade_pct_of_step`` = its share of the step's time (target ≤ 5 %), timed right
  after the step. Measured apart, so it ignores overlap with the rest of the step. It does
  not depend on the phase or the compute dtype (degradation runs in float32): compiled
  once per batch size.
* Kernel pool (``--config.degrade.kernel_pool_size=N``, the paper's fixed 20,000 training
  kernels): the pool is sampled once (``kernel_pool.sample_s`` in the report, not part of
  any row) and every step and degradation row draws from it; the PyTorch rows get the same
  pool as a tensor and draw from it the same way.
* PyTorch: ``facedeblur_jax/bench/torch_train_reference.py``, one device: the same work per phase
  (degradation on the device, batched; forward/backward of the trained nets; Adam), eager
  and with ``--torch-compile`` its loss functions compiled (failures recorded in the row's
  ``error``); bf16 by autocast. Same initial weights as JAX (G and D).
* L_VGG: without ``loss.vgg_weights_path`` a phase with L_VGG uses VGG-Face with
  **random weights** in both frameworks — it measures speed, not quality; each such row
  says ``"vgg": "random weights (speed only)"``. ``--config.loss.vgg_weight=0`` leaves
  the perceptual loss out instead (``"vgg": "off"``).
* FLOPs per image: ``cost_analysis()["flops"]`` of the *training step* compiled for the
  host CPU (on a CPU run: the row's own per-device program; divided by the per-device
  batch): the forward of every net the
  phase runs, the backward of the trained ones, D's and VGG's passes, degradation and the
  optimiser update. MFU divides the achieved FLOP/s by the peak of all devices used. The
  PyTorch rows use the JAX count of the same phase.
* Memory: as inference; JAX's ``peak_bytes_in_use`` is the process-wide peak so far
  (rows run phase by phase with batch sizes increasing), ``xla_memory`` is per program.

``facedeblur_jax/bench/scaling.py`` runs the joint-phase step on 1, 2, 4, 8 fake CPU devices at a
fixed per-device batch (weak scaling) with these functions.

Both frameworks can share one GPU: JAX's preallocation is switched off
(``XLA_PYTHON_CLIENT_PREALLOCATE=false``) before JAX is imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse
import copy
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

import flax
import jax
import numpy as np
from jax.sharding import NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

from facedeblur_jax.bench import hlo_collectives
from facedeblur_jax.config import load_config, split_overrides
from facedeblur_jax.core.compile_cache import enable_compilation_cache
from facedeblur_jax.degrade.kernel_pool import pool_from_config
from facedeblur_jax.degrade.synthesize import synthesize
from facedeblur_jax.models.factory import build_discriminator, build_model, compute_dtype
from facedeblur_jax.models.vgg import VGGFace, load_vgg_face
from facedeblur_jax.state.train_state import TrainState, make_optimizer, net_of
from facedeblur_jax.training.loop import make_mesh
from facedeblur_jax.training.schedule import phases_from_config
from facedeblur_jax.training.step import AXIS, build_train_step, sample_keys

DTYPES = {"fp32": "float32", "bf16": "bfloat16"}

# Dense peak FLOP/s by device kind (lower-case substrings of the device name, first match).
# fp32 = TF32 tensor cores (the frameworks' default for float32 convs on these chips).
# "bf16_measured": a large bf16 matmul as measured on that device (docs/benchmarks/).
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
    batch_sizes: tuple[int, ...] | None  # None: the mode's default (see *_batch_sizes)
    dtypes: tuple[str, ...]
    repeats: int
    min_time_s: float
    torch_compile: bool
    phases: tuple[str, ...] | None = None  # training phases to run; None = the schedule's
    num_devices: int | None = None  # JAX training mesh size; None = all local devices
    rows_log: str | None = None  # JSON-lines file: each row appended as soon as it is done
    cache: dict = dataclasses.field(default_factory=dict)

    def emit(self, mode: str, row: dict) -> None:
        """Appends ``row`` to ``rows_log`` (so a run cut short keeps what it measured)."""
        if self.rows_log:
            with open(self.rows_log, "a") as f:
                f.write(json.dumps({"mode": mode, **row}, default=str) + "\n")

    def config_for(self, dtype: str):
        cfg = self.config.copy_and_resolve_references()
        with cfg.unlocked():
            cfg.model.compute_dtype = DTYPES[dtype]
        return cfg


def median_ms(run: Callable[[], Any], sync: Callable[[Any], Any], iters: int, repeats: int):
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


def _timed_row(
    run, sync, ctx: BenchContext, batch: int, first_call_s: float, latency: bool = True
) -> dict:
    """Iteration count from the warm-up call, then throughput (and latency) numbers."""
    t0 = time.perf_counter()
    sync(run())  # a second warm call: the first may include lazy initialisation
    per_call = max(time.perf_counter() - t0, 1e-6)
    iters = max(1, math.ceil(ctx.min_time_s / per_call))
    ms, all_ms = median_ms(run, sync, iters, ctx.repeats)
    row = {
        "warmup_s": first_call_s,
        "iters_per_repeat": iters,
        "ms_per_batch": ms,
        "ms_per_batch_all": all_ms,
        "images_per_s": batch * 1e3 / ms,
    }
    if latency:
        row["latency_ms"] = _latency_ms(run, sync, max(ctx.repeats, min(iters, 20)))
    return row


def _add_flops(
    row: dict, flops_per_image: float | None, peaks: dict | None, dtype: str, devices: int = 1
):
    """FLOP/s achieved and MFU against ``devices`` × the per-device peak."""
    row["flops_per_image"] = flops_per_image
    ips = row.get("images_per_s")
    achieved = flops_per_image * ips if flops_per_image and ips else None
    row["tflops_per_s"] = achieved / 1e12 if achieved else None
    peak = peaks.get(dtype) * devices if peaks and peaks.get(dtype) else None
    row["peak_flops"] = peak
    row["mfu"] = achieved / peak if achieved and peak else None
    measured = peaks.get(f"{dtype}_measured") if peaks else None
    measured = measured * devices if measured else None
    row["mfu_vs_measured_peak"] = achieved / measured if achieved and measured else None


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()[:2000]


# --------------------------------------------------------------------------------------
# JAX
# --------------------------------------------------------------------------------------


def jax_variables(ctx: BenchContext):
    """Random float32 params + batch stats of the generator, shared by all dtypes and torch
    (random everywhere: the zero-initialised last convs of a fresh init would not do)."""
    if "jax_variables" not in ctx.cache:
        from facedeblur_jax.bench import torch_reference as tr  # deferred: imports torch (optional)

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


def jax_compiled(ctx: BenchContext, dtype: str, batch: int):
    """``(compiled forward, compile seconds)`` for ``dtype`` and ``batch``, compiled once."""
    key = ("jax_compiled", dtype, batch)
    if key not in ctx.cache:
        cfg = ctx.config_for(dtype)
        size = cfg.image_size
        x = jax.ShapeDtypeStruct((batch, size, size, 3), jax.numpy.float32)
        t0 = time.perf_counter()
        compiled = _jax_apply(cfg).lower(jax_variables(ctx), x).compile()
        ctx.cache[key] = compiled, time.perf_counter() - t0
    return ctx.cache[key]


def _specs(tree, sharding):
    """``ShapeDtypeStruct`` twins of ``tree``'s arrays with ``sharding``: lowering with CPU
    shardings compiles for the CPU backend whatever the default backend is."""
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=sharding), tree
    )


def _on_cpu(tree):
    """:func:`_specs` on the host CPU device."""

    return _specs(tree, SingleDeviceSharding(jax.devices("cpu")[0]))


# The FLOP counts come from XLA's cost analysis of the program compiled for the host CPU:
# the GPU backend's analysis leaves out convolutions that become cuDNN custom calls (it
# reported 0.06 GFLOP/image for the paper model on an H100).
FLOPS_COUNTED_ON = "cpu"


def _runs_on_flops_backend() -> bool:
    """Whether the rows run on the backend the FLOPs are counted on (then a row's own
    compiled program gives the count)."""
    return jax.default_backend() == FLOPS_COUNTED_ON


def flops_per_image(ctx: BenchContext) -> float | None:
    """XLA's FLOP count of the float32 forward pass at batch 1 (compiled for the CPU)."""
    if "flops_per_image" not in ctx.cache:
        if _runs_on_flops_backend():
            compiled = jax_compiled(ctx, "fp32", 1)[0]
        else:
            cfg = ctx.config_for("fp32")
            size = cfg.image_size
            x = jax.ShapeDtypeStruct((1, size, size, 3), jax.numpy.float32)
            variables = _on_cpu(jax_variables(ctx))
            compiled = _jax_apply(cfg).lower(variables, _on_cpu(x)).compile()
        ctx.cache["flops_per_image"] = _cost_flops(compiled)
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
    variables = jax_variables(ctx)
    x = jax.random.uniform(jax.random.key(1), (batch, size, size, 3), jax.numpy.float32)
    compiled, compile_s = jax_compiled(ctx, dtype, batch)
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
    import torch  # deferred: torch is optional (the test extra)

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _torch_model(ctx: BenchContext):
    """Eval-mode torch model with the JAX init's weights (shared by dtypes and variants)."""
    if "torch_model" not in ctx.cache:
        from facedeblur_jax.bench import torch_reference as tr  # deferred: imports torch (optional)

        cfg = ctx.config_for("fp32")
        model = tr.load_flax_params(tr.build_model(cfg), jax_variables(ctx))
        ctx.cache["torch_model"] = model.to(_torch_device()).eval()
    return ctx.cache["torch_model"]


def torch_inference_row(ctx: BenchContext, batch: int, dtype: str, compiled: bool) -> dict:
    import torch  # deferred: torch is optional (the test extra)

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
# Training (--mode train)
# --------------------------------------------------------------------------------------

VGG_RANDOM = "random weights (speed only)"
TRAIN_NOTES = (
    "One optimisation step per phase on a synthetic batch already on the device(s): "
    "on-device degradation (kernels, blur, noise, augmentation), forward, losses, backward, "
    "gradient all-reduce (JAX), Adam; no data loading.",
    "degrade_ms: degradation alone (jitted / eager torch) for the same global batch; "
    "degrade_pct_of_step = its share of the step (target <= 5 %), measured apart from the "
    "step (no overlap counted).",
    "flops_per_image: XLA cost analysis of the compiled JAX training step of the phase "
    "(per-device program / per-device batch), used for the torch rows too.",
    "vgg = 'random weights (speed only)': no VGG-Face file was given, so the perceptual "
    "loss ran on random weights; the numbers measure speed, not quality.",
    "PyTorch: one device; JAX: a mesh of `devices` devices (data parallel).",
)


def check_trainable(config) -> None:
    """``--mode train`` times the IJCV cascade's training step only: one line otherwise."""
    kind = config.model.kind
    if kind != "ijcv":
        raise SystemExit(
            f"--mode train: model.kind = {kind!r} is not trained here (training builds the "
            f"IJCV cascade, model.kind = 'ijcv'); benchmark it with --mode inference"
        )


def inference_batch_sizes(ctx: BenchContext) -> tuple[int, ...]:
    return tuple(sorted(ctx.batch_sizes or (1, 16, 64, 256)))


def train_batch_sizes(ctx: BenchContext) -> tuple[int, ...]:
    """``--batch-sizes``, else 16, 64, 256 on an accelerator and 2 on a CPU."""
    if ctx.batch_sizes:
        return tuple(sorted(ctx.batch_sizes))
    return (16, 64, 256) if device_info()["accelerator"] else (2,)


def bench_phases(cfg) -> dict:

    return {p.name: p for p in phases_from_config(cfg)}


def train_phases(ctx: BenchContext) -> tuple[str, ...]:
    """The schedule's phases (``config.phase_order``), or those of ``--phases``."""
    names = tuple(bench_phases(ctx.config))
    if ctx.phases is None:
        return names
    unknown = [p for p in ctx.phases if p not in names]
    if unknown:
        raise SystemExit(f"--phases: unknown phase(s) {unknown}; the schedule has {names}")
    return tuple(p for p in names if p in ctx.phases)


def _train_config(ctx: BenchContext, dtype: str, batch: int):
    cfg = ctx.config_for(dtype)
    with cfg.unlocked():
        cfg.train.global_batch_size = batch
    return cfg


def _kernel_pool(ctx: BenchContext, cfg, mesh=None):
    """The run's kernel pool when ``degrade.kernel_pool_size > 0`` (sampled once per
    benchmark, as a training run does at start-up), replicated on ``mesh``; else ``None``."""

    if not cfg.degrade.kernel_pool_size:
        return None
    if "kernel_pool" not in ctx.cache:
        t0 = time.perf_counter()
        ctx.cache["kernel_pool"] = jax.device_get(pool_from_config(cfg))
        ctx.cache["kernel_pool_s"] = time.perf_counter() - t0
    pool = ctx.cache["kernel_pool"]
    if mesh is None:
        return pool

    return jax.device_put(pool, NamedSharding(mesh, P()))


def train_mesh(ctx: BenchContext, n: int | None = None):
    """A ``"data"`` mesh over the first ``n`` (``--devices``; default all) local devices."""

    devices = jax.devices()
    n = n or ctx.num_devices or len(devices)
    if n > len(devices):
        raise ValueError(f"{n} devices asked for, {len(devices)} available")
    return make_mesh(devices[:n])


def _host_train_state(ctx: BenchContext):
    """A random float32 ``TrainState`` as numpy arrays (G as the inference rows, random D,
    zero Adam moments), shared by every row and, converted, by torch."""
    if "train_state" not in ctx.cache:
        from facedeblur_jax.bench import torch_reference as tr  # deferred: imports torch (optional)

        cfg = ctx.config_for("fp32")
        size = cfg.image_size
        x = jax.ShapeDtypeStruct((1, size, size, 3), jax.numpy.float32)
        gen = jax.device_get(jax_variables(ctx))
        disc = tr.random_flax_variables(build_discriminator(cfg.model), x, seed=cfg.seed + 1)
        params = {**gen["params"], "disc": disc["params"]}
        tx = make_optimizer(cfg.optim)
        ctx.cache["train_state"] = TrainState(
            step=np.zeros((), np.int32),
            params=params,
            batch_stats=dict(gen.get("batch_stats", {})),
            opt_state=jax.device_get({k: tx.init(v) for k, v in params.items()}),
            rng=np.asarray(jax.random.key_data(jax.random.key(cfg.seed))),
            nonfinite=np.zeros((), np.int32),
        )
    return ctx.cache["train_state"]


def _train_batch(cfg, batch: int) -> dict[str, np.ndarray]:
    """Synthetic sharp faces and label maps (random; the work does not depend on them)."""
    rng = np.random.default_rng(cfg.seed)
    size = cfg.image_size
    return {
        "image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
        "labels": rng.integers(0, cfg.model.num_classes, (batch, size, size), dtype=np.uint8),
        "has_labels": np.ones((batch,), bool),
    }


def _vgg_note(cfg, phase) -> str | None:
    if phase.loss["vgg"] <= 0:
        return "off"
    return f"weights: {cfg.loss.vgg_weights_path}" if cfg.loss.vgg_weights_path else VGG_RANDOM


def _jax_vgg(ctx: BenchContext, cfg, phase):
    """``(vgg_apply, vgg_params)`` for a phase with L_VGG, else ``(None, None)``; random
    weights when the config names no file (``VGG_RANDOM``, benchmark only)."""
    if phase.loss["vgg"] <= 0:
        return None, None

    layers = tuple(cfg.loss.vgg_layers)
    net = VGGFace(layers=layers, dtype=compute_dtype(cfg.model))
    if cfg.loss.vgg_weights_path:
        params = load_vgg_face(cfg.loss.vgg_weights_path)
    else:
        key = ("jax_vgg_random", layers)
        if key not in ctx.cache:
            from facedeblur_jax.bench import torch_reference as tr  # deferred: torch

            size = cfg.image_size
            x = jax.ShapeDtypeStruct((1, size, size, 3), jax.numpy.float32)
            variables = tr.random_flax_variables(VGGFace(layers=layers), x, seed=7, gain=1.0)
            ctx.cache[key] = variables["params"]
        params = ctx.cache[key]
    return (lambda p, images: net.apply({"params": p}, images)), params


def _n_trainable(state, phase) -> int:

    return sum(
        int(np.prod(leaf.shape))
        for key, net in state.params.items()
        if phase.trains(net_of(key))
        for leaf in jax.tree.leaves(net)
    )


def _jax_degrade(ctx: BenchContext, cfg, batch: int, mesh) -> dict:
    """Time of ``synthesize`` alone for the global batch, sharded as in the step. Compiled
    once per batch and mesh (it depends on neither the phase nor the compute dtype), timed
    afresh beside every step so that both see the same machine load."""
    key = ("jax_degrade", batch, mesh.size)
    if key not in ctx.cache:

        def body(rng, images, labels, pool):  # the first lines of train_step's body
            keys = sample_keys(rng, 0, images.shape[0], AXIS)
            deg = synthesize(keys, images, labels, cfg.degrade, pool)
            return deg.blurred, deg.sharp, deg.labels

        fn = jax.jit(
            jax.shard_map(body, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS), P()), out_specs=P(AXIS))
        )
        host = _train_batch(cfg, batch)
        shard = NamedSharding(mesh, P(AXIS))
        args = (
            jax.device_put(
                np.asarray(jax.random.key_data(jax.random.key(0))), NamedSharding(mesh, P())
            ),
            jax.device_put(host["image"], shard),
            jax.device_put(host["labels"], shard),
            _kernel_pool(ctx, cfg, mesh),
        )
        t0 = time.perf_counter()
        compiled = fn.lower(*args).compile()
        ctx.cache[key] = compiled, args, time.perf_counter() - t0
    compiled, args, compile_s = ctx.cache[key]
    run = lambda: compiled(*args)
    t0 = time.perf_counter()
    jax.block_until_ready(run())
    timed = _timed_row(run, jax.block_until_ready, ctx, batch, time.perf_counter() - t0, False)
    return {"degrade_ms": timed["ms_per_batch"], "degrade_compile_s": compile_s}


def _degrade_share(row: dict, degrade: dict) -> None:
    row.update(degrade)
    row["degrade_pct_of_step"] = 100.0 * degrade["degrade_ms"] / row["ms_per_batch"]


def jax_train_program(ctx: BenchContext, phase_name: str, batch: int, dtype: str, mesh=None):
    """One phase's sharded train step at global batch ``batch``, compiled, on device data.

    Returns ``(run, holder, compiled, cfg, phase, mesh, compile_s)``: ``run()`` takes one
    step and returns the new (donated-in) state, which it keeps in ``holder[0]``.
    """

    mesh = train_mesh(ctx) if mesh is None else mesh
    if batch % mesh.size:
        raise ValueError(
            f"global batch {batch} does not divide over {mesh.size} devices (--devices)"
        )
    cfg = _train_config(ctx, dtype, batch)
    phase = bench_phases(cfg)[phase_name]
    vgg_apply, vgg_params = _jax_vgg(ctx, cfg, phase)
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
    state = jax.device_put(_host_train_state(ctx), replicated)
    data = {k: jax.device_put(v, sharded) for k, v in _train_batch(cfg, batch).items()}
    vgg_params = None if vgg_params is None else jax.device_put(vgg_params, replicated)
    pool = _kernel_pool(ctx, cfg, mesh)

    t0 = time.perf_counter()
    step = build_train_step(cfg, phase, mesh, vgg_apply)
    compiled = step.lower(state, data, vgg_params, pool).compile()
    compile_s = time.perf_counter() - t0
    holder = [state]

    def run():  # the state is donated: carry the new one
        holder[0], _ = compiled(holder[0], data, vgg_params, pool)
        return holder[0]

    return run, holder, compiled, cfg, phase, mesh, compile_s


def jax_train_row(ctx: BenchContext, phase_name: str, batch: int, dtype: str, mesh=None) -> dict:
    """One phase's sharded train step at global batch ``batch`` on ``mesh``."""

    run, holder, compiled, cfg, phase, mesh, compile_s = jax_train_program(
        ctx, phase_name, batch, dtype, mesh
    )
    n = mesh.size
    t0 = time.perf_counter()
    jax.block_until_ready(run())
    first_s = time.perf_counter() - t0
    row = {"devices": n, "per_device_batch": batch // n, "compile_s": compile_s}
    row.update(_timed_row(run, jax.block_until_ready, ctx, batch, first_s, latency=False))
    flops = _cost_flops(compiled)
    row["xla_flops_per_image_this_program"] = flops / (batch // n) if flops else None
    row["xla_memory"] = _jax_memory(compiled)
    row["peak_device_bytes"] = _jax_peak_bytes()
    row["nonfinite_steps"] = int(jax.device_get(holder[0].nonfinite))
    row["vgg"] = _vgg_note(cfg, phase)
    summary = hlo_collectives.gradient_all_reduce_summary(
        compiled.as_text(), _n_trainable(holder[0], phase)
    )
    row["all_reduces"] = summary["all_reduces"]
    row["gradient_all_reduces"] = summary["gradient_all_reduces"]
    _degrade_share(row, _jax_degrade(ctx, cfg, batch, mesh))
    return row


def _jax_train_flops(ctx: BenchContext, phase_name: str) -> float | None:
    """FLOPs per image of a phase's JAX training step: XLA's count of the float32 step on a
    one-device mesh of the host CPU (see ``FLOPS_COUNTED_ON``), whatever runs the rows."""
    key = ("train_flops", phase_name)
    if key not in ctx.cache:
        batch = min(train_batch_sizes(ctx))
        mesh = make_mesh(jax.devices("cpu")[:1])
        cfg = _train_config(ctx, "fp32", batch)
        phase = bench_phases(cfg)[phase_name]
        vgg_apply, vgg_params = _jax_vgg(ctx, cfg, phase)

        replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
        state = _specs(_host_train_state(ctx), replicated)
        data = _specs(_train_batch(cfg, batch), sharded)
        vgg_params = None if vgg_params is None else _specs(vgg_params, replicated)
        pool = _kernel_pool(ctx, cfg)
        pool = None if pool is None else _specs(pool, replicated)
        step = build_train_step(cfg, phase, mesh, vgg_apply)
        flops = _cost_flops(step.lower(state, data, vgg_params, pool).compile())
        ctx.cache[key] = flops / batch if flops else None
    return ctx.cache[key]


def _torch_train_nets(ctx: BenchContext):
    """Fresh train-mode copies of G (the inference rows' weights) and D (the JAX rows'
    random D), so that rows do not train each other's weights."""

    from facedeblur_jax.bench import torch_reference as tr  # deferred: imports torch (optional)

    if "torch_disc" not in ctx.cache:
        cfg = ctx.config_for("fp32")
        disc = {"params": _host_train_state(ctx).params["disc"]}
        ctx.cache["torch_disc"] = tr.load_flax_params(tr.build_discriminator(cfg), disc).to(
            _torch_device()
        )
    return copy.deepcopy(_torch_model(ctx)), copy.deepcopy(ctx.cache["torch_disc"])


def _torch_degrade(ctx: BenchContext, step, inputs, sync, batch: int) -> dict:
    """Eager torch degradation alone for ``batch``, timed beside its step."""
    run = lambda: step.degrade(*inputs[:2])
    t0 = time.perf_counter()
    sync(run())
    timed = _timed_row(run, sync, ctx, batch, time.perf_counter() - t0, latency=False)
    return {"degrade_ms": timed["ms_per_batch"], "degrade_compile_s": None}


def torch_train_row(ctx: BenchContext, phase_name: str, batch: int, dtype: str, compiled: bool):
    import torch  # deferred: torch is optional (the test extra)

    from facedeblur_jax.bench import torch_train_reference as ttr  # deferred: torch

    device = _torch_device()
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = True
    cfg = _train_config(ctx, dtype, batch)
    phase = bench_phases(cfg)[phase_name]
    model, disc = _torch_train_nets(ctx)
    vgg = ttr.VGGFace(tuple(cfg.loss.vgg_layers)).to(device) if phase.loss["vgg"] > 0 else None
    if compiled:
        torch._dynamo.reset()  # a fresh, static-shape compile per row
    pool = _kernel_pool(ctx, cfg)
    if pool is not None:  # the same kernels as the JAX rows
        pool = torch.from_numpy(np.array(pool.kernels)).to(device)
    step = ttr.TorchTrainStep(
        cfg,
        phase,
        model,
        disc,
        vgg,
        dtype=dtype,
        compile=compiled,
        seed=cfg.seed,
        kernel_pool=pool,
    )
    host = _train_batch(cfg, batch)
    inputs = tuple(torch.from_numpy(host[k]).to(device) for k in ("image", "labels", "has_labels"))
    run = lambda: step.step(*inputs)
    sync = lambda _: torch.cuda.synchronize() if cuda else None
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    sync(run())  # torch.compile traces and compiles here
    row = {"devices": 1, "per_device_batch": batch}
    row.update(_timed_row(run, sync, ctx, batch, time.perf_counter() - t0, latency=False))
    row["compile_s"] = row["warmup_s"] - row["ms_per_batch"] / 1e3 if compiled else None
    row["peak_device_bytes"] = int(torch.cuda.max_memory_allocated()) if cuda else None
    row["vgg"] = _vgg_note(cfg, phase)
    _degrade_share(row, _torch_degrade(ctx, step, inputs, sync, batch))
    return row


def _train_variants(ctx: BenchContext) -> list[tuple[str, str, Callable]]:
    out = []
    if "jax" in ctx.frameworks:
        out.append(("jax", "jit", jax_train_row))
    if "torch" in ctx.frameworks:
        out.append(("torch", "eager", lambda c, p, b, d: torch_train_row(c, p, b, d, False)))
        if ctx.torch_compile:
            out.append(("torch", "compile", lambda c, p, b, d: torch_train_row(c, p, b, d, True)))
    return out


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
        print(f"FLOP count failed: {error_text(e)}", file=sys.stderr)
        fpi = None
    rows = []
    for framework, variant, fn in _variants(ctx):
        for dtype in ctx.dtypes:
            for batch in inference_batch_sizes(ctx):
                row = {"framework": framework, "variant": variant, "dtype": dtype}
                row["batch_size"] = batch
                print(f"[inference] {framework}/{variant} {dtype} batch {batch} ...", flush=True)
                try:
                    row.update(fn(ctx, batch, dtype))
                    row["error"] = None
                except Exception as e:  # OOM or a failed torch.compile
                    row["error"] = error_text(e)
                    print(f"  failed: {row['error']}", file=sys.stderr)
                    traceback.print_exc(file=sys.stderr)
                _add_flops(row, fpi, peaks, dtype)
                if row["error"] is None:
                    print(
                        f"  {row['images_per_s']:.1f} images/s, {row['ms_per_batch']:.2f} "
                        f"ms/batch, latency {row['latency_ms']:.2f} ms",
                        flush=True,
                    )
                ctx.emit("inference", row)
                rows.append(row)
    return rows


def bench_train(ctx: BenchContext) -> list[dict]:
    """Rows of one training step per phase, every framework × dtype × phase × batch."""
    peaks = peak_flops(device_info()["accelerator"])
    phases, batches = train_phases(ctx), train_batch_sizes(ctx)
    rows = []
    for framework, variant, fn in _train_variants(ctx):
        for dtype in ctx.dtypes:
            for phase in phases:
                for batch in batches:
                    row = {"framework": framework, "variant": variant, "dtype": dtype}
                    row.update(phase=phase, batch_size=batch)
                    print(f"[train] {framework}/{variant} {dtype} {phase} batch {batch} ...")
                    try:
                        row.update(fn(ctx, phase, batch, dtype))
                        row["error"] = None
                    except Exception as e:  # OOM, a failed torch.compile, batch vs devices
                        row["error"] = error_text(e)
                        print(f"  failed: {row['error']}", file=sys.stderr)
                        traceback.print_exc(file=sys.stderr)
                    # On a CPU the row's own program count is the CPU count; elsewhere
                    # (GPU cost analysis misses cuDNN convs) count on the CPU backend.
                    fpi = row.get("xla_flops_per_image_this_program")
                    if fpi and _runs_on_flops_backend() and ("train_flops", phase) not in ctx.cache:
                        ctx.cache[("train_flops", phase)] = fpi
                    fpi = ctx.cache.get(("train_flops", phase))
                    if not fpi and row["error"] is None:
                        try:
                            fpi = _jax_train_flops(ctx, phase)
                        except Exception as e:
                            print(f"FLOP count failed: {error_text(e)}", file=sys.stderr)
                    _add_flops(row, fpi, peaks, dtype, row.get("devices", 1))
                    if row["error"] is None:
                        print(
                            f"  {row['images_per_s']:.1f} images/s, {row['ms_per_batch']:.1f} "
                            f"ms/step, degradation {row['degrade_pct_of_step']:.1f} % of it",
                            flush=True,
                        )
                    ctx.emit("train", row)
                    rows.append(row)
    return rows


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
        info["flax_version"] = flax.__version__
    except ImportError:
        info["flax_version"] = None
    try:
        import torch  # deferred: torch is optional (the test extra)

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


def fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


# What ``model.kind`` times (models/factory.py).
GRAPHS = {"ijcv": "G_c → P → G_f", "cvpr18": "P → G, the released CVPR'18 graph"}


def markdown(report: dict) -> str:
    env = report["env"]
    kind = report["model"].get("kind", "ijcv")
    lines = [
        f"# Throughput: {report['config']} ({report['image_size']}×{report['image_size']})",
        "",
        f"- device: {env['device']} (jax {env['jax_version']} on {env['jax_platform']}, "
        f"torch {env.get('torch_version')} on {env.get('torch_device')})",
        f"- model: {kind} ({GRAPHS.get(kind, kind)}); generator parameters: "
        f"{report['generator_params']:,}; inference FLOPs/image (XLA): "
        f"{fmt(report['flops_per_image'] and report['flops_per_image'] / 1e9, '.2f')} G",
        f"- median of {report['settings']['repeats']} runs; {report['timestamp']}",
        "",
    ]
    for mode, rows in report["results"].items():
        lines += [f"## {mode}", ""]
        if mode == "train":
            lines += _train_markdown(rows, report.get("notes", {}).get("train", ()))
            continue
        lines += [
            "| framework | variant | dtype | batch | images/s | ms/batch | latency ms | "
            "compile s | warm-up s | peak mem MiB | TFLOP/s | MFU (spec) | MFU (measured) |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            head = f"| {r['framework']} | {r['variant']} | {r['dtype']} | {r['batch_size']} |"
            if r.get("error"):
                lines.append(f"{head} error: {r['error'][:120]} ||||||||||")
                continue
            mem = r.get("peak_device_bytes")
            lines.append(
                f"{head} {r['images_per_s']:.1f} | {r['ms_per_batch']:.2f} | "
                f"{r['latency_ms']:.2f} | {fmt(r.get('compile_s'), '.1f')} | "
                f"{r['warmup_s']:.1f} | {fmt(mem and mem / 2**20, '.0f')} | "
                f"{fmt(r['tflops_per_s'], '.2f')} | {fmt(r['mfu'], '.1%')} | "
                f"{fmt(r.get('mfu_vs_measured_peak'), '.1%')} |"
            )
        lines.append("")
    return "\n".join(lines)


def _train_markdown(rows: list[dict], notes) -> list[str]:
    lines = [
        "| framework | variant | dtype | phase | batch | devices | images/s | ms/step | "
        "compile s | degradation ms (% of step) | peak mem MiB | GFLOP/image | TFLOP/s | "
        "MFU (spec) | MFU (measured) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        head = (
            f"| {r['framework']} | {r['variant']} | {r['dtype']} | {r['phase']} | "
            f"{r['batch_size']} |"
        )
        if r.get("error"):
            lines.append(f"{head} error: {r['error'][:120]} |||||||||")
            continue
        mem, fpi = r.get("peak_device_bytes"), r.get("flops_per_image")
        lines.append(
            f"{head} {r['devices']} | {r['images_per_s']:.2f} | {r['ms_per_batch']:.1f} | "
            f"{fmt(r.get('compile_s'), '.1f')} | {r['degrade_ms']:.1f} "
            f"({r['degrade_pct_of_step']:.1f} %) | {fmt(mem and mem / 2**20, '.0f')} | "
            f"{fmt(fpi and fpi / 1e9, '.4g')} | {fmt(r['tflops_per_s'], '.3f')} | "
            f"{fmt(r['mfu'], '.1%')} | {fmt(r.get('mfu_vs_measured_peak'), '.1%')} |"
        )
    vgg = sorted({r["vgg"] for r in rows if r.get("vgg") and r["vgg"] != "off"})
    lines += ["", *(f"- {n}" for n in notes)]
    if vgg:
        lines.append(f"- L_VGG in these rows: {', '.join(vgg)}")
    lines.append("")
    return lines


def parse_csv(text: str, cast=str) -> tuple:
    return tuple(cast(t.strip()) for t in text.split(",") if t.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="paper", help="config file or built-in name")
    p.add_argument("--mode", choices=[*BENCHMARKS, "all"], default="inference")
    p.add_argument("--framework", choices=["jax", "torch", "both"], default="both")
    p.add_argument(
        "--batch-sizes",
        default=None,
        help="comma-separated; default inference 1,16,64,256, train 16,64,256 (2 on a CPU)",
    )
    p.add_argument("--phases", default=None, help="train: comma-separated (default: all)")
    p.add_argument("--devices", type=int, default=None, help="train: JAX mesh size (all)")
    p.add_argument("--dtypes", default="fp32,bf16", help=f"comma-separated of {list(DTYPES)}")
    p.add_argument("--torch-compile", action="store_true", help="also time torch.compile")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads (CPU runs on a busy machine: 1 avoids spinning threads)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row (median)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per timed run")
    p.add_argument("--out", default=None, help="JSON report path")
    p.add_argument("--markdown", default=None, help="Markdown table path")
    p.add_argument(
        "--rows-jsonl", default=None, help="append each row here as soon as it is measured"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    overrides = split_overrides(rest)
    config = load_config(args.config, overrides)
    if config.train.compilation_cache_dir:  # a second run shows the cache's compile_s
        enable_compilation_cache(config.train.compilation_cache_dir)
    dtypes = parse_csv(args.dtypes)
    bad = [d for d in dtypes if d not in DTYPES]
    if bad or not dtypes:
        raise SystemExit(f"--dtypes must be a comma-separated subset of {list(DTYPES)}")
    batch_sizes = parse_csv(args.batch_sizes, int) if args.batch_sizes else None
    if batch_sizes is not None and (not batch_sizes or min(batch_sizes) < 1):
        raise SystemExit("--batch-sizes must be positive integers")
    if args.devices is not None and not 1 <= args.devices <= jax.device_count():
        raise SystemExit(f"--devices must be in [1, {jax.device_count()}]")
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    frameworks = ("jax", "torch") if args.framework == "both" else (args.framework,)
    if args.torch_threads is not None:
        import torch  # deferred: torch is optional (the test extra)

        torch.set_num_threads(args.torch_threads)
    ctx = BenchContext(
        config=config,
        config_name=args.config,
        frameworks=frameworks,
        batch_sizes=batch_sizes,
        dtypes=dtypes,
        repeats=args.repeats,
        min_time_s=args.min_time,
        torch_compile=args.torch_compile,
        phases=parse_csv(args.phases) if args.phases else None,
        num_devices=args.devices,
        rows_log=args.rows_jsonl,
    )
    modes = list(BENCHMARKS) if args.mode == "all" else [args.mode]
    if "train" in modes:
        check_trainable(config)
        train_phases(ctx)  # fail on a bad --phases before anything runs
    results: dict[str, Any] = {mode: BENCHMARKS[mode](ctx) for mode in modes}
    env = device_info()
    variables = jax_variables(ctx)
    report = {
        "tool": "facedeblur_jax.bench.throughput",
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": args.config,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "image_size": config.image_size,
        "model": config.model.to_dict(),
        "generator_params": int(
            sum(np.prod(p.shape) for p in jax.tree.leaves(variables["params"]))
        ),
        "flops_per_image": ctx.cache.get("flops_per_image"),
        "flops_counted_on": FLOPS_COUNTED_ON,
        "kernel_pool": {
            "size": int(config.degrade.kernel_pool_size),
            "sample_s": ctx.cache.get("kernel_pool_s"),
        },
        "peak_flops": peak_flops(env["accelerator"]),
        "env": env,
        "settings": {
            "mode": args.mode,
            "frameworks": list(frameworks),
            "batch_sizes": {
                m: list(inference_batch_sizes(ctx) if m == "inference" else train_batch_sizes(ctx))
                for m in modes
            },
            "phases": list(train_phases(ctx)) if "train" in modes else None,
            "devices": args.devices,
            "dtypes": list(dtypes),
            "repeats": args.repeats,
            "min_time_s": args.min_time,
            "torch_compile": args.torch_compile,
        },
        "results": results,
        "notes": {"train": list(TRAIN_NOTES)} if "train" in modes else {},
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
