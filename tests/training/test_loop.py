"""End-to-end training: all phases, checkpoints, exact resume after SIGKILL."""

import json
import os
import signal
import sys

import jax
import numpy as np
import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.data.pipeline import make_train_iterator
from facedeblur_jax.serving.loading import load_model
from facedeblur_jax.state.checkpoint import Checkpointer, CheckpointError
from facedeblur_jax.training.loop import make_mesh, train
from tests import processes

# 6 steps: coarse 0–1 | parsing_clear 2 | parsing 3 | fine 4 | joint 5. A kill after the
# checkpoint at step 3 resumes at the start of "parsing" and crosses three phase boundaries.
SIX = {
    "phases.parsing_clear.steps": 1,
    "phases.parsing.steps": 1,
    "phases.fine.steps": 1,
    "phases.joint.steps": 1,
    "train.checkpoint_every": 3,
}
PHASES = ("coarse", "parsing_clear", "parsing", "fine", "joint")

# `facedeblur train` in a child that SIGKILLs itself right after it has started the
# (asynchronous) save of step argv[1]: Orbax is still writing that checkpoint.
DIE_DURING_SAVE = """
import os, signal, sys
from facedeblur_jax import cli
from facedeblur_jax.state import checkpoint
step = int(sys.argv.pop(1))
save = checkpoint.Checkpointer.save
def save_then_die(self, s, state, meta):
    started = save(self, s, state, meta)
    if s == step:
        os.kill(os.getpid(), signal.SIGKILL)
    return started
checkpoint.Checkpointer.save = save_then_die
sys.exit(cli.main(sys.argv[1:]))
"""


def _cli(workdir, *extra):
    """``facedeblur train`` in a child, waited for as long as it makes progress (output,
    files in ``workdir``, CPU time: ``tests/processes.py``), not for a fixed time."""
    args = [*processes.CLI, *processes.train_args(workdir, {**SIX, **dict(extra)})]
    return processes.run(args, watch=[workdir])


