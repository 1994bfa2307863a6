"""Face alignment geometry: landmarks → similarity transform → model-sized crop → paste back.

A face in a photo of any size is brought to the model's input (``S × S``) the way the
training crops are aligned: a similarity transform (rotation, uniform scale, translation)
maps five points of dlib's 68 landmarks — the two eye centres, the nose tip and the two
mouth corners — onto :data:`TEMPLATE_5` by least squares. The restored crop goes back
through the inverse transform and is blended into the photo with a feathered mask
(:func:`paste_back`), or only the model's correction to it is, added to the photo's own
pixels (:func:`add_correction`); either way pixels outside the crop's footprint are left
exactly as they were.

Faces at the photo's border. The crop of a face near an edge runs off the photo. That part
is filled by edge replication (``mode="nearest"``: each missing pixel takes the value of the
nearest photo pixel), not with black: a black band is a strong edge the model responds to,
and that response used to be pasted back onto the photo's outermost rows (a dark line up to
hundreds of grey levels deep). Replication rather than reflection because a region of
repeated edge pixels stays what it is under any blur, so the model sees no structure there
that the photo does not have (a mirrored band would show blur streaks turning back). On
the way back only crop pixels whose source point lay inside the photo count
(:func:`inside_mask` × the feathered mask), so nothing computed from the padding is pasted.
The training crops' own padding (black, from their aligner) is not reproduced here.

Template. :data:`TEMPLATE_5` is the mean of those five points found by dlib on the bundled
sample faces (the 190 of 200 where the HOG detector finds the face; ``python -m
facedeblur_jax.faces.align`` recomputes it). On every fifth face of the full 3,271-face set it
agrees within 0.35 px at 112 px; the usual ArcFace 112 × 112 template, which those crops
were made with from another detector's points, is within 1.8 px of it.

Coordinates are ``(x, y)`` with pixel ``(i, j)`` centred at ``x = j, y = i`` (dlib's
convention); the template is stored as fractions ``u = (x + 0.5) / S`` so it scales to any
``S``. A transform is an ``f64[2, 3]`` matrix ``M`` acting as ``M @ (x, y, 1)``. Only NumPy
and SciPy (``ndimage.map_coordinates``) are used: no OpenCV.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from facedeblur_jax.core import imageio, sample_data
from facedeblur_jax.faces import landmarks as lm

# (left eye centre, right eye centre, nose tip, left mouth corner, right mouth corner), "left"
# = image-left, as fractions (x + 0.5) / S, (y + 0.5) / S of an aligned S × S crop.
TEMPLATE_5 = np.array(
    [
        [0.3427, 0.4800],
        [0.6584, 0.4779],
        [0.5012, 0.6534],
        [0.3612, 0.8134],
        [0.6430, 0.8122],
    ]
)
# Width of the mask's ramp from 0 at the crop border to 1 inside, as a fraction of S.
FEATHER = 0.12


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """``f32[68, 2]`` iBUG 300-W landmarks -> ``f64[5, 2]`` (eye centres, nose tip 30,
    mouth corners 48 and 54)."""
    p = np.asarray(landmarks68, np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"expected 68 (x, y) landmarks, got shape {p.shape}")
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def template(size: int) -> np.ndarray:
    """:data:`TEMPLATE_5` in pixel coordinates of a ``size × size`` crop, ``f64[5, 2]``."""
    return TEMPLATE_5 * size - 0.5


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``M`` (no reflection) with ``M @ src ≈ dst`` (Umeyama 1991).

    Args:
      src, dst: ``f[K, 2]`` corresponding points, ``K ≥ 2``.
    Returns:
      ``f64[2, 3]``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching [K >= 2, 2] point sets, got {src.shape}, {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(s)
    if var_s <= 0:
        raise ValueError("source points coincide: no similarity transform")
    u, sigma, vt = np.linalg.svd(d.T @ s / len(s))
    sign = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = (sigma * sign).sum() / var_s
    linear = scale * rotation
    return np.concatenate([linear, (mu_d - linear @ mu_s)[:, None]], axis=1)


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``M @ (x, y, 1)`` for ``f[..., 2]`` points."""
    points = np.asarray(points, np.float64)
    return points @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    """The inverse of an invertible ``f64[2, 3]`` affine map."""
    linear = np.linalg.inv(m[:, :2])
    return np.concatenate([linear, (-linear @ m[:, 2])[:, None]], axis=1)


