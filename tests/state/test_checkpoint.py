"""Checkpoint metadata: the stored config comes back whole, also from older checkpoints;
checkpoints of another model or network layout are refused in one line naming the key;
damaged checkpoints are unreadable (named, one line), and the newest readable one is used."""

import json
import os
import re
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.models.factory import build_discriminator
from facedeblur_jax.serving.loading import load_model
from facedeblur_jax.state.checkpoint import (
    Checkpointer,
    CheckpointError,
    UnreadableCheckpoint,
    check_resumable,
    config_from_meta,
    config_to_json,
    model_differences,
    newest_readable,
)
from facedeblur_jax.state.train_state import TrainState, make_optimizer
from tests import processes
from tests.zero_model import zero_array_data


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
        match=r"checkpoint 'ckpt' was trained with another model: model\.features = 8 in the "
        r"checkpoint, 4 here; model\.num_resblocks = 1 in the checkpoint, 2 here; resume with",
    ):
        check_resumable(
            stored, load_config("tiny", {"model.features": 4, "model.num_resblocks": 2}), "ckpt"
        )
    with pytest.raises(CheckpointError, match=r"optim\.grad_clip_norm=0\.0 \(this run: 1\.0\)"):
        check_resumable(stored, load_config("tiny", {"optim.grad_clip_norm": 1.0}), "ckpt")


def test_model_differences_ignore_how_the_model_runs():
    stored = load_config("tiny")
    same = load_config("tiny", {"model.remat": True, "model.compute_dtype": "bfloat16"})
    assert model_differences(stored, same) == []
    other = load_config("tiny", {"model.features": 4, "model.resblock_post_relu": False})
    assert model_differences(stored, other) == [
        "model.features = 8 in the checkpoint, 4 here",
        "model.resblock_post_relu = True in the checkpoint, False here",
    ]


# --- checkpoints of the layout before model.layout_version (14-conv scales, old P) -------


def _conv(kh, cin, cout, kw=None):
    return {"kernel": jnp.zeros((kh, kw or kh, cin, cout)), "bias": jnp.zeros((cout,))}


def _old_deblur_net(cin0, cin1, first=5, k=3, f=8):
    """Layout 1, tiny config: conv_in, one ResBlock, conv_out per scale; 4×4 upsampler."""

    def scale(cin):
        return {
            "conv_in": _conv(first, cin, f),
            "res0": {"conv1": _conv(k, f, f), "conv2": _conv(k, f, f)},
            "conv_out": _conv(k, f, 3),
        }

    return {
        "scale0": scale(cin0),
        "up1": {"ConvTranspose_0": _conv(4, 3, 3)},
        "scale1": scale(cin1),
    }


def _old_parsing_net(widths=(8, 16, 16), classes=11):
    """Layout 1: 3×3 conv + BN per stage, transposed-conv + BN decoder stages, 1×1 logits."""
    params, stats, cin = {}, {}, 3
    for i, f in enumerate(widths):
        params[f"enc{i}"] = _conv(3, cin, f)
        cin = f
    for i in reversed(range(len(widths))):
        params[f"dec{i}"] = _conv(4, cin, widths[i])
        cin = widths[i]
    for name in [f"enc{i}" for i in range(3)] + [f"dec{i}" for i in range(3)]:
        f = params[name]["bias"].shape[0]
        params[f"{name}_bn"] = {"scale": jnp.ones((f,)), "bias": jnp.zeros((f,))}
        stats[f"{name}_bn"] = {"mean": jnp.zeros((f,)), "var": jnp.ones((f,))}
    params["logits"] = _conv(1, cin, classes)
    return params, stats


@pytest.fixture(scope="module")
def old_workdir(tmp_path_factory):
    """A tiny-config checkpoint as the layout-1 code wrote it, through the real Orbax path:
    its params, Adam states and BatchNorm statistics, and a stored config without the keys
    that came with layout 2."""
    config = load_config("tiny")
    disc = build_discriminator(config.model)
    x = jnp.zeros((1, 32, 32, 3))
    parsing, stats = _old_parsing_net()
    params = {
        "coarse": _old_deblur_net(3, 6),
        "parsing": parsing,
        "fine_0": _old_deblur_net(17, 20),
        "disc": jax.tree.map(jnp.zeros_like, jax.jit(disc.init)(jax.random.key(0), x)["params"]),
    }
    tx = make_optimizer(config.optim)
    state = TrainState(
        step=jnp.asarray(2, jnp.int32),
        params=params,
        batch_stats={"parsing": stats},
        opt_state={k: tx.init(v) for k, v in params.items()},
        rng=jax.random.key_data(jax.random.key(0)),
        nonfinite=jnp.asarray(0, jnp.int32),
    )
    raw = json.loads(config_to_json(config))
    del raw["model"]["layout_version"], raw["model"]["resblock_post_relu"]
    raw["model"]["parsing_features"] = [8, 16, 16]
    meta = {
        "step": 2,
        "phase": "parsing",
        "phase_index": 1,
        "phase_step": 0,
        "data_state": {},
        "config": json.dumps(raw),
        "versions": {"jax": jax.__version__},
    }
    workdir = tmp_path_factory.mktemp("old_layout")
    ckpt = Checkpointer(workdir, async_save=False)
    ckpt.save(2, state, meta)
    ckpt.close()
    return workdir


