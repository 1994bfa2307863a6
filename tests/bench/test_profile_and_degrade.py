"""bench/profile_step.py (trace parsing) and bench/degrade.py on CPU, tiny config."""

import json

import pytest

from facedeblur_jax.bench import degrade as bench_degrade
from facedeblur_jax.bench import profile_step


def _trace():
    meta = [
        {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
        {"ph": "M", "name": "process_name", "pid": 7, "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "name": "thread_name", "pid": 7, "tid": 1, "args": {"name": "Stream #13"}},
        {"ph": "M", "name": "thread_name", "pid": 7, "tid": 2, "args": {"name": "XLA Modules"}},
        {"ph": "M", "name": "thread_name", "pid": 7, "tid": 3, "args": {"name": "XLA Ops"}},
    ]
    kernels = [
        {"ph": "X", "pid": 7, "tid": 1, "name": "sm90_xmma_fprop_implicit_gemm", "dur": 300.0},
        {"ph": "X", "pid": 7, "tid": 1, "name": "sm90_xmma_fprop_implicit_gemm", "dur": 300.0},
        {"ph": "X", "pid": 7, "tid": 1, "name": "loop_add_fusion", "dur": 200.0},
        {"ph": "X", "pid": 7, "tid": 1, "name": "input_reduce_fusion", "dur": 100.0},
        {"ph": "X", "pid": 7, "tid": 1, "name": "copy_transpose", "dur": 100.0},
        # Summary lanes over the same time: the module span and an HLO-op span.
        {"ph": "X", "pid": 7, "tid": 2, "name": "jit_step", "dur": 1000.0},
        {"ph": "X", "pid": 7, "tid": 3, "name": "convolution.3", "dur": 600.0},
        {"ph": "X", "pid": 1, "name": "host thing", "dur": 9000.0},  # not a device event
    ]
    return {"traceEvents": meta + kernels}


def test_device_kernels_and_summary_from_a_trace():
    kernels = profile_step.device_kernels(_trace())
    assert len(kernels) == 5  # neither the host event nor the summary lanes count
    assert profile_step.lanes(_trace()) == [
        "/device:GPU:0 / Stream #13",
        "/device:GPU:0 / XLA Modules",
        "/device:GPU:0 / XLA Ops",
    ]
    s = profile_step.summarize(kernels, iters=2, wall_ms_per_call=1.0, top=3)
    assert s["device_busy_ms_per_call"] == pytest.approx(0.5)  # 1000 µs over 2 calls
    assert s["device_busy_pct_of_wall"] == pytest.approx(50.0)
    assert s["kernels_per_call"] == pytest.approx(2.5)
    assert s["classes_pct"]["conv/matmul"] == pytest.approx(60.0)
    assert s["classes_pct"]["reduction"] == pytest.approx(10.0)
    assert s["classes_pct"]["copy/transpose"] == pytest.approx(10.0)
    assert s["classes_pct"]["fusion"] == pytest.approx(20.0)
    top = s["top"][0]
    assert top["name"].startswith("sm90_xmma") and top["launches_per_call"] == 1.0
    assert top["ms_per_call"] == pytest.approx(0.3)


def test_profile_step_runs_on_cpu(capsys):
    rc = profile_step.main(
        ["--config", "tiny", "--batch", "2", "--dtype", "fp32", "--iters", "1", "--warmup", "1"]
    )
    assert rc == 0
    assert "no device kernels" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_degrade_rows(tmp_path):
    out = tmp_path / "degrade.json"
    argv = ["--config", "tiny", "--batch-sizes", "2", "--unroll", "1,4", "--repeats", "1"]
    argv += ["--impls", "scan,auto", "--pool-sizes", "0,5"]
    assert bench_degrade.main([*argv, "--min-time", "0", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    # unroll applies to the scan only: the kernel runs once.
    assert [(r["trajectory_impl"], r["unroll"]) for r in rows] == [
        ("scan", 1),
        ("scan", 4),
        ("auto", 1),
        (None, None),
    ]
    assert all(r["ms"] > 0 and r["compile_s"] > 0 for r in rows)
    assert rows[0]["max_kernel_diff_vs_first"] == 0.0
    assert rows[1]["max_kernel_diff_vs_first"] < 1e-5
    assert rows[2]["max_kernel_diff_vs_first"] == 0.0  # "auto" is the scan on a CPU
    pool_row = rows[3]
    assert pool_row["kernel_pool_size"] == 5 and pool_row["pool_sample_s"] > 0
    assert pool_row["max_kernel_diff_vs_first"] is None
    assert [r["kernel_pool_size"] for r in rows[:3]] == [0, 0, 0]
