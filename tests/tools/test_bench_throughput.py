"""tools/bench_throughput.py on CPU with the tiny config: report structure, not speed."""

import json
import math
import pathlib
import sys

import pytest
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
import bench_throughput as bench

ROW_NUMBERS = ("warmup_s", "ms_per_batch", "images_per_s", "latency_ms", "flops_per_image")


def _positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _run(tmp_path, *args):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = ["--config", "tiny", "--repeats", "1", "--min-time", "0", "--out", str(out)]
    rc = bench.main([*argv, "--markdown", str(md), *args])
    assert rc == 0
    return json.loads(out.read_text()), md.read_text()


def test_inference_both_frameworks_report(tmp_path):
    report, md = _run(
        tmp_path,
        *("--framework", "both", "--batch-sizes", "1,2", "--dtypes", "fp32,bf16"),
        "--config.model.features=4",
    )
    assert report["config"] == "tiny" and report["image_size"] == 32
    assert report["overrides"] == {"model.features": 4} and report["model"]["features"] == 4
    env = report["env"]
    assert env["jax_platform"] == "cpu" and env["device"].startswith("CPU")
    assert env["jax_version"] and env["torch_version"] == torch.__version__
    assert report["peak_flops"] is None  # no known peak for a CPU
    assert _positive(report["flops_per_image"]) and _positive(report["generator_params"])

    rows = report["results"]["inference"]
    keys = {(r["framework"], r["variant"], r["dtype"], r["batch_size"]) for r in rows}
    assert keys == {
        (f, v, d, b)
        for f, v in (("jax", "jit"), ("torch", "eager"))
        for d in ("fp32", "bf16")
        for b in (1, 2)
    }
    for r in rows:
        assert r["error"] is None, r
        for key in ROW_NUMBERS:
            assert _positive(r[key]) or (key == "warmup_s" and r[key] >= 0), (key, r)
        assert r["images_per_s"] == pytest.approx(r["batch_size"] * 1e3 / r["ms_per_batch"])
        assert len(r["ms_per_batch_all"]) == 1 and r["iters_per_repeat"] >= 1
        assert _positive(r["tflops_per_s"])
        assert r["mfu"] is None and r["peak_device_bytes"] is None  # CPU
        if r["framework"] == "jax":
            assert _positive(r["compile_s"])
            assert _positive(r["xla_flops_per_image_this_program"])
            assert all(v >= 0 for v in r["xla_memory"].values())
    # FLOPs per image do not depend on the batch: XLA's count for batch 2 matches batch 1's.
    jax_fp32_b2 = next(r for r in rows if r["framework"] == "jax" and r["batch_size"] == 2)
    assert jax_fp32_b2["xla_flops_per_image_this_program"] == pytest.approx(
        report["flops_per_image"], rel=0.01
    )

    table = [
        line for line in md.splitlines() if line.startswith("| jax") or line.startswith("| torch")
    ]
    assert len(table) == len(rows)
    assert "images/s" in md and env["device"] in md


def test_failed_torch_compile_is_recorded(tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    report, md = _run(
        tmp_path,
        *("--framework", "torch", "--batch-sizes", "1", "--dtypes", "fp32", "--torch-compile"),
    )
    rows = {r["variant"]: r for r in report["results"]["inference"]}
    assert set(rows) == {"eager", "compile"}
    assert rows["eager"]["error"] is None and _positive(rows["eager"]["images_per_s"])
    assert "no C++ compiler here" in rows["compile"]["error"]
    assert "images_per_s" not in rows["compile"]
    assert "error: RuntimeError: no C++ compiler here" in md


def test_train_mode_is_not_implemented_yet(tmp_path):
    with pytest.raises(NotImplementedError, match="--mode train"):
        bench.main(["--config", "tiny", "--mode", "train"])
    report, md = _run(
        tmp_path,
        *("--mode", "all", "--framework", "jax", "--batch-sizes", "1", "--dtypes", "fp32"),
    )
    assert len(report["results"]["inference"]) == 1
    assert "NotImplementedError" in report["results"]["train"]["error"]
    assert "## train" in md


def test_bad_arguments_fail_clearly():
    with pytest.raises(SystemExit, match="--dtypes"):
        bench.main(["--config", "tiny", "--dtypes", "fp16"])
    with pytest.raises(ValueError, match="unknown config override key"):
        bench.main(["--config", "tiny", "--config.model.featurs=4"])


@pytest.mark.parametrize(
    "name,bf16",
    [
        ("NVIDIA H100 80GB HBM3", 989.4e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989.4e12),
        ("cpu", None),
        (None, None),
    ],
)
def test_peak_flops_lookup_and_mfu(name, bf16):
    peaks = bench.peak_flops(name)
    assert (peaks and peaks["bf16"]) == bf16
    row = {"images_per_s": 1000.0}
    bench._add_flops(row, 1e9, peaks, "bf16")
    assert row["tflops_per_s"] == pytest.approx(1.0)
    assert row["mfu"] == (pytest.approx(1e12 / bf16) if bf16 else None)
