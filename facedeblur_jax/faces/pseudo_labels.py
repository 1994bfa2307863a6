"""Pseudo face-parsing labels (Helen's 11 classes) rasterised from 68 dlib landmarks.

Where a face set has no parsing ground truth, ``facedeblur make-labels`` derives labels
from landmarks: ``labels_from_landmarks(landmarks(image)[0], image.shape[:2], image=image)``
with :func:`facedeblur_jax.faces.landmarks.landmarks`.

Classes (:mod:`facedeblur_jax.data.labels`; docs/design.md §2, Helen's order)::

    0 background  1 skin  2 left brow  3 right brow  4 left eye  5 right eye  6 nose
    7 upper lip   8 inner mouth / teeth  9 lower lip  10 hair

**"Left" means image-left** (the subject's right eye is class 4): brow 17–21 → 2, eye 36–41
→ 4. We could not confirm from a primary source which convention the SmithCVPR2013 Helen
label files (``lbl02`` … ``lbl05``) use; a loader of real Helen or CelebAMask-HQ labels must
map their sides onto this convention (compare part centroids). A horizontal flip of an
image must swap 2↔3 and 4↔5.

How each part is drawn (PIL ``ImageDraw`` polygons, in this order, later parts win):

- skin (1): convex hull of the jaw (0–16) and of the brows (17–26) raised by
  :data:`FOREHEAD` × the inter-ocular distance (IOD, between eye centres) along the face's
  up direction (perpendicular to the eye line) — the lower forehead;
- nose (6): bridge top 27 (widened to ±0.08 IOD), the alae (31 / 35 pushed outwards and up)
  and the base 31–35;
- brows (2, 3): the five brow points, which run along the brow's upper edge, as a band of
  :data:`BROW_THICKNESS` × IOD towards the eye;
- eyes (4, 5): polygons 36–41 and 42–47;
- upper lip (7): outer 48–54 and inner 64–60; lower lip (9): outer 54–59, 48 and inner
  60, 67–64; inner mouth (8): 60–67 (drawn last: a closed mouth has ~no area).

Hair (10) and background (0) are **approximate**: landmarks say nothing about them. Rule:
a *head* ellipse is placed around the face (centred between the jaw ends, half-width
:data:`HEAD_WIDTH` × the jaw width, reaching :data:`HEAD_HEIGHT` × the eye–chin distance
above the eye line; below the eye line it keeps its full width down to the lower lip).
Pixels outside the parts, inside that region, are *head candidates*; everything else outside
the face is background — so hair hanging below the mouth, the neck, clothes and ears are
background. Without an image every head candidate is hair. With the image
(:func:`hair_and_background`): skin-coloured candidates above the brows that touch the hull
extend the forehead; the hair colour is sampled just above that forehead; hair = the blobs
of hair-coloured candidates connected to that sample; left-over skin-coloured forehead
pixels (highlights, shadows) are skin; the rest is background. Failure modes seen on the
project's faces: grey or blond hair on pale skin becomes forehead skin, dark backgrounds
next to dark hair become hair, a hat becomes hair, and for turned faces the hull's raised
brows can stick out over the background. Treat classes 0, 10 and skin above the brows as
noisy; the eight key parts and the lower face are what the landmarks really locate.

Quality. :func:`landmark_problems` is a sanity check of a landmark set (eye line roll, IOD
range, eyes above nose above mouth above chin, mouth width, nose between the eyes, points
inside the image); a non-empty list marks the face as *failed*.
"""

from __future__ import annotations

import itertools

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from facedeblur_jax.data.labels import (
    BACKGROUND,
    HAIR,
    INNER_MOUTH,
    LEFT_BROW,
    LEFT_EYE,
    LOWER_LIP,
    NOSE,
    RIGHT_BROW,
    RIGHT_EYE,
    SKIN,
    UPPER_LIP,
)

# Geometry, in units of the inter-ocular distance (IOD) unless said otherwise.
FOREHEAD = 0.55  # how far the brows are raised to close the skin hull
BROW_THICKNESS = 0.16
HEAD_WIDTH = 0.75  # half-width of the head ellipse, × jaw width (|p16 − p0|)
HEAD_HEIGHT = 1.15  # head ellipse top above the eye line, × eye–chin distance