def _snapshot(workdir):
    return sorted(
        (str(p.relative_to(workdir)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in (workdir / "checkpoints").rglob("*")
    )


def test_old_layout_checkpoint_is_refused_by_key_for_inference(old_workdir):
    before = _snapshot(old_workdir)
    ckpt = Checkpointer(old_workdir, async_save=False)
    assert config_from_meta(ckpt.restore_meta()).model.layout_version == 1
    ckpt.close()
    with pytest.raises(CheckpointError) as info:
        load_model(old_workdir)
    message = str(info.value)
    assert "\n" not in message and "model.layout_version = 1" in message
    assert str(old_workdir / "checkpoints" / "2") in message
    assert _snapshot(old_workdir) == before


@pytest.mark.parametrize("command", ["train", "export"])
def test_old_layout_checkpoint_gives_one_line_on_the_command_line(old_workdir, tmp_path, command):
    """Resuming it (``facedeblur train``) or loading it (export; deblur and eval load the same
    way) stops with one line naming the key, and leaves the checkpoint as it was."""
    before = _snapshot(old_workdir)
    if command == "train":
        args = ["train", "--config", "tiny", "--workdir", str(old_workdir), "--no-progress"]
    else:
        args = ["export", "--checkpoint", str(old_workdir), "--out", str(tmp_path / "m.bin")]
    proc = processes.run([sys.executable, "-m", "facedeblur_jax.cli", *args])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith(f"facedeblur {command}: error: checkpoint")
    assert "model.layout_version = 1" in errors[0]
    assert _snapshot(old_workdir) == before
    assert not (tmp_path / "m.bin").exists()


def test_placement_and_area_floor_of_older_checkpoints():
    """Checkpoints from before degrade.center and loss.structural_min_area trained with
    centroid-placed kernels and no floor: they load with those, not today's defaults."""
    config = load_config("tiny")
    raw = json.loads(config_to_json(config))
    del raw["degrade"]["center"], raw["loss"]["structural_min_area"]
    back = config_from_meta({"config": json.dumps(raw)})
    assert (config.degrade.center, back.degrade.center) == ("bbox", "centroid")
    assert config.loss.structural_min_area == 1.0 and back.loss.structural_min_area == 0.0
    kept = config_from_meta({"config": config_to_json(config)})
    assert kept.degrade.center == "bbox" and kept.loss.structural_min_area == 1.0


def test_phases_of_an_older_checkpoint_parse_the_coarse_output():
    """A 4-phase checkpoint (before parsing_clear / parsing_input) keeps its phases, and
    each of them — even one named parsing_clear — parses G_c's output."""
    from facedeblur_jax.training.schedule import phases_from_config

    config = load_config("tiny", {"phase_order": ("coarse", "parsing", "fine", "joint")})
    raw = json.loads(config_to_json(config))
    del raw["phases"]["parsing_clear"]
    for rec in raw["phases"].values():
        del rec["parsing_input"]
    raw["phases"]["parsing_clear"] = dict(raw["phases"]["parsing"])  # a custom phase
    back = config_from_meta({"config": json.dumps(raw)})
    assert back.phase_order == ("coarse", "parsing", "fine", "joint")
    assert {n: r.parsing_input for n, r in back.phases.items()} == {
        n: "coarse" for n in ("coarse", "parsing", "fine", "joint", "parsing_clear")
    }
    assert [p.parsing_input for p in phases_from_config(back)] == ["coarse"] * 4


# --- damaged checkpoints: unreadable, not "another model"; the newest readable one -------


def _small_checkpoints(workdir, steps=(2,)):
    """Real Orbax checkpoints of a small state (random numbers: array files of some size)."""
    rng = np.random.default_rng(0)
    state = {"a": jnp.asarray(rng.standard_normal(4000), jnp.float32), "b": {"c": jnp.ones((2, 3))}}
    with Checkpointer(workdir, async_save=False) as ckpt:
        for step in steps:
            ckpt.save(step, state, {"config": "{}", "step": step})
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def _garble(folder):
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "commit_success.txt":
            p.write_bytes(bytes(range(100)))


@pytest.mark.parametrize(
    "damage, item",
    [
        (lambda d: shutil.rmtree(d / "meta"), "its 'meta' item is missing or corrupt"),
        (lambda d: shutil.rmtree(d / "state"), "its 'state' item is missing or corrupt"),
        (
            lambda d: (d / "state" / "_METADATA").write_text('{"tree_metadata": {"a'),
            r"its 'state' item is missing or corrupt \(JSONDecodeError",
        ),
        (lambda d: _garble(d / "state"), "its 'state' item is missing or corrupt"),
        (zero_array_data, "its arrays are corrupt or truncated"),
    ],
    ids=["meta_deleted", "state_deleted", "metadata_truncated", "garbage", "arrays_zeroed"],
)
def test_a_damaged_checkpoint_is_unreadable_not_another_model(tmp_path, damage, item):
    abstract = _small_checkpoints(tmp_path)
    damage(tmp_path / "checkpoints" / "2")
    with Checkpointer(tmp_path, async_save=False, create=False) as ckpt:
        with pytest.raises(UnreadableCheckpoint) as info:
            ckpt.restore(abstract, 2)
    message = str(info.value)
    assert message.startswith(f"checkpoint {str(tmp_path / 'checkpoints' / '2')!r} cannot be read")
    assert re.search(item, message) and "\n" not in message and "tensorstore_spec" not in message
    assert "does not match" not in message


def test_a_state_of_another_shape_is_named_by_its_key(tmp_path):
    abstract = _small_checkpoints(tmp_path)
    abstract["b"]["c"] = jax.ShapeDtypeStruct((3, 3), jnp.float32)
    with Checkpointer(tmp_path, async_save=False, create=False) as ckpt:
        with pytest.raises(
            CheckpointError, match=r"b\.c is float32\[2, 3\] there, float32\[3, 3\]"
        ):
            ckpt.restore(abstract, 2)
        abstract["b"]["c"] = jax.ShapeDtypeStruct((2, 3), jnp.float32)
        del abstract["a"]
        with pytest.raises(CheckpointError, match=r"a is not part of the model"):
            ckpt.restore(abstract, 2)


def test_the_newest_readable_checkpoint_is_used_and_the_others_named(tmp_path):
    abstract = _small_checkpoints(tmp_path, steps=(2, 4, 6))
    zero_array_data(tmp_path / "checkpoints" / "6")
    shutil.rmtree(tmp_path / "checkpoints" / "4" / "meta")
    with Checkpointer(tmp_path, async_save=False, create=False) as ckpt:
        step, (state, _), skipped = newest_readable(ckpt, lambda s: ckpt.restore(abstract, s))
        assert step == 2 and state["b"]["c"].shape == (2, 3)
        assert [s for s, _ in skipped] == [6, 4]
        assert "arrays are corrupt" in skipped[0][1] and "'meta' item" in skipped[1][1]
        # Another model is not a reason to go back: raised at once.
        other = dict(abstract, a=jax.ShapeDtypeStruct((5,), jnp.float32))
        with pytest.raises(CheckpointError, match="does not match"):
            newest_readable(ckpt, lambda s: ckpt.restore(other, s if s != 6 else 2))
        # A resumed run moves the unreadable ones aside and can save those steps again.
        aside = ckpt.set_aside([6, 4])
        assert aside == tmp_path / "unreadable_checkpoints"
        assert sorted(p.name for p in aside.iterdir()) == ["4", "6"]
        assert ckpt.all_steps() == [2]
        ckpt.save(4, state, {"config": "{}", "step": 4})
        assert ckpt.all_steps() == [2, 4]


def test_when_no_checkpoint_can_be_read_one_line_names_each(tmp_path):
    abstract = _small_checkpoints(tmp_path, steps=(2, 4))
    for step in ("2", "4"):
        _garble(tmp_path / "checkpoints" / step / "state")
    with Checkpointer(tmp_path, async_save=False, create=False) as ckpt:
        with pytest.raises(UnreadableCheckpoint) as info:
            newest_readable(ckpt, lambda s: ckpt.restore(abstract, s))
    message = str(info.value)
    assert message.startswith(
        f"no checkpoint in {str(tmp_path / 'checkpoints')!r} can be read (step 4: its 'state' "
        "item is missing or corrupt"
    )
    assert "; step 2: its 'state' item" in message and "\n" not in message
    assert message.endswith("restore them from a copy, or train anew in another --workdir")


def test_a_failed_read_leaves_no_echo_on_stderr(tmp_path):
    """Orbax's other reads, still in flight when one fails, end on a closed event loop:
    each would print a traceback (and asyncio log its task). Only the error remains."""
    _small_checkpoints(tmp_path)
    zero_array_data(tmp_path / "checkpoints" / "2")
    script = (
        "import sys, gc, time, jax\n"
        "from facedeblur_jax.state.checkpoint import Checkpointer, UnreadableCheckpoint\n"
        "abstract = {'a': jax.ShapeDtypeStruct((4000,), 'float32'),\n"
        "            'b': {'c': jax.ShapeDtypeStruct((2, 3), 'float32')}}\n"
        "with Checkpointer(sys.argv[1], async_save=False, create=False) as ckpt:\n"
        "    try:\n"
        "        ckpt.restore(abstract, 2)\n"
        "    except UnreadableCheckpoint as e:\n"
        "        print('raised', file=sys.stderr)\n"
        "gc.collect(); time.sleep(0.5)\n"
    )
    proc = processes.run([sys.executable, "-c", script, str(tmp_path)], env=os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip() == "raised", proc.stderr[-3000:]
