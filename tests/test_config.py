import pathlib

import numpy as np
import pytest

from facedeblur_jax.config import BUILTIN, load_config, reference_config, split_overrides, validate

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "facedeblur_jax" / "configs"


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_configs_load_by_name_and_path(name):
    by_name = load_config(name)
    by_path = load_config(str(CONFIGS / f"{name}.py"))
    assert by_name.to_dict() == by_path.to_dict()


def test_builtin_names_are_the_packaged_files():
    assert set(BUILTIN) == {p.stem for p in CONFIGS.glob("*.py")} - {"__init__"}


def test_documented_configs_path_works_from_any_folder(tmp_path, monkeypatch):
    """``--config configs/paper.py`` (the docs' form) is the built-in when no such file
    exists, e.g. outside a checkout; a file of that name that does exist is the user's."""
    monkeypatch.chdir(tmp_path)
    assert load_config("configs/tiny.py").to_dict() == load_config("tiny").to_dict()
    assert load_config("./configs/paper.py").to_dict() == load_config("paper").to_dict()
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny.py").write_text(
        "from facedeblur_jax.configs import tiny\n"
        "def get_config():\n"
        "    c = tiny.get_config()\n"
        "    c.model.features = 5\n"
        "    return c\n"
    )
    assert load_config("configs/tiny.py").model.features == 5
    with pytest.raises(FileNotFoundError, match=r"'configs/mine\.py' not found"):
        load_config("configs/mine.py")  # not a built-in name: no fallback
    with pytest.raises(FileNotFoundError, match=r"'elsewhere/paper\.py' not found"):
        load_config("elsewhere/paper.py")  # only configs/NAME.py falls back


def test_a_user_config_file_loads_with_its_own_values(tmp_path):
    path = tmp_path / "my_config.py"
    path.write_text(
        "from facedeblur_jax.configs import demo\n"
        "def get_config():\n"
        "    c = demo.get_config()\n"
        "    c.train.global_batch_size = 4\n"
        "    return c\n"
    )
    cfg = load_config(str(path), {"model.features": 12})
    assert cfg.train.global_batch_size == 4 and cfg.model.features == 12
    assert cfg.image_size == load_config("demo").image_size


def test_paper_recipe_values():
    cfg = load_config("paper")
    assert cfg.image_size == 128
    assert cfg.model.first_kernel == 11 and cfg.model.num_resblocks == 6
    assert cfg.model.features == 64 and cfg.model.num_scales == 2
    assert cfg.degrade.kernel_sizes == (13, 15, 17, 19, 21, 23, 25, 27)
    assert cfg.degrade.noise_sigma == 0.01
    assert cfg.degrade.max_shift * 128 == pytest.approx(12)


# The converter reads these from the released MAT-files; configs/cvpr18.py has stand-ins.
CVPR18_WIDTH_KEYS = (
    "model.num_classes",
    "model.features",
    "model.parsing_features",
    "model.parsing_up_features",
    "model.parsing_last_features",
)


def test_cvpr18_config_is_what_the_converter_writes():
    """configs/cvpr18.py sets every key ``facedeblur convert-official`` writes, to the value it
    writes (on a synthetic release), except the widths, which are the paper config's."""
    from facedeblur_jax.models import cvpr18_convert
    from tests.models.cvpr18 import layout, synthetic_mat

    g, p = synthetic_mat.make_values()
    net_g = synthetic_mat.struct_array(g, layout.N_G, layout.G_FIELDS)
    net_p = synthetic_mat.struct_array(p, layout.N_P, layout.P_FIELDS)
    overrides, _ = cvpr18_convert.convert(net_g, net_p)
    cfg, paper = load_config("cvpr18"), load_config("paper")

    def get(c, key):
        for part in key.split("."):
            c = c[part]
        return c

    assert set(CVPR18_WIDTH_KEYS) <= set(overrides)
    for key, value in overrides.items():
        want = get(paper, key) if key in CVPR18_WIDTH_KEYS else value
        assert get(cfg, key) == want, key
    assert cfg.model.kind == "cvpr18" and cfg.model.input_scale == 255 / 256


def test_overrides_are_typed_and_unknown_keys_rejected():
    cfg = load_config(
        "tiny",
        split_overrides(["--config.model.features=4", "--config.degrade.kernel_sizes", "(3, 5)"]),
    )
    assert cfg.model.features == 4 and cfg.degrade.kernel_sizes == (3, 5)
    with pytest.raises(
        ValueError,
        match=r"unknown config override key 'model\.featurs'.*"
        r"did you mean 'model\.features'",
    ):
        load_config("tiny", {"model.featurs": 4})


