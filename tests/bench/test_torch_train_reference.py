"""``facedeblur_jax/bench/torch_train_reference.py``: the torch degradation matches
facedeblur_jax.degrade on the same random numbers, and a train step updates exactly the nets
its phase trains."""

import copy

import jax
import numpy as np
import pytest
import torch

from facedeblur_jax.bench import torch_reference as tr
from facedeblur_jax.bench import torch_train_reference as ttr
from facedeblur_jax.config import load_config
from facedeblur_jax.degrade import blur as jax_blur
from facedeblur_jax.degrade import kernels as jax_kernels
from facedeblur_jax.training.schedule import phases_from_config


def _jax_walks(batch, steps, anxiety, seed=0):
    keys = jax.random.split(jax.random.key(seed), batch)
    noise = jax.vmap(lambda k: jax_kernels.draw_trajectory_noise(k, steps))(keys)
    traj = jax.vmap(lambda n: jax_kernels.trajectory_from_noise(n, anxiety, 60.0))(noise)
    return noise, np.array(traj)


@pytest.mark.parametrize("anxiety", [0.005, 0.08])
def test_trajectories_match_jax_on_the_same_noise(anxiety):
    noise, expected = _jax_walks(4, 300, anxiety)
    t = lambda a: torch.from_numpy(np.array(a))
    got = ttr.trajectories_from_noise(
        t(noise.params_u),
        t(noise.shake_u),
        t(noise.angle_u),
        t(noise.normals),
        torch.full((4,), anxiety),
        60.0,
    ).numpy()
    assert got.shape == expected.shape == (4, 300, 2)
    # A float32 recurrence over 300 steps: rounding differs, paths of length 60 px agree.
    np.testing.assert_allclose(got, expected, atol=2e-3)
    assert np.abs(np.diff(got, axis=1)).max() > 0.01  # the walk moves


@pytest.mark.parametrize("center", jax_kernels.CENTERS)
def test_rasterize_and_blur_match_jax(center):
    _, traj = _jax_walks(3, 200, 0.005, seed=1)
    sizes = np.array([7, 13, 27])
    u = np.random.default_rng(2).random((3, 2)).astype(np.float32)
    expected = np.stack(
        [
            np.asarray(jax_kernels.rasterize(traj[i], int(sizes[i]), 27, center, u[i]))
            for i in range(3)
        ]
    )
    got = ttr.rasterize(
        torch.from_numpy(traj), torch.from_numpy(sizes), 27, center, torch.from_numpy(u)
    ).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=(1, 2)), 1.0, rtol=1e-5)

    images = np.random.default_rng(0).random((3, 40, 36, 3), dtype=np.float32)
    want = np.asarray(jax_blur.blur(images, expected))
    got = ttr.blur(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(expected))
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), want, atol=1e-5)


def test_identity_affine_and_degrade_batch():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 11, (2, 32, 32), generator=gen)
    warped, lab = ttr.random_affine(gen, images, labels, (1.0, 1.0), 0.0, 0.0)
    torch.testing.assert_close(warped, images, atol=1e-5, rtol=0)
    assert torch.equal(lab, labels)

    cfg = load_config("tiny")
    u8 = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8, generator=gen)
    blurred, sharp, lab = ttr.degrade_batch(gen, u8, labels.to(torch.uint8), cfg.degrade)
    assert blurred.shape == sharp.shape == (2, 3, 32, 32) and lab.shape == (2, 32, 32)
    assert blurred.is_contiguous(memory_format=torch.channels_last)
    assert 0 <= float(blurred.min()) and float(blurred.max()) <= 1
    assert not torch.allclose(blurred, sharp, atol=1e-2)


@pytest.mark.parametrize("phase_index", [0, 1, 2, 3, 4])
def test_step_updates_only_the_trained_nets(phase_index):
    cfg = load_config("tiny")
    phase = phases_from_config(cfg)[phase_index]
    torch.manual_seed(0)
    model, disc = tr.build_model(cfg), tr.build_discriminator(cfg)
    before = {"model": copy.deepcopy(model.state_dict()), "disc": copy.deepcopy(disc.state_dict())}
    step = ttr.TorchTrainStep(cfg, phase, model, disc, None, seed=0)
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 11, (2, 32, 32), dtype=torch.uint8, generator=gen)
    loss = step.step(images, labels, torch.ones(2, dtype=torch.bool))
    assert torch.isfinite(loss)
    if phase.parsing_clear:  # P on the augmented sharp face, nothing blurred
        blurred, sharp, _ = step.degrade(images, labels)
        assert blurred is sharp
    after = {"model": model.state_dict(), "disc": disc.state_dict()}
    for owner in ("model", "disc"):
        for name, value in before[owner].items():
            net = "disc" if owner == "disc" else ttr._net_of(name.split(".")[0])
            changed = not torch.equal(value, after[owner][name])
            if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
                assert changed == (phase.trains("parsing") and net == "parsing"), name
            else:
                assert changed == phase.trains(net), (phase.name, name)


def test_degrade_batch_draws_from_a_kernel_pool():
    """degrade.kernel_pool_size > 0: each sample's kernel is a pool kernel (no walk)."""
    cfg = load_config(
        "tiny",
        {"degrade.kernel_pool_size": 2, "degrade.augment": False, "degrade.noise_sigma": 0.0},
    ).degrade
    gen = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8, generator=gen)
    labels = torch.zeros((6, 32, 32), dtype=torch.uint8)
    delta = torch.zeros(7, 7)
    delta[3, 3] = 1.0
    blurred, sharp, _ = ttr.degrade_batch(gen, u8, labels, cfg, torch.stack([delta, delta]))
    torch.testing.assert_close(blurred, sharp, atol=1e-6, rtol=0)  # a pool of deltas
    box = torch.full((7, 7), 1 / 49)
    blurred, sharp, _ = ttr.degrade_batch(gen, u8, labels, cfg, torch.stack([box, box]))
    torch.testing.assert_close(blurred, ttr.blur(sharp, box.expand(6, 7, 7)), atol=1e-6, rtol=0)
    assert not torch.allclose(blurred, sharp, atol=1e-2)


def test_step_checks_the_pool_against_the_config():
    cfg = load_config("tiny", {"degrade.kernel_pool_size": 3})
    phase = phases_from_config(cfg)[0]
    model, disc = tr.build_model(cfg), tr.build_discriminator(cfg)
    with pytest.raises(ValueError, match="kernel_pool_size = 3 needs a pool of that many"):
        ttr.TorchTrainStep(cfg, phase, model, disc, None)
    with pytest.raises(ValueError, match="kernel_pool_size = 3 needs a pool .* got \\(2, 7, 7\\)"):
        ttr.TorchTrainStep(cfg, phase, model, disc, None, kernel_pool=torch.zeros(2, 7, 7))
