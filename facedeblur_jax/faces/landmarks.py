"""dlib and its models; 68-point face landmarks on aligned face crops, with a fixed-box fallback.

Models (each loaded once per process by a public function): :func:`detector`, dlib's HOG
frontal face detector (built into ``dlib-bin``); :func:`shape_predictor`, the 68-point
predictor ``shape_predictor_68_face_landmarks.dat``; :func:`recognition_model`, the 128-D
embedding network ``dlib_face_recognition_resnet_model_v1.dat``. The two model files ship
with the ``face_recognition_models`` package (install the ``faces`` extra: ``pip install -e
".[faces]"``). That package's ``__init__`` imports ``pkg_resources``, which new setuptools no
longer has, so the files are located through the import system without importing the package.
dlib itself is imported on first use (:func:`dlib_module`), never at import time.

Point order is the iBUG 300-W one: jaw 0–16, brows 17–21 / 22–26, nose bridge 27–30, nose
base 31–35, eyes 36–41 / 42–47, outer lips 48–59, inner lips 60–67. For a frontal face,
17–21 and 36–41 are on the **image-left** (the subject's right).

Fallback. The crops this project trains on are aligned (ArcFace-style 112×112, face
centred, chin near the bottom edge), so when the detector finds no face the shape predictor
is started from a fixed box :data:`FALLBACK_BOX` (fractions of width/height). It was tuned
on the 3,065 of 3,271 project faces the detector does find: started from this box, the
predictor lands on average within 2 % of the inter-ocular distance of where it lands when
started from the detector's box. On a crop that is not aligned like that the fallback is
meaningless; :func:`landmarks` reports which path it took so that callers can count or drop
fallback faces.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib

import numpy as np

# (left, top, right, bottom) as fractions of (W, H, W, H): (16, 28, 100, 112) on 112 × 112.
FALLBACK_BOX = (0.143, 0.25, 0.893, 1.0)
# Detections whose IoU with the fallback box is lower belong to another face in the crop.
MIN_IOU_WITH_EXPECTED = 0.3
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
RECOGNITION_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
INSTALL_HINT = (
    "pip install 'dlib-bin>=20.0,<20.1' 'face_recognition_models>=0.3,<0.4' "
    '(or the project\'s extra: pip install -e ".[faces]")'
)


def model_path(name: str = PREDICTOR_FILE) -> pathlib.Path:
    """Path of a model file of the ``face_recognition_models`` package (without importing it).

    Raises ``ModuleNotFoundError`` naming the package when it is not installed.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "dlib's landmark model comes from the 'face_recognition_models' package, which is "
            f"not installed: {INSTALL_HINT}"
        )
    path = pathlib.Path(spec.submodule_search_locations[0]) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} missing from face_recognition_models")
    return path


def dlib_module():
    """The ``dlib`` module; ``ModuleNotFoundError`` naming the ``faces`` extra if missing."""
    try:
        import dlib  # deferred: dlib is optional (the faces extra)
    except ImportError as e:
        raise ModuleNotFoundError(f"face detection and landmarks need dlib: {INSTALL_HINT}") from e
    return dlib


@functools.cache
def detector():
    """dlib's HOG frontal face detector (loaded once per process)."""
    return dlib_module().get_frontal_face_detector()


@functools.cache
def shape_predictor():
    """dlib's 68-point shape predictor, :data:`PREDICTOR_FILE` (loaded once per process)."""
    return dlib_module().shape_predictor(str(model_path(PREDICTOR_FILE)))


@functools.cache
def recognition_model():
    """dlib's 128-D face embedding network, :data:`RECOGNITION_MODEL_FILE` (loaded once)."""
    return dlib_module().face_recognition_model_v1(str(model_path(RECOGNITION_MODEL_FILE)))


def fallback_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The fixed face box ``(left, top, right, bottom)`` in pixels for an aligned crop."""
    left, top, right, bottom = FALLBACK_BOX
    return (
        round(left * width),
        round(top * height),
        round(right * width) - 1,
        round(bottom * height) - 1,
    )


def box_iou(a, b) -> float:
    """Intersection over union of two ``(left, top, right, bottom)`` boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect_face(image: np.ndarray, upsample: int = 1) -> tuple[int, int, int, int] | None:
    """The detector's box for the crop's face, ``(left, top, right, bottom)``, or ``None``.

    Runs the HOG detector with ``upsample_num_times`` 0, then 1, … up to ``upsample`` until it
    returns a box (faces in 112×112 crops are near the detector's 80 px minimum). Of several
    detections the one overlapping :data:`FALLBACK_BOX` most is kept; one with IoU below
    :data:`MIN_IOU_WITH_EXPECTED` (a bystander at the edge) counts as no detection.
    """
    find = detector()
    expected = fallback_box(*image.shape[:2])
    for times in range(upsample + 1):
        found = [(r.left(), r.top(), r.right(), r.bottom()) for r in find(image, times)]
        if found:
            best = max(found, key=lambda box: box_iou(box, expected))
            return best if box_iou(best, expected) >= MIN_IOU_WITH_EXPECTED else None
    return None


def landmarks(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """68 landmarks of the face in an aligned crop.

    Args:
      image: ``uint8[H, W, 3]`` RGB (or ``uint8[H, W]`` gray).
    Returns:
      ``(points f32[68, 2] as (x, y) pixel coordinates, detected)``, where ``detected`` is
      False when the detector found no face and the predictor started from the fixed box.
    """
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected uint8[H, W, 3] or uint8[H, W], got {image.dtype}{image.shape}")
    box = detect_face(image)
    detected = box is not None
    if box is None:
        box = fallback_box(*image.shape[:2])
    shape = shape_predictor()(image, dlib_module().rectangle(*box))
    points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
    return points, detected
