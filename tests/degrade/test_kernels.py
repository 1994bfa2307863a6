"""Tests for the Boracchi & Foi motion-kernel sampler (JAX) against its numpy reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.degrade import kernels as K
from facedeblur_jax.degrade import kernels_reference as R

SIZES = K.DEFAULT_SIZES
CANVAS = K.DEFAULT_CANVAS
STATIC = ("batch", "sizes", "canvas", "num_steps", "center")

# Trajectories per implementation for the statistics; each is rasterised at all 8 sizes.
NUM_STAT_TRAJ = 128

sample_kernels_jit = jax.jit(K.sample_kernels, static_argnames=STATIC)


def _support_mask(size: int, canvas: int = CANVAS) -> np.ndarray:
    """bool[canvas, canvas]: the centred size×size support."""
    lo, hi = (canvas - size) // 2, (canvas + size) // 2
    mask = np.zeros((canvas, canvas), bool)
    mask[lo:hi, lo:hi] = True
    return mask


@pytest.fixture(scope="module")
def batch128():
    kernels, sizes = sample_kernels_jit(jax.random.key(0), batch=128)
    return np.asarray(kernels), np.asarray(sizes)


@pytest.fixture(scope="module")
def stat_kernels():
    """JAX and numpy kernels ``f32[N, 8, c, c]``: N trajectories, each at every size."""
    ras = jax.jit(jax.vmap(jax.vmap(K.rasterize, (None, 0)), (0, None)))
    trajf = jax.jit(jax.vmap(K.sample_trajectory))
    sizes = jnp.asarray(SIZES)
    traj_jax = trajf(jax.random.split(jax.random.key(1), NUM_STAT_TRAJ))
    kj = np.asarray(ras(traj_jax, sizes))
    rng = np.random.default_rng(1)
    kn = np.stack(
        [
            np.stack([R.rasterize_np(t, k) for k in SIZES])
            for t in (R.sample_trajectory_np(rng) for _ in range(NUM_STAT_TRAJ))
        ]
    )
    return kj, kn


# ---------------------------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------------------------


def test_batch_shapes_sum_nonneg_support(batch128):
    kernels, sizes = batch128
    assert kernels.shape == (128, CANVAS, CANVAS) and kernels.dtype == np.float32
    assert sizes.shape == (128,) and sizes.dtype == np.int32
    assert np.all(np.isfinite(kernels))
    np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert kernels.min() >= 0.0
    for kern, k in zip(kernels, sizes, strict=True):
        assert np.all(kern[~_support_mask(int(k))] == 0.0), k
    stats = R.kernel_stats(kernels)
    assert np.all(stats["support_size"] <= sizes) and np.all(stats["extent"] <= sizes)
    # Centroid placement: the trajectory touches the k×k support border on one side.
    centred, centred_sizes = sample_kernels_jit(jax.random.key(0), batch=128, center="centroid")
    np.testing.assert_array_equal(np.asarray(centred_sizes), sizes)
    np.testing.assert_array_equal(R.kernel_stats(centred)["support_size"], sizes)


def test_chosen_sizes_cover_size_set(batch128):
    _, sizes = batch128
    assert set(sizes.tolist()) == set(SIZES)


def test_every_size_exactly_zero_outside_support(stat_kernels):
    kj, kn = stat_kernels
    for i, k in enumerate(SIZES):
        outside = ~_support_mask(k)
        assert np.all(kj[:, i][:, outside] == 0.0), k
        assert np.all(kn[:, i][:, outside] == 0.0), k
        assert kj[:, i].min() >= 0.0
        np.testing.assert_allclose(kj[:, i].sum(axis=(1, 2)), 1.0, atol=1e-5)
        assert np.all(R.kernel_stats(kj[:, i])["support_size"] <= k)


def _bbox_centre(kernels: np.ndarray) -> np.ndarray:
    """``f64[B, 2]`` (row, column) centre of each kernel's non-zero bounding box."""
    out = []
    for kern in kernels:
        rows, cols = np.flatnonzero(kern.any(axis=1)), np.flatnonzero(kern.any(axis=0))
        out.append(((rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2))
    return np.asarray(out)


def test_centroid_at_canvas_centre(stat_kernels):
    # Bilinear splatting preserves the mean, and the trajectory is centred on its mean.
    kernels, _ = sample_kernels_jit(jax.random.key(0), batch=64, center="centroid")
    assert R.kernel_stats(kernels)["centroid_offset"].max() < 0.5
    kn, _ = R.sample_kernels_np(np.random.default_rng(0), 16, center="centroid")
    assert R.kernel_stats(kn)["centroid_offset"].max() < 0.5


def test_bbox_placement_centres_the_bounding_box(batch128, stat_kernels):
    """Default placement: the non-zero box is centred (to ½ px: a stroke of odd pixel width
    has an integer centre, of even width a half-integer one); the centroid is not."""
    centre = (CANVAS - 1) / 2
    kj, kn = stat_kernels
    for kernels in (batch128[0], kj.reshape(-1, CANVAS, CANVAS), kn.reshape(-1, CANVAS, CANVAS)):
        assert np.abs(_bbox_centre(kernels) - centre).max() <= 0.5
    # The centroid wanders (as in the released 27×27 kernel): >1 px off for many kernels.
    assert np.mean(R.kernel_stats(batch128[0])["centroid_offset"] > 1.0) > 0.2


def test_placement_modes_are_translations_of_one_stroke():
    """Same size and walk whatever ``center``; the shapes agree (spread and pixel count up
    to the sub-pixel phase of the splat); ``random`` keeps every stroke in its support and
    moves its box, ``u = ½`` is exactly ``bbox``."""
    key = jax.random.key(5)
    by = {c: sample_kernels_jit(key, batch=64, center=c) for c in K.CENTERS}
    sizes = np.asarray(by["bbox"][1])
    stats = {}
    for c, (kern, s) in by.items():
        kern = np.asarray(kern)
        np.testing.assert_array_equal(np.asarray(s), sizes)
        np.testing.assert_allclose(kern.sum(axis=(1, 2)), 1.0, atol=1e-5)
        for one, k in zip(kern, sizes, strict=True):
            assert np.all(one[~_support_mask(int(k))] == 0.0), (c, k)
        stats[c] = R.kernel_stats(kern)
    for c in ("centroid", "random"):
        np.testing.assert_allclose(stats[c]["spread"], stats["bbox"]["spread"], rtol=0.05)
        assert np.all(np.abs(stats[c]["extent"] - stats["bbox"]["extent"]) <= 1)
    moved = np.abs(_bbox_centre(np.asarray(by["random"][0])) - (CANVAS - 1) / 2)
    assert moved.max() > 2.0  # the random offset does move strokes
    traj = K.sample_trajectory(jax.random.key(2), num_steps=300)
    half = K.rasterize(traj, 21, CANVAS, "random", jnp.asarray([0.5, 0.5]))
    np.testing.assert_array_equal(np.asarray(half), np.asarray(K.rasterize(traj, 21, CANVAS)))
    corner = np.asarray(K.rasterize(traj, 21, CANVAS, "random", jnp.asarray([0.0, 1.0])))
    rows, cols = np.flatnonzero(corner.any(axis=1)), np.flatnonzero(corner.any(axis=0))
    lo, hi = (CANVAS - 21) // 2, (CANVAS + 21) // 2 - 1  # the 21×21 support
    assert cols[0] == lo and rows[-1] == hi  # u = 0 pushes x to the left, u = 1 y down


@pytest.mark.parametrize("center", K.CENTERS)
def test_rasterize_matches_reference_in_every_mode(center):
    rng = np.random.default_rng(3)
    for s in range(3):
        t = R.sample_trajectory_np(np.random.default_rng(s), num_steps=400)
        u = rng.random(2)
        for k in (7, 13, 27):
            got = K.rasterize(jnp.asarray(t, jnp.float32), k, CANVAS, center, jnp.asarray(u))
            want = R.rasterize_np(t, k, CANVAS, center, u)
            np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Determinism and transformation paths
# ---------------------------------------------------------------------------------------------


def test_same_key_identical_different_keys_differ(batch128):
    again, sizes_again = sample_kernels_jit(jax.random.key(0), batch=128)
    np.testing.assert_array_equal(np.asarray(again), batch128[0])
    np.testing.assert_array_equal(np.asarray(sizes_again), batch128[1])
    other, _ = sample_kernels_jit(jax.random.key(1), batch=128)
    assert not np.allclose(np.asarray(other), batch128[0])
    # Kernels within a batch differ from each other too.
    flat = batch128[0].reshape(128, -1)
    assert len({row.tobytes() for row in flat}) == 128


def test_jit_nonjit_and_vmap_paths_agree():
    key = jax.random.key(7)
    eager_k, eager_s = K.sample_kernels(key, 4)
    jit_k, jit_s = jax.jit(K.sample_kernels, static_argnames=STATIC)(key, batch=4)
    vmap_k, vmap_s = jax.vmap(K.sample_kernel)(jax.random.split(key, 4))
    np.testing.assert_array_equal(np.asarray(eager_s), np.asarray(jit_s))
    np.testing.assert_array_equal(np.asarray(vmap_s), np.asarray(jit_s))
    np.testing.assert_allclose(np.asarray(eager_k), np.asarray(jit_k), atol=1e-6)
    np.testing.assert_allclose(np.asarray(vmap_k), np.asarray(jit_k), atol=1e-6)


def test_anxiety_none_uses_random_default():
    fn = jax.jit(K.sample_kernels, static_argnames=STATIC)
    kernels, sizes = fn(jax.random.key(3), batch=8, anxiety=None)
    kernels = np.asarray(kernels)
    assert np.all(np.isfinite(kernels)) and kernels.min() >= 0.0
    np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 1.0, atol=1e-5)
    for kern, k in zip(kernels, np.asarray(sizes), strict=True):
        assert np.all(kern[~_support_mask(int(k))] == 0.0)
    demo, demo_sizes = fn(jax.random.key(3), batch=8)
    np.testing.assert_array_equal(np.asarray(demo_sizes), np.asarray(sizes))
    assert not np.allclose(np.asarray(demo), kernels)
    # Traced anxiety under the same compiled function: 0 gives a straight segment.
    line, _ = fn(jax.random.key(3), batch=8, anxiety=0.0)
    assert np.all(np.isfinite(np.asarray(line)))


