import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.training.schedule import locate, phases_from_config, total_steps


def test_paper_schedule_is_the_papers():
    phases = phases_from_config(load_config("paper"))
    assert [(p.name, p.steps) for p in phases] == [
        ("coarse", 200_000),
        ("parsing_clear", 60_000),
        ("parsing", 60_000),
        ("fine", 200_000),
        ("joint", 100_000),
    ]
    coarse, clear, parsing, fine, joint = phases
    assert coarse.train == ("coarse",) and coarse.upto == "coarse"
    assert clear.train == ("parsing",) and clear.parsing_clear and clear.parsing_input == "clear"
    assert {k: v for k, v in clear.loss.items() if v} == {"parsing": 1e-4}
    assert clear.lr["parsing"] == 1e-4  # P from scratch; not in the paper
    assert parsing.train == ("parsing",) and parsing.upto == "parsing"
    assert not any(p.parsing_clear for p in (coarse, parsing, fine, joint))
    assert {p.prior for p in phases} == {"predicted"}  # the model: G_f fed P's prediction
    assert fine.train == ("fine", "disc") and fine.upto == "fine"
    assert {k: v for k, v in fine.loss.items() if v} == {
        "content_fine": 1.0,
        "structural": 50.0,
        "vgg": 1e-5,
        "adv": 5e-5,
    }
    assert set(joint.train) == {"coarse", "parsing", "fine", "disc"}
    assert joint.loss["parsing"] == 1e-4 and joint.loss["content_coarse"] == 1.0
    assert parsing.lr["parsing"] == 5e-6 and coarse.lr["coarse"] == 4e-5
    assert total_steps(phases) == 620_000


def test_demo_and_tiny_pretrain_p_on_clear_faces():
    for name in ("demo", "tiny", "gpu_short", "cpu_study"):
        phases = phases_from_config(load_config(name))
        assert [p.name for p in phases] == ["coarse", "parsing_clear", "parsing", "fine", "joint"]
        assert phases[1].parsing_clear and phases[1].steps <= 1000
    short = {p.name: p for p in phases_from_config(load_config("gpu_short"))}
    assert short["parsing_clear"].lr["parsing"] == 5 * 1e-4  # 5× each phase's own rate
    assert short["parsing"].lr["parsing"] == 5 * 5e-6


def test_prior_is_checked_and_older_configs_feed_the_prediction():
    with pytest.raises(ValueError, match=r"phases\.fine\.prior must be one of"):
        phases_from_config(load_config("tiny", {"phases.fine.prior": "ground truth"}))
    config = load_config("tiny").to_dict()
    del config["phases"]["fine"]["prior"]  # a config written before the key
    import ml_collections

    fine = {p.name: p for p in phases_from_config(ml_collections.ConfigDict(config))}["fine"]
    assert fine.prior == "predicted"


def test_parsing_input_is_checked():
    bad = {"phases.parsing.parsing_input": "blurred"}
    with pytest.raises(ValueError, match=r"phases\.parsing\.parsing_input must be one of"):
        phases_from_config(load_config("tiny", bad))
    for override in (
        {"phases.fine.parsing_input": "clear"},
        {"phases.parsing_clear.train": ("parsing", "coarse")},
        {"phases.parsing_clear.loss.content_coarse": 1.0},
    ):
        with pytest.raises(ValueError, match=r'parsing_input = "clear" \(P on sharp faces'):
            phases_from_config(load_config("tiny", override))


def test_locate_walks_phase_boundaries():
    phases = phases_from_config(load_config("tiny"))  # 2 steps each
    assert [locate(phases, s) for s in range(11)] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
        (3, 0),
        (3, 1),
        (4, 0),
        (4, 1),
        (5, 0),
    ]


def test_custom_phase_and_errors():
    cfg = load_config(
        "tiny",
        {
            "phases.scratch.steps": 5,
            "phases.scratch.train": ("coarse",),
            "phases.scratch.loss.content_coarse": 1.0,
            "phase_order": ("scratch",),
        },
    )
    (p,) = phases_from_config(cfg)
    assert p.name == "scratch" and p.steps == 5
    with pytest.raises(ValueError, match="names phase 'nope'"):
        phases_from_config(load_config("tiny", {"phase_order": ("nope",)}))
    with pytest.raises(ValueError, match=r"phases\.coarse\.train has unknown net"):
        phases_from_config(load_config("tiny", {"phases.coarse.train": ("gc",)}))
    with pytest.raises(ValueError, match="trains 'disc' but its adv weight is 0"):
        phases_from_config(load_config("tiny", {"loss.adv_weight": 0.0}))
    with pytest.raises(ValueError, match=r"unknown config override key 'phases\.fine\.los\.adv'"):
        load_config("tiny", {"phases.fine.los.adv": 0.0})
