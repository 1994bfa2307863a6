"""core.batching: padded fixed-shape batches."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from facedeblur_jax.core.batching import map_batched, padded_batches


def test_padded_batches_cover_the_range_once_in_one_shape():
    got = list(padded_batches(7, 3))
    assert [c for _, c in got] == [3, 3, 1]
    assert [i.tolist() for i, _ in got] == [[0, 1, 2], [3, 4, 5], [6, 6, 6]]
    assert all(i.dtype == np.int32 and i.shape == (3,) for i, _ in got)
    assert [c for _, c in padded_batches(6, 3)] == [3, 3]
    assert list(padded_batches(0, 4)) == []
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        list(padded_batches(3, 0))


def test_map_batched_compiles_once_and_drops_the_padding():
    shapes = []

    @jax.jit
    def fn(x):
        shapes.append(x.shape)  # runs once per compilation
        return {"double": 2 * x, "sum": x.sum(axis=1)}

    x = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    out = map_batched(fn, x, batch_size=4)
    np.testing.assert_array_equal(out["double"], 2 * x)
    np.testing.assert_array_equal(out["sum"], x.sum(axis=1))
    assert shapes == [(4, 2)]
    with pytest.raises(ValueError, match="at least one"):
        map_batched(fn, x[:0], 4)
