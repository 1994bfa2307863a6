import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.models.vgg import (
    CHECKPOINT_FORMAT,
    LAYER_NAMES,
    VGGFace,
    expected_param_shapes,
    load_vgg_face,
    save_vgg_face,
)

# The mean the public releases subtract (pytorch-mcn meta['mean'], R, G, B), written out here
# rather than imported so the test checks the module's constant.
RELEASE_MEAN_RGB = np.array([129.186279296875, 104.76238250732422, 93.59396362304688])


def _random_params(seed=0):
    """He-normal VGG-16 conv params (HWIO) — test data only, never presented as VGG-Face."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shapes in expected_param_shapes().items():
        k = shapes["kernel"]
        params[name] = {
            "kernel": (rng.standard_normal(k) * np.sqrt(2.0 / (9 * k[2]))).astype(np.float32),
            "bias": (0.1 * rng.standard_normal(shapes["bias"])).astype(np.float32),
        }
    return params


def test_feature_shapes_at_paper_size():
    x = jnp.zeros((2, 128, 128, 3))
    model = VGGFace()
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    assert set(variables["params"]) == set(expected_param_shapes())
    assert sum(int(np.prod(v.shape)) for v in jax.tree.leaves(variables)) == 14_714_688
    out = jax.eval_shape(lambda v: model.apply(v, x), variables)
    assert {k: v.shape for k, v in out.items()} == {
        "pool2": (2, 32, 32, 128),
        "pool5": (2, 4, 4, 512),
    }
    assert all(v.dtype == jnp.float32 for v in out.values())


def test_only_layers_up_to_the_deepest_requested_are_built():
    x = jnp.zeros((1, 64, 64, 3))
    model = VGGFace(layers=("relu1_2", "pool2"))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    assert sorted(variables["params"]) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
    out = jax.eval_shape(lambda v: model.apply(v, x), variables)
    assert {k: v.shape for k, v in out.items()} == {
        "relu1_2": (1, 64, 64, 64),
        "pool2": (1, 16, 16, 128),
    }


def test_truncated_model_accepts_the_full_param_tree():
    params = _random_params()
    x = jax.random.uniform(jax.random.key(0), (1, 32, 32, 3))
    full = VGGFace(layers=("pool2", "pool5")).apply({"params": params}, x)
    part = VGGFace(layers=("pool2",)).apply({"params": params}, x)
    np.testing.assert_array_equal(np.asarray(part["pool2"]), np.asarray(full["pool2"]))


def test_preprocessing_subtracts_the_rgb_mean_after_scaling_to_255():
    # conv1_1 copies input channel c to output c (centre tap): its output is the
    # preprocessed image itself.
    params = _random_params()
    kernel = np.zeros((3, 3, 3, 64), np.float32)
    for c in range(3):
        kernel[1, 1, c, c] = 1.0
    params["conv1_1"] = {"kernel": kernel, "bias": np.zeros(64, np.float32)}
    x = np.random.default_rng(1).uniform(size=(2, 8, 8, 3)).astype(np.float32)
    out = VGGFace(layers=("conv1_1",)).apply({"params": params}, jnp.asarray(x))["conv1_1"]
    np.testing.assert_allclose(np.asarray(out)[..., :3], x * 255 - RELEASE_MEAN_RGB, atol=1e-4)


def test_bfloat16_compute_is_close_to_float32():
    params = _random_params()
    x = jax.random.uniform(jax.random.key(0), (1, 32, 32, 3))
    f32 = VGGFace(layers=("pool2",)).apply({"params": params}, x)["pool2"]
    bf16 = VGGFace(layers=("pool2",), dtype=jnp.bfloat16).apply({"params": params}, x)["pool2"]
    assert bf16.dtype == jnp.float32
    rel = float(jnp.abs(bf16 - f32).max() / jnp.abs(f32).max())
    assert 0 < rel < 0.05


def test_rejects_unknown_layer_and_indivisible_size():
    with pytest.raises(ValueError, match="unknown: \\['pool6'\\]"):
        VGGFace(layers=("pool6",)).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="divide by 2\\^5 = 32"):
        VGGFace().init(jax.random.key(0), jnp.zeros((1, 48, 48, 3)))
    assert LAYER_NAMES.index("pool2") < LAYER_NAMES.index("conv3_1")


def test_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_vgg_face(tmp_path / "vgg_face.npz")
    msg = str(e.value)
    assert "vgg_face.npz" in msg
    assert "facedeblur convert-vgg" in msg
    assert "vgg_face_dag.pth" in msg
    assert "--config.loss.vgg_weight=0" in msg


def test_save_load_roundtrip_and_refuse_overwrite(tmp_path):
    params = _random_params()
    path = save_vgg_face(params, tmp_path / "sub" / "vgg.npz", source="test")
    assert path.is_absolute() and path.is_file()
    loaded = load_vgg_face(path)
    for name in params:
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(loaded[name][leaf], params[name][leaf])
    with pytest.raises(FileExistsError, match="overwrite"):
        save_vgg_face(params, path)
    params["conv1_1"]["bias"] = params["conv1_1"]["bias"] + 1
    save_vgg_face(params, path, overwrite=True)
    np.testing.assert_array_equal(load_vgg_face(path)["conv1_1"]["bias"], params["conv1_1"]["bias"])
    assert [p.name for p in path.parent.iterdir()] == ["vgg.npz"]  # no temp files left


def _write_raw(path, params, fmt=CHECKPOINT_FORMAT):
    arrays = {f"{n}/{k}": v for n, leaves in params.items() for k, v in leaves.items()}
    np.savez(path, __format__=np.asarray(fmt), **arrays)


def test_wrong_shaped_layer_is_named(tmp_path):
    params = _random_params()
    params["conv3_2"]["kernel"] = params["conv3_2"]["kernel"][:, :, :128]
    _write_raw(tmp_path / "bad.npz", params)
    with pytest.raises(ValueError, match=r"conv3_2/kernel: expected shape \(3, 3, 256, 256\)"):
        load_vgg_face(tmp_path / "bad.npz")


def test_missing_layer_is_named(tmp_path):
    params = _random_params()
    del params["conv5_3"]
    _write_raw(tmp_path / "bad.npz", params)
    with pytest.raises(ValueError, match="conv5_3: missing"):
        load_vgg_face(tmp_path / "bad.npz")


def test_rejects_files_not_written_by_the_converter(tmp_path):
    _write_raw(tmp_path / "untagged.npz", _random_params(), fmt="something else")
    with pytest.raises(ValueError, match="not a VGG-Face checkpoint"):
        load_vgg_face(tmp_path / "untagged.npz")
    # Object arrays need pickle: refused, not executed.
    np.savez(tmp_path / "pickled.npz", __format__=np.asarray(CHECKPOINT_FORMAT), x=np.array([{}]))
    with pytest.raises(ValueError, match="pickled Python objects, which are never loaded") as info:
        load_vgg_face(tmp_path / "pickled.npz")
    assert "allow_pickle" not in str(info.value)  # NumPy's advice to load it anyway
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a VGG-Face checkpoint"):
        load_vgg_face(tmp_path / "text.npz")
