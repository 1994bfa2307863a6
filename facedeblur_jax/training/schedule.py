"""The staged training schedule (paper §3.4, docs/design.md §5) — data in the config, not code.

``config.phase_order`` names the phases in order; ``config.phases.<name>`` holds each
phase's length, the nets it trains, its loss weights, learning rates and what P parses
(see ``configs/paper.py``). A global step maps to ``(phase index, step within the phase)``;
the checkpoint stores both, so a restarted run continues in the right phase.

The paper's recipe (``configs/paper.py``; docs/design.md §5)::

    phase          trains         P parses   loss                           steps  lr
    coarse         G_c            —          L_c                            200k   4e-5
    parsing_clear  P              sharp y    L_p                            60k*   1e-4*
    parsing        P              G_c(x)     L_p                            60k    5e-6
    fine           G_f, D         G_c(x)     L_c + λ_s L_s + λ_VGG + λ_adv  200k   4e-5
    joint          G_c, P, G_f, D G_c(x)     fine's + λ_p L_p               100k   as above

    * §4.1 trains a parser on clear labelled faces before fine-tuning it on G_c's output,
      but gives no schedule for it: its length and learning rate are this project's choice.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from facedeblur_jax.models import priors

NETS = ("coarse", "parsing", "fine", "disc")
# What P sees in a phase (``config.phases.<name>.parsing_input``): "coarse" = P(G_c(x)) as in
# the model; "clear" = P on the sharp (augmented, un-blurred) face, without G_c.
PARSING_INPUTS = ("coarse", "clear")
LOSSES = ("content_coarse", "content_fine", "structural", "parsing", "vgg", "adv", "identity")
# The λ (config.loss.<key>) that multiplies each phase's loss multiplier.
LAMBDA_KEYS = {
    "content_coarse": "content_weight",
    "content_fine": "content_weight",
    "structural": "structural_weight",
    "parsing": "parsing_weight",
    "vgg": "vgg_weight",
    "adv": "adv_weight",
    "identity": "identity_weight",
}
# Losses a phase record may leave out (multiplier 0): added after configs were written.
OPTIONAL_LOSSES = ("identity",)


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase. ``loss`` maps every loss name to its effective weight (phase multiplier ×
    λ from ``config.loss``), ``lr`` every net name to its learning rate, ``parsing_input``
    what P parses (:data:`PARSING_INPUTS`), ``prior`` what G_f is fed (``models/priors.py``
    ``TRAINING``: the model's own prediction, or a Table 2 ablation evaluated later with the
    same prior)."""

    name: str
    steps: int
    train: tuple[str, ...]
    loss: dict[str, float]
    lr: dict[str, float]
    parsing_input: str = "coarse"
    prior: str = priors.PREDICTED

    @property
    def parsing_clear(self) -> bool:
        """P trains on sharp faces: no blur, no G_c (paper §4.1's clear-image parser)."""
        return self.parsing_input == "clear"

    def trains(self, net: str) -> bool:
        return net in self.train

    @property
    def upto(self) -> str:
        """How far the forward pass must run (``FaceDeblurModel(upto=...)``)."""
        needs_fine = self.trains("fine") or any(
            self.loss[k] for k in ("content_fine", "structural", "vgg", "adv", "identity")
        )
        if needs_fine:
            return "fine"
        if self.trains("parsing") or self.loss["parsing"]:
            return "parsing"
        return "coarse"


def phases_from_config(config: ml_collections.ConfigDict) -> tuple[Phase, ...]:
    """The validated phase list; ``ValueError`` names the phase and field that is wrong."""
    order = tuple(config.phase_order)
    if not order:
        raise ValueError("config.phase_order is empty: nothing to train")
    out = []
    for name in order:
        if name not in config.phases:
            raise ValueError(
                f"config.phase_order names phase {name!r} but config.phases has only "
                f"{sorted(config.phases.keys())}"
            )
        rec = config.phases[name]
        steps = int(rec.steps)
        if steps < 0:
            raise ValueError(f"config.phases.{name}.steps must be >= 0; got {steps}")
        train = tuple(rec.train)
        bad = [n for n in train if n not in NETS]
        if bad:
            raise ValueError(f"config.phases.{name}.train has unknown net(s) {bad}; known {NETS}")
        multipliers = {
            k: float(rec.loss[k] if k in rec.loss or k not in OPTIONAL_LOSSES else 0.0)
            for k in LOSSES
        }
        if any(v < 0 for v in multipliers.values()):
            raise ValueError(
                f"config.phases.{name}.loss multipliers must be >= 0; got {multipliers}"
            )
        loss = {k: m * float(config.loss[LAMBDA_KEYS[k]]) for k, m in multipliers.items()}
        lr = {k: float(rec.lr[k]) for k in NETS}
        if "disc" in train and loss["adv"] == 0:
            raise ValueError(
                f"config.phases.{name} trains 'disc' but its adv weight is 0 "
                f"(phases.{name}.loss.adv × loss.adv_weight)"
            )
        if not any(loss.values()) and train:
            raise ValueError(f"config.phases.{name} trains {train} with every loss weight 0")
        parsing_input = str(rec.get("parsing_input", "coarse"))
        if parsing_input not in PARSING_INPUTS:
            raise ValueError(
                f"config.phases.{name}.parsing_input must be one of {PARSING_INPUTS}; got "
                f"{parsing_input!r}"
            )
        others = [k for k, v in loss.items() if v and k != "parsing"]
        if parsing_input == "clear" and (train != ("parsing",) or others or not loss["parsing"]):
            raise ValueError(
                f'config.phases.{name}.parsing_input = "clear" (P on sharp faces, no G_c) '
                f"needs train = ('parsing',) and the parsing loss alone; got train {train}, "
                f"losses {[k for k, v in loss.items() if v]}"
            )
        prior = str(rec.get("prior", priors.PREDICTED))
        if prior not in priors.TRAINING:
            raise ValueError(
                f"config.phases.{name}.prior must be one of {priors.TRAINING}; got {prior!r}"
            )
        out.append(Phase(name, steps, train, loss, lr, parsing_input, prior))
    return tuple(out)


def total_steps(phases: tuple[Phase, ...]) -> int:
    return sum(p.steps for p in phases)


def locate(phases: tuple[Phase, ...], step: int) -> tuple[int, int]:
    """``(phase index, step within that phase)`` of global step ``step`` (0-based count of
    steps already done). At the very end returns ``(len(phases), 0)``."""
    start = 0
    for i, p in enumerate(phases):
        if step < start + p.steps:
            return i, step - start
        start += p.steps
    return len(phases), 0
