"""A synthetic "real photo": bundled aligned faces placed at a known scale, angle and position
on a textured background, for the alignment and photo-deblurring tests."""

import numpy as np

from facedeblur_jax.core import imageio, sample_data
from facedeblur_jax.faces import align as face_align


def background(height: int, width: int) -> np.ndarray:
    """``uint8[H, W, 3]``: smooth colour gradients with a soft wave texture (no face)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 90 + 60 * x / width + 10 * np.sin(x / 7.0)
    g = 120 + 40 * y / height + 10 * np.cos(y / 5.0)
    b = 150 - 50 * x / width + 8 * np.sin((x + y) / 9.0)
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def placement(scale: float, angle_deg: float, centre: tuple[float, float]) -> np.ndarray:
    """``f64[2, 3]`` from 112 × 112 face-crop coordinates into the photo: rotate by
    ``angle_deg`` and scale about the crop's centre, which lands on ``centre`` (x, y)."""
    a = np.deg2rad(angle_deg)
    linear = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = np.array([55.5, 55.5])
    return np.concatenate([linear, (np.asarray(centre) - linear @ c)[:, None]], axis=1)


def place_face(photo: np.ndarray, face: np.ndarray, to_photo: np.ndarray) -> np.ndarray:
    """``photo`` with the 112 × 112 ``face`` drawn through ``to_photo`` inside a soft ellipse
    (so the crop's square edges and black corner wedges do not show)."""
    h, w = photo.shape[:2]
    warped = face_align.warp_affine(face, to_photo, (h, w), order=3)
    yy, xx = np.mgrid[0:112, 0:112].astype(np.float32)
    ellipse = ((xx - 55.5) / 50.0) ** 2 + ((yy - 60.0) / 56.0) ** 2
    soft = np.clip((1.0 - ellipse) / 0.15, 0.0, 1.0)
    alpha = face_align.warp_affine(soft, to_photo, (h, w), order=1)[..., None]
    out = photo.astype(np.float32) * (1 - alpha) + warped * alpha
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def sample_face(index: int = 0, split: str = "test") -> np.ndarray:
    """``uint8[112, 112, 3]`` bundled face."""
    return imageio.load_image(sample_data.sample_faces(split)[index].path)


def photo_with_face(
    height: int = 300,
    width: int = 400,
    scale: float = 1.4,
    angle_deg: float = 12.0,
    centre: tuple[float, float] = (230.0, 140.0),
    index: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8[H, W, 3] photo, f64[2, 3] from photo to the face's 112-px crop)``.

    Test face 2 is found by dlib at scales 0.8–2.5 and angles ±10° (face 0, tilted
    already, is lost at 10°)."""
    to_photo = placement(scale, angle_deg, centre)
    photo = place_face(background(height, width), sample_face(index), to_photo)
    return photo, face_align.invert_affine(to_photo)