# Colour tests in YCbCr: (chroma floor, luma floor, k × robust spread), see `colour_like`.
SKIN_COLOUR = (7.0, 28.0, 3.0)
SKIN_CHROMA = (8.0, 60.0, 3.0)  # looser in luma (highlights, shadows), for the forehead
HAIR_COLOUR = (10.0, 32.0, 2.0)
HAIR_SEED_BAND = 0.3  # hair colour is sampled within this distance (× IOD) above the skin
MIN_REFERENCE_PIXELS = 20


def _face_frame(points: np.ndarray):
    """(eye-centre midpoint, unit x along the eye line, unit down, IOD) of ``f32[68, 2]``."""
    left_eye = points[36:42].mean(0)
    right_eye = points[42:48].mean(0)
    axis = right_eye - left_eye
    iod = float(np.hypot(*axis))
    ux = axis / max(iod, 1e-6)
    down = np.array([-ux[1], ux[0]])
    return (left_eye + right_eye) / 2, ux, down, iod


def _polygon(draw: ImageDraw.ImageDraw, points: np.ndarray, value: int, outline: bool) -> None:
    xy = [(float(x), float(y)) for x, y in points]
    draw.polygon(xy, fill=value, outline=value if outline else None)


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull ``f[K, 2]`` (counter-clockwise, monotone chain) of ``f[N, 2]`` points."""
    pts = sorted({(float(x), float(y)) for x, y in points})
    if len(pts) < 3:
        return np.asarray(pts, np.float64)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.asarray(lower[:-1] + upper[:-1], np.float64)


def part_polygons(points: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(class, polygon f[K, 2])`` for skin and the 8 parts, in drawing order."""
    p = np.asarray(points, np.float64)
    _, ux, down, iod = _face_frame(p)
    up = -down
    forehead = p[17:27] + up * FOREHEAD * iod
    skin = convex_hull(np.concatenate([p[0:17], p[17:27], forehead]))

    def brow(idx):
        top = p[idx]
        bottom = top + down * BROW_THICKNESS * iod
        return np.concatenate([top, bottom[::-1]])

    w = 0.08 * iod
    ala_l = p[31] - ux * 0.10 * iod + up * 0.08 * iod
    ala_r = p[35] + ux * 0.10 * iod + up * 0.08 * iod
    nose = np.stack([p[27] - ux * w, ala_l, *p[31:36], ala_r, p[27] + ux * w])
    upper_lip = np.concatenate([p[48:55], p[60:65][::-1]])
    lower_lip = np.concatenate([p[54:60], p[48:49], p[60:61], p[64:68][::-1]])
    return [
        (SKIN, skin),
        (NOSE, nose),
        (LEFT_BROW, brow(slice(17, 22))),
        (RIGHT_BROW, brow(slice(22, 27))),
        (LEFT_EYE, p[36:42]),
        (RIGHT_EYE, p[42:48]),
        (UPPER_LIP, upper_lip),
        (LOWER_LIP, lower_lip),
        (INNER_MOUTH, p[60:68]),
    ]


def _face_coordinates(points: np.ndarray, shape: tuple[int, int]):
    """Per-pixel ``(u, v) f[H, W]``: offset from the eye midpoint along the eye line and
    downwards."""
    centre, ux, down, _ = _face_frame(points)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dx, dy = xx - centre[0], yy - centre[1]
    return dx * ux[0] + dy * ux[1], dx * down[0] + dy * down[1]


