import numpy as np
import pytest

from facedeblur_jax.models.vgg import CONV_LAYERS, load_vgg_face

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tool():
    from facedeblur_jax.commands import convert_vgg

    return convert_vgg


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A vgg_face_dag.pth-layout file with random weights (real conv keys and shapes)."""
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for name, c_in, c_out in CONV_LAYERS:
        sd[f"{name}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=gen)
        sd[f"{name}.bias"] = torch.randn(c_out, generator=gen)
    sd["fc8.weight"], sd["fc8.bias"] = torch.zeros(2622, 8, 1, 1), torch.zeros(2622)
    path = tmp_path_factory.mktemp("release") / "vgg_face_dag.pth"
    torch.save(sd, path)
    return path, sd


def test_converts_prints_summary_and_refuses_to_overwrite(tool, release, tmp_path, capsys):
    src, sd = release
    out = tmp_path / "w" / "vgg_face.npz"
    assert tool.main(["--input", str(src), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pytorch-mcn" in text and "expects rgb" in text
    assert "14,714,688  (13 conv layers)" in text
    assert "ignored fc8" in text
    assert f"wrote   {out.resolve()}" in text
    params = load_vgg_face(out)
    np.testing.assert_array_equal(
        params["conv4_3"]["kernel"], sd["conv4_3.weight"].numpy().transpose(2, 3, 1, 0)
    )
    before = out.read_bytes()

    assert tool.main(["--input", str(src), "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert tool.main(["--input", str(src), "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["vgg_face.npz"]


def test_errors_exit_2_with_a_message(tool, release, tmp_path, capsys):
    src, _ = release
    assert tool.main(["--input", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "a.npz")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert tool.main(["--input", str(src), "--out", str(tmp_path / "a.msgpack")]) == 2
    assert "must end in .npz" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