def test_numpy_sampler_invariants():
    kernels, sizes = R.sample_kernels_np(np.random.default_rng(0), 16)
    assert kernels.shape == (16, CANVAS, CANVAS) and kernels.dtype == np.float32
    np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 1.0, atol=1e-5)
    for kern, k in zip(kernels, sizes, strict=True):
        assert np.all(kern[~_support_mask(int(k))] == 0.0)
    kn, _ = R.sample_kernels_np(np.random.default_rng(0), 2, anxiety=None)
    assert np.all(np.isfinite(kn))


# ---------------------------------------------------------------------------------------------
# Agreement with the numpy reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("anxiety", [0.005, 0.1])
def test_walk_matches_reference_on_identical_draws(anxiety):
    keys = jax.random.split(jax.random.key(11), 8)
    noise = jax.vmap(K.draw_trajectory_noise)(keys)
    traj = np.asarray(jax.vmap(lambda n: K.trajectory_from_noise(n, anxiety))(noise))
    for i in range(8):
        draws = [np.asarray(x[i], np.float64) for x in noise]
        ref = R.trajectory_from_draws_np(*draws, anxiety=float(np.float32(anxiety)))
        # float32 scan vs float64 loop: errors of ~1e-3 px accumulate over 2000 steps.
        np.testing.assert_allclose(traj[i], ref, atol=0.05)
        np.testing.assert_allclose(R.rasterize_np(traj[i], 27), R.rasterize_np(ref, 27), atol=1e-3)


