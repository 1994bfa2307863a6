"""The Boracchi–Foi random walk as one Pallas kernel (the whole 2,000-step loop on device).

Why: ``kernels.trajectory_from_noise(impl="scan")`` runs the walk as a ``lax.scan``,
whose body XLA compiles into several separate fusions (5 in the CPU program; a GPU launches
each as a kernel), once per step of ``T − 1``. On an H100 that cost 17–20 ms per batch
whatever its size, ~9 µs per step (docs/benchmarks/h100_2026-11-24.md), 42–67 % of a
training step; unrolling the scan saved only 15 % (the fusions stay per step). Here the
loop runs inside one Triton kernel: one program per trajectory, the carry ``(x, v)`` in
registers, four scalar loads and two scalar stores per step. The random numbers are the same
:class:`~facedeblur_jax.degrade.kernels.TrajectoryNoise` draws, so both implementations
give the same walk up to float rounding (the GPU may contract ``a·b + c`` into FMAs).

:func:`trajectory_pallas` is one trajectory; batches come from ``jax.vmap``, which
``pallas_call`` turns into a grid over the batch (one program each; the programs run
concurrently, so the time is that of one 2,000-step loop). On other backends the same
kernel runs in Pallas' interpreter (slow; for tests). ``kernels.trajectory_from_noise``
chooses between this and the scan (``impl``; ``"auto"`` = this kernel when lowering for
CUDA, the scan for any other platform). JAX 0.10's interpreter cannot run inside
``shard_map``, so the train step's config accepts only ``"scan"`` and ``"auto"``.

Measured on an H100 (jax 0.11.2; docs/benchmarks/h100_2026-11-24_speedups.md): degradation
0.77 / 1.05 / 2.25 ms at batch 16 / 64 / 256 against 17.9 / 18.3 / 14.5 ms for the scan,
kernels equal to the scan's within 7.3e-5; inside the sharded train step the joint phase went
from 624 to 755 img/s (batch 64, bf16). Hence ``"auto"`` is the configs' default. The Triton
lowering for CUDA is also checked on CPU by ``tests/degrade/test_walk_pallas.py``.
"""

from __future__ import annotations

import functools
import inspect

import chex
import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

_EPS = 1e-12  # as kernels._EPS


def _walk_kernel(params_ref, noise_ref, out_ref, *, num_steps: int):
    """Pallas kernel body: one trajectory.

    Refs:
      params_ref: ``f32[8]`` = (centripetal, gaussianTerm, shake_prob, v_re, v_im, anxiety,
        step, 0).
      noise_ref: ``f32[T − 1, 4]`` per step (shake uniform, angle uniform, normal re, im).
      out_ref: ``f32[T, 2]`` positions ``(x, y)``; row 0 is the origin.
    """
    centripetal = params_ref[0]
    gaussian_term = params_ref[1]
    shake_prob = params_ref[2]
    anxiety = params_ref[5]
    step = params_ref[6]
    zero = params_ref[7] * 0.0
    out_ref[0, 0] = zero
    out_ref[0, 1] = zero

    def body(t, carry):
        xr, xi, vr, vi = carry
        u_shake = noise_ref[t, 0]
        angle = jnp.pi + (noise_ref[t, 1] - 0.5)
        ca, sa = jnp.cos(angle), jnp.sin(angle)
        # Same operation order as kernels.trajectory_from_noise (complex product, where, ...).
        shake = u_shake < shake_prob
        nr = jnp.where(shake, 2.0 * (vr * ca - vi * sa), 0.0)
        ni = jnp.where(shake, 2.0 * (vr * sa + vi * ca), 0.0)
        vr = vr + (nr + anxiety * (gaussian_term * noise_ref[t, 2] - centripetal * xr) * step)
        vi = vi + (ni + anxiety * (gaussian_term * noise_ref[t, 3] - centripetal * xi) * step)
        norm = jnp.maximum(jnp.sqrt(vr * vr + vi * vi), _EPS)
        vr = vr / norm * step
        vi = vi / norm * step
        xr = xr + vr
        xi = xi + vi
        out_ref[t + 1, 0] = xr
        out_ref[t + 1, 1] = xi
        return xr, xi, vr, vi

    jax.lax.fori_loop(0, num_steps - 1, body, (zero, zero, params_ref[3], params_ref[4]))


