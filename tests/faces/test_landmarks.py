import importlib.util
import subprocess
import sys

import dlib
import numpy as np
import pytest

from facedeblur_jax.core.imageio import load_image
from facedeblur_jax.core.sample_data import SAMPLE_FACES
from facedeblur_jax.faces import landmarks as lm


def test_model_file_is_found_without_importing_the_package():
    path = lm.model_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat"
    assert path.stat().st_size > 50_000_000


def test_missing_model_package_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "face_recognition_models" else real(name, *a),
    )
    with pytest.raises(ModuleNotFoundError, match="face_recognition_models"):
        lm.model_path()


def test_missing_dlib_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` raises ImportError
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e \"\.\[faces\]\""):
        lm.dlib_module()


def test_importing_the_package_does_not_import_dlib():
    code = (
        "import sys, facedeblur_jax, facedeblur_jax.cli, facedeblur_jax.commands.eval, "
        "facedeblur_jax.data.label_io, facedeblur_jax.training.losses, "
        "facedeblur_jax.serving.photos, "
        "facedeblur_jax.faces.recognition, facedeblur_jax.faces.pseudo_labels; "
        "print('dlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_detected_face_landmarks():
    image = load_image(SAMPLE_FACES / "test/id01_0000.png")
    points, detected = lm.landmarks(image)
    assert detected
    assert points.shape == (68, 2) and points.dtype == np.float32
    assert (points >= -2).all() and (points[:, 0] <= 113).all()
    left_eye, right_eye = points[36:42].mean(0), points[42:48].mean(0)
    assert left_eye[0] < 56 < right_eye[0]  # 36–41 is the image-left eye
    assert 25 < np.linalg.norm(right_eye - left_eye) < 45  # ~35 px in these crops
    assert left_eye[1] < points[30, 1] < points[48:60, 1].mean() < points[8, 1]


def test_fallback_box_when_the_detector_finds_nothing():
    assert lm.fallback_box(112, 112) == (16, 28, 99, 111)
    # A face the HOG detector misses (shipped labels/report.json lists it as a fallback).
    image = load_image(SAMPLE_FACES / "test/id05_0001.png")
    assert lm.detect_face(image) is None
    points, detected = lm.landmarks(image)
    assert not detected
    left_eye, right_eye = points[36:42].mean(0), points[42:48].mean(0)
    assert left_eye[0] < right_eye[0] and abs(left_eye[1] - right_eye[1]) < 10
    # Blank image: no face, points still come back inside the fallback box.
    blank = np.full((112, 112, 3), 128, np.uint8)
    points, detected = lm.landmarks(blank)
    assert not detected and np.isfinite(points).all()
    assert (points[:, 0] > 5).all() and (points[:, 0] < 110).all()


def test_fallback_matches_detector_start_on_a_detected_face():
    # The fixed box was tuned so the predictor lands where it lands from the detector's box.
    image = load_image(SAMPLE_FACES / "test/id04_0001.png")
    from_detector, detected = lm.landmarks(image)
    assert detected
    shape = lm.shape_predictor()(image, dlib.rectangle(*lm.fallback_box(112, 112)))
    from_box = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
    iod = np.linalg.norm(from_detector[36:42].mean(0) - from_detector[42:48].mean(0))
    assert np.linalg.norm(from_box - from_detector, axis=1).mean() < 0.1 * iod


def test_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        lm.landmarks(np.zeros((112, 112, 3), np.float32))
