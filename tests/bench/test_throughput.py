"""facedeblur_jax/bench/throughput.py on CPU with the tiny config: report structure, not speed."""

import json
import math

import pytest
import torch

from facedeblur_jax.bench import throughput as bench

ROW_NUMBERS = ("warmup_s", "ms_per_batch", "images_per_s", "latency_ms", "flops_per_image")


def _positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _run(tmp_path, *args, config="tiny"):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = ["--config", config, "--repeats", "1", "--min-time", "0", "--out", str(out)]
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


# configs/cvpr18.py shrunk as the tiny config shrinks the paper's (32 px, few channels,
# short kernels), decoder widths of its own as in a release.
CVPR18_TINY = (
    "--config.image_size=32",
    "--config.model.features=4",
    "--config.model.num_resblocks=1",
    "--config.model.first_kernel=5",
    "--config.model.kernel_size=3",
    "--config.model.parsing_features=(8, 16, 16, 16, 16, 16)",
    "--config.model.parsing_up_features=(4, 8, 8, 8, 8)",
)


def test_inference_of_the_cvpr18_kind_both_frameworks(tmp_path):
    """The released CVPR'18 graph (P → G) through the same inference benchmark: a JAX and a
    torch row per dtype, FLOPs counted, the JSON and the Markdown written."""
    report, md = _run(
        tmp_path,
        *("--framework", "both", "--batch-sizes", "2", "--dtypes", "fp32,bf16", *CVPR18_TINY),
        config="cvpr18",
    )
    assert (tmp_path / "bench.json").is_file()
    assert report["config"] == "cvpr18" and report["image_size"] == 32
    assert report["model"]["kind"] == "cvpr18" and report["model"]["downsample"] == "matlab_bicubic"
    assert _positive(report["flops_per_image"]) and _positive(report["generator_params"])
    rows = report["results"]["inference"]
    keys = {(r["framework"], r["variant"], r["dtype"], r["batch_size"]) for r in rows}
    assert keys == {
        (f, v, d, 2) for f, v in (("jax", "jit"), ("torch", "eager")) for d in ("fp32", "bf16")
    }
    for r in rows:
        assert r["error"] is None, r
        for key in ROW_NUMBERS:
            assert _positive(r[key]) or (key == "warmup_s" and r[key] >= 0), (key, r)
        assert r["flops_per_image"] == report["flops_per_image"]
    assert "- model: cvpr18 (P → G" in md
    table = [line for line in md.splitlines() if line.startswith(("| jax", "| torch"))]
    assert len(table) == len(rows)


def test_train_mode_refuses_the_cvpr18_kind_in_one_line(tmp_path):
    for mode in ("train", "all"):
        with pytest.raises(SystemExit) as info:
            bench.main(["--config", "cvpr18", "--mode", mode, "--out", str(tmp_path / "b.json")])
        message = str(info.value.code)
        assert "\n" not in message and message.startswith("--mode train: model.kind = 'cvpr18'")
        assert "--mode inference" in message
    assert not (tmp_path / "b.json").exists()  # refused before anything ran


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


TRAIN_NUMBERS = ("compile_s", "ms_per_batch", "images_per_s", "degrade_ms", "flops_per_image")