def test_rasterize_matches_reference_on_identical_trajectory():
    trajs = [R.sample_trajectory_np(np.random.default_rng(s)) for s in range(4)]
    ras = jax.jit(jax.vmap(K.rasterize, (None, 0)))
    for t in trajs:
        got = np.asarray(ras(jnp.asarray(t, jnp.float32), jnp.asarray(SIZES)))
        for i, k in enumerate(SIZES):
            np.testing.assert_allclose(got[i], R.rasterize_np(t, k), atol=1e-6)


def test_degenerate_trajectory_gives_centre_delta():
    psf = np.asarray(K.rasterize(jnp.zeros((50, 2)), 13))
    expected = np.zeros((CANVAS, CANVAS), np.float32)
    expected[CANVAS // 2, CANVAS // 2] = 1.0
    np.testing.assert_array_equal(psf, expected)


def test_statistics_match_reference(stat_kernels):
    """JAX vs numpy sampler: per-size means of extent, nnz and spread.

    The RNG streams differ, so only statistics are compared. With 128 trajectories the
    standard error of a mean is ≈2.5 % for nnz (per-kernel CV ≈ 0.27) and ≈1 % for the
    spread, i.e. ≈3.5 % / 1.5 % for the difference of two independent means; measured
    differences were ≤ 5 % (nnz) and ≤ 1.5 % (spread). Tolerances: 15 % nnz, 8 % spread,
    3 % extent (> 4σ, so the test is not flaky under other seeds).
    """
    kj, kn = stat_kernels
    for i, k in enumerate(SIZES):
        sj, sn = R.kernel_stats(kj[:, i]), R.kernel_stats(kn[:, i])
        for name, rtol in (("nnz", 0.15), ("spread", 0.08), ("extent", 0.03)):
            mj, mn = sj[name].mean(), sn[name].mean()
            assert abs(mj - mn) <= rtol * mn, (k, name, mj, mn)
        # Only one side of the centroid-centred trajectory reaches the support border, so
        # the bounding box is ≤ k (measured mean ≈ k − 0.5 … k − 1.7), but never tiny.
        for s in (sj, sn):
            assert np.all(s["extent"] <= k) and np.all(s["extent"] >= (k + 1) // 2)
            assert k - 2.5 <= s["extent"].mean() <= k, (k, s["extent"].mean())


def test_statistics_near_official_kernel(stat_kernels, official_kernel_path):
    official = np.load(official_kernel_path, allow_pickle=False)
    so = R.kernel_stats(official[None])
    kj, kn = stat_kernels
    idx = SIZES.index(27)
    for kern in (kj[:, idx], kn[:, idx]):
        s = R.kernel_stats(kern)
        for name in ("nnz", "spread"):
            ratio = s[name].mean() / so[name][0]
            assert 0.5 <= ratio <= 2.0, (name, ratio)


def test_kernel_stats_hand_made():
    delta = np.zeros((1, 27, 27))
    delta[0, 13, 13] = 1.0
    line = np.zeros((1, 27, 27))
    line[0, 13, 8:19] = 1.0 / 11  # 11 px horizontal segment centred on the canvas
    s = R.kernel_stats(np.concatenate([delta, line]))
    np.testing.assert_array_equal(s["extent"], [1, 11])
    np.testing.assert_array_equal(s["support_size"], [1, 11])
    np.testing.assert_array_equal(s["nnz"], [1, 11])
    np.testing.assert_allclose(s["spread"], [0.0, np.sqrt(np.mean(np.arange(-5, 6) ** 2))])
    np.testing.assert_allclose(s["centroid_offset"], [0.0, 0.0], atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"batch": 0}, "batch"),
        ({"batch": 2, "sizes": (13, 14)}, "sizes"),
        ({"batch": 2, "sizes": (29,)}, "sizes"),
        ({"batch": 2, "sizes": (1,)}, "sizes"),
        ({"batch": 2, "sizes": ()}, "sizes"),
        ({"batch": 2, "canvas": 28, "sizes": (13,)}, "canvas"),
        ({"batch": 2, "num_steps": 1}, "num_steps"),
        ({"batch": 2, "anxiety": -0.1}, "anxiety"),
        ({"batch": 2, "max_total_length": 0.0}, "max_total_length"),
    ],
)
def test_bad_inputs_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        K.sample_kernels(jax.random.key(0), **kwargs)
    with pytest.raises(ValueError, match=name):
        R.sample_kernels_np(np.random.default_rng(0), **kwargs)


