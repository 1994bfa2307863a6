"""Weak scaling of the sharded train step: a fixed per-device batch on 1, 2, 4, 8 devices.

    python -m facedeblur_jax.bench.scaling [--config tiny] [--phase joint] [--per-device-batch 1] \\
        [--devices 1,2,4,8] [--dtype fp32] [--repeats 3] [--min-time 1] \\
        [--out scaling.json] [--markdown scaling.md] [--config.KEY=VALUE ...]

By default it runs on **fake CPU devices**: ``JAX_PLATFORMS=cpu`` and
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` are set before JAX is imported
(unless already set: ``JAX_PLATFORMS=cuda`` measures real GPUs instead). Fake devices
share this host's cores, so on them the numbers measure the overhead of the SPMD program
(per-device dispatch, the collectives, the smaller per-device work), not how the step
scales on real accelerators; the report says so.

Each row is ``bench_throughput.jax_train_row`` (the real ``build_train_step`` on a mesh
of the first N devices, degradation included) at global batch ``N × per-device batch``,
plus images/s per device, the efficiency against one device (per-device images/s ÷ that
of the 1-device row) and the all-reduces of the compiled step
(``hlo_collectives.py``): how many there are and how many carry gradients (one is
expected).
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

import jax  # noqa: E402

from facedeblur_jax.bench import throughput as bt  # noqa: E402
from facedeblur_jax.config import load_config, split_overrides  # noqa: E402

FAKE_DEVICE_NOTE = (
    "fake CPU devices (--xla_force_host_platform_device_count) share the host's "
    "{cores} cores: these numbers measure the overhead of the SPMD step (dispatch, "
    "collectives, smaller per-device work), not real scaling across accelerators"
)


def scaling_rows(ctx: bt.BenchContext, phase: str, per_device_batch: int, devices, dtype):
    """One ``jax_train_row`` per device count, with per-device throughput and efficiency."""
    rows = []
    for n in devices:
        row = {"devices": n, "per_device_batch": per_device_batch}
        row["batch_size"] = n * per_device_batch
        print(f"[scaling] {phase} {dtype} on {n} device(s), batch {row['batch_size']} ...")
        try:
            mesh = bt.train_mesh(ctx, n)
            row.update(bt.jax_train_row(ctx, phase, n * per_device_batch, dtype, mesh=mesh))
            row["images_per_s_per_device"] = row["images_per_s"] / n
            row["error"] = None
            print(
                f"  {row['images_per_s']:.2f} images/s ({row['images_per_s_per_device']:.2f} "
                f"per device), {row['ms_per_batch']:.1f} ms/step, "
                f"{row['gradient_all_reduces']} gradient all-reduce(s) of "
                f"{row['all_reduces']}",
                flush=True,
            )
        except Exception as e:
            row["error"] = bt.error_text(e)
            print(f"  failed: {row['error']}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        rows.append(row)
    base = next((r for r in rows if r["devices"] == 1 and r["error"] is None), None)
    for r in rows:
        ok = base is not None and r["error"] is None
        r["efficiency_vs_1_device"] = (
            r["images_per_s_per_device"] / base["images_per_s_per_device"] if ok else None
        )
    return rows


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"# Weak scaling: {report['config']}, phase {s['phase']}, {s['dtype']}, "
        f"{s['per_device_batch']} image(s) per device",
        "",
        f"- device: {report['env']['device']} × up to {report['env']['jax_device_count']} "
        f"({report['env']['jax_platform']}); jax {report['env']['jax_version']}",
        f"- median of {s['repeats']} runs; {report['timestamp']}",
    ]
    if report.get("note"):
        lines.append(f"- **{report['note']}**")
    lines += [
        "",
        "| devices | global batch | images/s | images/s per device | efficiency | ms/step | "
        "compile s | all-reduces (of gradients) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        head = f"| {r['devices']} | {r['batch_size']} |"
        if r["error"]:
            lines.append(f"{head} error: {r['error'][:120]} ||||||")
            continue
        lines.append(
            f"{head} {r['images_per_s']:.2f} | {r['images_per_s_per_device']:.2f} | "
            f"{bt.fmt(r['efficiency_vs_1_device'], '.0%')} | {r['ms_per_batch']:.1f} | "
            f"{r['compile_s']:.1f} | {r['all_reduces']} ({r['gradient_all_reduces']}) |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tiny", help="config file or built-in name")
    p.add_argument("--phase", default="joint", help="phase of the schedule to time")
    p.add_argument("--per-device-batch", type=int, default=1)
    p.add_argument("--devices", default="1,2,4,8", help="comma-separated device counts")
    p.add_argument("--dtype", default="fp32", choices=list(bt.DTYPES))
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row (median)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per timed run")
    p.add_argument("--out", default=None, help="JSON report path")
    p.add_argument("--markdown", default=None, help="Markdown table path")
    return p


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    config = load_config(args.config, split_overrides(rest))
    devices = bt.parse_csv(args.devices, int)
    if not devices or min(devices) < 1 or max(devices) > jax.device_count():
        raise SystemExit(f"--devices must be counts in [1, {jax.device_count()}]")
    if args.per_device_batch < 1 or args.repeats < 1:
        raise SystemExit("--per-device-batch and --repeats must be >= 1")
    ctx = bt.BenchContext(
        config=config,
        config_name=args.config,
        frameworks=("jax",),
        batch_sizes=None,
        dtypes=(args.dtype,),
        repeats=args.repeats,
        min_time_s=args.min_time,
        torch_compile=False,
    )
    phases = bt.bench_phases(config)
    if args.phase not in phases:
        raise SystemExit(f"--phase: unknown phase {args.phase!r}; the schedule has {tuple(phases)}")
    rows = scaling_rows(ctx, args.phase, args.per_device_batch, devices, args.dtype)
    env = bt.device_info()
    fake = jax.devices()[0].platform == "cpu"
    report = {
        "tool": "facedeblur_jax.bench.scaling",
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": args.config,
        "image_size": config.image_size,
        "note": FAKE_DEVICE_NOTE.format(cores=os.cpu_count()) if fake else None,
        "env": env,
        "settings": {
            "phase": args.phase,
            "per_device_batch": args.per_device_batch,
            "devices": list(devices),
            "dtype": args.dtype,
            "repeats": args.repeats,
            "min_time_s": args.min_time,
        },
        "rows": rows,
    }
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        pathlib.Path(args.out).write_text(text + "\n")
    md = markdown(report)
    if args.markdown:
        pathlib.Path(args.markdown).write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
