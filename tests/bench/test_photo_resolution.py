"""bench/photo_resolution.py: --resample output against residual, on a few bundled faces
with the session's tiny 32-px model and a small kernel bank (the real run:
docs/benchmarks/photo_resolution.md)."""

import json
import shutil

import numpy as np
import pytest

from facedeblur_jax.bench import photo_resolution as bench
from facedeblur_jax.core import sample_data
from facedeblur_jax.degrade import kernel_bank
from facedeblur_jax.faces import align as face_align


def test_pick_faces_takes_the_first_of_each_identity(tmp_path):
    for name in ("b_0", "a_1", "a_0", "a_2", "b_1", ".a_3"):
        (tmp_path / f"{name}.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in bench.pick_faces(tmp_path, 2)] == [
        "a_0.png",
        "a_1.png",
        "b_0.png",
        "b_1.png",
    ]


def test_shrink_about_centre_maps_the_image_onto_the_crop():
    m = bench.shrink_about_centre(128, 64)
    assert face_align.affine_scale(m) == pytest.approx(0.5)
    # The outer pixel edges of the image land on the crop's.
    np.testing.assert_allclose(
        face_align.apply_affine(m, [[-0.5, -0.5], [127.5, 127.5]]), [[-0.5, -0.5], [63.5, 63.5]]
    )


def test_paired_interval():
    d = bench.paired(np.array([1.0, 2.0, 3.0, 4.0]), np.zeros(4))
    assert d["mean"] == 2.5 and d["positive"] == 4 and d["n"] == 4
    half = 3.182446 * np.std([1, 2, 3, 4], ddof=1) / 2  # t(0.975, 3)
    np.testing.assert_allclose(d["ci95"], [2.5 - half, 2.5 + half], rtol=1e-5)


def test_run_writes_both_paths(tiny_weights_file, tmp_path, monkeypatch, capsys):
    faces = tmp_path / "faces"
    faces.mkdir()
    for face in sample_data.sample_faces("test")[:4]:
        shutil.copy(face.path, faces / face.path.name)
    small = kernel_bank.make_bank(sizes=(3, 5), per_size=1, canvas=5, num_steps=200)
    monkeypatch.setattr(bench, "paper_kernels", lambda per_size: small)
    out = tmp_path / "r.json"
    argv = ["--faces", str(faces), "--out", str(out), "--checkpoint", str(tiny_weights_file)]
    assert bench.main([*argv, "--size", "64", "--per-identity", "4"]) == 0
    result = json.loads(out.read_text())
    assert result["faces"]["count"] == 4 and result["model"]["image_size"] == 32
    assert result["kernels"]["choice"] == [[0, 1], [1, 0], [0, 1], [1, 0]]
    for path in ("no-align", "photo"):
        entry = result["paths"][path]
        assert set(entry["per_face"]) == {"blurred", "output", "residual"}
        assert len(entry["per_face"]["residual"]["psnr"]) == 4
        d = entry["residual_minus_output"]["psnr"]
        assert d["ci95"][0] <= d["mean"] <= d["ci95"][1]
        assert entry["blurred"]["psnr"] < 60
    assert "no-align:" in capsys.readouterr().out
    # The model must see a shrunk face.
    with pytest.raises(SystemExit):
        bench.main([*argv, "--size", "32"])