def walk_params(
    noise,
    anxiety: float | jax.Array,
    max_total_length: float | jax.Array,
) -> jax.Array:
    """``f32[8]``: the per-trajectory constants of the walk (as ``trajectory_from_noise``)."""
    num_steps = noise.shake_u.shape[0] + 1
    anxiety = jnp.asarray(anxiety, jnp.float32)
    step = jnp.asarray(max_total_length, jnp.float32) / (num_steps - 1)
    angle = 2.0 * jnp.pi * noise.params_u[3]
    v0 = jnp.stack([jnp.cos(angle), jnp.sin(angle)])
    v = jnp.where(anxiety > 0, v0 * anxiety, v0 * step)
    freq_big_shakes = 0.2 * noise.params_u[2]
    return jnp.stack(
        [
            0.7 * noise.params_u[0],
            10.0 * noise.params_u[1],
            freq_big_shakes * anxiety,
            v[0],
            v[1],
            anxiety,
            step,
            jnp.zeros_like(step),
        ]
    ).astype(jnp.float32)


def _out_struct(shape: tuple[int, ...], like: jax.Array) -> jax.ShapeDtypeStruct:
    """``f32[shape]`` output type that varies over the same mesh axes as ``like``.

    Inside ``shard_map`` (the train step) ``pallas_call`` needs to be told how its output
    varies across the mesh; it varies like its inputs. The keyword is ``manual_axis_type``
    in JAX 0.10 (``vma`` in earlier releases), so it is looked up rather than assumed.
    """
    aval = jax.typeof(like)
    accepted = inspect.signature(jax.ShapeDtypeStruct).parameters
    for name in ("manual_axis_type", "vma"):
        if name in accepted and getattr(aval, name, None) is not None:
            return jax.ShapeDtypeStruct(shape, jnp.float32, **{name: getattr(aval, name)})
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def trajectory_pallas(
    noise,
    anxiety: float | jax.Array,
    max_total_length: float | jax.Array,
    interpret: bool = False,
) -> jax.Array:
    """The ``createTrajectory.m`` walk of :func:`kernels.trajectory_from_noise`, in Pallas.

    Args:
      noise: ``kernels.TrajectoryNoise`` for ``T`` samples (one trajectory; ``vmap`` for
        more).
      anxiety: shake amount, scalar ``>= 0`` (may be traced).
      max_total_length: path length ``L``, scalar ``> 0`` (may be traced).
      interpret: run Pallas' interpreter (any backend) instead of compiling with Triton.

    Returns:
      ``f32[T, 2]`` positions ``(x, y)`` starting at the origin.
    """
    chex.assert_shape(noise.params_u, (4,))
    chex.assert_rank([noise.shake_u, noise.angle_u, noise.normals], [1, 1, 2])
    chex.assert_equal_shape_prefix([noise.shake_u, noise.angle_u, noise.normals], 1)
    num_steps = noise.shake_u.shape[0] + 1
    params = walk_params(noise, anxiety, max_total_length)
    packed = jnp.concatenate(
        [noise.shake_u[:, None], noise.angle_u[:, None], noise.normals], axis=1
    ).astype(jnp.float32)
    traj = pl.pallas_call(
        functools.partial(_walk_kernel, num_steps=num_steps),
        out_shape=_out_struct((num_steps, 2), packed),
        interpret=interpret,
        # One warp: the loop is scalar and sequential; more warps would only repeat it.
        compiler_params=None if interpret else pltriton.CompilerParams(num_warps=1, num_stages=1),
        name="bf_trajectory_walk",
    )(params, packed)
    chex.assert_shape(traj, (num_steps, 2))
    return traj
