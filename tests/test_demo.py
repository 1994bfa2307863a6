import re

from facedeblur_jax import cli


def test_demo_runs_on_bundled_faces(capsys, tmp_path):
    rc = cli.main(["demo", "--config", "tiny", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "40 held-back sample faces" in out
    psnr = [float(v) for v in re.findall(r"PSNR\s+([\d.]+) dB", out)]
    assert len(psnr) == 2 and all(10 < v < 60 for v in psnr)
    # The untrained residual model is the identity: output PSNR == blurred PSNR.
    assert abs(psnr[0] - psnr[1]) < 0.05
    assert len(list(tmp_path.glob("demo_*.png"))) == 8


def test_unknown_override_is_a_clear_error(capsys):
    rc = cli.main(["demo", "--config", "tiny", "--config.model.featurs=3"])
    assert rc == 2
    assert "unknown config override key 'model.featurs'" in capsys.readouterr().err
