"""Where a multi-host run's coordinator, process count and process id come from."""

import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.training.distributed import cluster_settings


def _train(**overrides):
    return load_config("tiny", {f"train.{k}": v for k, v in overrides.items()}).train


def test_config_keys_win_over_the_environment():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.9:1", "JAX_NUM_PROCESSES": "8", "JAX_PROCESS_ID": "5"}
    got = cluster_settings(
        _train(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=1), env
    )
    assert got == {
        "coordinator_address": "127.0.0.1:1234",
        "num_processes": 2,
        "process_id": 1,
        "timeout_s": 300,
    }
    assert cluster_settings(_train(), env) == {
        "coordinator_address": "10.0.0.9:1",
        "num_processes": 8,
        "process_id": 5,
        "timeout_s": 300,
    }


def test_unset_everywhere_is_left_to_cluster_detection():
    got = cluster_settings(_train(distributed_timeout_s=7), {})
    assert got == {
        "coordinator_address": None,
        "num_processes": None,
        "process_id": None,
        "timeout_s": 7,
    }


@pytest.mark.parametrize(
    ("train", "env", "message"),
    [
        ({"coordinator_address": "localhost"}, {}, "'localhost' .* must be HOST:PORT"),
        ({}, {"JAX_PROCESS_ID": "one"}, "JAX_PROCESS_ID='one' must be a non-negative integer"),
        ({"num_processes": 2, "process_id": 2}, {}, "process_id=2 must be below .*=2"),
        ({"num_processes": 0}, {}, "num_processes must be >= 1"),
        ({"distributed_timeout_s": 0}, {}, "distributed_timeout_s must be >= 1"),
    ],
)
def test_unusable_settings_are_named(train, env, message):
    with pytest.raises(ValueError, match=message):
        cluster_settings(_train(**train), env)
