"""``facedeblur demo`` (the README's main job) and ``facedeblur deblur`` through the CLI."""

import re

import pytest

from facedeblur_jax import cli


@pytest.mark.slow
def test_demo_trains_and_reports_three_rows(tiny_demo_run):
    """All five phases of the tiny config, then the held-back evaluation (the session
    fixture runs ``facedeblur demo``; the notebooks reuse its run)."""
    _, workdir, out, strips = tiny_demo_run
    rows = dict(re.findall(r"^\s+(blurred|G_c|full)\s+PSNR\s+([\d.]+) dB", out, re.M))
    assert set(rows) == {"blurred", "G_c", "full"}
    assert all(10 < float(v) < 60 for v in rows.values())
    assert "training tiny on the bundled sample faces" in out
    assert len(list(strips.glob("demo_*.png"))) == 8
    steps = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert max(steps) == 10  # five phases of two steps


def test_deblur_cli_writes_outputs_and_never_overwrites(capsys, tiny_checkpoint, tmp_path):
    from facedeblur_jax.core import sample_data

    src = tmp_path / "in"
    src.mkdir()
    faces = sample_data.sample_faces("test")[:3]
    for f in faces:
        (src / f.path.name).write_bytes(f.path.read_bytes())
    (src / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    ckpt = str(tiny_checkpoint)
    aligned = "--no-align"  # the bundled faces are aligned crops: resize, no face detection
    assert cli.main(["deblur", "--checkpoint", ckpt, str(src), "--out", str(out), aligned]) == 0
    printed = capsys.readouterr().out
    assert "broken.png" in printed and "deblurred 3 image(s)" in printed
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f.path.name for f in faces)
    from PIL import Image

    assert Image.open(out / faces[0].path.name).size == (112, 112)  # back to input size
    before = (out / faces[0].path.name).read_bytes()
    # Every output exists: nothing written, bad input (exit 2), one error line.
    assert cli.main(["deblur", "--checkpoint", ckpt, str(src), "--out", str(out), aligned]) == 2
    captured = capsys.readouterr()
    assert "would overwrite" in captured.out
    assert captured.err.startswith("facedeblur deblur: error: nothing written: all ")
    assert (out / faces[0].path.name).read_bytes() == before
    # Writing into the input folder replaces nothing without --overwrite.
    original = (src / faces[0].path.name).read_bytes()
    cli.main(["deblur", "--checkpoint", ckpt, str(src), "--out", str(src), aligned])
    assert "it is an input" in capsys.readouterr().out
    assert (src / faces[0].path.name).read_bytes() == original


def test_bad_checkpoint_and_override_errors(capsys, tmp_path):
    from facedeblur_jax.core import sample_data

    image = str(sample_data.sample_faces("test")[0].path)
    assert (
        cli.main(["deblur", "--checkpoint", str(tmp_path), image, "--out", str(tmp_path / "o")])
        == 2
    )
    assert "is not a training workdir" in capsys.readouterr().err
    rc = cli.main(["demo", "--config", "tiny", "--config.model.featurs=3"])
    assert rc == 2
    assert "unknown config override key 'model.featurs'" in capsys.readouterr().err
