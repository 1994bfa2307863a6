"""Random camera-shake blur kernels (Boracchi & Foi 2012), sampled on device.

Source: G. Boracchi and A. Foi, "Modeling the performance of image restoration from motion
blur", IEEE TIP 2012 — their MATLAB ``createTrajectory.m`` (the random walk) and
``createPSFs.m`` (bilinear "triangle" splatting; optional centring on the centre of mass).

Per kernel:

1. :func:`sample_trajectory` — a 2-D random walk of ``num_steps`` samples with inertia:
   ``centripetal = 0.7·U``, ``gaussianTerm = 10·U``, ``freqBigShakes = 0.2·U``,
   ``v0 = exp(i·2π·U)``, ``v = v0·L/(numT−1)`` (or ``v0·anxiety`` if ``anxiety > 0``),
   ``x[0] = 0`` and for every step

       nextDirection = 2·v·exp(i(π + (U − 0.5)))   with probability freqBigShakes·anxiety, else 0
       dv = nextDirection + anxiety·(gaussianTerm·(N + iN) − centripetal·x[t])·L/(numT−1)
       v  = (v + dv) / |v + dv| · L/(numT−1);   x[t+1] = x[t] + v

   with ``L = max_total_length``. Complex numbers are pairs of float32 ``(re, im) = (x, y)``
   (no complex dtypes, so the walk runs unchanged on TPU).
2. :func:`rasterize` — scale so that the largest deviation from the centre of mass is
   ``max(|dx|, |dy|) = (k − 1)/2`` (B&F do not scale; we fit every trajectory to the chosen
   support ``k`` instead of choosing ``TrajSize``), place it in the centred ``k×k`` support
   (``center``, below) and splat every sample bilinearly; normalise to sum 1 (never
   min–max).

Choices written down here:

* ``anxiety = 0.005`` by default: the value of the authors' demo script; it gives thin
  curved strokes with occasional loops, like the paper's released 27×27 test kernels.
  ``anxiety=None`` uses B&F's own default ``0.1·U`` per sample, which mostly gives tangled
  knots.
* Every kernel lives on a static ``canvas × canvas`` grid (27×27 by default) whatever its
  size ``k``, so shapes never depend on the random size. The ``k×k`` support is centred:
  indices ``[(canvas − k)/2, (canvas + k)/2)`` on both axes, and the kernel is exactly zero
  outside it.
* Placement (``center``, ``config.degrade.center``; the paper does not state it): the modes
  differ only by a translation of the same fitted stroke.

  - ``"centroid"``: the centre of mass at the canvas centre (``createPSFs.m`` with
    ``do_center``); only one side of the stroke touches the support border. What every
    run before this option trained with (``core/compat.py, LEGACY_DEFAULTS``).
  - ``"bbox"`` (default): the stroke's bounding box centred. The paper's released 27×27
    test kernel (``kernel_27_(1).mat`` in the authors' repository) supports it: its non-zero
    pixels span rows 2..26 and columns 5..22 (row 26 holds 2e-6 of the mass; above 1e-4
    rows 2..25), a box centred at (14, 13.5) — (13.5, 13.5) above 1e-4 — i.e. within 1 px
    (½ px) of the canvas centre 13, while its centroid (13.66, 16.07) is 3.1 px off it
    (measured with numpy on the released kernel).
  - ``"random"``: bounding box centred, then a uniform random offset per axis that keeps
    the whole stroke inside its ``k×k`` support (``kernels.offset_key`` draws it). Inside
    the support, not the whole canvas: the canvas is a static shape (27 for every size,
    7 in the tests), so a canvas-wide offset would make the blur distribution depend on an
    implementation detail, shift a 13×13 kernel by up to 7 px more than a 27×27 one, and
    break the invariant the test bank and Tables 9/10 rely on (a size-k kernel is zero
    outside its k×k support). On the 27×27 canvas a 27 kernel may use the whole canvas.
* Axis convention: rows (first array axis) = ``y`` = imaginary part, columns = ``x`` =
  real part.
* Deterministic per PRNG key: one key per kernel (``jax.random.split(key, batch)``), so
  :func:`sample_kernels` equals ``vmap(sample_kernel)`` over the split keys.

Usage (``batch``, ``sizes``, ``canvas``, ``num_steps``, ``center`` are static)::

    static = ("batch", "sizes", "canvas", "num_steps", "center")
    fn = jax.jit(sample_kernels, static_argnames=static)
    kernels, sizes = fn(key, batch=64)        # f32[64, 27, 27], i32[64]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from facedeblur_jax.degrade import walk_pallas

DEFAULT_SIZES: tuple[int, ...] = (13, 15, 17, 19, 21, 23, 25, 27)
DEFAULT_CANVAS = 27
DEFAULT_ANXIETY = 0.005
DEFAULT_NUM_STEPS = 2000
DEFAULT_MAX_TOTAL_LENGTH = 60.0
# B&F's default anxiety when none is given: 0.1·U(0, 1), drawn per trajectory.
BF_DEFAULT_ANXIETY_SCALE = 0.1
# How the walk runs: "scan" (lax.scan, any backend), "pallas" (one Triton kernel on CUDA,
# Pallas' interpreter elsewhere), "auto" (the kernel when lowering for CUDA, else the scan).
TRAJECTORY_IMPLS = ("scan", "pallas", "auto")
# Where the fitted stroke sits in its k×k support (:func:`rasterize`; module docstring).
CENTERS = ("centroid", "bbox", "random")
DEFAULT_CENTER = "bbox"
OFFSET_TAG = 0x0FF5_E7

_EPS = 1e-12


# ---------------------------------------------------------------------------------------------
# Validation (static arguments, and scalars when they are concrete Python numbers)
# ---------------------------------------------------------------------------------------------


def _validate_canvas(canvas: int) -> None:
    if not isinstance(canvas, int) or canvas < 3 or canvas % 2 == 0:
        raise ValueError(f"canvas must be an odd int >= 3, got {canvas!r}")


def _validate_num_steps(num_steps: int) -> None:
    if not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an int >= 2, got {num_steps!r}")


def _validate_sizes(sizes: Sequence[int], canvas: int) -> tuple[int, ...]:
    sizes = tuple(sizes)
    if not sizes:
        raise ValueError("sizes must not be empty")
    for k in sizes:
        if (
            not isinstance(k, numbers.Integral)
            or isinstance(k, bool)
            or k < 3
            or k % 2 == 0
            or k > canvas
        ):
            raise ValueError(
                f"sizes must hold odd ints in [3, canvas={canvas}], got {k!r} in {sizes!r}"
            )
    return tuple(int(k) for k in sizes)


def _validate_static(
    batch: int | None, sizes: Sequence[int], canvas: int, num_steps: int
) -> tuple[int, ...]:
    """Raise ``ValueError`` naming the argument for bad static inputs; return ``sizes``."""
    _validate_canvas(canvas)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    _validate_num_steps(num_steps)
    return _validate_sizes(sizes, canvas)


def _validate_impl(impl: str) -> None:
    if impl not in TRAJECTORY_IMPLS:
        raise ValueError(f"trajectory impl must be one of {TRAJECTORY_IMPLS}, got {impl!r}")


def _validate_scalar(name: str, value, *, allow_zero: bool) -> None:
    """Check a Python scalar if it is concrete (traced values are left alone)."""
    if isinstance(value, int | float):
        if value < 0 or (value == 0 and not allow_zero) or not math.isfinite(value):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{name} must be finite and {bound}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Complex arithmetic on float32 pairs [..., 2] = (re, im)
# ---------------------------------------------------------------------------------------------


def _cmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """Complex product of ``f32[..., 2]`` pairs."""
    re = a[..., 0] * b[..., 0] - a[..., 1] * b[..., 1]
    im = a[..., 0] * b[..., 1] + a[..., 1] * b[..., 0]
    return jnp.stack([re, im], axis=-1)


def _cexp_i(theta: jax.Array) -> jax.Array:
    """``exp(i·theta)`` as ``f32[..., 2]``."""
    return jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)


# ---------------------------------------------------------------------------------------------
# Trajectory (createTrajectory.m)
# ---------------------------------------------------------------------------------------------


class TrajectoryNoise(NamedTuple):
    """All random numbers one trajectory consumes (drawn up front, outside the scan).

    Attributes:
      params_u: ``f32[4]`` uniforms for ``(centripetal, gaussianTerm, freqBigShakes, angle)``.
      shake_u: ``f32[T-1]`` uniforms deciding the abrupt shakes.
      angle_u: ``f32[T-1]`` uniforms for the abrupt-shake direction.
      normals: ``f32[T-1, 2]`` standard normals (real, imaginary part of the Gaussian term).
    """

    params_u: jax.Array
    shake_u: jax.Array
    angle_u: jax.Array
    normals: jax.Array


def draw_trajectory_noise(key: jax.Array, num_steps: int = DEFAULT_NUM_STEPS) -> TrajectoryNoise:
    """Draw the random numbers of one ``num_steps``-sample trajectory (``num_steps`` static)."""
    _validate_num_steps(num_steps)
    k_par, k_shake, k_angle, k_normal = jax.random.split(key, 4)
    return TrajectoryNoise(
        params_u=jax.random.uniform(k_par, (4,)),
        shake_u=jax.random.uniform(k_shake, (num_steps - 1,)),
        angle_u=jax.random.uniform(k_angle, (num_steps - 1,)),
        normals=jax.random.normal(k_normal, (num_steps - 1, 2)),
    )


def trajectory_from_noise(
    noise: TrajectoryNoise,
    anxiety: float | jax.Array = DEFAULT_ANXIETY,
    max_total_length: float | jax.Array = DEFAULT_MAX_TOTAL_LENGTH,
    unroll: int = 1,
    impl: str = "scan",
) -> jax.Array:
    """The ``createTrajectory.m`` random walk for given random numbers.

    Args:
      noise: :class:`TrajectoryNoise` for ``T`` samples.
      anxiety: amount of shake, scalar ``>= 0`` (may be traced). 0 gives a straight line.
      max_total_length: path length ``L`` (sum of the ``T − 1`` step lengths), may be traced.
      unroll: steps per iteration of the compiled loop (``lax.scan(unroll=...)``, static).
        The same walk whatever its value (up to float rounding, ~1e-6). On an H100, 16
        cut the walk's time by 15 % for 20 s more compile (docs/benchmarks/h100_2026-11-24.md).
        Only used by the scan.
      impl: ``"scan"`` (``lax.scan``), ``"pallas"`` (``walk_pallas``: one Triton kernel on
        CUDA, Pallas' interpreter on other backends) or ``"auto"`` (the kernel when lowering
        for CUDA, the scan for any other platform; chosen per lowering platform with
        ``lax.platform_dependent``). Static. All give the same walk up to float rounding.

    Returns:
      ``f32[T, 2]``: positions ``(x, y) = (re, im)`` in pixels, starting at the origin; not
      centred or scaled (see :func:`rasterize`).
    """
    _validate_scalar("anxiety", anxiety, allow_zero=True)
    _validate_scalar("max_total_length", max_total_length, allow_zero=False)
    _validate_impl(impl)
    chex.assert_shape(noise.params_u, (4,))
    chex.assert_rank([noise.shake_u, noise.angle_u, noise.normals], [1, 1, 2])
    chex.assert_equal_shape_prefix([noise.shake_u, noise.angle_u, noise.normals], 1)
    if impl == "scan":
        return _trajectory_scan(noise, anxiety, max_total_length, unroll)

    def kernel(n, a, m):
        return walk_pallas.trajectory_pallas(n, a, m, interpret=False)

    def interpreted(n, a, m):
        return walk_pallas.trajectory_pallas(n, a, m, interpret=True)

    def scan(n, a, m):
        return _trajectory_scan(n, a, m, unroll)

    # Only the branch of the platform being lowered for is lowered, so the Triton kernel is
    # never lowered for CPU/TPU (where only Pallas' interpreter could run it).
    return jax.lax.platform_dependent(
        noise,
        jnp.asarray(anxiety, jnp.float32),
        jnp.asarray(max_total_length, jnp.float32),
        cuda=kernel,
        default=interpreted if impl == "pallas" else scan,
    )


def _trajectory_scan(
    noise: TrajectoryNoise,
    anxiety: float | jax.Array,
    max_total_length: float | jax.Array,
    unroll: int,
) -> jax.Array:
    """:func:`trajectory_from_noise` as a ``lax.scan`` (``f32[T, 2]``)."""
    num_steps = noise.shake_u.shape[0] + 1

    anxiety = jnp.asarray(anxiety, jnp.float32)
    step = jnp.asarray(max_total_length, jnp.float32) / (num_steps - 1)
    centripetal = 0.7 * noise.params_u[0]
    gaussian_term = 10.0 * noise.params_u[1]
    freq_big_shakes = 0.2 * noise.params_u[2]
    v0 = _cexp_i(2.0 * jnp.pi * noise.params_u[3])
    v = jnp.where(anxiety > 0, v0 * anxiety, v0 * step)
    shake_prob = freq_big_shakes * anxiety

    def body(carry, draws):
        x, v = carry
        u_shake, u_angle, n = draws
        next_dir = 2.0 * _cmul(v, _cexp_i(jnp.pi + (u_angle - 0.5)))
        next_dir = jnp.where(u_shake < shake_prob, next_dir, 0.0)
        dv = next_dir + anxiety * (gaussian_term * n - centripetal * x) * step
        v = v + dv
        v = v / jnp.maximum(jnp.sqrt(jnp.sum(v * v)), _EPS) * step
        x = x + v
        return (x, v), x

    # Derived from the draws (not a constant) so that under shard_map the scan carry has the
    # same "varying over devices" type as its update.
    x0 = jnp.zeros_like(noise.normals[0])
    _, xs = jax.lax.scan(
        body, (x0, v), (noise.shake_u, noise.angle_u, noise.normals), unroll=int(unroll)
    )
    traj = jnp.concatenate([x0[None], xs], axis=0)
    chex.assert_shape(traj, (num_steps, 2))
    return traj


def sample_trajectory(
    key: jax.Array,
    anxiety: float | jax.Array = DEFAULT_ANXIETY,
    num_steps: int = DEFAULT_NUM_STEPS,
    max_total_length: float | jax.Array = DEFAULT_MAX_TOTAL_LENGTH,
    unroll: int = 1,
    impl: str = "scan",
) -> jax.Array:
    """One Boracchi & Foi camera-shake trajectory (``createTrajectory.m``).

    ``trajectory_from_noise(draw_trajectory_noise(key, num_steps), anxiety, max_total_length)``.

    Args:
      key: PRNG key.
      anxiety: amount of shake, scalar ``>= 0`` (may be traced). 0 gives a straight line.
      num_steps: number of samples ``numT`` (static).
      max_total_length: path length ``L`` (sum of step lengths), scalar (may be traced).
      unroll: loop unrolling of the walk (static; see :func:`trajectory_from_noise`).
      impl: the walk's implementation (static; see :func:`trajectory_from_noise`).

    Returns:
      ``f32[num_steps, 2]``: positions ``(x, y) = (re, im)`` in pixels, starting at the
      origin; not centred or scaled (see :func:`rasterize`).
    """
    noise = draw_trajectory_noise(key, num_steps)
    return trajectory_from_noise(noise, anxiety, max_total_length, unroll, impl)


# ---------------------------------------------------------------------------------------------
# Rasterisation (createPSFs.m, one exposure)
# ---------------------------------------------------------------------------------------------


def _check_center(center: str) -> None:
    if center not in CENTERS:
        raise ValueError(f"degrade.center must be one of {CENTERS}, got {center!r}")


def rasterize(
    traj: jax.Array,
    size: int | jax.Array,
    canvas: int = DEFAULT_CANVAS,
    center: str = DEFAULT_CENTER,
    offset_u: jax.Array | None = None,
) -> jax.Array:
    """Bilinearly splat a trajectory into a centred ``size × size`` support of a canvas.

    The trajectory is scaled (up or down) so that its largest deviation from its centre of
    mass is ``max(|dx|, |dy|) = (size − 1)/2`` — the same shape and scale in every mode —
    and then placed (``center``, static):

    * ``"centroid"``: the centre of mass at canvas index ``(canvas − 1)/2`` (B&F's
      ``createPSFs.m``); only one side of the stroke reaches the support border;
    * ``"bbox"``: the centre of the stroke's bounding box at ``(canvas − 1)/2``;
    * ``"random"``: bounding box centred, then moved by ``(2u − 1) · slack`` per axis, with
      ``u = offset_u`` and ``slack = (size − 1)/2 − half the box`` — a uniform offset that
      keeps the whole stroke inside its ``size × size`` support.

    Each sample adds ``(1 − |fx|)(1 − |fy|)`` to its 4 neighbours (B&F's triangle function),
    computed densely as ``wyᵀ @ wx`` with ``wx[t, j] = relu(1 − |px_t − j|)``. The result is
    normalised to sum 1. Bilinear splatting preserves the mean, so with ``"centroid"`` the
    kernel's centroid is the canvas centre.

    Args:
      traj: ``f32[T, 2]`` positions ``(x, y)``.
      size: odd support size ``k`` with ``3 <= k <= canvas`` (may be traced; not checked then).
      canvas: odd canvas side (static).
      center: placement, one of :data:`CENTERS` (static).
      offset_u: ``f32[2]`` uniforms in [0, 1) for ``"random"`` (x, y); required then,
        ignored otherwise.

    Returns:
      ``f32[canvas, canvas]`` (rows = y, columns = x), ``>= 0``, sum 1, exactly zero outside
      rows/columns ``[(canvas − k)/2, (canvas + k)/2)`` in every mode. A degenerate
      trajectory (all samples equal) gives a delta at the centre.
    """
    chex.assert_rank(traj, 2)
    chex.assert_axis_dimension(traj, 1, 2)
    _validate_canvas(canvas)
    _check_center(center)
    if isinstance(size, numbers.Integral):
        _validate_sizes((size,), canvas)
    if center == "random":
        if offset_u is None:
            raise ValueError("center='random' needs offset_u (f32[2] uniforms)")
        chex.assert_shape(offset_u, (2,))

    traj = jnp.asarray(traj, jnp.float32)
    centre = (canvas - 1) / 2.0
    half = (jnp.asarray(size, jnp.float32) - 1.0) / 2.0

    d = traj - jnp.mean(traj, axis=0, keepdims=True)
    d = d * (half / jnp.maximum(jnp.max(jnp.abs(d)), _EPS))  # fitted: |d| <= half
    if center != "centroid":
        lo, hi = jnp.min(d, axis=0), jnp.max(d, axis=0)
        d = d - (lo + hi) / 2.0  # bounding box centred
        if center == "random":
            slack = jnp.maximum(half - (hi - lo) / 2.0, 0.0)
            d = d + (2.0 * jnp.asarray(offset_u, jnp.float32) - 1.0) * slack
    # Clip guards against rounding pushing an extreme sample a hair past the support border
    # (which would leak a ~1e-7 weight to the next pixel).
    pos = jnp.clip(centre + d, centre - half, centre + half)

    grid = jnp.arange(canvas, dtype=jnp.float32)
    wx = jax.nn.relu(1.0 - jnp.abs(pos[:, 0:1] - grid))  # [T, canvas]
    wy = jax.nn.relu(1.0 - jnp.abs(pos[:, 1:2] - grid))  # [T, canvas]
    psf = jnp.matmul(wy.T, wx, precision=jax.lax.Precision.HIGHEST)  # [canvas(y), canvas(x)]
    psf = psf / jnp.maximum(jnp.sum(psf), _EPS)
    chex.assert_shape(psf, (canvas, canvas))
    return psf


def offset_key(key: jax.Array) -> jax.Array:
    """The key of a kernel's ``"random"`` placement offset: ``fold_in(key, OFFSET_TAG)``, so
    the size, anxiety and walk of a kernel are the same whatever ``center`` is."""
    return jax.random.fold_in(key, OFFSET_TAG)


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------


def sample_kernel(
    key: jax.Array,
    sizes: Sequence[int] = DEFAULT_SIZES,
    canvas: int = DEFAULT_CANVAS,
    anxiety: float | jax.Array | None = DEFAULT_ANXIETY,
    num_steps: int = DEFAULT_NUM_STEPS,
    max_total_length: float | jax.Array = DEFAULT_MAX_TOTAL_LENGTH,
    unroll: int = 1,
    impl: str = "scan",
    center: str = DEFAULT_CENTER,
) -> tuple[jax.Array, jax.Array]:
    """One kernel: size uniform over ``sizes``, B&F trajectory, rasterised on the canvas.

    Args: as :func:`sample_kernels` (``sizes``, ``canvas``, ``num_steps``, ``center`` static).

    Returns:
      ``(f32[canvas, canvas], i32[])``: the kernel and its support size ``k``.
    """
    sizes = _validate_static(None, sizes, canvas, num_steps)
    _check_center(center)
    _validate_scalar("max_total_length", max_total_length, allow_zero=False)
    if anxiety is not None:
        _validate_scalar("anxiety", anxiety, allow_zero=True)

    k_size, k_anx, k_traj = jax.random.split(key, 3)
    size = jnp.asarray(sizes, jnp.int32)[jax.random.randint(k_size, (), 0, len(sizes))]
    if anxiety is None:
        anxiety = BF_DEFAULT_ANXIETY_SCALE * jax.random.uniform(k_anx, ())
    traj = sample_trajectory(k_traj, anxiety, num_steps, max_total_length, unroll, impl)
    offset_u = jax.random.uniform(offset_key(key), (2,)) if center == "random" else None
    return rasterize(traj, size, canvas, center, offset_u), size


def config_kwargs(degrade_cfg) -> dict:
    """:func:`sample_kernel` / :func:`sample_kernels` keyword arguments from a config's
    ``degrade`` section (sizes, canvas, anxiety, trajectory settings, placement)."""
    return dict(
        sizes=tuple(int(s) for s in degrade_cfg.kernel_sizes),
        canvas=int(degrade_cfg.kernel_canvas),
        anxiety=None if degrade_cfg.anxiety is None else float(degrade_cfg.anxiety),
        num_steps=int(degrade_cfg.trajectory_steps),
        max_total_length=float(degrade_cfg.trajectory_length),
        unroll=int(degrade_cfg.trajectory_unroll),
        impl=str(degrade_cfg.trajectory_impl),
        center=str(degrade_cfg.center),
    )


def sample_kernels(
    key: jax.Array,
    batch: int,
    sizes: Sequence[int] = DEFAULT_SIZES,
    canvas: int = DEFAULT_CANVAS,
    anxiety: float | jax.Array | None = DEFAULT_ANXIETY,
    num_steps: int = DEFAULT_NUM_STEPS,
    max_total_length: float | jax.Array = DEFAULT_MAX_TOTAL_LENGTH,
    unroll: int = 1,
    impl: str = "scan",
    center: str = DEFAULT_CENTER,
) -> tuple[jax.Array, jax.Array]:
    """A batch of random motion-blur kernels (Boracchi & Foi 2012), jittable and vmappable.

    Equals ``jax.vmap(sample_kernel)(jax.random.split(key, batch))``.

    Args:
      key: PRNG key.
      batch: number of kernels ``B >= 1`` (static).
      sizes: candidate odd support sizes, each in ``[3, canvas]``; chosen uniformly per
        kernel (static, hashable: pass a tuple under ``jit``).
      canvas: odd side of the output grid (static).
      anxiety: shake amount; ``0.005`` (authors' demo: thin curved strokes) by default, a
        (possibly traced) scalar, or ``None`` for B&F's default ``0.1·U(0, 1)`` per kernel
        (tangled knots).
      num_steps: trajectory samples ``numT`` (static).
      max_total_length: trajectory path length ``L`` before scaling.
      unroll: loop unrolling of the trajectory walk (static; same kernels up to rounding).
      impl: how the walk runs, ``"scan" | "pallas" | "auto"`` (static; same kernels up to
        rounding; see :func:`trajectory_from_noise`).
      center: placement of the stroke in its support, ``"centroid" | "bbox" | "random"``
        (static; see :func:`rasterize`).

    Returns:
      ``(kernels f32[B, canvas, canvas], sizes i32[B])``. Each kernel is ``>= 0``, sums to 1
      and is zero outside its centred ``k×k`` support.
    """
    sizes = _validate_static(batch, sizes, canvas, num_steps)
    _check_center(center)
    keys = jax.random.split(key, batch)
    kernels, chosen = jax.vmap(
        lambda k: sample_kernel(
            k, sizes, canvas, anxiety, num_steps, max_total_length, unroll, impl, center
        )
    )(keys)
    chex.assert_shape(kernels, (batch, canvas, canvas))
    chex.assert_shape(chosen, (batch,))
    return kernels, chosen