@pytest.mark.parametrize(
    "key, hint",
    [
        # A key of another section with the same name: one per phase.
        (
            "train.steps",
            "(did you mean 'phases.<name>.steps', one per phase, e.g. 'phases.coarse.steps'?)",
        ),
        ("model.featurs", "(did you mean 'model.features'?)"),  # a typo
        ("train.batch_size", "(did you mean 'train.global_batch_size'?)"),  # a part of it
        ("phases.fine.los.adv", "(did you mean 'phases.fine.loss.adv'?)"),  # in that phase
        ("imagesize", "(did you mean 'image_size'?)"),
        ("model.features.x", "; 'model.features' is a value, not a section"),
        ("foo.bar", "; the config's sections are data, degrade, evals, loss, model, optim"),
    ],
)
def test_an_unknown_key_gets_a_close_suggestion_or_the_keys_there_are(key, hint):
    with pytest.raises(ValueError) as info:
        load_config("tiny", {key: 1})
    sep = "" if hint.startswith(";") else " "
    assert str(info.value).startswith(f"unknown config override key {key!r}{sep}{hint}")


def test_without_a_close_key_the_section_is_listed():
    with pytest.raises(ValueError) as info:
        load_config("tiny", {"train.xyz": 1})
    message = str(info.value)
    assert message.startswith("unknown config override key 'train.xyz'; the keys under 'train.' ")
    assert "train.global_batch_size" in message and "train.log_every" in message
    assert "init_nets" in message  # listed, not suggested: nothing there is close


def test_unknown_key_in_config_file(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "from facedeblur_jax.configs import tiny\n"
        "def get_config():\n"
        "    c = tiny.get_config()\n"
        "    c.degrade.noise = 0.02\n"
        "    return c\n"
    )
    with pytest.raises(ValueError, match=r"unknown config key 'degrade\.noise'"):
        load_config(str(path))


def test_missing_config_file_is_named():
    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_config("nope.py")


def test_validate_accepts_reference():
    validate(load_config("paper"))


def test_bad_cli_argument():
    with pytest.raises(ValueError, match="unrecognised argument '--epochs=3'"):
        split_overrides(["--epochs=3"])


def test_override_of_the_wrong_type_names_key_type_and_value():
    with pytest.raises(
        ValueError,
        match=r"config key 'phases\.coarse\.steps' expects int \(like 2\); got 'abc' \(str\)",
    ):
        load_config("tiny", split_overrides(["--config.phases.coarse.steps=abc"]))
    for key, value in [
        ("model.features", 2.5),
        ("model.features", True),
        ("degrade.augment", 1),
        ("model.compute_dtype", 16),
        ("phase_order", "coarse"),
    ]:
        with pytest.raises(ValueError, match=f"config key '{key}' expects"):
            load_config("tiny", {key: value})
    cfg = load_config(
        "tiny",
        {
            "loss.vgg_weight": 1,  # an int sets a float key
            "degrade.kernel_sizes": [3, 5],  # a list sets a tuple key
            "degrade.anxiety": None,  # None is a setting of some keys
            "model.features": np.int64(4),
        },
    )
    assert cfg.loss.vgg_weight == 1.0 and isinstance(cfg.loss.vgg_weight, float)
    assert cfg.degrade.kernel_sizes == (3, 5) and cfg.degrade.anxiety is None
    assert cfg.model.features == 4 and type(cfg.model.features) is int


def test_image_size_that_the_pools_cannot_halve_is_named():
    # P's six stages pool five times: 112 px (the bundled faces' size) is refused at load.
    with pytest.raises(ValueError, match=r"'image_size' = 112 must be divisible by 32 .*parsing"):
        load_config("tiny", {"image_size": 112})
    with pytest.raises(ValueError, match=r"divisible by 4 \(set by model\.num_scales"):
        load_config(
            "tiny", {"image_size": 66, "model.parsing_features": (8,), "model.num_scales": 3}
        )
    assert load_config("tiny", {"image_size": 96}).image_size == 96


def test_the_schema_and_the_degradation_read_the_same_degrade_keys():
    from facedeblur_jax.degrade.synthesize import DEGRADE_KEYS

    assert sorted(DEGRADE_KEYS) == sorted(reference_config().degrade.keys())
