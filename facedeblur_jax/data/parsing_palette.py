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
