"""Fixed-shape batches over a range: a jitted function compiles once, whatever the count.

:func:`padded_batches` cuts ``range(total)`` into index batches of one length (the last one
repeats its last index); :func:`map_batched` applies a function over such batches of an
array and drops the padding. Inference, evaluation and photo deblurring all batch this way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

PyTree = Any


def padded_batches(total: int, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """Index batches over ``range(total)``, in order, all of one length.

    Yields:
      ``(i32[batch_size] indices, count)``: the first ``count`` indices are new; the last
      batch is padded by repeating ``total - 1`` (a real input, so the padding computes
      nothing undefined), and its padded results are to be dropped. Nothing when
      ``total == 0``.

    Raises:
      ValueError: ``batch_size < 1`` or ``total < 0``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if total < 0:
        raise ValueError(f"total must be >= 0; got {total}")
    for start in range(0, total, batch_size):
        index = np.minimum(np.arange(start, start + batch_size), total - 1).astype(np.int32)
        yield index, min(batch_size, total - start)


def map_batched(fn: Callable[[np.ndarray], PyTree], x: np.ndarray, batch_size: int) -> PyTree:
    """``fn`` over fixed-size batches of ``x``'s leading axis (:func:`padded_batches`).

    Args:
      fn: ``[batch_size, ...] -> pytree of [batch_size, ...]`` (e.g. a jitted network: it
        compiles once).
      x: ``[N, ...]`` inputs, ``N >= 1``.
      batch_size: rows per call.

    Returns:
      The pytree of ``fn``'s outputs for the ``N`` rows, as numpy arrays ``[N, ...]``.
    """
    x = np.asarray(x)
    if len(x) == 0:
        raise ValueError("map_batched needs at least one input row")
    outs = []
    for index, count in padded_batches(len(x), batch_size):
        outs.append(jax.tree.map(lambda y, n=count: np.asarray(y)[:n], fn(x[index])))
    return jax.tree.map(lambda *ys: np.concatenate(ys), *outs)
