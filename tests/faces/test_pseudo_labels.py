import json

import numpy as np
import pytest
from PIL import Image

from facedeblur_jax.core.imageio import load_image
from facedeblur_jax.core.sample_data import (
    SAMPLE_FACES,
    SAMPLE_LABELS,
    sample_faces,
    sample_label_path,
)
from facedeblur_jax.data import labels as classes
from facedeblur_jax.data.label_io import load_labels
from facedeblur_jax.faces import landmarks as lm
from facedeblur_jax.faces import pseudo_labels as pl
from tests.data.synthetic_face import SIZE, perimeter, shoelace, synthetic_face

# Two clearly frontal bundled faces, mouths open (teeth visible).
FRONTAL = ("test/id01_0000.png", "test/id04_0001.png")


def centroid(labels, cls):
    ys, xs = np.nonzero(labels == cls)
    assert len(xs), f"class {classes.CLASS_NAMES[cls]} absent"
    return xs.mean(), ys.mean()


@pytest.fixture(scope="module", params=FRONTAL)
def frontal(request):
    image = load_image(SAMPLE_FACES / request.param)
    points, detected = lm.landmarks(image)
    return image, points, detected, pl.labels_from_landmarks(points, image.shape[:2], image=image)


def test_frontal_face_labels_are_plausible(frontal):
    image, points, detected, labels = frontal
    assert detected
    assert pl.landmark_problems(points, image.shape[:2]) == []
    assert labels.dtype == np.uint8 and labels.shape == image.shape[:2]
    assert labels.max() < classes.NUM_CLASSES
    counts = np.bincount(labels.ravel(), minlength=classes.NUM_CLASSES)
    for cls in (*classes.PART_CLASSES, classes.SKIN, classes.BACKGROUND, classes.HAIR):
        assert counts[cls] > 10, f"{classes.CLASS_NAMES[cls]} has only {counts[cls]} pixels"
    # Top to bottom: brows, eyes, nose, upper lip, mouth, lower lip.
    y = {c: centroid(labels, c)[1] for c in classes.PART_CLASSES}
    assert max(y[classes.LEFT_BROW], y[classes.RIGHT_BROW]) < min(
        y[classes.LEFT_EYE], y[classes.RIGHT_EYE]
    )
    assert max(y[classes.LEFT_EYE], y[classes.RIGHT_EYE]) < y[classes.NOSE] < y[classes.UPPER_LIP]
    assert y[classes.UPPER_LIP] < y[classes.INNER_MOUTH] < y[classes.LOWER_LIP]
    # "Left" parts are on the image's left.
    x = {c: centroid(labels, c)[0] for c in classes.PART_CLASSES}
    assert x[classes.LEFT_EYE] < x[classes.NOSE] < x[classes.RIGHT_EYE]
    assert x[classes.LEFT_BROW] < x[classes.NOSE] < x[classes.RIGHT_BROW]
    # Eyes in the upper half, the mouth in the lower half of the crop.
    assert y[classes.LEFT_EYE] < image.shape[0] / 2 < y[classes.UPPER_LIP]


def test_eye_pixels_are_darker_than_just_below_them(frontal):
    # The eye polygons really sit on the eyes: iris and lashes are darker than the same
    # shape moved 8 px (a quarter of the eye distance) down onto the cheeks, or the nose.
    image, _, _, labels = frontal
    gray = image.mean(-1)
    eyes = (labels == classes.LEFT_EYE) | (labels == classes.RIGHT_EYE)
    assert gray[eyes].mean() < gray[np.roll(eyes, 8, axis=0)].mean() - 20
    assert gray[eyes].mean() < gray[labels == classes.NOSE].mean() - 20


def test_synthetic_parts_have_their_polygon_areas():
    points = synthetic_face()
    labels = pl.labels_from_landmarks(points, SIZE)
    p = points.astype(np.float64)
    polygons = {
        classes.LEFT_EYE: p[36:42],
        classes.RIGHT_EYE: p[42:48],
        classes.UPPER_LIP: np.concatenate([p[48:55], p[60:65][::-1]]),
        classes.LOWER_LIP: np.concatenate([p[54:60], p[48:49], p[60:61], p[64:68][::-1]]),
    }
    for cls, poly in polygons.items():
        area, edge = shoelace(poly), perimeter(poly)
        count = int((labels == cls).sum())
        # Filled with a 1-px outline (the inner mouth, drawn later, takes back the lips' inner
        # edge): within the area ± the outline.
        assert area - edge / 2 <= count <= area + edge, (
            classes.CLASS_NAMES[cls],
            count,
            area,
            edge,
        )
    assert shoelace(p[36:42]) == 60.0  # the hand-made eye: a 6 × 6 square + two triangles
    inner = shoelace(p[60:68])
    assert abs(int((labels == classes.INNER_MOUTH).sum()) - inner) <= perimeter(p[60:68]) / 2
    # Brows: a band BROW_THICKNESS × IOD (30 px) thick along 20 px of brow.
    brow_area = 20 * pl.BROW_THICKNESS * 30
    for cls in (classes.LEFT_BROW, classes.RIGHT_BROW):
        assert 0.8 * brow_area <= (labels == cls).sum() <= 1.3 * brow_area + 50
    # Nose: from the bridge top (y 36) to the base (y 60), wider than the base points.
    ys, xs = np.nonzero(labels == classes.NOSE)
    assert ys.min() == 36 and ys.max() in (59, 60, 61) and xs.max() - xs.min() >= 57 - 43
    # Symmetric face: left and right parts mirror each other.
    assert (labels == classes.LEFT_EYE).sum() == (labels == classes.RIGHT_EYE).sum()
    np.testing.assert_array_equal(
        labels[:, :50] == classes.LEFT_EYE, (labels[:, 30:80] == classes.RIGHT_EYE)[:, :50]
    )