def affine_scale(m: np.ndarray) -> float:
    """The (geometric-mean) scale factor of an affine map: ``sqrt(|det|)``."""
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def _sample(
    image: np.ndarray, x: np.ndarray, y: np.ndarray, order: int, mode: str = "constant"
) -> np.ndarray:
    """``image[y, x]`` interpolated per channel; outside the image 0 (``mode="constant"``) or
    the nearest edge pixel (``mode="nearest"``). ``f32[*x.shape, C]``."""
    image = np.asarray(image, np.float32)
    squeeze = image.ndim == 2
    if squeeze:
        image = image[..., None]
    coords = np.stack([y, x])
    out = np.stack(
        [
            ndimage.map_coordinates(image[..., c], coords, order=order, mode=mode, cval=0)
            for c in range(image.shape[-1])
        ],
        axis=-1,
    )
    return out[..., 0] if squeeze else out


def warp_affine(
    image: np.ndarray,
    m: np.ndarray,
    out_hw: tuple[int, int],
    *,
    order: int = 1,
    mode: str = "constant",
) -> np.ndarray:
    """Resamples ``image`` so that output pixel ``p`` shows input point ``M⁻¹ p``.

    Args:
      image: ``uint8|f32[H, W, C]`` (or ``[H, W]``).
      m: ``f64[2, 3]`` from input to output coordinates.
      out_hw: ``(h, w)`` of the output.
      order: spline order (1 = bilinear, 3 = cubic).
      mode: outside the input, ``"constant"`` (0) or ``"nearest"`` (edge replication).
    Returns:
      ``f32[h, w, C]`` in the input's value range.
    """
    h, w = out_hw
    inv = invert_affine(m)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float64)
    x = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
    y = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
    return _sample(image, x, y, order, mode)


def align_crop(image: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """The ``size × size`` crop ``warp_affine(image, M)``, anti-aliased when shrinking.

    When ``M`` shrinks by ``s < 1``, the part of the image the crop covers is first smoothed
    with a Gaussian of ``σ = (1/s − 1) / 2`` input pixels (scikit-image's rescale rule).
    Where the crop runs off the image it repeats the image's edge pixels (module docstring).
    Returns ``uint8[size, size, 3]``.
    """
    image = np.asarray(image)
    scale = affine_scale(m)
    source = image
    if scale < 1.0:
        sigma = (1.0 / scale - 1.0) / 2.0
        corners = apply_affine(invert_affine(m), _corners(size))
        pad = int(np.ceil(4 * sigma)) + 2
        x0, y0 = np.floor(corners.min(0)).astype(int) - pad
        x1, y1 = np.ceil(corners.max(0)).astype(int) + pad + 1
        h, w = image.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x0 >= x1 or y0 >= y1:  # the crop lies wholly off the image
            x0, y0, x1, y1 = 0, 0, w, h
        region = ndimage.gaussian_filter(
            image[y0:y1, x0:x1].astype(np.float32), (sigma, sigma, 0), mode="nearest"
        )
        source = region
        m = m.copy()
        m[:, 2] = apply_affine(m, np.array([x0, y0], np.float64))
    out = warp_affine(source, m, (size, size), order=1, mode="nearest")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _corners(size: int) -> np.ndarray:
    """The outer corners of a ``size × size`` pixel grid, ``f64[4, 2]``."""
    lo, hi = -0.5, size - 0.5
    return np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]])


def feather_mask(size: int, feather: float = FEATHER) -> np.ndarray:
    """``f32[size, size]``: 1 inside, a smooth (cosine) ramp to 0 over ``feather · size``
    pixels at the crop's border."""
    width = max(feather * size, 1.0)
    centres = np.arange(size, dtype=np.float64) + 0.5
    edge = np.minimum(centres, size - centres) / width  # 0 at the border, 1 at the ramp's end
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.clip(edge, 0.0, 1.0))
    return np.outer(ramp, ramp).astype(np.float32)


def inside_mask(m: np.ndarray, size: int, photo_hw: tuple[int, int]) -> np.ndarray:
    """``f32[size, size]``: 1 where the crop pixel's source point ``M⁻¹ p`` lies inside the
    photo (its pixel area, ``-0.5 ≤ x ≤ W − 0.5``, ``-0.5 ≤ y ≤ H − 0.5``), else 0."""
    h, w = photo_hw
    inv = invert_affine(m)
    gy, gx = np.mgrid[0:size, 0:size].astype(np.float64)
    x = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
    y = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
    inside = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    return inside.astype(np.float32)


