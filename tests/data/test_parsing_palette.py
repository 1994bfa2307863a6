import numpy as np
import pytest

from facedeblur_jax.core.imageio import grid
from facedeblur_jax.data.labels import NUM_CLASSES
from facedeblur_jax.data.parsing_palette import colorize, overlay, palette


def test_palette_has_a_distinct_colour_per_class():
    colours = palette()
    assert colours.shape == (NUM_CLASSES, 3) and colours.dtype == np.uint8
    assert len({tuple(c) for c in colours}) == NUM_CLASSES
    assert tuple(colours[0]) == (0, 0, 0)


def test_overlay_blends_parts_and_keeps_background():
    image = np.full((2, 3, 3), 100, np.uint8)
    labels = np.array([[0, 4, 5], [1, 0, 10]], np.uint8)
    np.testing.assert_array_equal(overlay(image, labels, 0.0), image)
    full = overlay(image, labels, 1.0)
    np.testing.assert_array_equal(full[labels > 0], palette()[labels[labels > 0]])
    np.testing.assert_array_equal(full[labels == 0], image[labels == 0])
    half = overlay(image, labels, 0.5).astype(int)
    expected = np.round((100 + palette()[4].astype(float)) / 2).astype(int)
    np.testing.assert_array_equal(half[0, 1], expected)
    with pytest.raises(ValueError, match="differ in size"):
        overlay(image, labels[:1], 0.5)
    with pytest.raises(ValueError, match="outside"):
        colorize(np.array([[11]], np.uint8))


def test_grid_lays_tiles_out_row_major():
    tiles = [np.full((4, 5, 3), i, np.uint8) for i in range(5)]
    out = grid(tiles, columns=2, pad=1)
    assert out.shape == (3 * 5 + 1, 2 * 6 + 1, 3)
    assert out[1, 1, 0] == 0 and out[1, 7, 0] == 1 and out[6, 1, 0] == 2 and out[11, 1, 0] == 4
    assert out[11, 7, 0] == 255  # empty slot stays white
