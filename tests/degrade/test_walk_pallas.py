"""The Pallas walk (``walk_pallas``) against the ``lax.scan`` walk, and its CUDA lowering.

The kernel itself only runs compiled on a GPU; here it runs in Pallas' interpreter, and its
Triton lowering for CUDA is produced on the CPU (``jax.export`` for platform ``cuda``) to
check that the kernel is accepted by the Triton lowering and is one launch for the batch.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.degrade import kernels as K
from facedeblur_jax.degrade import walk_pallas
from facedeblur_jax.degrade.synthesize import synthesize

STATIC = ("batch", "sizes", "canvas", "num_steps", "impl")


def _noise(batch: int, num_steps: int, seed: int = 0) -> K.TrajectoryNoise:
    keys = jax.random.split(jax.random.key(seed), batch)
    return jax.vmap(lambda k: K.draw_trajectory_noise(k, num_steps))(keys)


@pytest.mark.parametrize("anxiety", [0.005, 0.1, 0.0])
def test_interpreted_kernel_walks_like_the_scan(anxiety):
    noise = _noise(6, 2000)
    scan = jax.jit(jax.vmap(lambda n: K.trajectory_from_noise(n, anxiety)))(noise)
    pallas = jax.jit(
        jax.vmap(lambda n: walk_pallas.trajectory_pallas(n, anxiety, 60.0, interpret=True))
    )(noise)
    scan, pallas = np.asarray(scan), np.asarray(pallas)
    assert pallas.shape == scan.shape == (6, 2000, 2)
    np.testing.assert_array_equal(pallas[:, 0], 0.0)
    # Same arithmetic in the same order; XLA fuses/contracts the two programs differently and
    # 2,000 dependent steps accumulate it (measured ≤ 2e-4 of the extent at anxiety 0.1).
    scale = np.max(np.abs(scan))
    assert np.max(np.abs(pallas - scan)) <= 1e-3 * scale
    other = np.asarray(jax.vmap(lambda n: K.trajectory_from_noise(n, anxiety))(_noise(6, 2000, 9)))
    if anxiety > 0:  # another walk is far away (the comparison above can fail)
        assert np.max(np.abs(other - scan)) > 0.1 * scale
    # Step lengths are L/(T-1) = 0.03 px in both.
    np.testing.assert_allclose(np.linalg.norm(np.diff(pallas, axis=1), axis=-1), 0.03, rtol=1e-3)


def test_traced_anxiety_and_length_per_trajectory():
    """anxiety=None draws one anxiety per kernel: batched scalars through the kernel's vmap."""
    noise = _noise(4, 500, seed=1)
    anx = jnp.asarray([0.0, 0.01, 0.05, 0.1])
    length = jnp.asarray([30.0, 60.0, 45.0, 10.0])
    scan = jax.vmap(K.trajectory_from_noise)(noise, anx, length)
    pallas = jax.vmap(lambda n, a, m: K.trajectory_from_noise(n, a, m, impl="pallas"))(
        noise, anx, length
    )
    np.testing.assert_allclose(np.asarray(pallas), np.asarray(scan), atol=1e-3)
    path = np.sum(np.linalg.norm(np.diff(np.asarray(pallas), axis=1), axis=-1), axis=1)
    np.testing.assert_allclose(path, np.asarray(length), rtol=1e-3)


def test_sample_kernels_same_with_every_impl():
    sample = jax.jit(K.sample_kernels, static_argnames=STATIC)
    key = jax.random.key(5)
    base, sizes = sample(key, 4, num_steps=400, impl="scan")
    for impl in ("pallas", "auto"):
        other, other_sizes = sample(key, 4, num_steps=400, impl=impl)
        np.testing.assert_array_equal(np.asarray(other_sizes), np.asarray(sizes))
        np.testing.assert_allclose(np.asarray(other), np.asarray(base), atol=1e-4)
    # "auto" lowers the scan on the CPU: bit-identical.
    auto, _ = sample(key, 4, num_steps=400, impl="auto")
    np.testing.assert_array_equal(np.asarray(auto), np.asarray(base))
    other_key, _ = sample(jax.random.key(6), 4, num_steps=400, impl="pallas")
    assert float(jnp.max(jnp.abs(other_key - base))) > 1e-3  # the comparison can fail


