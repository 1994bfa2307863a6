"""Host-side geometry: records of any size -> ``size × size`` examples for the pipeline.

``resize="crop"`` (default): scale so the short side is ``size`` (Lanczos when shrinking,
bicubic when enlarging — the 112 px faces become 128 px by bicubic), then cut the centre
``size × size``. ``resize="stretch"``: scale both sides to ``size`` (aspect not kept).
Label maps follow the same geometry with nearest-neighbour sampling, so classes are never
blended. Records without labels get an all-zero map and ``has_labels=False``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

RESIZE_POLICIES = ("crop", "stretch")


def target_geometry(hw: tuple[int, int], size: int, policy: str) -> tuple[int, int, int, int]:
    """``(new_h, new_w, top, left)``: resize to ``new_h × new_w`` then crop at ``top, left``."""
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"resize policy must be one of {RESIZE_POLICIES}; got {policy!r}")
    h, w = hw
    if policy == "stretch":
        return size, size, 0, 0
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    return new_h, new_w, (new_h - size) // 2, (new_w - size) // 2


def _resample(array: np.ndarray, new_hw: tuple[int, int], method) -> np.ndarray:
    if array.shape[:2] == tuple(new_hw):
        return array
    return np.asarray(Image.fromarray(array).resize((new_hw[1], new_hw[0]), method))


def fit_image(image: np.ndarray, size: int, policy: str = "crop") -> np.ndarray:
    """``uint8[H, W, 3]`` -> ``uint8[size, size, 3]``."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be uint8[H, W, 3]; got {image.dtype}{list(image.shape)}")
    new_h, new_w, top, left = target_geometry(image.shape[:2], size, policy)
    shrinking = new_h * new_w < image.shape[0] * image.shape[1]
    out = _resample(image, (new_h, new_w), Image.LANCZOS if shrinking else Image.BICUBIC)
    return np.ascontiguousarray(out[top : top + size, left : left + size])


def fit_labels(labels: np.ndarray, size: int, policy: str = "crop") -> np.ndarray:
    """``uint8[H, W]`` -> ``uint8[size, size]`` (nearest neighbour: no new classes)."""
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise ValueError(f"labels must be uint8[H, W]; got {labels.dtype}{list(labels.shape)}")
    new_h, new_w, top, left = target_geometry(labels.shape, size, policy)
    out = _resample(labels, (new_h, new_w), Image.NEAREST)
    return np.ascontiguousarray(out[top : top + size, left : left + size])


def to_example(record: dict[str, Any], size: int, policy: str = "crop") -> dict[str, Any]:
    """A source record -> the training example the pipeline batches.

    Returns:
      ``{"image": uint8[size, size, 3], "labels": uint8[size, size], "has_labels": bool}``.
    """
    image = record["image"]
    labels = record.get("labels")
    if labels is not None and labels.shape != image.shape[:2]:
        raise ValueError(
            f"record {record.get('name')!r}: labels {labels.shape} do not match image "
            f"{image.shape[:2]}"
        )
    return {
        "image": fit_image(image, size, policy),
        "labels": (
            np.zeros((size, size), np.uint8) if labels is None else fit_labels(labels, size, policy)
        ),
        "has_labels": np.bool_(labels is not None),
    }


def to_eval_example(record: dict[str, Any], size: int, policy: str = "crop") -> dict[str, Any]:
    """:func:`to_example` plus ``identity`` (``-1`` if unknown), ``name`` and ``valid``."""
    example = to_example(record, size, policy)
    example["identity"] = np.int32(record.get("identity", -1))
    example["name"] = str(record["name"])
    example["valid"] = np.bool_(True)
    return example
