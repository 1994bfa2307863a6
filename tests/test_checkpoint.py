"""Checkpoint metadata: the stored config comes back whole, also from older checkpoints."""

import json

from facedeblur_jax.checkpoint import config_from_meta, config_to_json
from facedeblur_jax.config import load_config


def test_stored_config_round_trips():
    config = load_config("tiny", {"degrade.kernel_sizes": (3, 5), "model.features": 6})
    back = config_from_meta({"config": config_to_json(config)})
    assert back.to_dict() == config.to_dict()
    assert back.degrade.kernel_sizes == (3, 5)  # tuples stay tuples


def test_keys_newer_than_the_checkpoint_take_their_defaults():
    """A checkpoint written before model.remat / degrade.kernel_pool_size /
    degrade.trajectory_impl existed still loads; its own values are kept."""
    config = load_config("tiny", {"model.features": 6, "degrade.noise_sigma": 0.02})
    raw = json.loads(config_to_json(config))
    del raw["model"]["remat"]
    del raw["degrade"]["kernel_pool_size"], raw["degrade"]["trajectory_impl"]
    del raw["train"]["compilation_cache_dir"]
    back = config_from_meta({"config": json.dumps(raw)})
    assert back.model.remat is False and back.degrade.kernel_pool_size == 0
    assert back.train.compilation_cache_dir == ""
    # Such a checkpoint ran the scan walk: it keeps it although today's default is "auto".
    assert config.degrade.trajectory_impl == "auto" and back.degrade.trajectory_impl == "scan"
    assert back.model.features == 6 and back.degrade.noise_sigma == 0.02
    assert back.image_size == config.image_size  # tiny's stored value, not the paper's


def test_placement_and_area_floor_of_older_checkpoints():
    """Checkpoints from before degrade.center and loss.structural_min_area trained with
    centroid-placed kernels and no floor: they load with those, not today's defaults."""
    config = load_config("tiny")
    raw = json.loads(config_to_json(config))
    del raw["degrade"]["center"], raw["loss"]["structural_min_area"]
    back = config_from_meta({"config": json.dumps(raw)})
    assert (config.degrade.center, back.degrade.center) == ("bbox", "centroid")
    assert config.loss.structural_min_area == 1.0 and back.loss.structural_min_area == 0.0
    kept = config_from_meta({"config": config_to_json(config)})
    assert kept.degrade.center == "bbox" and kept.loss.structural_min_area == 1.0


def test_phases_of_an_older_checkpoint_parse_the_coarse_output():
    """A 4-phase checkpoint (before parsing_clear / parsing_input) keeps its phases, and
    each of them — even one named parsing_clear — parses G_c's output."""
    from facedeblur_jax.schedule import phases_from_config

    config = load_config("tiny", {"phase_order": ("coarse", "parsing", "fine", "joint")})
    raw = json.loads(config_to_json(config))
    del raw["phases"]["parsing_clear"]
    for rec in raw["phases"].values():
        del rec["parsing_input"]
    raw["phases"]["parsing_clear"] = dict(raw["phases"]["parsing"])  # a custom phase
    back = config_from_meta({"config": json.dumps(raw)})
    assert back.phase_order == ("coarse", "parsing", "fine", "joint")
    assert {n: r.parsing_input for n, r in back.phases.items()} == {
        n: "coarse" for n in ("coarse", "parsing", "fine", "joint", "parsing_clear")
    }
    assert [p.parsing_input for p in phases_from_config(back)] == ["coarse"] * 4
