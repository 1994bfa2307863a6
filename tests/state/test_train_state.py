"""state.train_state: the generator's variables of a train state."""

from __future__ import annotations

import types

from facedeblur_jax.state.train_state import generator_variables


def test_generator_variables_leave_out_the_discriminator(tiny_checkpoint):
    from facedeblur_jax.serving.loading import load_model

    loaded = load_model(tiny_checkpoint)  # restored through generator_variables
    assert set(loaded.variables["params"]) == {"coarse", "parsing", "fine_0"}
    assert set(loaded.variables["batch_stats"]) == {"parsing"}


def test_generator_variables_of_a_state_without_batch_norm():
    state = types.SimpleNamespace(params={"coarse": {"w": 1}, "disc": {"w": 2}}, batch_stats={})
    assert generator_variables(state) == {"params": {"coarse": {"w": 1}}}
