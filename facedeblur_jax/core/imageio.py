"""Reading and writing images on the host, with clear errors and safe output paths.

Images are ``uint8[H, W, 3]`` RGB on the host; grayscale and RGBA files are converted to
RGB (alpha is dropped after compositing on black) and reported as such. A file that
cannot be decoded raises :class:`ImageError` naming it.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image, UnidentifiedImageError

from facedeblur_jax.core.atomic import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class ImageError(ValueError):
    """An image file that cannot be used (corrupt, truncated, not an image)."""


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decodes ``path`` to ``uint8[H, W, 3]`` RGB (gray → RGB, RGBA/LA/P → RGB)."""
    path = pathlib.Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(background, im)
            rgb = im.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image {str(path)!r}: {e}") from e


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes ``uint8[H, W, C]`` to ``size × size`` (Lanczos down, bicubic up)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    method = Image.LANCZOS if size < image.shape[0] else Image.BICUBIC
    return np.asarray(Image.fromarray(image).resize((size, size), method))


def resize_hw(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes ``uint8[h, w, C]`` to ``height × width`` (bicubic)."""
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


def resize_hw_float(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes ``f32[h, w, C]`` (any values, e.g. signed differences) to ``height × width``
    with the bicubic filter of :func:`resize_hw`, per channel in float (PIL mode ``"F"``):
    the same weights, without the 8-bit rounding and clipping :func:`resize_hw` applies
    after each of its two passes. Returns ``f32[height, width, C]``."""
    image = np.asarray(image, np.float32)
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F").resize(
                (width, height), Image.BICUBIC
            )
        )
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1)


def to_uint8(image) -> np.ndarray:
    """``f32[..., 3]`` in [0, 1] -> ``uint8`` (clipped, rounded)."""
    return np.clip(np.round(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)


def safe_output_path(out_dir: str | os.PathLike, name: str) -> pathlib.Path:
    """``out_dir / name`` resolved, refusing names that escape ``out_dir``."""
    root = pathlib.Path(out_dir).resolve()
    target = (root / name).resolve()
    if root != target and root not in target.parents:
        raise ValueError(f"output name {name!r} escapes the output folder {str(root)!r}")
    return target


def save_image(
    path: str | os.PathLike, image: np.ndarray, *, overwrite: bool = False
) -> pathlib.Path:
    """Writes ``uint8[H, W, 3]`` (or ``f32`` in [0, 1]) atomically (:func:`atomic_write`: the
    umask's permissions); never overwrites unless ``overwrite``. The format follows the
    suffix (PNG when there is none)."""
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"refusing to overwrite existing file {str(path)!r}")
    array = image if np.asarray(image).dtype == np.uint8 else to_uint8(image)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    return atomic_write(path, lambda tmp: Image.fromarray(np.asarray(array)).save(tmp, format=fmt))


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
