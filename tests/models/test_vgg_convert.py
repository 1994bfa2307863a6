"""Converter tests on randomly initialised files in every supported release format.

Each file holds the real key names and conv shapes (fc6–fc8 are never converted, so they are
small stand-ins with the real names and VGG-Face's 2622 fc8 outputs). After conversion and
a save/load round trip, ``VGGFace``'s pool2/pool5 are compared with an independent PyTorch
VGG-16 (``torch.nn.functional.conv2d``, NCHW, float64) run on the source weights as the
release defines them — so a wrong transpose, channel order or layer mapping fails.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io

from facedeblur_jax.models.vgg import VGGFace, load_vgg_face, save_vgg_face
from facedeblur_jax.models.vgg_convert import convert_state_dict, convert_vgg_face

torch = pytest.importorskip("torch")
F = torch.nn.functional

# pytorch-mcn vgg_face_dag meta['mean'] (R, G, B).
MEAN_RGB = [129.186279296875, 104.76238250732422, 93.59396362304688]
CONVS = [  # (name, C_in, C_out)
    ("conv1_1", 3, 64), ("conv1_2", 64, 64),
    ("conv2_1", 64, 128), ("conv2_2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512),
]  # fmt: skip
TV_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


@pytest.fixture(scope="module")
def weights():
    """``{name: (f32[O, I, 3, 3], f32[O])}`` He-normal random weights (test data only)."""
    rng = np.random.default_rng(0)
    return {
        name: (
            (rng.standard_normal((o, i, 3, 3)) * np.sqrt(2.0 / (9 * i))).astype(np.float32),
            (0.1 * rng.standard_normal(o)).astype(np.float32),
        )
        for name, i, o in CONVS
    }


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).uniform(size=(2, 64, 64, 3)).astype(np.float32)


def torch_reference(weights, images, channels):
    """pool2/pool5 (NHWC) of a plain PyTorch VGG-16 on RGB ``images`` in [0, 1].

    ``channels`` is what the weights' conv1_1 expects: for ``"bgr"`` the image is mean-
    subtracted and then reordered to B, G, R, as the Caffe-derived releases are used.
    """
    x = torch.from_numpy(images).double().permute(0, 3, 1, 2) * 255
    x = x - torch.tensor(MEAN_RGB, dtype=torch.float64).view(1, 3, 1, 1)
    if channels == "bgr":
        x = x.flip(1)
    feats = {}
    for name, _, _ in CONVS:
        w, b = weights[name]
        x = F.relu(F.conv2d(x, torch.from_numpy(w).double(), torch.from_numpy(b).double(), 1, 1))
        if name in ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"):
            x = F.max_pool2d(x, 2, 2)
            feats[f"pool{name[4]}"] = x.permute(0, 2, 3, 1).numpy()
    return {k: feats[k] for k in ("pool2", "pool5")}


_apply = jax.jit(lambda params, x: VGGFace().apply({"params": params}, x))


def assert_features_match(params, weights, images, channels):
    ours = _apply(params, jnp.asarray(images))
    ref = torch_reference(weights, images, channels)
    for layer in ("pool2", "pool5"):
        scale = np.abs(ref[layer]).max()
        assert scale > 1.0  # the comparison is not between two all-zero maps
        np.testing.assert_allclose(
            np.asarray(ours[layer]), ref[layer], rtol=1e-4, atol=1e-4 * scale, err_msg=layer
        )


def features_differ(params, weights, images, channels):
    ours = np.asarray(_apply(params, jnp.asarray(images))["pool2"])
    ref = torch_reference(weights, images, channels)["pool2"]
    return np.abs(ours - ref).max() > 1e-2 * np.abs(ref).max()


def state_dict(weights, conv_key, fc_key, fc_shapes):
    sd = {}
    for name, _, _ in CONVS:
        w, b = weights[name]
        sd[f"{conv_key(name)}.weight"] = torch.from_numpy(w)
        sd[f"{conv_key(name)}.bias"] = torch.from_numpy(b)
    for fc, shape in zip(("fc6", "fc7", "fc8"), fc_shapes, strict=True):
        sd[f"{fc_key(fc)}.weight"] = torch.zeros(shape)
        sd[f"{fc_key(fc)}.bias"] = torch.zeros(shape[0])
    return sd


def mcn_sd(weights, fc8_classes=2622):  # Albanie's vgg_face_dag.pth (fc as 1×1 / 7×7 convs)
    shapes = [(8, 512, 7, 7), (8, 8, 1, 1), (fc8_classes, 8, 1, 1)]
    return state_dict(weights, lambda n: n, lambda n: n, shapes)


def luatorch_key(name):
    return f"conv_{name[4]}_{name[6]}"


LAYOUTS = {
    "pytorch-mcn": (lambda w: mcn_sd(w), "rgb"),
    "luatorch": (
        lambda w: state_dict(w, luatorch_key, lambda n: n, [(8, 25088), (8, 8), (2622, 8)]),
        "bgr",
    ),
    "pyvggface": (
        lambda w: state_dict(
            w,
            lambda n: "features." + luatorch_key(n),
            lambda n: "fc." + n,
            [(8, 25088), (8, 8), (2622, 8)],
        ),
        "bgr",
    ),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_torch_state_dict_file(layout, weights, images, tmp_path):
    make, channels = LAYOUTS[layout]
    src = tmp_path / "vgg_face.pth"
    # vgg_face_dag.pth (2017) predates torch's zip format: write the legacy pickle format.
    torch.save(make(weights), src, _use_new_zipfile_serialization=layout != "pytorch-mcn")
    converted = convert_vgg_face(src)
    assert (converted.layout, converted.source_channels) == (layout, channels)
    assert converted.ignored == ("fc6", "fc7", "fc8")
    out = save_vgg_face(converted.params, tmp_path / "vgg.npz")
    assert_features_match(load_vgg_face(out), weights, images, channels)


def test_luatorch_channel_order_matters(weights, images):
    # Reading the BGR release as RGB gives different features: the check above can fail.
    sd = LAYOUTS["luatorch"][0](weights)
    wrong = convert_state_dict(sd, source_channels="rgb").params
    assert features_differ(wrong, weights, images, "bgr")
    right = convert_state_dict(sd).params
    assert not features_differ(right, weights, images, "bgr")


def test_torchvision_layout_needs_an_explicit_channel_order(weights, images, tmp_path):
    sd = state_dict(
        weights,
        lambda n: f"features.{TV_INDEX[[c[0] for c in CONVS].index(n)]}",
        lambda n: f"classifier.{[0, 3, 6][['fc6', 'fc7', 'fc8'].index(n)]}",
        [(8, 25088), (8, 8), (2622, 8)],
    )
    sd = {"module." + k: v for k, v in sd.items()}  # DataParallel prefix is unwrapped
    src = tmp_path / "tv.pth"
    torch.save({"state_dict": sd}, src)
    with pytest.raises(ValueError, match="source_channels='rgb' or 'bgr'"):
        convert_vgg_face(src)
    for channels in ("rgb", "bgr"):
        converted = convert_vgg_face(src, source_channels=channels)
        assert converted.layout == "torchvision"
        assert_features_match(converted.params, weights, images, channels)


def test_dagnn_mat_file(weights, images, tmp_path):
    """vgg_face_dag.mat: ``params`` struct array of (name, value), HWIO filters, column
    biases; the reference runs the same arrays the way pytorch-mcn imports them."""
    names, values = [], []
    for name, _, _ in CONVS:
        w, b = weights[name]
        names += [f"{name}f", f"{name}b"]
        values += [w.transpose(2, 3, 1, 0), b.reshape(-1, 1)]  # H×W×in×out, out×1
    names += ["fc6f", "fc6b", "fc7f", "fc7b", "fc8f", "fc8b"]
    values += [np.zeros((7, 7, 512, 8)), np.zeros((8, 1)), np.zeros((1, 1, 8, 8))]
    values += [np.zeros((8, 1)), np.zeros((1, 1, 8, 2622)), np.zeros((2622, 1))]
    params = np.zeros(
        (1, len(names)), dtype=[(f, object) for f in ("name", "value", "learningRate")]
    )
    for i, (n, v) in enumerate(zip(names, values, strict=True)):
        params[0, i] = (n, v, np.array([1.0, 2.0]))
    meta = {"normalization": {"averageImage": np.array(MEAN_RGB).reshape(1, 1, 3)}}
    src = tmp_path / "vgg_face_dag.mat"
    scipy.io.savemat(src, {"params": params, "meta": meta, "layers": np.zeros((1, 1))})

    converted = convert_vgg_face(src)
    assert (converted.layout, converted.source_channels) == ("matconvnet-dagnn", "rgb")
    assert converted.ignored == ("fc6", "fc7", "fc8")
    assert any("= VGG-Face mean, RGB order" in n for n in converted.notes)
    assert_features_match(converted.params, weights, images, "rgb")


def simplenn_mat(weights, path, average=MEAN_RGB, fc8_classes=2622, drop=None):
    layers = []
    for name, _, _ in CONVS:
        if name == drop:
            continue
        w, b = weights[name]
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0], cell[0, 1] = w.transpose(2, 3, 1, 0), b.reshape(1, -1)
        layers.append({"type": "conv", "name": name, "weights": cell, "pad": [1, 1, 1, 1]})
        layers.append({"type": "relu", "name": "relu" + name[4:]})
        if name in ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"):
            layers.append({"type": "pool", "name": f"pool{name[4]}", "method": "max"})
    for fc, shape in (
        ("fc6", (7, 7, 512, 8)),
        ("fc7", (1, 1, 8, 8)),
        ("fc8", (1, 1, 8, fc8_classes)),
    ):
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0], cell[0, 1] = np.zeros(shape), np.zeros((1, shape[-1]))
        layers.append({"type": "conv", "name": fc, "weights": cell})
    layers.append({"type": "softmax", "name": "prob"})
    cells = np.empty((1, len(layers)), dtype=object)
    for i, layer in enumerate(layers):
        cells[0, i] = layer
    meta = {"normalization": {"averageImage": np.array(average).reshape(3, 1)}}
    scipy.io.savemat(path, {"layers": cells, "meta": meta})
    return path


def test_simplenn_mat_file(weights, images, tmp_path):
    src = simplenn_mat(weights, tmp_path / "vgg-face.mat")
    converted = convert_vgg_face(src)
    assert (converted.layout, converted.source_channels) == ("matconvnet-simplenn", "rgb")
    assert converted.ignored == ("fc6", "fc7", "fc8")
    assert_features_match(converted.params, weights, images, "rgb")


def test_missing_layer_and_unknown_keys_are_named(weights, tmp_path):
    sd = mcn_sd(weights)
    del sd["conv4_2.bias"]
    sd["conv6_1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing: \['conv4_2.bias'\]\n  unknown: \['conv6_1"):
        convert_state_dict(sd)
    with pytest.raises(ValueError, match="missing: \\['conv3_1'\\]"):
        convert_vgg_face(simplenn_mat(weights, tmp_path / "m.mat", drop="conv3_1"))


def test_wrong_shape_is_named(weights):
    sd = mcn_sd(weights)
    sd["conv2_1.weight"] = sd["conv2_1.weight"][:, :32]
    with pytest.raises(
        ValueError, match=r"conv2_1.weight \(OIHW\): expected shape \(128, 64, 3, 3\)"
    ):
        convert_state_dict(sd)


def test_other_vgg16_is_refused_unless_asked(weights, tmp_path):
    with pytest.raises(ValueError, match="fc8 has 1000 outputs.*ImageNet"):
        convert_state_dict(mcn_sd(weights, fc8_classes=1000))
    assert convert_state_dict(mcn_sd(weights, fc8_classes=1000), check_vgg_face=False).params
    imagenet_mean = [123.68, 116.779, 103.939]
    src = simplenn_mat(weights, tmp_path / "imagenet.mat", average=imagenet_mean)
    with pytest.raises(ValueError, match="averageImage .* is not VGG-Face's RGB mean"):
        convert_vgg_face(src)
    bgr = simplenn_mat(weights, tmp_path / "bgr.mat", average=MEAN_RGB[::-1])
    with pytest.raises(ValueError, match="BGR order"):
        convert_vgg_face(bgr)


class NotATensor:
    pass


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    src = tmp_path / "pickle.pth"
    torch.save({"conv1_1.weight": NotATensor()}, src)
    with pytest.raises(ValueError, match="weights_only=True"):
        convert_vgg_face(src)
    (tmp_path / "VGG_FACE.t7").write_bytes(b"\x04\x00\x00\x00")
    with pytest.raises(ValueError, match="Lua Torch"):
        convert_vgg_face(tmp_path / "VGG_FACE.t7")
    with pytest.raises(FileNotFoundError):
        convert_vgg_face(tmp_path / "absent.pth")
