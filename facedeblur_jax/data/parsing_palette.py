"""Colours for the 11 parsing classes, label overlays and image grids (for looking at labels)."""

from __future__ import annotations

import numpy as np

from facedeblur_jax.data.labels import NUM_CLASSES

# background, skin, l/r brow, l/r eye, nose, upper lip, inner mouth, lower lip, hair.
# Left and right parts get different hues so that a side swap is visible in a grid.
_PALETTE = (
    (0, 0, 0),
    (230, 180, 140),
    (0, 200, 255),
    (255, 150, 0),
    (0, 90, 255),
    (255, 40, 40),
    (60, 210, 60),
    (255, 0, 200),
    (255, 255, 255),
    (150, 0, 255),
    (110, 70, 20),
)


def palette() -> np.ndarray:
    """``uint8[11, 3]`` RGB colour of each class."""
    colours = np.asarray(_PALETTE, dtype=np.uint8)
    assert colours.shape == (NUM_CLASSES, 3)
    return colours


def colorize(labels: np.ndarray) -> np.ndarray:
    """``uint8[H, W]`` class indices -> ``uint8[H, W, 3]`` palette colours."""
    labels = np.asarray(labels)
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise ValueError(f"label {int(labels.max())} outside 0..{NUM_CLASSES - 1}")
    return palette()[labels]


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blends class colours over ``uint8[H, W, 3]``: background pixels stay the image,
    others are ``(1 − alpha) · image + alpha · colour``. Returns ``uint8[H, W, 3]``."""
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape} and labels {labels.shape} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blend = (1.0 - alpha) * image.astype(np.float32) + alpha * colorize(labels)
    out = np.where((labels > 0)[..., None], blend, image.astype(np.float32))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def grid(tiles: list[np.ndarray], columns: int = 8, pad: int = 2) -> np.ndarray:
    """``uint8[H, W, 3]`` tiles (same size) laid out row-major, ``pad`` px of white between."""
    if not tiles:
        raise ValueError("no tiles to lay out")
    h, w = tiles[0].shape[:2]
    if any(t.shape[:2] != (h, w) for t in tiles):
        raise ValueError("all tiles must have the same size")
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y : y + h, x : x + w] = tile[..., :3]
    return out
