"""Checking and decoding untrusted image and label files.

Where bad input is caught (docs/design.md §7):

1. **At source construction** every listed file is checked. ``verify="header"`` opens each
   image and label file and reads only its header (format, size, pixel mode: ~20 µs per
   file), which catches non-image files, corrupt headers, unsupported pixel modes and label
   maps whose size differs from their image. ``verify="decode"`` decodes every pixel as
   well, which also catches truncated files and out-of-range label values, at ~0.4 ms per
   112 px face. Each problem is one ``WARNING`` line naming the file; a summary line with
   the counts follows the scan (:class:`ScanReport`).
2. **At iteration time** a file that passed the header check may still fail to decode
   (a truncated PNG). The source then raises :class:`ImageError` naming the file; the
   training pipeline warns and reads the next record instead (see ``pipeline.py``), the
   evaluation pipeline drops the record. Labels are never swapped between files.

Policies: grayscale, palette, CMYK and RGBA images are converted to RGB (alpha
composited on black); 16-bit and float images are skipped, since converting them to
``uint8`` would clip or rescale silently. A label map must be single-channel (mode ``L``
or ``P``), the same size as its image and hold values ``< num_classes``; otherwise the
record keeps its image but loses its labels (with a warning) — a mismatching label map is
never resized to fit.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import logging
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from facedeblur_jax.core.imageio import ImageError, load_image

LOG = logging.getLogger("facedeblur_jax.data")

# Pixel modes decoded to RGB by ``imageio.load_image`` without loss of meaning.
RGB_CONVERTIBLE_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
)
LABEL_MODES = frozenset({"L", "P"})
VERIFY_MODES = ("header", "decode")

_READ_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)


class LabelError(ImageError):
    """A label map that cannot be used with its image (size, channels, values)."""


@dataclasses.dataclass(frozen=True)
class Header:
    """What an image file's header says: ``width × height`` pixels in PIL ``mode``."""

    width: int
    height: int
    mode: str

    @property
    def hw(self) -> tuple[int, int]:
        return self.height, self.width


def read_header(path: str | os.PathLike) -> Header:
    """Reads the header of an image file without decoding its pixels.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ImageError: not a readable image, or an image too large to decode safely.
    """
    try:
        with Image.open(path) as im:
            return Header(int(im.width), int(im.height), str(im.mode))
    except FileNotFoundError:
        raise
    except _READ_ERRORS as e:
        raise ImageError(f"not a readable image {str(path)!r}: {e}") from e


def check_image(path: str | os.PathLike, verify: str = "header") -> Header:
    """Checks an image file for use as an RGB training image.

    Args:
      path: the file.
      verify: ``"header"`` (cheap) or ``"decode"`` (decodes all pixels).

    Returns:
      The file's :class:`Header`.

    Raises:
      ImageError: unreadable, unsupported pixel mode, or (``verify="decode"``) truncated.
    """
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}; got {verify!r}")
    header = read_header(path)
    if header.mode not in RGB_CONVERTIBLE_MODES:
        raise ImageError(
            f"unsupported pixel mode {header.mode!r} in {str(path)!r} "
            "(16-bit and float images are not converted to uint8)"
        )
    if header.width < 1 or header.height < 1:
        raise ImageError(f"empty image {str(path)!r}")
    if verify == "decode":
        decode_image(path)
    return header


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image file to ``uint8[H, W, 3]`` RGB; :class:`ImageError` names the file
    (also when it vanished after the scan)."""
    try:
        return load_image(path)
    except FileNotFoundError as e:
        raise ImageError(f"image file {str(path)!r} no longer exists") from e
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large to decode safely {str(path)!r}: {e}") from e


def decode_image_bytes(data: bytes, what: str) -> np.ndarray:
    """Decodes encoded image bytes (PNG, JPEG …) to ``uint8[H, W, 3]`` RGB like
    :func:`decode_image`; :class:`ImageError` names ``what``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return _to_rgb(im)
    except _READ_ERRORS as e:
        raise ImageError(f"cannot decode image {what!r}: {e}") from e


