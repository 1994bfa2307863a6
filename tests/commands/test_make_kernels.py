"""facedeblur make-kernels: options, config matching, byte-identical output, no overwrite."""

import subprocess
import sys

import numpy as np

from facedeblur_jax import cli
from facedeblur_jax.commands import make_kernels as tool
from facedeblur_jax.degrade import kernel_bank

ARGS = ["--sizes", "3,5", "--per-size", "2", "--steps", "100"]


def test_a_fresh_process_writes_the_same_bytes(tmp_path):
    here, there = tmp_path / "here.npz", tmp_path / "there.npz"
    assert tool.main([*ARGS, "--out", str(here)]) == 0
    subprocess.run(
        [sys.executable, "-m", "facedeblur_jax.commands.make_kernels", *ARGS, "--out", str(there)],
        check=True,
        capture_output=True,
    )
    assert here.read_bytes() == there.read_bytes()
    bank = kernel_bank.load_bank(here)
    assert bank.canvas == 5  # --sizes without --canvas: the largest size
    assert bank.sizes.tolist() == [3, 3, 5, 5] and bank.num_steps == 100


def test_config_sets_sizes_canvas_and_steps_flags_override(tmp_path, capsys):
    out = tmp_path / "tiny.npz"
    preview = tmp_path / "tiny.png"
    argv = ["--config", "tiny", "--per-size", "1", "--out", str(out), "--preview", str(preview)]
    assert tool.main(argv) == 0
    bank = kernel_bank.load_bank(out)
    assert bank.unique_sizes == (3, 5, 7) and bank.canvas == 7 and bank.num_steps == 200
    assert preview.is_file()
    assert "3 kernels, sizes [3, 5, 7] × 1 on a 7×7 canvas" in capsys.readouterr().out
    out2 = tmp_path / "override.npz"
    argv = ["--config", "tiny", "--sizes", "5", "--anxiety", "none", "--out", str(out2)]
    assert tool.main([*argv, "--per-size", "1"]) == 0
    bank2 = kernel_bank.load_bank(out2)
    assert bank2.unique_sizes == (5,) and bank2.canvas == 7 and bank2.anxiety is None
    assert np.isnan(np.load(out2)["anxiety"])


def test_never_overwrites(tmp_path, capsys):
    out = tmp_path / "bank.npz"
    out.write_bytes(b"keep me")
    assert cli.main(["make-kernels", *ARGS, "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert tool.main([*ARGS, "--out", str(out), "--overwrite"]) == 0
    assert len(kernel_bank.load_bank(out)) == 4


def test_center_and_extra_kernel(tmp_path, capsys):
    kernel = np.zeros((5, 5), np.float32)
    kernel[2, 1:4] = 0.5  # sum 1.5: renormalised, and the tool says so
    np.save(tmp_path / "k5.npy", kernel)
    out = tmp_path / "bank.npz"
    argv = [*ARGS, "--center", "random", "--extra", f"k5={tmp_path / 'k5.npy'}", "--out", str(out)]
    assert tool.main(argv) == 0
    printed = capsys.readouterr().out
    assert "center random" in printed and "extra kernel 'k5': k5.npy 5×5, size 3" in printed
    assert "renormalised from sum 1.5" in printed
    bank = kernel_bank.load_bank(out)
    assert bank.center == "random" and bank.extra_groups == ("k5",)
    assert bank.group_labels.tolist() == ["3", "3", "5", "5", "k5"]
    np.testing.assert_allclose(bank.kernels[-1][2, 1:4], 1 / 3, atol=1e-7)
    # A bad extra file: one line naming it, nothing written.
    np.save(tmp_path / "flat.npy", np.ones(4))
    bad = tmp_path / "bad.npz"
    argv = ["make-kernels", *ARGS, "--extra", f"f={tmp_path / 'flat.npy'}", "--out", str(bad)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "flat.npy" in err and "2-D" in err and len(err.strip().splitlines()) == 1
    assert not bad.exists()