def _pull_back(
    photo_hw: tuple[int, int], values: np.ndarray, m: np.ndarray, mask: np.ndarray
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray] | None:
    """The photo region a crop's footprint covers, ``(y0, y1, x0, x1)``, and there ``a = w(M p)``
    and ``(w · values)(M p)`` (bilinear, premultiplied), ``w`` = ``mask`` ×
    :func:`inside_mask`; ``None`` when the footprint misses the photo."""
    size = values.shape[0]
    h, w = photo_hw
    mask = mask * inside_mask(m, size, (h, w))
    inv = invert_affine(m)
    corners = apply_affine(inv, _corners(size))
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, (w, h))
    if x0 >= x1 or y0 >= y1:
        return None
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    cx = m[0, 0] * gx + m[0, 1] * gy + m[0, 2]
    cy = m[1, 0] * gx + m[1, 1] * gy + m[1, 2]
    alpha = _sample(mask, cx, cy, order=1)[..., None]
    weighted = _sample(mask[..., None] * values, cx, cy, order=1)
    return (y0, y1, x0, x1), alpha, weighted


def paste_back(
    photo: np.ndarray, crop: np.ndarray, m: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Blends a (restored) aligned crop back into the photo it was cut from.

    Args:
      photo: ``uint8[H, W, 3]``.
      crop: ``uint8[S, S, 3]`` or ``f32[S, S, 3]`` in [0, 1].
      m: ``f64[2, 3]`` from photo to crop coordinates (the alignment transform).
      mask: ``f32[S, S]`` blend weights (default :func:`feather_mask`).
    Returns:
      ``uint8[H, W, 3]``: ``photo · (1 − a) + (w · crop)(M p)`` with ``w`` the mask times
      :func:`inside_mask` and ``a = w(M p)``, both interpolated bilinearly (premultiplied
      alpha), so a crop pixel computed from the padding beyond the photo's edge contributes
      nothing, not even through interpolation. Pixels outside the crop's footprint are the
      photo's, bit for bit.
    """
    photo = np.asarray(photo)
    crop = np.asarray(crop)
    size = crop.shape[0]
    crop = crop.astype(np.float32) if crop.dtype == np.uint8 else crop.astype(np.float32) * 255
    mask = feather_mask(size) if mask is None else np.asarray(mask, np.float32)
    out = photo.copy()
    pulled = _pull_back(photo.shape[:2], crop, m, mask)
    if pulled is None:
        return out
    (y0, y1, x0, x1), alpha, weighted = pulled
    region = photo[y0:y1, x0:x1].astype(np.float32)
    blended = region * (1.0 - alpha) + weighted
    out[y0:y1, x0:x1] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return out


def add_correction(
    photo: np.ndarray, correction: np.ndarray, m: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Adds a correction computed on an aligned crop to the photo at the photo's resolution.

    ``correction`` is what the model changed in the crop, ``y − x`` (its output minus the
    crop it was given, ``f32[S, S, 3]`` in [0, 1] units); it is carried to the photo by the
    same inverse warp, bilinear sampling and weights as :func:`paste_back`. Where the mask is
    1 the result is ``photo + correction(M p)``; over the feathered edge the correction fades
    out with the weights. The photo itself never passes through the crop's resolution, so
    detail finer than a shrunk crop can hold stays; a model that changes nothing
    (``y = x``) gives the photo back bit for bit.

    Returns:
      ``uint8[H, W, 3]``: ``photo + (w · correction)(M p)``, clipped to [0, 255].
    """
    photo = np.asarray(photo)
    correction = np.asarray(correction, np.float32) * 255
    mask = feather_mask(correction.shape[0]) if mask is None else np.asarray(mask, np.float32)
    out = photo.copy()
    pulled = _pull_back(photo.shape[:2], correction, m, mask)
    if pulled is None:
        return out
    (y0, y1, x0, x1), _, weighted = pulled
    region = photo[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(np.round(region + weighted), 0, 255).astype(np.uint8)
    return out


def _mean_template() -> tuple[np.ndarray, int]:
    """The mean five points of the bundled faces the detector finds, as fractions."""

    points = []
    for face in sample_data.sample_faces():
        image = imageio.load_image(face.path)
        found, detected = lm.landmarks(image)
        if detected:
            points.append((five_points(found) + 0.5) / np.array(image.shape[1::-1]))
    return np.mean(points, axis=0), len(points)


if __name__ == "__main__":
    mean, count = _mean_template()
    print(f"mean of {count} detected bundled faces (fractions of the crop):")
    print(np.array2string(mean, precision=4, floatmode="fixed"))
