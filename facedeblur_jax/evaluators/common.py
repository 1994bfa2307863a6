"""The evaluator interface and the evaluations that run during training (``config.evals``).

An evaluator (big_vision's ``evaluators/*.py`` form) is built once — data read, kernels
drawn, its step jitted — and then scores any variables of its model:

    evaluator.run(variables) -> {metric name: float}

where ``variables`` are the generator's ``{"params", ["batch_stats"]}``
(``state.train_state.generator_variables``). Each module of :data:`EVALUATORS` has an
``Evaluator`` class with that ``run`` (plus richer methods ``facedeblur eval`` uses) and a
``from_spec(config, spec, model, resources)`` that builds it from a ``config.evals`` entry.

During training (:func:`from_config`, then :meth:`TrainingEvals.maybe_run` after each step)
entry ``config.evals.<name>`` runs every ``every`` steps and at the last step, where

* ``every > 0``: its own period;
* ``every == 0``: ``config.train.eval_every`` (0 = off, the paper config's default);
* ``every == -1``: never.

Only process 0 evaluates, on a copy of the variables on its first local device, over the
faces of split ``split`` of the training config's own data source (``max_faces`` of them,
spread over the split) blurred with a fixed bank (``kernels``: a bank file, or ``""`` for
``kernels_per_size`` kernels per training kernel size drawn from the bank's seed). Each
entry's scalars go to the training writer under phase ``eval`` as ``<name>/<metric>``
(TensorBoard tags ``eval/<name>/<metric>``; ``metrics.jsonl`` rows with ``"phase": "eval"``),
with ``<name>/seconds``, the wall time the entry took.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import time
from typing import Any, Protocol

import jax
import ml_collections

from facedeblur_jax.degrade import kernel_bank as bank_lib
from facedeblur_jax.evaluators.faceset import FaceSet, load_faces
from facedeblur_jax.models.factory import build_model
from facedeblur_jax.state.train_state import generator_variables

log = logging.getLogger("facedeblur.evaluators")
PyTree = Any

# ``config.evals.<name>`` -> the module that evaluates it.
EVALUATORS = {
    "psnr_ssim": "facedeblur_jax.evaluators.psnr_ssim",
    "parsing": "facedeblur_jax.evaluators.parsing",
}
NEVER = -1


class Evaluator(Protocol):
    """Scores the variables of one model; built once, run many times."""

    def run(self, variables: PyTree) -> dict[str, float]:
        """``{metric: value}`` for the generator variables ``{"params", ["batch_stats"]}``."""
        ...


class Resources:
    """Faces and kernel banks shared by the entries of one config (read / drawn once)."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self._faces: dict[tuple, FaceSet] = {}
        self._banks: dict[tuple, bank_lib.KernelBank] = {}

    def faces(self, split: str, max_faces: int) -> FaceSet:
        """``max_faces`` faces (``0``: all) of ``split`` of the config's data source."""
        key = (str(split), int(max_faces))
        if key not in self._faces:
            self._faces[key] = load_faces(
                self.config, {}, key[0], max_faces=key[1] or None, batch_size=16
            )
        return self._faces[key]

    def bank(self, path: str, per_size: int) -> bank_lib.KernelBank:
        """The bank file ``path``, or (``""``) ``per_size`` bank kernels per training size."""
        key = (str(path), int(per_size))
        if key not in self._banks:
            if path:
                self._banks[key] = bank_lib.load_bank(os.path.expanduser(path))
            else:
                kwargs = bank_lib.bank_kwargs_from_config(self.config)
                self._banks[key] = bank_lib.make_bank(per_size=key[1], **kwargs)
        return self._banks[key]


@dataclasses.dataclass
class Scheduled:
    """One ``config.evals`` entry: its evaluator and period (steps)."""

    name: str
    evaluator: Evaluator
    every: int