def _params(workdir):
    return jax.tree.map(np.asarray, load_model(workdir).variables)


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The reference: 6 steps in one uninterrupted subprocess, with the loss diagnostics
    (the runs compared with it have none: the diagnostics must not change training)."""
    workdir = tmp_path_factory.mktemp("straight")
    proc = _cli(workdir, ("train.log_grad_norms", True))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (workdir / "stdout.txt").write_text(proc.stdout)
    return workdir


def test_straight_run_checkpoints_and_logs(straight):
    with Checkpointer(straight, async_save=False) as ckpt:
        assert ckpt.all_steps() == [3, 6]
        meta = ckpt.restore_meta(6)
    assert meta["phase"] == "done" and meta["step"] == 6
    lines = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "loss/total" in x]
    assert [x["phase"] for x in steps] == ["coarse", *PHASES]
    assert "loss/structural" in steps[4] and "loss/disc" in steps[5]
    assert "psnr" not in steps[2] and "psnr" in steps[3]  # parsing_clear: no output image
    assert list((straight / "tb").glob("events.out.tfevents.*"))


def test_loss_diagnostics_one_line_per_term_at_each_phase_start(straight):
    lines = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    norms = [x for x in lines if any(k.startswith("grad_norm/") for k in x)]
    got = [(x["phase"], x["step"], next(k for k in x if k.startswith("grad_norm/"))) for x in norms]
    config = load_config("tiny", SIX)
    want, start = [], 0
    for name in PHASES:
        loss = {k: v for k, v in config.phases[name].loss.items() if v}
        terms = [t for t in ("content_coarse", "content_fine", "structural", "parsing", "adv")]
        want += [(name, start, f"grad_norm/{t}") for t in terms if t in loss]
        if "disc" in config.phases[name].train:
            want.append((name, start, "grad_norm/disc"))
        start += config.phases[name].steps
    assert got == want
    assert all(np.isfinite(v) and v > 0 for x in norms for k, v in x.items() if "/" in k)
    out = (straight / "stdout.txt").read_text()
    assert "phase fine (step 4): gradient norm per loss term: content_fine" in out


def test_parsing_f_scores_after_each_phase_that_trains_p(straight):
    """One line per input (clear, blurred, deblurred) after parsing_clear, parsing and
    joint, with the 10 non-background classes and their mean; a table on stdout."""
    lines = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    scores = [x for x in lines if any(k.startswith("parsing_f/") for k in x)]
    keys = [
        (x["phase"], x["step"], next(iter(k for k in x if "/" in k)).split("/")[1]) for x in scores
    ]
    assert keys == [
        (phase, step, name)
        for phase, step in (("parsing_clear", 3), ("parsing", 4), ("joint", 6))
        for name in ("clear", "blurred", "deblurred")
    ]
    for x in scores:
        name = next(k for k in x if "/" in k).split("/")[1]
        classes = [k for k in x if k.startswith(f"parsing_f/{name}/")]
        assert len(classes) == 12 and x[f"parsing_f/{name}/num_faces"] == 4  # 10 + mean + n
        f = [x[k] for k in classes if not k.endswith("/num_faces")]
        assert all(0 <= v <= 1 for v in f if np.isfinite(v)) and np.isfinite(f[-1])
    out = (straight / "stdout.txt").read_text()
    assert "P's F-scores after phase parsing_clear (step 3, 4 held-out 'test' faces)" in out
    assert "left_brow" in out and "\nclear " in out and "\ndeblurred " in out


def test_sigkill_after_checkpoint_then_resume_is_exact(straight, tmp_path):
    # Both runs use the test session's persistent compilation cache (conftest.py): they load
    # the steps the straight run compiled, and must still end bit-identical to it. (A run
    # writing its own cache: tests/core/test_compile_cache.py, test_multihost.py.)
    # The test kills the run from outside once the step-3 checkpoint is on disk.
    args = processes.train_args(tmp_path, SIX)
    killed = processes.start(args, dict(os.environ), tmp_path.parent / "logs", tmp_path.name)
    processes.kill_when(tmp_path / "checkpoints" / "3", [killed], [tmp_path])
    assert killed.proc.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    with Checkpointer(tmp_path, async_save=False) as ckpt:
        assert ckpt.latest_step() == 3
        meta = ckpt.restore_meta(3)
    assert (meta["phase"], meta["phase_step"]) == ("parsing", 0)

    resumed = _cli(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "step 3" in resumed.stdout
    _assert_same(_params(straight), _params(tmp_path))

    # The next batch after the resumed run is the one an uninterrupted iterator gives.
    config = load_config("tiny", SIX)
    fresh = make_train_iterator(config, make_mesh())
    for _ in range(6):
        next(fresh)
    expected = jax.tree.map(np.asarray, next(fresh))
    fresh.close()
    for workdir in (straight, tmp_path):
        with Checkpointer(workdir, async_save=False) as ckpt:
            state = ckpt.restore_meta(6)["data_state"]
        with make_train_iterator(config, make_mesh()) as it:
            it.set_state(state)
            _assert_same(expected, jax.tree.map(np.asarray, next(it)))


def test_sigkill_during_a_save_leaves_a_usable_checkpoint(straight, tmp_path):
    args = processes.train_args(tmp_path, {**SIX, "train.checkpoint_every": 2})
    killed = processes.run([sys.executable, "-c", DIE_DURING_SAVE, "4", *args], watch=[tmp_path])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    with Checkpointer(tmp_path, async_save=False) as ckpt:
        latest = ckpt.latest_step()
    assert latest in (2, 4)  # 4 only if the async write beat the kill
    resumed = _cli(tmp_path, ("train.checkpoint_every", 2))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same(_params(straight), _params(tmp_path))


def test_resume_with_another_model_is_refused_and_keeps_the_checkpoint(straight, tmp_path):
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(straight, workdir)
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    config = load_config("tiny", {**SIX, "model.features": 4, "phases.joint.steps": 2})
    match = r"another model: model\.features = 8 in the checkpoint, 4 here"
    with pytest.raises(CheckpointError, match=match):
        train(config, workdir, progress=False)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before
    # The CLI says so in one line, before Orbax reads an array.
    cli = _cli(workdir, ("model.features", 4))
    assert cli.returncode == 2
    assert cli.stderr.strip().splitlines() == [
        f"facedeblur train: error: checkpoint {str(workdir / 'checkpoints' / '6')!r} was "
        "trained with another model: model.features = 8 in the checkpoint, 4 here; resume with "
        "the config it was trained with (stored in its meta) or use another --workdir"
    ]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


def test_failed_checks_leave_no_workdir_and_print_one_line(tmp_path):
    expected = {
        "phases.coarse.steps": "config key 'phases.coarse.steps' expects int (like 2); got "
        "'abc' (str)",
        "degrade.kernel_pool_size": "degrade.kernel_pool_size must be >= 0",
    }
    for key, value in (("phases.coarse.steps", "abc"), ("degrade.kernel_pool_size", -1)):
        proc = _cli(tmp_path / "w", (key, value))
        assert proc.returncode == 2
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"facedeblur train: error: {expected[key]}"), line
        assert not (tmp_path / "w").exists()


def test_resume_with_another_schedule_is_refused(straight, tmp_path):
    """A checkpoint of the five-phase recipe resumed with the old four phases (no
    parsing_clear): the same step would mean another phase — refused, checkpoint kept."""
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(straight, workdir)
    shutil.rmtree(workdir / "checkpoints" / "6")
    before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    config = load_config("tiny", {**SIX, "phase_order": ("coarse", "parsing", "fine", "joint")})
    with pytest.raises(
        ValueError, match=r"trained with the phases \[\('coarse', 0\), \('parsing_clear', 2\)"
    ):
        train(config, workdir, progress=False)
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before


def test_bad_degrade_settings_fail_at_start(tmp_path):
    config = load_config("tiny", {"degrade.trajectory_impl": "pallas"})
    with pytest.raises(ValueError, match="degrade.trajectory_impl must be one of"):
        train(config, tmp_path / "w", progress=False)
    config = load_config("tiny", {"degrade.kernel_pool_size": -1})
    with pytest.raises(ValueError, match="degrade.kernel_pool_size must be >= 0"):
        train(config, tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()


def test_missing_vgg_weights_fail_at_start(tmp_path):
    config = load_config("tiny", {"loss.vgg_weight": 1e-5})
    with pytest.raises(ValueError, match=r"vgg_weights_path is empty.*loss\.vgg_weight=0"):
        train(config, tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()


def test_init_from_copies_matching_nets(straight, tmp_path, capsys):
    """A fine-only run warm-started from another run takes its G_c and P, not G_f."""
    config = load_config(
        "tiny",
        {
            "train.init_from": str(straight),
            "train.init_nets": ("coarse", "parsing"),
            "phase_order": ("fine",),
            "model.num_fine_stages": 2,
        },
    )
    train(config, tmp_path / "w", progress=False)
    assert "initialised ['coarse', 'parsing']" in capsys.readouterr().out
    # fine_0 has the same shapes in both runs, but init_nets left it out: it is fresh.
    assert not np.array_equal(
        jax.tree.leaves(_params(straight)["params"]["fine_0"])[0],
        jax.tree.leaves(_params(tmp_path / "w")["params"]["fine_0"])[0],
    )
    source, warm = _params(straight), _params(tmp_path / "w")
    _assert_same(source["params"]["coarse"], warm["params"]["coarse"])
    _assert_same(source["params"]["parsing"], warm["params"]["parsing"])
    _assert_same(source["batch_stats"], warm["batch_stats"])
    assert set(warm["params"]) == {"coarse", "parsing", "fine_0", "fine_1"}


def test_kernel_pool_run_resumes_exactly(tmp_path):
    """A run with a kernel pool rebuilds the same pool on resume: restarting from the step-2
    checkpoint ends bit-identical to the uninterrupted run. (The coarse phase alone, 4
    steps: the pool is built once per run, whatever the phases.)"""
    import shutil

    coarse = {"phase_order": ("coarse",), "phases.coarse.steps": 4, "train.checkpoint_every": 2}
    config = load_config("tiny", {**coarse, "degrade.kernel_pool_size": 12})
    train(config, tmp_path / "a", progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "4")
    with Checkpointer(tmp_path / "b", async_save=False) as ckpt:
        assert ckpt.all_steps() == [2]
    train(config, tmp_path / "b", progress=False)
    _assert_same(_params(tmp_path / "a"), _params(tmp_path / "b"))
    # The pool changed the data: another pool size gives other params (one new compile:
    # the pool's shape is in the program).
    train(
        load_config("tiny", {**coarse, "degrade.kernel_pool_size": 5}),
        tmp_path / "d",
        progress=False,
    )
    a, d = _params(tmp_path / "a"), _params(tmp_path / "d")
    assert not np.array_equal(
        jax.tree.leaves(a["params"]["coarse"])[0], jax.tree.leaves(d["params"]["coarse"])[0]
    )


def test_eval_during_training_writes_eval_metrics(tmp_path):
    """config.evals: psnr_ssim every step (train.eval_every=1), parsing every 2 steps; rows of
    phase "eval" in metrics.jsonl, scoring the params of that very step."""
    from facedeblur_jax.degrade import kernel_bank
    from facedeblur_jax.evaluators import psnr_ssim
    from facedeblur_jax.evaluators.faceset import load_faces

    overrides = {"phase_order": ("coarse",), "train.eval_every": 1, "evals.parsing.every": 2}
    for name in ("psnr_ssim", "parsing"):
        overrides |= {f"evals.{name}.max_faces": 2, f"evals.{name}.kernels_per_size": 1}
    config = load_config("tiny", overrides)
    train(config, tmp_path, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = {x["step"]: x for x in lines if x["phase"] == "eval"}
    assert [x["phase"] for x in lines] == ["coarse", "eval", "coarse", "eval"]
    assert not any(k.startswith("parsing/") for k in evals[1])
    assert {"parsing/f_clear", "parsing/f_blurred", "parsing/f_deblurred"} <= set(evals[2])
    assert evals[2]["parsing/seconds"] > 0 and 0 <= evals[2]["parsing/f_deblurred"] <= 1
    # Fixed blurred inputs; G_c trains, so its scores move.
    assert evals[1]["psnr_ssim/psnr_blurred"] == evals[2]["psnr_ssim/psnr_blurred"]
    assert evals[1]["psnr_ssim/psnr_coarse"] != evals[2]["psnr_ssim/psnr_coarse"]
    # Step 2's scores are those of the step-2 checkpoint, evaluated afresh.
    loaded = load_model(tmp_path)
    assert loaded.step == 2
    bank = kernel_bank.make_bank(per_size=1, **kernel_bank.bank_kwargs_from_config(config))
    faces = load_faces(config, {}, "test", max_faces=2)
    again = psnr_ssim.Evaluator(loaded.model, faces, bank).run(loaded.variables)
    for metric, value in again.items():
        assert evals[2][f"psnr_ssim/{metric}"] == pytest.approx(value, rel=1e-5), metric


def test_bad_eval_settings_fail_at_start(tmp_path):
    config = load_config("tiny", {"evals.parsing.every": -2})
    with pytest.raises(ValueError, match=r"config.evals.parsing.every must be an int"):
        train(config, tmp_path, progress=False)
    config = load_config("tiny", {"train.eval_every": 1, "evals.psnr_ssim.kernels": "no.npz"})
    with pytest.raises(FileNotFoundError, match=r"config.evals.psnr_ssim.kernels: no file"):
        train(config, tmp_path, progress=False)
    assert not (tmp_path / "checkpoints").exists()


def test_an_unreadable_newest_checkpoint_is_passed_over_and_set_aside(tmp_path, capsys):
    """Resuming: a damaged newest checkpoint is named in one warning line, moved to
    unreadable_checkpoints/ (kept), and the run goes on from the newest readable one."""
    from facedeblur_jax.training import loop
    from tests import zero_model

    config = zero_model.tiny_config()
    zero_model.zero_checkpoint(tmp_path, steps=(2, 4), config=config)
    zero_model.zero_array_data(tmp_path / "checkpoints" / "4")

    class Data:
        def set_state(self, state):
            self.state = state

    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def abstract_state():
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
            zero_model.zero_state(config),
        )

    data = Data()
    with Checkpointer(tmp_path, async_save=False, create=False) as ckpt:
        step, meta, state = loop._resume_point(ckpt, config, data, abstract_state)
        assert step == 2 and meta["step"] == 2 and data.state == {}
        assert not np.any(np.asarray(state.params["coarse"]["scale0"]["conv_in"]["kernel"]))
        assert ckpt.all_steps() == [2]
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(
        f"warning: checkpoint {str(tmp_path / 'checkpoints' / '4')!r} cannot be read: its "
        "arrays are corrupt or truncated ("
    )
    assert line.endswith(
        f"; resuming from step 2, the newest one that can be read (moved to "
        f"{tmp_path / 'unreadable_checkpoints'})"
    )
    assert (tmp_path / "unreadable_checkpoints" / "4" / "state").is_dir()