@pytest.mark.slow
def test_train_mode_both_frameworks(tmp_path, monkeypatch):
    """Tiny config, batch 2 on one JAX device and in torch, the first and the last phase
    (every phase's step itself is tested in tests/training/test_step.py and
    test_torch_train_reference.py); a broken torch.compile is recorded, not raised."""

    def broken(*_args, **_kwargs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    report, md = _run(
        tmp_path,
        *("--mode", "train", "--framework", "both", "--batch-sizes", "2", "--devices", "1"),
        *("--dtypes", "fp32", "--torch-compile", "--phases", "joint,coarse"),
    )
    phases = ("coarse", "joint")  # schedule order
    assert report["settings"]["phases"] == list(phases)
    assert report["settings"]["batch_sizes"] == {"train": [2]}
    assert report["notes"]["train"] and "inference" not in report["results"]
    rows = report["results"]["train"]
    by_key = {(r["framework"], r["variant"], r["phase"]): r for r in rows}
    assert set(by_key) == {
        (f, v, p)
        for f, v in (("jax", "jit"), ("torch", "eager"), ("torch", "compile"))
        for p in phases
    }
    for phase in phases:
        jax_row, eager = by_key["jax", "jit", phase], by_key["torch", "eager", phase]
        for r in (jax_row, eager):
            assert r["error"] is None, r
            assert r["batch_size"] == 2 and r["devices"] == 1 and r["per_device_batch"] == 2
            for key in TRAIN_NUMBERS:
                assert _positive(r[key]) or (key == "compile_s" and r is eager), (key, r)
            assert r["images_per_s"] == pytest.approx(2e3 / r["ms_per_batch"])
            assert r["degrade_pct_of_step"] == pytest.approx(
                100 * r["degrade_ms"] / r["ms_per_batch"]
            )
            assert r["vgg"] == "off"  # the tiny config has loss.vgg_weight = 0
            assert r["mfu"] is None and _positive(r["tflops_per_s"])
            assert "latency_ms" not in r
        # One gradient all-reduce; the torch rows count the JAX step's FLOPs.
        assert jax_row["gradient_all_reduces"] == 1 and jax_row["nonfinite_steps"] == 0
        assert jax_row["flops_per_image"] == jax_row["xla_flops_per_image_this_program"]
        assert eager["flops_per_image"] == jax_row["flops_per_image"]
        assert "no C++ compiler here" in by_key["torch", "compile", phase]["error"]
    # The joint step does more work than the coarse one.
    assert (
        by_key["jax", "jit", "joint"]["flops_per_image"]
        > 2 * (by_key["jax", "jit", "coarse"]["flops_per_image"])
    )
    table = [line for line in md.splitlines() if line.startswith(("| jax", "| torch"))]
    assert len(table) == len(rows) and "degradation ms (% of step)" in md
    assert "error: RuntimeError: no C++ compiler here" in md


def test_flops_counted_for_the_cpu_backend_when_rows_run_elsewhere(tmp_path, monkeypatch):
    """On a GPU the counts come from lowering with CPU-placed shape specs (the GPU's cost
    analysis misses cuDNN convs). Pretend the rows run elsewhere: the spec path must give
    the same count as the row's own (CPU) program."""
    monkeypatch.setattr(bench, "_runs_on_flops_backend", lambda: False)
    report, _ = _run(tmp_path, *("--framework", "jax", "--batch-sizes", "1", "--dtypes", "fp32"))
    (row,) = report["results"]["inference"]
    assert report["flops_counted_on"] == "cpu"
    assert _positive(report["flops_per_image"])
    assert report["flops_per_image"] == pytest.approx(row["xla_flops_per_image_this_program"])
    report, _ = _run(
        tmp_path,
        *("--mode", "train", "--framework", "jax", "--batch-sizes", "2", "--devices", "1"),
        *("--dtypes", "fp32", "--phases", "coarse"),
    )
    (row,) = report["results"]["train"]
    assert _positive(row["flops_per_image"])
    assert row["flops_per_image"] == pytest.approx(row["xla_flops_per_image_this_program"])


def test_train_mode_with_a_kernel_pool(tmp_path, monkeypatch):
    """--config.degrade.kernel_pool_size: sampled once (reported apart), drawn from by the
    JAX and torch rows; FLOPs counted with the pool as an input."""
    monkeypatch.setattr(bench, "_runs_on_flops_backend", lambda: False)
    report, _ = _run(
        tmp_path,
        *("--mode", "train", "--framework", "both", "--batch-sizes", "2", "--devices", "2"),
        *("--dtypes", "fp32", "--phases", "coarse", "--config.degrade.kernel_pool_size=6"),
    )
    assert report["kernel_pool"]["size"] == 6 and _positive(report["kernel_pool"]["sample_s"])
    rows = {r["framework"]: r for r in report["results"]["train"]}
    for r in rows.values():
        assert r["error"] is None, r
        assert _positive(r["images_per_s"]) and _positive(r["degrade_ms"])
        assert _positive(r["flops_per_image"])


@pytest.mark.slow
def test_train_mode_sharded_bf16_with_random_vgg(tmp_path):
    """Two JAX devices, bf16, L_VGG on without a weight file: random VGG weights, labelled;
    a batch that does not divide over the devices is an error row, the rest goes on."""
    report, md = _run(
        tmp_path,
        *("--mode", "train", "--framework", "both", "--batch-sizes", "2,3", "--devices", "2"),
        *("--dtypes", "bf16", "--phases", "fine", "--config.loss.vgg_weight=1e-5"),
    )
    rows = {(r["framework"], r["batch_size"]): r for r in report["results"]["train"]}
    assert set(rows) == {("jax", 2), ("jax", 3), ("torch", 2), ("torch", 3)}
    assert "does not divide over 2 devices" in rows["jax", 3]["error"]
    jax_row = rows["jax", 2]
    assert jax_row["error"] is None and jax_row["dtype"] == "bf16" and jax_row["phase"] == "fine"
    assert jax_row["devices"] == 2 and jax_row["per_device_batch"] == 1
    assert jax_row["gradient_all_reduces"] == 1
    for r in (jax_row, rows["torch", 2], rows["torch", 3]):
        assert r["error"] is None, r
        assert r["vgg"] == bench.VGG_RANDOM == "random weights (speed only)"
        assert _positive(r["images_per_s"]) and _positive(r["degrade_ms"])
    assert "L_VGG in these rows: random weights (speed only)" in md


def test_bad_arguments_fail_clearly():
    with pytest.raises(SystemExit, match="--dtypes"):
        bench.main(["--config", "tiny", "--dtypes", "fp16"])
    with pytest.raises(ValueError, match="unknown config override key"):
        bench.main(["--config", "tiny", "--config.model.featurs=4"])
    with pytest.raises(SystemExit, match="--phases: unknown phase"):
        bench.main(["--config", "tiny", "--mode", "train", "--phases", "coarse,nope"])
    with pytest.raises(SystemExit, match="--devices"):
        bench.main(["--config", "tiny", "--mode", "train", "--devices", "9"])


def test_train_defaults_every_phase_and_small_cpu_batch():
    ctx = bench.BenchContext(
        config=bench.load_config("tiny"),
        config_name="tiny",
        frameworks=("jax",),
        batch_sizes=None,
        dtypes=("fp32",),
        repeats=1,
        min_time_s=0.0,
        torch_compile=False,
    )
    assert bench.train_phases(ctx) == ("coarse", "parsing_clear", "parsing", "fine", "joint")
    assert bench.train_batch_sizes(ctx) == (2,)  # a CPU; 16, 64, 256 on an accelerator
    assert bench.inference_batch_sizes(ctx) == (1, 16, 64, 256)


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
