"""MobileFaceNet converter and weights file: real PyTorch files in, checked ``.npz`` out.

Random-weight checkpoints are written with ``torch.save`` in both the legacy pickle format
(that of the public ``068.ckpt``) and the current zip format. With the public checkpoint
present, the Flax port is compared with the PyTorch twin on real faces.
"""

import csv
import functools
import pathlib
import pickle

import jax
import numpy as np
import pytest

from facedeblur_jax.models import mobilefacenet as mfn
from facedeblur_jax.models.npz_weights import unflatten_tree, write_tagged_npz

torch = pytest.importorskip("torch")

from facedeblur_jax.core.imageio import load_image  # noqa: E402
from facedeblur_jax.models.mobilefacenet_convert import (  # noqa: E402
    convert_state_dict,
    main,
    read_checkpoint,
)
from tests.models.torch_mobilefacenet import (  # noqa: E402
    TorchMobileFaceNet,
    randomize_,
    torch_embed,
)


@pytest.fixture(scope="module")
def twin():
    return randomize_(TorchMobileFaceNet(), seed=1)


def _save_ckpt(path, net, legacy=True):
    torch.save(
        {"epoch": 3, "net_state_dict": net.state_dict()},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    return path


def _flat(tree):
    return mfn.flatten_tree(tree)


def _one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("legacy", [True, False])
def test_main_converts_training_checkpoints(tmp_path, twin, legacy, capsys):
    src = _save_ckpt(tmp_path / "net.ckpt", twin, legacy=legacy)
    assert (src.read_bytes()[:2] == b"\x80\x02") == legacy  # legacy = old pickle stream
    out = tmp_path / "weights" / "mfn.npz"
    assert main(["--input", str(src), "--out", str(out)]) == 0
    assert "999,552 parameters, 19,584 BN stats" in capsys.readouterr().out
    loaded = mfn.load_mobilefacenet(out)
    expected = convert_state_dict(twin.state_dict())
    assert set(loaded) == {"params", "batch_stats"}
    got, want = _flat(loaded), _flat(expected)
    assert set(got) == set(want) == set(mfn.expected_variable_shapes())
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    # Kernels are OIHW -> HWIO: the depthwise [C, 1, 3, 3] becomes [3, 3, 1, C].
    w = twin.blocks[2].conv[3].weight.detach().numpy()
    np.testing.assert_array_equal(
        got["params/blocks_2/depthwise/conv/kernel"][1, 2, 0], w[:, 0, 1, 2]
    )
    np.testing.assert_array_equal(
        got["batch_stats/blocks_2/project/bn/var"], twin.blocks[2].conv[7].running_var.numpy()
    )
    assert [p.name for p in out.parent.iterdir()] == ["mfn.npz"]  # no temporary files left


def test_plain_and_dataparallel_state_dicts(twin):
    sd = twin.state_dict()
    want = _flat(convert_state_dict(sd))
    for variant in ({"state_dict": sd}, {f"module.{k}": v for k, v in sd.items()}):
        got = _flat(convert_state_dict(variant))
        assert all(np.array_equal(got[k], want[k]) for k in want)


def test_refuses_to_overwrite_and_keeps_the_file(tmp_path, twin, capsys):
    src = _save_ckpt(tmp_path / "net.ckpt", twin)
    out = tmp_path / "mfn.npz"
    assert main(["--input", str(src), "--out", str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main(["--input", str(src), "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert str(out) in err and "--overwrite" in err
    assert out.read_bytes() == before
    assert main(["--input", str(src), "--out", str(out), "--overwrite"]) == 0
    assert mfn.load_mobilefacenet(out)
    capsys.readouterr()
    for bad_out, words in ((tmp_path / "mfn.pth", ".npz"), (src, ".npz")):
        assert main(["--input", str(src), "--out", str(bad_out)]) == 2
        assert words in _one_line_error(capsys)
    npz_src = tmp_path / "in.npz"
    npz_src.write_bytes(src.read_bytes())
    assert main(["--input", str(npz_src), "--out", str(npz_src), "--overwrite"]) == 2
    assert "input file" in _one_line_error(capsys)


class _Touch:
    """A pickle that creates ``marker`` when unpickled by plain ``pickle``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _write_cases(tmp_path, twin):
    sd = twin.state_dict()
    missing = {k: v for k, v in sd.items() if k != "linear1.bn.running_var"}
    shaped = dict(sd, **{"conv2.conv.weight": torch.zeros(512, 128, 3, 3)})
    extra = dict(sd, **{"fc.weight": torch.zeros(10, 128)})
    cases = {
        "absent.ckpt": ("not found", None),
        "text.ckpt": ("weights_only=True", b"this is not a checkpoint\n"),
        "truncated.ckpt": ("weights_only=True", None),
        "missing.ckpt": ("missing ['linear1.bn.running_var']", {"net_state_dict": missing}),
        "shaped.ckpt": ("conv2.conv.weight: expected shape (512, 128, 1, 1)", shaped),
        "extra.ckpt": ("unknown ['fc.weight']", extra),
        "tensor.ckpt": ("expected a state_dict", torch.zeros(3)),
    }
    for name, (_, content) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            torch.save(content, path)
    full = _save_ckpt(tmp_path / "full.ckpt", twin).read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(full[: len(full) // 2])
    return {name: words for name, (words, _) in cases.items()}


def test_bad_checkpoints_get_one_line_naming_the_file(tmp_path, twin, capsys):
    out = tmp_path / "out" / "mfn.npz"
    for name, words in _write_cases(tmp_path, twin).items():
        assert main(["--input", str(tmp_path / name), "--out", str(out)]) == 2, name
        err = _one_line_error(capsys)
        assert name in err and words in err, err
        assert not out.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
def test_code_in_a_pickle_is_not_run(tmp_path, capsys):
    marker = tmp_path / "ran"
    for protocol in (2, 4):
        src = tmp_path / f"evil{protocol}.ckpt"
        src.write_bytes(pickle.dumps({"net_state_dict": _Touch(marker)}, protocol=protocol))
        assert main(["--input", str(src), "--out", str(tmp_path / "mfn.npz")]) == 2
        assert src.name in _one_line_error(capsys)
        with pytest.raises(ValueError, match="weights_only=True"):
            read_checkpoint(src)
    assert not marker.exists()
    assert not (tmp_path / "mfn.npz").exists()


def _variables(seed=0):
    rng = np.random.default_rng(seed)
    return {
        key: np.abs(rng.standard_normal(shape)).astype(np.float32)
        for key, shape in mfn.expected_variable_shapes().items()
    }


def _write_raw(path, flat, fmt=mfn.CHECKPOINT_FORMAT):
    return write_tagged_npz(path, flat, fmt=fmt, what="test file", overwrite=True)


def test_save_load_roundtrip_and_refuse_overwrite(tmp_path):
    flat = _variables()
    tree = unflatten_tree(flat, "test")
    path = mfn.save_mobilefacenet(tree, tmp_path / "sub" / "mfn.npz", source="test")
    assert path.is_absolute()
    got = _flat(mfn.load_mobilefacenet(path))
    assert all(np.array_equal(got[k], flat[k]) for k in flat)
    with pytest.raises(FileExistsError, match="overwrite"):
        mfn.save_mobilefacenet(tree, path)
    mfn.save_mobilefacenet(tree, path, overwrite=True)
    with pytest.raises(ValueError, match=r"params/linear1/conv/kernel: missing"):
        del tree["params"]["linear1"]["conv"]["kernel"]
        mfn.save_mobilefacenet(tree, tmp_path / "other.npz")
    assert not (tmp_path / "other.npz").exists()


def test_a_key_that_is_both_array_and_group_is_named():
    with pytest.raises(ValueError, match="f.npz: a/b is both an array and a group"):
        unflatten_tree({"a/b": np.zeros(1), "a/b/c": np.zeros(1)}, "f.npz")


def test_bad_weights_files_get_one_line_naming_the_file(tmp_path):
    flat = _variables()
    cases = {}
    cases["absent.npz"] = (FileNotFoundError, "facedeblur convert-mobilefacenet --input")
    _write_raw(tmp_path / "vgg.npz", flat, fmt="facedeblur_jax.vgg_face.v1")
    cases["vgg.npz"] = (ValueError, "format tag 'facedeblur_jax.vgg_face.v1'")
    _write_raw(tmp_path / "v0.npz", flat, fmt="facedeblur_jax.mobilefacenet.v0")
    cases["v0.npz"] = (ValueError, "expected 'facedeblur_jax.mobilefacenet.v1'")
    np.savez(tmp_path / "pickled.npz", __format__=np.asarray(mfn.CHECKPOINT_FORMAT),
             x=np.array([{}]))  # fmt: skip
    cases["pickled.npz"] = (ValueError, "pickled Python objects, which are never loaded")
    with open(tmp_path / "array.npz", "wb") as f:
        np.save(f, np.zeros(3))
    cases["array.npz"] = (ValueError, "not an .npz archive")
    (tmp_path / "text.npz").write_text("hello")
    cases["text.npz"] = (ValueError, "not a MobileFaceNet weights file")
    shaped = dict(flat, **{"params/conv2/conv/kernel": np.zeros((1, 1, 128, 256), np.float32)})
    _write_raw(tmp_path / "shaped.npz", shaped)
    cases["shaped.npz"] = (ValueError, "params/conv2/conv/kernel: expected shape (1, 1, 128, 512)")
    nan = dict(flat, **{"params/conv1/bn/bias": np.full(64, np.nan, np.float32)})
    _write_raw(tmp_path / "nan.npz", nan)
    cases["nan.npz"] = (ValueError, "params/conv1/bn/bias holds non-finite values")
    negative = dict(flat, **{"batch_stats/conv1/bn/var": -np.ones(64, np.float32)})
    _write_raw(tmp_path / "negative.npz", negative)
    cases["negative.npz"] = (ValueError, "negative entries")
    for name, (error, words) in cases.items():
        with pytest.raises(error) as e:
            mfn.load_mobilefacenet(tmp_path / name)
        msg = str(e.value)
        assert "\n" not in msg and name in msg and words in msg, msg


# ----------------------------------------------------------------------------- real weights


@functools.partial(jax.jit, static_argnames="flip")
def _embed(variables, images, flip=True):
    return mfn.embed(variables, images, flip=flip)


def _test_faces(faces_dir, identities=4, per_identity=2):
    """``(f32[N, 112, 112, 3] in [0, 1], identity[N])``: the first test faces of the first
    identities."""
    rows = [r for r in csv.DictReader(open(faces_dir / "labels.csv", newline=""))]
    chosen, counts = [], {}
    for r in rows:
        if r["split"] != "test":
            continue
        k = r["identity"]
        if counts.get(k, 0) < per_identity and (k in counts or len(counts) < identities):
            counts[k] = counts.get(k, 0) + 1
            chosen.append(r)
    images = np.stack([load_image(faces_dir / r["file"]) for r in chosen]).astype(np.float32)
    return images / 255.0, np.array([r["identity"] for r in chosen])


def test_real_checkpoint_matches_pytorch_on_faces(
    mobilefacenet_checkpoint, shared_faces_dir, tmp_path, capsys
):
    out = tmp_path / "mobilefacenet.npz"
    assert main(["--input", str(mobilefacenet_checkpoint), "--out", str(out)]) == 0
    assert "999,552 parameters" in capsys.readouterr().out
    variables = mfn.load_mobilefacenet(out)

    net = TorchMobileFaceNet()
    net.load_state_dict(read_checkpoint(mobilefacenet_checkpoint), strict=True)
    net.eval()
    images, ids = _test_faces(shared_faces_dir)
    ours = np.asarray(_embed(variables, images))
    ref = torch_embed(net, images, flip=True)
    # Measured max |Δ| 2.0e-6 on these 8 faces (embeddings' max |value| 1.6).
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)

    # The embedding tells identities apart: every face is closer to its pair than to others.
    unit = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    assert np.all(ids[cos.argmax(1)] == ids), cos

    # A 128×128 crop (the training resolution) is resized back before embedding: the
    # identity survives the round trip (measured cosine 0.990-0.997).
    big = np.asarray(jax.image.resize(images, (len(images), 128, 128, 3), "cubic")).clip(0, 1)
    again = np.array(_embed(variables, big))
    again /= np.linalg.norm(again, axis=1, keepdims=True)
    assert np.all(np.sum(unit * again, 1) > 0.95)

    # Converting again onto the same file is refused and leaves it intact.
    before = out.read_bytes()
    assert main(["--input", str(mobilefacenet_checkpoint), "--out", str(out)]) == 2
    assert "exists" in _one_line_error(capsys)
    assert out.read_bytes() == before


def test_a_damaged_real_checkpoint_is_named(mobilefacenet_checkpoint, tmp_path, capsys):
    damaged = tmp_path / "068.ckpt"
    data = mobilefacenet_checkpoint.read_bytes()
    damaged.write_bytes(data[: len(data) // 3])
    assert main(["--input", str(damaged), "--out", str(tmp_path / "mfn.npz")]) == 2
    assert str(damaged) in _one_line_error(capsys)
    assert not (tmp_path / "mfn.npz").exists()