def test_bad_impl_names_it():
    with pytest.raises(ValueError, match="trajectory impl.*'triton'"):
        K.sample_kernels(jax.random.key(0), 2, num_steps=10, impl="triton")


def test_synthesize_with_the_auto_walk_is_the_scan_on_cpu():
    cfg = load_config("tiny").degrade
    sharp = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8))
    outs = {}
    for impl in ("scan", "auto"):
        c = cfg.copy_and_resolve_references()
        c.trajectory_impl = impl
        outs[impl] = jax.jit(lambda k, s, c=c: synthesize(k, s, None, c))(jax.random.key(1), sharp)
    np.testing.assert_array_equal(
        np.asarray(outs["auto"].kernels), np.asarray(outs["scan"].kernels)
    )
    np.testing.assert_array_equal(
        np.asarray(outs["auto"].blurred), np.asarray(outs["scan"].blurred)
    )


def _cuda_module(fn, *args) -> str:
    exported = jax.export.export(
        jax.jit(fn),
        platforms=("cuda",),
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")],
    )(*args)
    return exported.mlir_module()


@pytest.mark.parametrize("impl", ["pallas", "auto"])
def test_lowers_to_one_triton_kernel_for_cuda(impl):
    """The kernel passes the Triton lowering (on CPU): one launch, one program per kernel,
    a single warp, and no while loop left in the CUDA program; the CPU program keeps the scan
    for "auto"."""
    batch = 16

    def fn(key):
        return K.sample_kernels(key, batch, num_steps=2000, impl=impl)

    cuda = _cuda_module(fn, jax.random.key(0))
    calls = re.findall(r"custom_call @__gpu\$xla\.gpu\.triton\(.*", cuda)
    assert len(calls) == 1
    assert 'name = "bf_trajectory_walk"' in calls[0]
    assert re.search(r"grid_x = 16 : i32, grid_y = 1 : i32", calls[0])
    assert "num_warps = 1" in calls[0]
    assert "tensor<16x2000x2xf32>" in calls[0]
    # The scan's loop is gone from the CUDA program (test_scan_impl_never_lowers_the_kernel
    # shows the same program with the scan has one).
    assert "stablehlo.while" not in cuda

    cpu = jax.jit(fn).lower(jax.random.key(0)).as_text()
    if impl == "auto":
        assert "xla.gpu.triton" not in cpu
        assert "stablehlo.while" in cpu


def test_scan_impl_never_lowers_the_kernel():
    cuda = _cuda_module(
        lambda key: K.sample_kernels(key, 4, num_steps=100, impl="scan"), jax.random.key(0)
    )
    assert "xla.gpu.triton" not in cuda
    assert len(re.findall(r"stablehlo\.while\(", cuda)) == 1


def _sharded_step(impl: str, phase_name: str = "coarse"):
    from jax.sharding import Mesh

    from facedeblur_jax.training.schedule import phases_from_config
    from facedeblur_jax.training.step import build_train_step

    cfg = load_config("tiny", {"degrade.trajectory_impl": impl})
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    phase = {p.name: p for p in phases_from_config(cfg)}[phase_name]
    return cfg, mesh, build_train_step(cfg, phase, mesh)


def test_sharded_train_step_lowers_the_kernel_for_cuda():
    """Inside shard_map (check_vma) the kernel's output type must vary like its inputs."""
    from tests.training.test_step_hlo import _abstract_inputs

    cfg, mesh, step = _sharded_step("auto", "joint")
    state, batch = _abstract_inputs(cfg, mesh)
    cuda = _cuda_module(step, state, batch, None)
    calls = re.findall(r"custom_call @__gpu\$xla\.gpu\.triton\(.*", cuda)
    per_device = cfg.train.global_batch_size // mesh.size
    assert len(calls) == 1
    assert f"grid_x = {per_device} : i32" in calls[0]
    assert "stablehlo.while" not in cuda


def test_config_accepts_scan_and_auto_only():
    cfg = load_config("tiny").degrade
    cfg.trajectory_impl = "pallas"
    sharp = jnp.zeros((1, 32, 32, 3), jnp.uint8)
    with pytest.raises(ValueError, match="degrade.trajectory_impl must be one of.*'pallas'"):
        synthesize(jax.random.key(0), sharp, None, cfg)
