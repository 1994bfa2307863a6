"""Parsing-label PNG files: ``uint8[H, W]`` class indices 0 … 10, one file per image.

Written as 8-bit grayscale (PIL mode ``"L"``) with the class index as the pixel value, so any
reader that decodes to gray gets the classes back (``np.asarray(Image.open(path))``); they
look almost black in a viewer — use :func:`facedeblur_jax.data.parsing_palette.overlay` to
look at them. :func:`load_labels` also accepts palette (``"P"``) files, whose pixel values are
indices too (e.g. Helen-style or CelebAMask-HQ merged maps).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image

from facedeblur_jax.core.atomic import atomic_write
from facedeblur_jax.core.imageio import ImageError
from facedeblur_jax.data.labels import NUM_CLASSES


def load_labels(path: str | os.PathLike, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Reads a label PNG (mode ``L`` or ``P``) to ``uint8[H, W]``; values must be < K."""
    path = pathlib.Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "P"):
                raise ImageError(
                    f"label file {str(path)!r} has mode {im.mode!r}; expected 'L' or 'P' "
                    "(one class index per pixel)"
                )
            labels = np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"cannot read label file {str(path)!r}: {e}") from e
    if labels.size and int(labels.max()) >= num_classes:
        raise ImageError(
            f"label file {str(path)!r} has class {int(labels.max())} ≥ {num_classes} classes"
        )
    return labels


def save_labels(
    path: str | os.PathLike, labels: np.ndarray, *, overwrite: bool = False
) -> pathlib.Path:
    """Writes ``uint8[H, W]`` labels as an optimised mode-``L`` PNG, atomically; never
    overwrites an existing file unless ``overwrite``."""
    path = pathlib.Path(path)
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be uint8[H, W], got {labels.dtype}{labels.shape}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"refusing to overwrite existing file {str(path)!r}")
    return atomic_write(
        path, lambda tmp: Image.fromarray(labels, mode="L").save(tmp, format="PNG", optimize=True)
    )
