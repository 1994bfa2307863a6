"""facedeblur_jax/bench/scaling.py on 1 and 2 fake CPU devices: report structure, not speed."""

import json
import math

import pytest

from facedeblur_jax.bench import scaling as bench_scaling


@pytest.mark.slow
def test_weak_scaling_on_one_and_two_fake_devices(tmp_path):
    out, md = tmp_path / "scaling.json", tmp_path / "scaling.md"
    argv = ["--devices", "1,2", "--phase", "coarse", "--per-device-batch", "2"]
    argv += ["--repeats", "1", "--min-time", "0", "--out", str(out), "--markdown", str(md)]
    assert bench_scaling.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["config"] == "tiny" and report["settings"]["phase"] == "coarse"
    assert "fake CPU devices" in report["note"] and "not real scaling" in report["note"]
    rows = report["rows"]
    assert [(r["devices"], r["batch_size"], r["per_device_batch"]) for r in rows] == [
        (1, 2, 2),
        (2, 4, 2),
    ]
    for r in rows:
        assert r["error"] is None, r
        assert r["images_per_s"] > 0 and math.isfinite(r["images_per_s"])
        assert r["images_per_s_per_device"] == pytest.approx(r["images_per_s"] / r["devices"])
        assert r["gradient_all_reduces"] == 1 and r["all_reduces"] >= 1
        assert r["degrade_ms"] > 0 and r["compile_s"] > 0
    assert rows[0]["efficiency_vs_1_device"] == pytest.approx(1.0)
    assert rows[1]["efficiency_vs_1_device"] == pytest.approx(
        rows[1]["images_per_s_per_device"] / rows[0]["images_per_s_per_device"]
    )
    text = md.read_text()
    assert "not real scaling" in text
    table = [line for line in text.splitlines() if line.startswith(("| 1 | 2 |", "| 2 | 4 |"))]
    assert len(table) == 2


def test_bad_arguments_fail_clearly():
    with pytest.raises(SystemExit, match="--devices"):
        bench_scaling.main(["--devices", "1,16"])
    with pytest.raises(SystemExit, match="--phase"):
        bench_scaling.main(["--phase", "warmup"])
