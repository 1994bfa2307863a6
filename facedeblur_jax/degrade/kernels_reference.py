"""Plain-numpy reference of :mod:`facedeblur_jax.degrade.kernels`, plus kernel statistics.

The same Boracchi & Foi (TIP 2012) algorithm — ``createTrajectory.m`` random walk and
``createPSFs.m`` bilinear splatting, with our scaling and placement (``center``) onto a
centred ``k×k`` support of a static canvas — written the obvious way: float64, Python
complex numbers, an explicit loop over the steps and ``np.add.at`` splatting. Its random streams
(``np.random.Generator``) differ from JAX's, so only statistics of the two samplers can be
compared; :func:`trajectory_from_draws_np` takes the random numbers as arguments so a test
can also feed both implementations identical draws.

Used by the tests and by notebooks (:func:`kernel_stats`).
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Sequence

import numpy as np

from facedeblur_jax.degrade.kernels import (
    BF_DEFAULT_ANXIETY_SCALE,
    DEFAULT_ANXIETY,
    DEFAULT_CANVAS,
    DEFAULT_CENTER,
    DEFAULT_MAX_TOTAL_LENGTH,
    DEFAULT_NUM_STEPS,
    DEFAULT_SIZES,
    _check_center,
    _validate_scalar,
    _validate_static,
)


def trajectory_from_draws_np(
    params_u: np.ndarray,
    shake_u: np.ndarray,
    angle_u: np.ndarray,
    normals: np.ndarray,
    anxiety: float,
    max_total_length: float = DEFAULT_MAX_TOTAL_LENGTH,
) -> np.ndarray:
    """The ``createTrajectory.m`` walk for given random numbers (explicit loop, float64).

    Args:
      params_u: ``[4]`` uniforms for ``(centripetal, gaussianTerm, freqBigShakes, angle)``.
      shake_u: ``[T-1]`` uniforms deciding the abrupt shakes.
      angle_u: ``[T-1]`` uniforms for the abrupt-shake direction.
      normals: ``[T-1, 2]`` standard normals (real, imaginary part of the Gaussian term).
      anxiety: shake amount ``>= 0``.
      max_total_length: path length ``L``.

    Returns:
      ``f64[T, 2]`` positions ``(x, y)`` starting at the origin.
    """
    num_steps = len(shake_u) + 1
    step = max_total_length / (num_steps - 1)
    centripetal = 0.7 * float(params_u[0])
    gaussian_term = 10.0 * float(params_u[1])
    freq_big_shakes = 0.2 * float(params_u[2])
    init_angle = 2.0 * math.pi * float(params_u[3])

    v0 = cmath.exp(1j * init_angle)
    v = v0 * step
    if anxiety > 0:
        v = v0 * anxiety

    shake_l, angle_l = shake_u.tolist(), angle_u.tolist()
    nre_l, nim_l = normals[:, 0].tolist(), normals[:, 1].tolist()
    x = [0j] * num_steps
    for t in range(num_steps - 1):
        if shake_l[t] < freq_big_shakes * anxiety:
            next_direction = 2 * v * cmath.exp(1j * (math.pi + (angle_l[t] - 0.5)))
        else:
            next_direction = 0
        gauss = complex(nre_l[t], nim_l[t])
        dv = next_direction + anxiety * (gaussian_term * gauss - centripetal * x[t]) * step
        v = v + dv
        v = v / max(abs(v), 1e-300) * step
        x[t + 1] = x[t] + v
    xs = np.asarray(x)
    return np.stack([xs.real, xs.imag], axis=-1)


def sample_trajectory_np(
    rng: np.random.Generator,
    anxiety: float = DEFAULT_ANXIETY,
    num_steps: int = DEFAULT_NUM_STEPS,
    max_total_length: float = DEFAULT_MAX_TOTAL_LENGTH,
) -> np.ndarray:
    """One B&F trajectory, ``f64[num_steps, 2]``, drawing from ``rng``."""
    params_u = rng.random(4)
    shake_u = rng.random(num_steps - 1)
    angle_u = rng.random(num_steps - 1)
    normals = rng.standard_normal((num_steps - 1, 2))
    return trajectory_from_draws_np(params_u, shake_u, angle_u, normals, anxiety, max_total_length)


def rasterize_np(
    traj: np.ndarray,
    size: int,
    canvas: int = DEFAULT_CANVAS,
    center: str = DEFAULT_CENTER,
    offset_u: np.ndarray | None = None,
) -> np.ndarray:
    """Scale to ``max(|d|) = (size−1)/2`` about the mean, place (``center``), splat bilinearly.

    Args:
      traj: ``[T, 2]`` positions ``(x, y)``.
      size: odd support size ``k <= canvas``.
      canvas: odd canvas side.
      center: ``"centroid"`` (mean at the canvas centre), ``"bbox"`` (bounding box centred)
        or ``"random"`` (bounding box centred, then moved by ``(2u − 1)·slack`` per axis,
        ``slack`` = the room left inside the ``k×k`` support).
      offset_u: ``[2]`` uniforms ``u`` for ``"random"``.

    Returns:
      ``f32[canvas, canvas]`` (rows = y), sum 1, zero outside the centred ``k×k`` support.
    """
    _check_center(center)
    traj = np.asarray(traj, np.float64)
    centre = (canvas - 1) / 2.0
    half = (size - 1) / 2.0
    d = traj - traj.mean(axis=0, keepdims=True)
    d = d * (half / max(float(np.abs(d).max()), 1e-12))
    if center != "centroid":
        lo, hi = d.min(axis=0), d.max(axis=0)
        d = d - (lo + hi) / 2.0
        if center == "random":
            if offset_u is None:
                raise ValueError("center='random' needs offset_u (two uniforms)")
            slack = np.maximum(half - (hi - lo) / 2.0, 0.0)
            d = d + (2.0 * np.asarray(offset_u, np.float64) - 1.0) * slack
    pos = np.clip(centre + d, centre - half, centre + half)

    psf = np.zeros((canvas + 1, canvas + 1), np.float64)  # one spare row/column for the edge
    i0 = np.floor(pos).astype(np.int64)
    f = pos - i0
    (x0, y0), (fx, fy) = i0.T, f.T
    np.add.at(psf, (y0, x0), (1 - fy) * (1 - fx))
    np.add.at(psf, (y0, x0 + 1), (1 - fy) * fx)
    np.add.at(psf, (y0 + 1, x0), fy * (1 - fx))
    np.add.at(psf, (y0 + 1, x0 + 1), fy * fx)
    psf = psf[:canvas, :canvas]
    return (psf / psf.sum()).astype(np.float32)


def sample_kernels_np(
    rng: np.random.Generator,
    batch: int,
    sizes: Sequence[int] = DEFAULT_SIZES,
    canvas: int = DEFAULT_CANVAS,
    anxiety: float | None = DEFAULT_ANXIETY,
    num_steps: int = DEFAULT_NUM_STEPS,
    max_total_length: float = DEFAULT_MAX_TOTAL_LENGTH,
    center: str = DEFAULT_CENTER,
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`kernels.sample_kernels`: ``(f32[B, canvas, canvas], i32[B])``.

    ``anxiety=None`` draws B&F's default ``0.1·U`` per kernel; ``center="random"`` draws
    the two offset uniforms after the trajectory.
    """
    sizes = _validate_static(batch, sizes, canvas, num_steps)
    _check_center(center)
    _validate_scalar("max_total_length", max_total_length, allow_zero=False)
    if anxiety is not None:
        _validate_scalar("anxiety", anxiety, allow_zero=True)
    kernels = np.empty((batch, canvas, canvas), np.float32)
    chosen = np.empty((batch,), np.int32)
    for b in range(batch):
        chosen[b] = sizes[rng.integers(len(sizes))]
        a = BF_DEFAULT_ANXIETY_SCALE * rng.random() if anxiety is None else anxiety
        traj = sample_trajectory_np(rng, a, num_steps, max_total_length)
        offset_u = rng.random(2) if center == "random" else None
        kernels[b] = rasterize_np(traj, int(chosen[b]), canvas, center, offset_u)
    return kernels, chosen


