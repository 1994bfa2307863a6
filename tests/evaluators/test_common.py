"""evaluators.common: config.evals entries, their periods, when they are due."""

from __future__ import annotations

import pytest

from facedeblur_jax import evaluators
from facedeblur_jax.config import load_config
from facedeblur_jax.evaluators import parsing, psnr_ssim
from facedeblur_jax.evaluators.common import Scheduled, TrainingEvals

SMALL = {
    f"evals.{name}.{key}": value
    for name in ("psnr_ssim", "parsing")
    for key, value in (("max_faces", 2), ("kernels_per_size", 1))
}


def test_off_by_default_and_on_other_processes():
    assert not evaluators.from_config(load_config("paper"), 100)
    assert not evaluators.from_config(load_config("tiny"), 8)
    on = load_config("tiny", {"train.eval_every": 2})
    assert not evaluators.from_config(on, 8, enabled=False)


def test_periods_and_shared_data():
    config = load_config("tiny", {**SMALL, "train.eval_every": 3, "evals.parsing.every": 5})
    evals = evaluators.from_config(config, 12)
    got = {s.name: s for s in evals.scheduled}
    assert {n: s.every for n, s in got.items()} == {"psnr_ssim": 3, "parsing": 5}
    assert isinstance(got["psnr_ssim"].evaluator, psnr_ssim.Evaluator)
    assert isinstance(got["parsing"].evaluator, parsing.Evaluator)
    # One read of the faces and one draw of the bank for both entries.
    assert got["psnr_ssim"].evaluator.faces is got["parsing"].evaluator.faces
    assert got["psnr_ssim"].evaluator.bank is got["parsing"].evaluator.bank
    assert len(got["parsing"].evaluator.bank) == len(config.degrade.kernel_sizes)

    never = load_config("tiny", {**SMALL, "train.eval_every": 3, "evals.parsing.every": -1})
    assert [s.name for s in evaluators.from_config(never, 12).scheduled] == ["psnr_ssim"]
    own = load_config("tiny", {**SMALL, "evals.psnr_ssim.every": 4})  # train.eval_every 0
    assert [(s.name, s.every) for s in evaluators.from_config(own, 12).scheduled] == [
        ("psnr_ssim", 4)
    ]


def test_due_at_multiples_and_at_the_last_step():
    evals = TrainingEvals([Scheduled("a", None, 3), Scheduled("b", None, 5)], total_steps=7)
    due = {step: [s.name for s in evals.due(step)] for step in range(1, 8)}
    assert due == {1: [], 2: [], 3: ["a"], 4: [], 5: ["b"], 6: ["a"], 7: ["a", "b"]}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.eval_every": -1}, "config.train.eval_every must be an int >= 0"),
        ({"evals.psnr_ssim.every": -3}, "config.evals.psnr_ssim.every must be an int"),
        ({"evals.parsing.every": 1, "evals.parsing.max_faces": -1}, "parsing.max_faces must"),
        ({"evals.parsing.every": 1, "evals.parsing.batch_size": 0}, "parsing.batch_size must"),
        ({"evals.parsing.every": 1, "evals.parsing.noise_sigma": 2.0}, "parsing.noise_sigma"),
        ({"evals.parsing.every": 1, "evals.parsing.split": "nope"}, "config.evals.parsing: "),
    ],
)
def test_bad_entries_are_named(overrides, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        evaluators.from_config(load_config("tiny", {**SMALL, **overrides}), 8)
