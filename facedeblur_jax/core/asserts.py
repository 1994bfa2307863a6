"""Argument checks at public boundaries.

Shape and dtype problems are caught with a ``ValueError`` that names the argument and
the shape it got (chex would raise ``AssertionError``, which users read as a bug in our
code rather than in their call). Value-range checks only run on concrete arrays: inside
``jit`` the values are tracers and the range is the caller's contract.
"""

from __future__ import annotations

import jax
import numpy as np


def _shape(x) -> tuple[int, ...]:
    return tuple(np.shape(x))


def check_rank(name: str, x, rank: int, layout: str) -> None:
    """``ValueError`` unless ``x`` has ``rank`` dims (``layout`` is for the message)."""
    if np.ndim(x) != rank:
        raise ValueError(f"{name} must have shape {layout} (rank {rank}); got shape {_shape(x)}")


def check_images(
    name: str,
    x,
    channels: int | None = 3,
    *,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    tol: float = 1e-3,
) -> None:
    """Checks a float image batch ``f32[B, H, W, C]``.

    Args:
      name: argument name for the message.
      x: the array.
      channels: required channel count, or ``None`` for any.
      value_range: required value range for concrete (non-traced) arrays, or ``None``.
      tol: slack on the range (augmentation and noise may overshoot by float error).
    """
    check_rank(name, x, 4, "[B, H, W, C]")
    if channels is not None and _shape(x)[-1] != channels:
        raise ValueError(
            f"{name} must have {channels} channels in the last axis ([B, H, W, {channels}]); "
            f"got shape {_shape(x)}"
        )
    dtype = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(
            f"{name} must be a float array with values in [0, 1]; got dtype {dtype} with shape "
            f"{_shape(x)} (convert uint8 images with x / 255)"
        )
    if value_range is not None and not isinstance(x, jax.core.Tracer):
        lo, hi = float(np.min(x)), float(np.max(x))
        if lo < value_range[0] - tol or hi > value_range[1] + tol:
            raise ValueError(
                f"{name} must have values in [{value_range[0]}, {value_range[1]}]; got range "
                f"[{lo:.4g}, {hi:.4g}] with shape {_shape(x)}"
            )
