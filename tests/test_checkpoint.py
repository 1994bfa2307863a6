"""Checkpoint metadata: the stored config comes back whole, also from older checkpoints."""

import json

import pytest

from facedeblur_jax.checkpoint import (
    CheckpointError,
    check_resumable,
    config_from_meta,
    config_to_json,
)
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


def test_checkpoints_with_the_dropped_fault_injection_keys_still_load():
    config = load_config("tiny")
    raw = json.loads(config_to_json(config))
    raw["train"]["fault_kill_step"], raw["train"]["fault_kill_when"] = 3, "after"
    back = config_from_meta({"config": json.dumps(raw)})
    assert "fault_kill_step" not in back.train and "fault_kill_when" not in back.train
    assert back.to_dict() == config.to_dict()
    check_resumable({"config": json.dumps(raw)}, config, "ckpt")  # same model: resumable


def test_resuming_another_model_names_the_keys_before_any_restore():
    stored = {"config": config_to_json(load_config("tiny"))}
    # Schedule, logging and data workers may change on resume; the state's layout not.
    check_resumable(
        stored,
        load_config("tiny", {"phases.joint.steps": 9, "train.log_every": 5}),
        "ckpt",
    )
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint 'ckpt' was trained with another model: model\.features=8 "
        r"\(this run: 4\), model\.num_resblocks=1 \(this run: 2\); resume with",
    ):
        check_resumable(
            stored, load_config("tiny", {"model.features": 4, "model.num_resblocks": 2}), "ckpt"
        )
    with pytest.raises(CheckpointError, match=r"optim\.grad_clip_norm=0\.0 \(this run: 1\.0\)"):
        check_resumable(stored, load_config("tiny", {"optim.grad_clip_norm": 1.0}), "ckpt")
