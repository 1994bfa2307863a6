"""Reading and writing images on the host, with clear errors and safe output paths.

Images are ``uint8[H, W, 3]`` RGB on the host. Decoding (:func:`load_image`,
:func:`load_image_and_alpha`):

* grayscale, palette and CMYK files are converted to RGB;
* 16-bit grayscale (PIL modes ``I;16*``, and ``I`` holding values within 16 bits) is scaled
  to 8 bits (``round(v / 257)``: 65535 -> 255), not clipped; 16-bit RGB(A) PNGs arrive as
  8-bit from Pillow already. 32-bit float (``F``) and wider integer images are refused;
* an alpha channel (RGBA, LA, PA, a palette with transparency): :func:`load_image_and_alpha`
  returns the colour channels as stored and the alpha channel apart, so a caller can write
  it back (``facedeblur deblur`` does); :func:`load_image` composites onto black and drops
  it (the training data's policy, ``facedeblur_jax/data/validate.py``).

A file that cannot be used raises :class:`ImageError` naming it and saying why (empty, not
an image, truncated or corrupt, an unsupported pixel format).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image, UnidentifiedImageError

from facedeblur_jax.core.atomic import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageError(ValueError):
    """An image file that cannot be used (corrupt, truncated, not an image)."""


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in _ALPHA_MODES or (im.mode == "P" and "transparency" in im.info)


def _to_8bit(im: Image.Image, path: pathlib.Path) -> Image.Image:
    """16-bit grayscale as 8-bit ``L``; refuses float and 32-bit integer pixels."""
    if im.mode in _SIXTEEN_BIT_MODES or im.mode == "I":
        values = np.asarray(im).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageError(
                f"cannot use image {str(path)!r}: 32-bit integer pixels (mode {im.mode!r}) "
                "outside the 16-bit range; save it as an 8- or 16-bit PNG"
            )
        return Image.fromarray(((values + 128) // 257).astype(np.uint8), mode="L")
    if im.mode == "F":
        raise ImageError(
            f"cannot use image {str(path)!r}: 32-bit float pixels (mode 'F') have no fixed "
            "range; save it as an 8- or 16-bit PNG"
        )
    return im


def check_image_file(path: str | os.PathLike) -> None:
    """What can be known of ``path`` without decoding its pixels (the header: ~20 µs): an
    :class:`ImageError` for an empty file, a file of no known image format, or float
    pixels, as :func:`load_image` would raise it. A file that passes may still be truncated."""
    path = pathlib.Path(path)
    _decode(path, header_only=True)


def _decode(
    path: pathlib.Path, header_only: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray] | None:
    """``(uint8[H, W, 3] colour as stored, uint8[H, W] alpha or None, uint8[H, W, 3] colour
    composited onto black)``; :class:`ImageError` names the file and the reason.
    ``header_only``: only the checks that need no pixels (returns ``None``)."""
    try:
        if path.is_file() and path.stat().st_size == 0:
            raise ImageError(f"cannot read image {str(path)!r}: the file is empty (0 bytes)")
        with Image.open(path) as im:
            if header_only:
                if im.mode == "F":
                    _to_8bit(im, path)
                return None
            im.load()
            im = _to_8bit(im, path)
            if _has_alpha(im):
                rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
                colour, alpha = rgba[..., :3].copy(), rgba[..., 3].copy()
                black = Image.alpha_composite(
                    Image.new("RGBA", im.size, (0, 0, 0, 255)), im.convert("RGBA")
                )
                return colour, alpha, np.asarray(black.convert("RGB"), dtype=np.uint8).copy()
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
            return rgb, None, rgb
    except (FileNotFoundError, ImageError):
        raise
    except PermissionError as e:
        raise ImageError(f"cannot read image {str(path)!r}: permission denied") from e
    except UnidentifiedImageError as e:
        raise ImageError(
            f"cannot read image {str(path)!r}: not an image file of a known format ({e})"
        ) from e
    except Image.DecompressionBombError as e:
        raise ImageError(
            f"cannot read image {str(path)!r}: too large to decode safely ({e})"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image {str(path)!r}: truncated or corrupt ({e})") from e


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decodes ``path`` to ``uint8[H, W, 3]`` RGB (gray, palette, CMYK -> RGB; 16-bit gray
    scaled to 8 bits; an alpha channel composited onto black and dropped)."""
    return _decode(pathlib.Path(path))[2]


def load_image_and_alpha(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Decodes ``path`` to ``(uint8[H, W, 3] RGB, uint8[H, W] alpha or None)``: the colour
    channels as stored (not composited) and the alpha channel, ``None`` without one."""
    colour, alpha, _ = _decode(pathlib.Path(path))
    return colour, alpha


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
    """Writes ``uint8[H, W, 3]`` (``[H, W, 4]``: RGBA; or ``f32`` in [0, 1]) atomically
    (:func:`atomic_write`: the umask's permissions); never overwrites unless ``overwrite``.
    The format follows the suffix (PNG when there is none)."""
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
