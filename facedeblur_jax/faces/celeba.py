"""Aligning CelebA's photos with dlib: the main face of an ``img_celeba`` photo, or an
``img_align_celeba`` frame by its five annotated points (``facedeblur data prepare celeba``).

The layouts, annotation files and splits are :mod:`facedeblur_jax.data.celeba` (no dlib);
its docstring describes the rules applied here: detection on a shrunk copy of large photos
(:data:`MAX_DETECT_SIDE`), upsampling small ones (:data:`UPSAMPLE_BELOW`), the main face
(:data:`MAIN_FACE_RATIO`), the limits :data:`MAX_UPSCALE` and :data:`MIN_INSIDE`, and the
landmark checks of :func:`facedeblur_jax.faces.pseudo_labels.landmark_problems`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from facedeblur_jax.core import imageio
from facedeblur_jax.data.celeba import ALIGNED_FRAME_HW
from facedeblur_jax.faces import align as face_align
from facedeblur_jax.faces import landmarks as lm
from facedeblur_jax.faces import pseudo_labels

# Detection on in-the-wild photos (as facedeblur deblur searches photos).
MAX_DETECT_SIDE = 1600  # larger photos are searched on a copy shrunk to this longer side
UPSAMPLE_BELOW = 1000  # photos up to this size are searched upsampled ×2 when nothing is found
# A second detection at least this fraction of the largest one's side: no clear main face.
MAIN_FACE_RATIO = 0.8
# Rejections.
MAX_UPSCALE = 2.0  # the crop may enlarge the face at most this many times
MIN_INSIDE = 0.75  # at least this fraction of the crop's pixels must come from the photo


class AlignmentError(ValueError):
    """A face that cannot be aligned.

    Attributes:
      reason: one of :data:`REASONS` (for counting); ``str(e)`` says more.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# Why a face is skipped (the ``reason`` of AlignmentError and of the prepare manifest).
REASONS = (
    "unreadable image",
    "no identity",
    "no landmarks",
    "wrong image size",
    "no face detected",
    "no clear main face",
    "degenerate transform",
    "face too small",
    "crop off the photo",
    "implausible landmarks",
)


@dataclasses.dataclass(frozen=True)
class AlignedFace:
    """One aligned face.

    Attributes:
      crop: ``uint8[S, S, 3]``.
      landmarks: ``f32[68, 2]`` dlib landmarks in crop pixels (``img_align_celeba``: found on
        the crop; ``detected`` False when dlib's predictor started from its fixed box).
      transform: ``f64[2, 3]`` from photo to crop coordinates.
      detected: dlib's detector found the face the landmarks belong to.
    """

    crop: np.ndarray
    landmarks: np.ndarray
    transform: np.ndarray
    detected: bool = True


def _checked_transform(points5: np.ndarray, size: int, photo_hw: tuple[int, int]) -> np.ndarray:
    """The similarity from ``f64[5, 2]`` photo points onto the template, or AlignmentError."""
    try:
        m = face_align.estimate_similarity(points5, face_align.template(size))
    except ValueError as e:
        raise AlignmentError("degenerate transform", str(e)) from e
    if not np.all(np.isfinite(m)):
        raise AlignmentError("degenerate transform", "not finite")
    scale = face_align.affine_scale(m)
    if not scale > 1e-6:
        raise AlignmentError("degenerate transform", f"scale {scale:.3g}")
    if scale > MAX_UPSCALE:
        raise AlignmentError(
            "face too small", f"the crop enlarges it {scale:.1f}× (more than {MAX_UPSCALE:g}×)"
        )
    inside = float(face_align.inside_mask(m, size, photo_hw).mean())
    if inside < MIN_INSIDE:
        raise AlignmentError(
            "crop off the photo",
            f"{100 * (1 - inside):.0f} % of the crop (at most {100 * (1 - MIN_INSIDE):.0f} % "
            "allowed)",
        )
    return m


def detect_main_face(image: np.ndarray) -> tuple[int, int, int, int]:
    """The main face's box ``(left, top, right, bottom)`` in a photo (module docstring).

    Args:
      image: ``uint8[H, W, 3]``.
    Raises:
      AlignmentError: no face, or no clear main face.
    """
    detector = lm.detector()
    h, w = image.shape[:2]
    scale = min(1.0, MAX_DETECT_SIDE / max(h, w))
    small = image
    if scale < 1.0:
        small = imageio.resize_hw(image, max(round(h * scale), 1), max(round(w * scale), 1))
    tries = (0, 1) if max(h, w) <= UPSAMPLE_BELOW else (0,)
    boxes = []
    for times in tries:
        boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in detector(small, times)]
        if boxes:
            break
    if not boxes:
        raise AlignmentError("no face detected", "")
    boxes = [tuple(round(v / scale) for v in b) for b in boxes]
    side = sorted((float(np.sqrt((b[2] - b[0]) * (b[3] - b[1]))) for b in boxes), reverse=True)
    if len(side) > 1 and side[1] >= MAIN_FACE_RATIO * side[0]:
        raise AlignmentError(
            "no clear main face",
            f"{len(boxes)} faces, the second {side[1] / side[0]:.2f} of the largest's size",
        )
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))


def align_wild(image: np.ndarray, size: int) -> AlignedFace:
    """The main face of an ``img_celeba`` photo, aligned (module docstring).

    Args:
      image: ``uint8[H, W, 3]``.
      size: the crop's side ``S``.
    Returns:
      :class:`AlignedFace` with the 68 landmarks mapped into the crop.
    Raises:
      AlignmentError: naming the reason.
    """
    image = np.ascontiguousarray(image)
    box = detect_main_face(image)
    shape = lm.shape_predictor()(image, lm.dlib_module().rectangle(*box))
    points = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
    m = _checked_transform(face_align.five_points(points), size, image.shape[:2])
    in_crop = face_align.apply_affine(m, points).astype(np.float32)
    problems = pseudo_labels.landmark_problems(in_crop, (size, size))
    if problems:
        raise AlignmentError("implausible landmarks", "; ".join(problems))
    return AlignedFace(face_align.align_crop(image, m, size), in_crop, m, True)


def align_aligned(image: np.ndarray, points5: np.ndarray, size: int) -> AlignedFace:
    """An ``img_align_celeba`` image aligned by its five annotated points (module docstring).

    Args:
      image: ``uint8[218, 178, 3]``.
      points5: ``f[5, 2]`` from ``list_landmarks_align_celeba.txt``.
      size: the crop's side ``S``.
    Returns:
      :class:`AlignedFace` with dlib's 68 landmarks found on the crop.
    Raises:
      AlignmentError: naming the reason (another image size, a degenerate transform, a
        crop off the image).
    """
    if image.shape[:2] != ALIGNED_FRAME_HW:
        h, w = ALIGNED_FRAME_HW
        raise AlignmentError(
            "wrong image size",
            f"{image.shape[1]}×{image.shape[0]}, not the {w}×{h} img_align_celeba frame its "
            "landmarks refer to",
        )
    m = _checked_transform(np.asarray(points5, np.float64), size, image.shape[:2])
    crop = face_align.align_crop(image, m, size)
    points, detected = lm.landmarks(crop)
    return AlignedFace(crop, points, m, detected)