class TrainingEvals:
    """The ``config.evals`` entries that run during a training run of ``total_steps``."""

    def __init__(self, scheduled: list[Scheduled], total_steps: int):
        self.scheduled, self.total_steps = scheduled, int(total_steps)

    def __bool__(self) -> bool:
        return bool(self.scheduled)

    def due(self, step: int) -> list[Scheduled]:
        """The entries that run after ``step`` (a multiple of their period, or the last)."""
        return [s for s in self.scheduled if step % s.every == 0 or step == self.total_steps]

    def maybe_run(self, step: int, state, writer) -> float:
        """Runs the entries due at ``step`` on ``state``'s generator and writes their
        scalars (phase ``eval``); returns the seconds it took (0 when none was due)."""
        due = self.due(step)
        if not due:
            return 0.0

        t0 = time.perf_counter()
        device = jax.local_devices()[0]
        variables = jax.device_put(jax.device_get(generator_variables(state)), device)
        scalars: dict[str, float] = {}
        for s in due:
            t = time.perf_counter()
            for metric, value in s.evaluator.run(variables).items():
                scalars[f"{s.name}/{metric}"] = float(value)
            scalars[f"{s.name}/seconds"] = time.perf_counter() - t
        writer.write(step, "eval", scalars)
        log.info("eval at step %d: %s", step, scalars)
        return time.perf_counter() - t0


def _period(config: ml_collections.ConfigDict, name: str) -> int:
    default = config.train.eval_every
    if isinstance(default, bool) or not isinstance(default, int) or default < 0:
        raise ValueError(f"config.train.eval_every must be an int >= 0; got {default!r}")
    every = config.evals[name].every
    if isinstance(every, bool) or not isinstance(every, int) or every < NEVER:
        raise ValueError(
            f"config.evals.{name}.every must be an int: > 0 steps, 0 for train.eval_every, "
            f"-1 for never; got {every!r}"
        )
    if every == NEVER:
        return 0
    return every or default


def _check_spec(name: str, spec: ml_collections.ConfigDict) -> None:
    ints = {"max_faces": 0, "batch_size": 1, "kernels_per_size": 1}
    for key, low in ints.items():
        value = spec[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"config.evals.{name}.{key} must be an int >= {low}; got {value!r}")
    if not isinstance(spec.noise_sigma, int | float) or not 0 <= spec.noise_sigma < 1:
        raise ValueError(f"config.evals.{name}.noise_sigma must be in [0, 1)")
    if spec.kernels and not os.path.isfile(os.path.expanduser(spec.kernels)):
        raise FileNotFoundError(f"config.evals.{name}.kernels: no file {spec.kernels!r}")


def from_config(
    config: ml_collections.ConfigDict, total_steps: int, *, enabled: bool = True
) -> TrainingEvals:
    """The evaluations of ``config.evals`` a training run does (none where not ``enabled``,
    e.g. on processes other than 0). Reads the faces and draws the kernels now, so a bad
    entry fails before the first step.

    Raises:
      ValueError / FileNotFoundError: a bad ``config.evals`` entry (the key is named).
    """
    evals = config.get("evals", None) or {}
    periods = {name: _period(config, name) for name in evals}  # check every entry
    if not enabled:
        return TrainingEvals([], total_steps)

    model = build_model(config.model)
    resources = Resources(config)
    scheduled = []
    for name, every in periods.items():
        if every <= 0:
            continue
        if name not in EVALUATORS:
            raise ValueError(f"config.evals.{name}: unknown evaluator; known: {list(EVALUATORS)}")
        spec = config.evals[name]
        _check_spec(name, spec)
        module = importlib.import_module(EVALUATORS[name])
        try:
            evaluator = module.from_spec(config, spec, model, resources)
        except (ValueError, FileNotFoundError) as e:
            raise type(e)(f"config.evals.{name}: {e}") from e
        scheduled.append(Scheduled(name, evaluator, every))
        log.info("eval %r every %d steps", name, every)
    return TrainingEvals(scheduled, total_steps)