def kernel_stats(kernels: np.ndarray, threshold: float = 1e-6) -> dict[str, np.ndarray]:
    """Shape statistics of a batch of kernels on a centred canvas.

    Args:
      kernels: ``[B, c, c]`` (numpy or JAX), each summing to 1.
      threshold: a pixel counts as nonzero if ``> threshold``.

    Returns:
      dict of ``[B]`` arrays:
        ``extent``: max of the bounding-box height and width of the nonzero pixels (≤ k).
        ``support_size``: ``2·r + 1`` with ``r`` the largest Chebyshev distance of a
          nonzero pixel from the canvas centre: the smallest centred odd support holding the
          kernel (= k for our sampler, whose trajectory touches the support border).
        ``nnz``: number of nonzero pixels.
        ``spread``: ``sqrt(Σ w·|p − centroid|²)``, the RMS radius of the mass (pixels).
        ``centroid_offset``: distance of the centroid from the canvas centre (pixels).
    """
    k = np.asarray(kernels, np.float64)
    if k.ndim != 3 or k.shape[1] != k.shape[2]:
        raise ValueError(f"kernels must be [B, c, c], got shape {k.shape}")
    c = k.shape[1]
    centre = (c - 1) / 2.0
    nz = k > threshold
    rows, cols = nz.any(axis=2), nz.any(axis=1)  # [B, c] each

    def _span(m: np.ndarray) -> np.ndarray:
        idx = np.arange(c)
        lo = np.where(m, idx, c).min(axis=1)
        hi = np.where(m, idx, -1).max(axis=1)
        return np.maximum(hi - lo + 1, 0)

    extent = np.maximum(_span(rows), _span(cols))
    yy, xx = np.mgrid[0:c, 0:c].astype(np.float64)
    cheb = np.maximum(np.abs(yy - centre), np.abs(xx - centre))
    radius = np.where(nz, cheb[None], -0.5).max(axis=(1, 2))
    mass = np.maximum(k.sum(axis=(1, 2)), 1e-12)
    cy = (k * yy).sum(axis=(1, 2)) / mass
    cx = (k * xx).sum(axis=(1, 2)) / mass
    second = (k * ((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)).sum(
        axis=(1, 2)
    ) / mass
    return {
        "extent": extent.astype(np.int64),
        "support_size": (2 * radius + 1).astype(np.int64),
        "nnz": nz.sum(axis=(1, 2)).astype(np.int64),
        "spread": np.sqrt(np.maximum(second, 0.0)),
        "centroid_offset": np.hypot(cy - centre, cx - centre),
    }