def test_rasterize_bad_size_raises():
    with pytest.raises(ValueError, match="sizes"):
        K.rasterize(jnp.zeros((10, 2)), 12)
    with pytest.raises(ValueError, match="canvas"):
        K.rasterize(jnp.zeros((10, 2)), 13, canvas=26)


def test_bad_center_is_named():
    with pytest.raises(ValueError, match="degrade.center"):
        K.sample_kernels(jax.random.key(0), 2, center="middle")
    with pytest.raises(ValueError, match="degrade.center"):
        R.sample_kernels_np(np.random.default_rng(0), 2, center="middle")
    with pytest.raises(ValueError, match="offset_u"):
        K.rasterize(jnp.zeros((10, 2)), 13, center="random")


def test_unrolled_walk_gives_the_same_kernels():
    """``unroll`` only changes how the loop compiles: same kernels up to float rounding."""
    key = jax.random.key(3)
    sample = jax.jit(K.sample_kernels, static_argnames=(*STATIC, "unroll"))
    base, sizes = sample(key, 4, num_steps=300)
    for unroll in (7, 32):
        other, other_sizes = sample(key, 4, num_steps=300, unroll=unroll)
        np.testing.assert_array_equal(np.asarray(other_sizes), np.asarray(sizes))
        np.testing.assert_allclose(np.asarray(other), np.asarray(base), atol=1e-5)
    straight, _ = sample(key, 4, num_steps=300, anxiety=0.0)
    assert float(jnp.max(jnp.abs(straight - base))) > 1e-3  # the comparison can fail