def test_synthetic_skin_hair_background_without_image():
    labels = pl.labels_from_landmarks(synthetic_face(), SIZE)
    assert labels[20, 50] == classes.SKIN  # forehead (brows raised by FOREHEAD × IOD)
    assert labels[60, 25] == classes.SKIN  # cheek
    assert labels[85, 50] == classes.SKIN  # chin
    assert labels[2, 50] == classes.HAIR  # above the forehead, inside the head region
    assert labels[95, 50] == classes.BACKGROUND  # below the chin
    assert labels[95, 3] == classes.BACKGROUND  # below the lower lip, beside the jaw
    # Skin hull: roughly a half-ellipse below the eye line plus the forehead band.
    assert 3000 < (labels == classes.SKIN).sum() < 6000


def test_colour_rule_splits_hair_forehead_and_background():
    # The synthetic face 20 px lower on a 120 × 100 canvas: room for hair above the forehead.
    points = synthetic_face() + np.float32([0, 20])
    shape = (120, 100)
    geometric = pl.labels_from_landmarks(points, shape)  # no image: head region = hair
    skin_top = int(np.nonzero(geometric[:, 50] == classes.SKIN)[0].min())
    painted_hair = np.zeros(shape, bool)
    painted_hair[: skin_top - 6, 15:85] = True
    rng = np.random.default_rng(0)
    image = np.empty((*shape, 3), np.float64)
    image[:] = (40, 90, 200)  # blue background
    image[(geometric != classes.BACKGROUND) & (geometric != classes.HAIR)] = (205, 150, 120)  # face
    image[painted_hair] = (60, 40, 25)  # dark hair
    image[skin_top - 6 : skin_top, 25:75] = (205, 150, 120)  # upper forehead
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)

    labels = pl.labels_from_landmarks(points, shape, image=image)
    assert labels[5, 50] == classes.HAIR
    assert labels[skin_top - 3, 50] == classes.SKIN  # forehead above the hull joins the skin
    assert labels[60, 3] == classes.BACKGROUND  # blue beside the face: not hair
    assert labels[1, 1] == classes.BACKGROUND  # blue top corner
    hair = labels == classes.HAIR
    reachable = painted_hair & (geometric == classes.HAIR)
    assert not (hair & ~painted_hair).any()
    assert hair.sum() >= 0.9 * reachable.sum() > 500
    # The parts are untouched by the colour rule.
    parts = np.isin(geometric, classes.PART_CLASSES)
    np.testing.assert_array_equal(labels[parts], geometric[parts])


def test_sanity_check_flags_broken_landmarks():
    points = synthetic_face()
    assert pl.landmark_problems(points, SIZE) == []
    mirrored = points.copy()
    mirrored[:, 0] = 99 - mirrored[:, 0]  # left/right swapped: the eye line points left
    assert any("rolled" in p for p in pl.landmark_problems(mirrored, SIZE))
    mouth_up = points.copy()
    mouth_up[48:68, 1] -= 45
    assert any("mouth not above chin" in p or "nose tip not above mouth" in p
               for p in pl.landmark_problems(mouth_up, SIZE))  # fmt: skip
    tiny = points * 0.1
    assert any("inter-ocular" in p for p in pl.landmark_problems(tiny, SIZE))
    off_image = points + 80
    assert any("outside the image" in p for p in pl.landmark_problems(off_image, SIZE))


def test_labels_from_landmarks_rejects_bad_input():
    with pytest.raises(ValueError, match="68 landmarks"):
        pl.labels_from_landmarks(np.zeros((5, 2)), SIZE)
    with pytest.raises(ValueError, match="image must be"):
        pl.labels_from_landmarks(synthetic_face(), SIZE, image=np.zeros((10, 10, 3), np.uint8))


def test_shipped_labels_exist_for_every_bundled_face():
    faces = sample_faces()
    assert len(faces) == 200
    for face in faces:
        path = sample_label_path(face)
        assert path.is_file(), f"no shipped labels for {face.path.name}"
        labels = load_labels(path)
        with Image.open(face.path) as im:
            assert labels.shape == (im.height, im.width)
        assert labels.max() < classes.NUM_CLASSES
    report = json.loads((SAMPLE_LABELS / "report.json").read_text())
    assert report["total"] == report["labelled"] == 200
    assert report["detected"] + report["fallback"] == 200


@pytest.mark.parametrize("name", FRONTAL)
def test_shipped_labels_match_the_current_rules(name):
    # Regenerate the shipped labels (README in assets/faces) when the rules change.
    image = load_image(SAMPLE_FACES / name)
    points, _ = lm.landmarks(image)
    labels = pl.labels_from_landmarks(points, image.shape[:2], image=image)
    shipped = load_labels(SAMPLE_LABELS / name)
    assert (labels == shipped).mean() > 0.99
    for cls in range(classes.NUM_CLASSES):
        a, b = labels == cls, shipped == cls
        if a.any() or b.any():
            assert (a & b).sum() / (a | b).sum() > 0.9, classes.CLASS_NAMES[cls]
