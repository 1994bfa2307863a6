"""core.compat: old formats migrated or refused in one place."""

from __future__ import annotations

import json

import pytest

from facedeblur_jax.config import reference_config
from facedeblur_jax.core import compat


def _stored(**changes):
    """The reference config as a checkpoint's meta stores it (JSON: tuples as lists)."""
    raw = json.loads(reference_config().to_json_best_effort())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for p in parents:
            node = node[p]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return raw


def test_todays_config_comes_back_unchanged_with_its_tuples():
    ref = reference_config().to_dict()
    assert compat.migrate_config(_stored(), ref) == ref


def test_keys_added_later_take_the_value_old_runs_ran_with():
    ref = reference_config().to_dict()
    raw = _stored(**{"degrade.trajectory_impl": None, "model.layout_version": None})
    raw["model"].pop("resblock_post_relu")
    out = compat.migrate_config(raw, ref)
    assert out["degrade"]["trajectory_impl"] == "scan" != ref["degrade"]["trajectory_impl"]
    assert out["model"]["layout_version"] == 1 and out["model"]["resblock_post_relu"] is False
    # A key without a legacy value takes today's default.
    raw = _stored(**{"loss.vgg_weight": None})
    assert compat.migrate_config(raw, ref)["loss"]["vgg_weight"] == ref["loss"]["vgg_weight"]


def test_dropped_keys_are_removed_and_phases_fill_from_the_first_record():
    ref = reference_config().to_dict()
    raw = _stored()
    raw["train"]["fault_kill_step"] = 5
    raw["phases"] = {"old": {k: v for k, v in raw["phases"]["fine"].items() if k != "prior"}}
    raw["phase_order"] = ["old"]
    out = compat.migrate_config(raw, ref)
    assert "fault_kill_step" not in out["train"]
    assert set(out["phases"]) == {"old"} and out["phase_order"] == ("old",)
    assert out["phases"]["old"]["prior"] == ref["phases"]["coarse"]["prior"]
    assert out["phases"]["old"]["train"] == tuple(ref["phases"]["fine"]["train"])


def test_an_old_layout_is_refused_by_name():
    compat.check_layout(2, 2, "w/checkpoints/5")
    with pytest.raises(compat.CheckpointError, match=r"'w/checkpoints/5'.*layout_version = 1"):
        compat.check_layout(1, 2, "w/checkpoints/5")


def test_weights_tags_of_another_layout_are_refused_others_left_to_the_reader():
    prefix = "facedeblur_jax.generator.v"
    compat.check_weights_tag(prefix + "2", prefix, prefix + "2", "f.npz")
    compat.check_weights_tag("something.else", prefix, prefix + "2", "f.npz")
    with pytest.raises(compat.CheckpointError, match="model layout '1'"):
        compat.check_weights_tag(prefix + "1", prefix, prefix + "2", "f.npz")


def test_a_format_1_bank_was_centroid_placed():
    assert compat.bank_center({}) == "centroid"
    assert compat.bank_center({"center": "bbox"}) == "bbox"


def test_the_version_1_pipeline_state_is_single_process():
    kw = dict(num_records=10, seed=3, data_stream=7, local_batch=4, image_size=32, host=0)
    state = compat.pipeline_state_v1(hosts=1, **kw)
    assert state["version"] == 1 and state["shard"] == [0, 1] and isinstance(state["seed"], int)
    assert state == compat.pipeline_state_v1(hosts=1, **kw)
    assert compat.pipeline_state_v1(hosts=2, **kw) is None
