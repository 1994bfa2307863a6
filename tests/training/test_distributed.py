"""Where a multi-host run's coordinator, process count, process id and deadlines come from,
what JAX is given, and how the end of a run waits for a late or lost peer (a stand-in for
the coordinator's key-value store; tests/training/test_multihost.py runs the real one)."""

import time

import jax
import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.training import distributed
from facedeblur_jax.training.distributed import cluster_settings

DEADLINES = {"timeout_s": 300, "heartbeat_s": 300, "shutdown_s": 1200}


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
        **DEADLINES,
    }
    assert cluster_settings(_train(), env) == {
        "coordinator_address": "10.0.0.9:1",
        "num_processes": 8,
        "process_id": 5,
        **DEADLINES,
    }


def test_unset_everywhere_is_left_to_cluster_detection():
    got = cluster_settings(_train(distributed_timeout_s=7), {})
    assert got == {
        "coordinator_address": None,
        "num_processes": None,
        "process_id": None,
        **DEADLINES,
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
        ({"distributed_heartbeat_timeout_s": 0}, {}, "heartbeat_timeout_s must be >= 1"),
        ({"distributed_checkpoint_timeout_s": -1}, {}, "checkpoint_timeout_s must be >= 1"),
        ({"distributed_shutdown_timeout_s": 0}, {}, "shutdown_timeout_s must be >= 1"),
    ],
)
def test_unusable_settings_are_named(train, env, message):
    with pytest.raises(ValueError, match=message):
        cluster_settings(_train(**train), env)


def test_each_deadline_reaches_jax(monkeypatch):
    """The keys become jax.distributed.initialize's initialization, heartbeat and shutdown
    timeouts (the shutdown barrier is what ended a finished run whose peer was late)."""
    seen = {}
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: seen.update(kw))
    train = _train(
        coordinator_address="127.0.0.1:1",
        num_processes=2,
        process_id=0,
        distributed_timeout_s=40,
        distributed_heartbeat_timeout_s=50,
        distributed_shutdown_timeout_s=60,
    )
    distributed.initialize(train)
    assert seen == {
        "coordinator_address": "127.0.0.1:1",
        "num_processes": 2,
        "process_id": 0,
        "initialization_timeout": 70,  # above the watchdog's 40 s, which speaks first
        "heartbeat_timeout_seconds": 50,
        "shutdown_timeout_seconds": 60,
    }


class _Store:
    """The coordinator's key-value store as process 0 sees it: ``arrive`` maps a key to
    the time (s after the start) its process sets it; ``None`` never."""

    def __init__(self, arrive: dict):
        self.t0, self.arrive, self.values = time.monotonic(), arrive, {}

    def _due(self, key):
        at = self.arrive.get(key, 0.0)
        return at is not None and time.monotonic() - self.t0 >= at

    def key_value_set(self, key, value):
        self.values[key] = value

    def blocking_key_value_get(self, key, timeout_ms):
        end = time.monotonic() + timeout_ms / 1000
        while not (key in self.values or self._due(key)):
            if time.monotonic() >= end:
                raise RuntimeError("DEADLINE_EXCEEDED")
            time.sleep(0.01)
        return self.values.get(key, "2")

    def key_value_dir_get(self, prefix):
        return [
            (k, "2")
            for k in [*self.values, *self.arrive]
            if k.startswith(prefix) and (k in self.values or self._due(k))
        ]


@pytest.fixture
def two_processes(monkeypatch):
    """This process as process 0 of 2, with a stand-in store; ``os._exit`` raises
    ``SystemExit`` instead of ending the test run."""

    def use(store):
        monkeypatch.setattr(distributed, "_client", lambda: store)
        monkeypatch.setattr(jax, "process_count", lambda: 2)
        monkeypatch.setattr(jax, "process_index", lambda: 0)
        monkeypatch.setattr(distributed, "LATE_S", 0.2)
        monkeypatch.setattr(
            distributed.os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code))
        )

    return use


def test_a_late_peer_is_waited_for_and_named_in_one_line(two_processes, capsys):
    two_processes(_Store({"facedeblur/finished/1": 0.5}))
    distributed.finish(6, timeout_s=5)
    assert capsys.readouterr().err.splitlines() == [
        "facedeblur train: process 0 of 2 finished step 6 (its checkpoint saved) and waits up "
        "to 5 s (train.distributed_shutdown_timeout_s) for process 1"
    ]


def test_a_peer_on_time_is_not_reported(two_processes, capsys):
    two_processes(_Store({"facedeblur/finished/1": 0.0}))
    distributed.finish(6, timeout_s=5)
    assert capsys.readouterr().err == ""


def test_a_lost_peer_ends_the_process_with_one_error_line(two_processes, capsys):
    two_processes(_Store({"facedeblur/finished/1": None}))
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as info:
        distributed.finish(6, timeout_s=1)
    assert info.value.code == 2 and 1 <= time.monotonic() - t0 < 30  # (a busy machine)
    assert capsys.readouterr().err.splitlines()[-1] == (
        "facedeblur train: error: process 1 of 2 did not finish within 1 s "
        "(train.distributed_shutdown_timeout_s) after process 0; the checkpoint of step 6 "
        "is saved"
    )