def _head_candidates(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``bool[H, W]``: inside the head region around the face (module docstring)."""
    p = np.asarray(points, np.float64)
    centre, ux, down, _ = _face_frame(p)
    u, v = _face_coordinates(p, shape)
    cu = float(((p[0] + p[16]) / 2 - centre) @ ux)
    half_width = max(HEAD_WIDTH * float(np.hypot(*(p[16] - p[0]))), 1e-6)
    top = max(HEAD_HEIGHT * float((p[8] - centre) @ down), 1e-6)
    # Above the eye line an ellipse reaching `top`; below it the full width, to the lower lip.
    above = np.where(v < 0, v / top, 0.0)
    inside = ((u - cu) / half_width) ** 2 + above**2 <= 1.0
    return inside & (v <= float((p[57] - centre) @ down))


def _rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    cb = 128 - 0.168736 * rgb[..., 0] - 0.331264 * rgb[..., 1] + 0.5 * rgb[..., 2]
    cr = 128 + 0.5 * rgb[..., 0] - 0.418688 * rgb[..., 1] - 0.081312 * rgb[..., 2]
    return np.stack([y, cb, cr], -1)


def colour_like(
    ycc: np.ndarray, reference: np.ndarray, chroma_floor: float, luma_floor: float, k: float
) -> np.ndarray:
    """``bool[H, W]``: pixels of ``ycc f[H, W, 3]`` close to the median over ``reference``.

    Close = chroma (Cb, Cr) distance ≤ max(chroma_floor, k × robust spread) and luma
    distance ≤ max(luma_floor, k × robust spread); the spread is the scaled MAD.
    """
    ref = ycc[reference]
    if len(ref) < MIN_REFERENCE_PIXELS:
        return np.zeros(reference.shape, bool)
    med = np.median(ref, 0)
    mad = np.median(np.abs(ref - med), 0) * 1.4826
    chroma_tol = max(chroma_floor, k * float(np.hypot(mad[1], mad[2])))
    luma_tol = max(luma_floor, k * float(mad[0]))
    chroma = np.hypot(ycc[..., 1] - med[1], ycc[..., 2] - med[2])
    return (chroma <= chroma_tol) & (np.abs(ycc[..., 0] - med[0]) <= luma_tol)


def hair_and_background(
    labels: np.ndarray, points: np.ndarray, image: np.ndarray | None = None
) -> np.ndarray:
    """Splits the background (0) pixels of ``labels uint8[H, W]`` into hair / skin / background.

    Without ``image`` every head candidate becomes hair. With ``uint8[H, W, 3]`` ``image``:

    1. skin colour = median/spread over the cheeks (below the eyes, above the nose base);
    2. upper forehead = skin-coloured blobs above the brows, between the outer brow ends,
       that touch the skin hull; they join the hull;
    3. hair colour = median/spread over the head candidates within :data:`HAIR_SEED_BAND` IOD
       above that hull, between the outer brow ends, that are not skin-coloured;
    4. hair = the connected blobs of hair-coloured, not skin-coloured candidates that touch
       those seed pixels (holes filled);
    5. more forehead = blobs of what is left above the brows with a skin colour under a looser
       luma tolerance (:data:`SKIN_CHROMA`: highlights, shadows) that touch the hull;
    6. everything else stays background (including skin-coloured pixels beside the face).

    Returns a new ``uint8[H, W]``.
    """
    labels = labels.copy()
    points = np.asarray(points, np.float64)
    candidates = _head_candidates(points, labels.shape) & (labels == BACKGROUND)
    if image is None:
        labels[candidates] = HAIR
        return labels
    ycc = _rgb_to_ycbcr(image)
    u, v = _face_coordinates(points, labels.shape)
    centre, ux, down, iod = _face_frame(points)
    brow_u = (points[17:27] - centre) @ ux
    brow_v = float(((points[17:27] - centre) @ down).min())
    forehead = (v < brow_v) & (u >= brow_u.min()) & (u <= brow_u.max())
    hull = labels != BACKGROUND

    nose_base = float((points[33] - centre) @ down)
    eye_u = (points[36:48] - centre) @ ux
    cheeks = (
        (labels == SKIN) & (v > 0.25 * iod) & (v < nose_base)
        & (u >= eye_u.min()) & (u <= eye_u.max())
    )  # fmt: skip
    skin_like = colour_like(ycc, cheeks, *SKIN_COLOUR)
    skin_chroma = colour_like(ycc, cheeks, *SKIN_CHROMA)

    skin_like = ndimage.binary_opening(skin_like & candidates)
    # The upper forehead: skin-coloured blobs above the brows that touch the hull.
    hull = hull | _blobs_touching(skin_like & forehead, ndimage.binary_dilation(hull))
    not_skin = candidates & ~skin_like & ~hull
    near_hull = ndimage.distance_transform_edt(~hull) <= HAIR_SEED_BAND * iod
    seed = not_skin & forehead & near_hull
    hair = np.zeros_like(candidates)
    if seed.sum() >= MIN_REFERENCE_PIXELS:
        hair_like = colour_like(ycc, seed, *HAIR_COLOUR) & not_skin
        hair_like = ndimage.binary_closing(hair_like) & not_skin
        hair = _blobs_touching(hair_like, seed)
        hair = ndimage.binary_fill_holes(hair) & not_skin
    labels[hair] = HAIR
    # Highlights and shadows: skin-chroma blobs left between the hull and the hair.
    loose = candidates & ~hair & forehead & skin_chroma
    forehead_skin = (hull & candidates) | _blobs_touching(loose, ndimage.binary_dilation(hull))
    labels[forehead_skin] = SKIN
    return labels


def _blobs_touching(mask: np.ndarray, touch: np.ndarray) -> np.ndarray:
    """The 4-connected components of ``bool[H, W]`` ``mask`` that overlap ``touch``."""
    parts, _ = ndimage.label(mask)
    keep = np.unique(parts[mask & touch])
    return np.isin(parts, keep[keep > 0])


def labels_from_landmarks(
    points: np.ndarray, shape: tuple[int, int], *, image: np.ndarray | None = None
) -> np.ndarray:
    """Rasterises pseudo parsing labels.

    Args:
      points: ``f32[68, 2]`` (x, y) landmarks in pixels (iBUG 300-W order).
      shape: ``(H, W)`` of the label map.
      image: optional ``uint8[H, W, 3]`` RGB; enables the colour test that splits the area
        around the face into hair, forehead skin and background (module docstring).
    Returns:
      ``uint8[H, W]`` with values in ``0 .. 10`` (:data:`CLASS_NAMES`).
    """
    points = np.asarray(points, np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks [68, 2], got {points.shape}")
    h, w = int(shape[0]), int(shape[1])
    canvas = Image.new("L", (w, h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for value, poly in part_polygons(points):
        # A closed mouth's inner polygon is a sliver: fill only, so it gets ~no pixels.
        _polygon(draw, poly, value, outline=value != INNER_MOUTH)
    labels = np.asarray(canvas, dtype=np.uint8).copy()
    if image is not None:
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, -1)
        if image.shape[:2] != (h, w) or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8[{h}, {w}, 3], got {image.dtype}{image.shape}")
        image = image[..., :3]
    return hair_and_background(labels, points, image)


def landmark_problems(points: np.ndarray, shape: tuple[int, int]) -> list[str]:
    """Sanity checks of ``f32[68, 2]`` landmarks in an ``(H, W)`` crop; ``[]`` = plausible.

    Fails when: the eye line is rolled more than 40° or its order is swapped; the IOD is
    outside 15–60 % of the image width; eyes, nose tip, mouth and chin are not in that
    order downwards (each step ≥ 0.15 IOD); the mouth is narrower than 0.4 or wider than
    1.6 IOD; the nose tip lies more than 0.3 IOD outside the span of the eye centres; or more
    than 10 % of the points lie outside the image by more than 5 % of its size.
    """
    p = np.asarray(points, np.float64)
    h, w = shape
    problems = []
    centre, ux, down, iod = _face_frame(p)
    roll = np.degrees(np.arctan2(ux[1], ux[0]))
    if abs(roll) > 40:
        problems.append(f"eye line rolled {roll:.0f}°")
    if not 0.15 * w <= iod <= 0.6 * w:
        problems.append(f"inter-ocular distance {iod:.1f} px outside 15–60 % of width {w}")
    iod = max(iod, 1e-6)
    steps = {
        "eyes": 0.0,
        "nose tip": float((p[30] - centre) @ down),
        "mouth": float((p[48:60].mean(0) - centre) @ down),
        "chin": float((p[8] - centre) @ down),
    }
    names = list(steps)
    for a, b in itertools.pairwise(names):
        if steps[b] - steps[a] < 0.15 * iod:
            problems.append(f"{a} not above {b}")
    mouth = float(np.hypot(*(p[54] - p[48]))) / iod
    if not 0.4 <= mouth <= 1.6:
        problems.append(f"mouth width {mouth:.2f} IOD")
    nose_u = float((p[30] - centre) @ ux) / iod
    if abs(nose_u) > 0.5 + 0.3:
        problems.append(f"nose tip {nose_u:+.2f} IOD off the eye midpoint")
    margin_x, margin_y = 0.05 * w, 0.05 * h
    outside = (
        (p[:, 0] < -margin_x)
        | (p[:, 0] > w - 1 + margin_x)
        | (p[:, 1] < -margin_y)
        | (p[:, 1] > h - 1 + margin_y)
    )
    if outside.mean() > 0.1:
        problems.append(f"{int(outside.sum())} of 68 points outside the image")
    return problems