def decode_label_bytes(data: bytes, image_hw, num_classes: int, what: str) -> np.ndarray:
    """Decodes an encoded single-channel label map to ``uint8[H, W]`` (checked)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode not in LABEL_MODES:
                raise LabelError(f"label map {what!r} has pixel mode {im.mode!r}")
            im.load()
            labels = np.asarray(im, dtype=np.uint8).copy()
    except LabelError:
        raise
    except _READ_ERRORS as e:
        raise ImageError(f"cannot decode label map {what!r}: {e}") from e
    check_labels_array(labels, image_hw, num_classes, what)
    return labels


def _to_rgb(im: Image.Image) -> np.ndarray:
    """The conversion of ``imageio.load_image``: alpha composited on black, then RGB."""
    if im.mode not in RGB_CONVERTIBLE_MODES:
        raise ImageError(f"unsupported pixel mode {im.mode!r}")
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, (0, 0, 0, 255)), im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def check_label_map(
    path: str | os.PathLike, image_hw: tuple[int, int], verify: str = "header", num_classes=11
) -> None:
    """Checks a label map against the size of its image.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ImageError: unreadable.
      LabelError: not single-channel, a size other than ``image_hw``, or (``verify="decode"``)
        values ``>= num_classes``.
    """
    header = read_header(path)
    if header.mode not in LABEL_MODES:
        raise LabelError(
            f"label map {str(path)!r} has pixel mode {header.mode!r}; expected a "
            "single-channel index map (mode 'L' or 'P')"
        )
    if header.hw != tuple(image_hw):
        raise LabelError(
            f"label map {str(path)!r} is {header.height}×{header.width} but its image is "
            f"{image_hw[0]}×{image_hw[1]} (label maps are never resized to fit)"
        )
    if verify == "decode":
        decode_label_map(path, image_hw, num_classes)


def decode_label_map(
    path: str | os.PathLike, image_hw: tuple[int, int], num_classes: int = 11
) -> np.ndarray:
    """Decodes a single-channel label map to ``uint8[H, W]`` with values ``< num_classes``.

    Raises:
      ImageError: unreadable or truncated.
      LabelError: wrong mode, a size other than ``image_hw``, or out-of-range values.
    """
    try:
        with Image.open(path) as im:
            if im.mode not in LABEL_MODES:
                raise LabelError(
                    f"label map {str(path)!r} has pixel mode {im.mode!r}; expected 'L' or 'P'"
                )
            im.load()
            labels = np.asarray(im, dtype=np.uint8).copy()
    except (FileNotFoundError, LabelError):
        raise
    except _READ_ERRORS as e:
        raise ImageError(f"cannot read label map {str(path)!r}: {e}") from e
    check_labels_array(labels, image_hw, num_classes, str(path))
    return labels


def check_labels_array(labels: np.ndarray, image_hw, num_classes: int, what: str) -> None:
    """:class:`LabelError` unless ``labels`` is ``uint8[*image_hw]`` with values in range."""
    if labels.shape != tuple(image_hw):
        raise LabelError(
            f"label map {what!r} has shape {labels.shape} but its image is "
            f"{tuple(image_hw)} (label maps are never resized to fit)"
        )
    top = int(labels.max()) if labels.size else 0
    if top >= num_classes:
        raise LabelError(
            f"label map {what!r} holds class {top} but there are only {num_classes} classes"
        )


class ScanReport:
    """Bad-input bookkeeping of one source scan: a warning line per file, one summary.

    Args:
      what: the source, for the summary line (``"folder '/data/faces' split 'train'"``).
    """

    def __init__(self, what: str):
        self.what = what
        self.skipped: list[tuple[str, str]] = []
        self.labels_dropped: list[tuple[str, str]] = []
        self.converted: collections.Counter[str] = collections.Counter()
        self.labels_missing = 0

    def skip(self, path, reason: str) -> None:
        """Records (and warns about) a file that is left out of the source."""
        LOG.warning("skipping %s: %s", path, reason)
        self.skipped.append((str(path), reason))

    def drop_labels(self, path, reason: str) -> None:
        """Records (and warns about) a record that keeps its image but loses its labels."""
        LOG.warning("ignoring labels of %s: %s", path, reason)
        self.labels_dropped.append((str(path), reason))

    def note_mode(self, mode: str) -> None:
        """Counts images that are converted to RGB when decoded."""
        if mode != "RGB":
            self.converted[mode] += 1

    def summarize(self, kept: int, labelled: int) -> str:
        """Logs (and returns) the one-line summary: WARNING if anything was skipped."""
        parts = [f"{kept} records ({labelled} with labels)"]
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} bad file(s)")
        if self.labels_dropped:
            parts.append(f"ignored {len(self.labels_dropped)} bad label map(s)")
        if self.labels_missing:
            parts.append(f"{self.labels_missing} image(s) have no label file")
        if self.converted:
            modes = ", ".join(f"{n} {m}" for m, n in sorted(self.converted.items()))
            parts.append(f"converting to RGB: {modes}")
        line = f"{self.what}: " + "; ".join(parts)
        level = logging.WARNING if self.skipped or self.labels_dropped else logging.INFO
        LOG.log(level, line)
        return line
