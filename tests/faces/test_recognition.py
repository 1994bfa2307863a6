import json

import numpy as np
import pytest
from scipy import ndimage

from facedeblur_jax.core import imageio, sample_data
from facedeblur_jax.faces import recognition as fa


def _load(split, per_identity=None):
    faces = sample_data.sample_faces(split)
    if per_identity is not None:
        faces = [f for f in faces if int(f.path.stem.split("_")[1]) < per_identity]
    images = np.stack([imageio.load_image(f.path) for f in faces])
    identities = np.array([int(f.identity.removeprefix("id")) for f in faces])
    return images, identities


@pytest.fixture(scope="module")
def faces():
    """40 held-back faces (2 per identity), their blurred and noise versions, and a gallery of
    4 clear training faces per identity (80): 200 images to embed, ~20 s on a CPU."""
    clear, ids = _load("test")
    gallery = _load("train", per_identity=4)
    blurred = ndimage.gaussian_filter(clear.astype(np.float32), (0, 3, 3, 0))
    blurred = np.round(blurred).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, clear.shape, dtype=np.uint8)
    return clear, ids, gallery, {"blurred": blurred, "noise": noise}


@pytest.fixture(scope="module")
def result(faces):
    clear, ids, gallery, variants = faces
    return fa.analyze(clear, variants, ids, gallery)


def test_rows_and_json(result):
    assert list(result["rows"]) == ["clear", "blurred", "noise"]
    assert result["n_images"] == 40
    assert result["gallery"] == {"kind": "given", "images": 80, "identities": 20}
    assert json.loads(json.dumps(result)) == result
    for row in result["rows"].values():
        assert row["images"] == 40 and row["probes"] == 40
        assert row["detected"] + row["fallback"] == 40
        assert row["detection_rate"] == row["detected"] / 40
        assert row["top_1"] <= row["top_3"] <= row["top_5"]


def test_detection_rates(result):
    rows = result["rows"]
    # Measured: 37 of 40 clear (the dlib detector misses 10 of all 200 bundled faces).
    assert rows["clear"]["detection_rate"] >= 0.85
    # Gaussian blur σ = 3 px: 27 of 40; noise: none (no false detection on the face box).
    assert rows["blurred"]["detection_rate"] <= rows["clear"]["detection_rate"] - 0.1
    assert rows["noise"]["detected"] == 0


def test_identity_distances(result):
    rows = result["rows"]
    assert rows["clear"]["l2_mean"] == 0.0 and rows["clear"]["cosine_mean"] < 1e-6
    # Measured: blurred L2 0.49, cosine 0.056; noise L2 0.78, cosine 0.15 (dlib's same-person
    # threshold is L2 0.6).
    assert 0.2 < rows["blurred"]["l2_mean"] < rows["noise"]["l2_mean"]
    assert 0.0 < rows["blurred"]["cosine_mean"] < rows["noise"]["cosine_mean"]


def test_recognition(result):
    rows = result["rows"]
    # 20 identities: chance is 5 % top-1, 25 % top-5. Measured: clear top-1 90 %, top-5
    # 97.5 %; blurred 72.5 %; noise 7.5 %.
    assert rows["clear"]["top_1"] >= 0.75
    assert rows["clear"]["top_5"] >= 0.9
    assert rows["noise"]["top_1"] <= 0.3
    assert rows["blurred"]["top_1"] > rows["noise"]["top_1"]


def test_cache_and_gallery_copies_of_the_probes(faces, result):
    clear, ids, gallery, variants = faces
    again = fa.analyze(clear, {"same": clear.copy(), **variants}, ids, gallery)
    assert again["embedded"] == 0  # every image was embedded by the fixture's call
    assert again["rows"]["clear"] == result["rows"]["clear"]
    assert again["rows"]["same"] == result["rows"]["clear"]
    assert again["rows"]["noise"] == result["rows"]["noise"]
    # The clear probes themselves in the gallery are left out, not matched at distance 0
    # (which would make top-1 100 %); the other held-back face of each identity stays.
    copies = (np.concatenate([gallery[0], clear]), np.concatenate([gallery[1], ids]))
    out = fa.analyze(clear, {}, ids, copies)
    assert out["embedded"] == 0
    assert out["gallery"]["images"] == 120
    assert 0.75 <= out["rows"]["clear"]["top_1"] < 1.0


def test_leave_one_out_gallery(faces):
    clear, ids, _, variants = faces
    out = fa.analyze(clear, {"blurred": variants["blurred"]}, ids)
    assert out["gallery"] == {"kind": "clear images, leave-one-out", "images": 40, "identities": 20}
    # Each probe's only same-identity gallery image is the other held-back face: measured
    # top-1 72.5 % (clear), 52.5 % (blurred).
    assert out["rows"]["clear"]["top_1"] >= 0.5
    assert out["rows"]["clear"]["probes"] == 40


def test_identity_ranks():
    probes = np.array([[0.0, 0.0], [10.0, 0.0], [1.0, 2.0], [0.0, 0.0]])
    probe_ids = np.array([0, 1, 2, 1])
    gallery = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 1.0], [0.0, 3.0], [0.0, 1.0]])
    gallery_ids = np.array([0, 0, 1, 2, 3])
    ranks = fa.identity_ranks(probes, probe_ids, gallery, gallery_ids)
    # Probe 2 at (1, 2): identity 2 and identity 3 both at √2 — a tie counts against it.
    assert ranks.tolist() == [1, 1, 2, 4]
    exclude = np.zeros((4, 5), bool)
    exclude[0, 0] = True  # 0's nearest own image left out: (1, 0) ties with id 3 at (0, 1)
    exclude[1, 2] = True  # probe 1's identity has no gallery image left: not counted
    assert fa.identity_ranks(probes, probe_ids, gallery, gallery_ids, exclude).tolist() == [
        2,
        0,
        2,
        4,
    ]


def test_identity_distance_values():
    a = np.array([[3.0, 4.0], [1.0, 0.0]])
    b = np.array([[3.0, 4.0], [0.0, 2.0]])
    l2, cosine = fa.identity_distances(a, b)
    np.testing.assert_allclose(l2, [0.0, np.sqrt(5.0)], rtol=1e-6)
    np.testing.assert_allclose(cosine, [0.0, 1.0], atol=1e-7)


def test_to_markdown(result):
    table = fa.to_markdown(result)
    lines = table.splitlines()
    assert lines[0].startswith("| images | detection | top-1 | top-3 | top-5 |")
    names = [line.split("|")[1].strip() for line in lines[2:5]]
    assert names == ["clear", "blurred", "noise"]
    clear_row = lines[2]
    assert f"| {100 * result['rows']['clear']['detection_rate']:.1f}% |" in clear_row
    assert "| 0.000 | 0.0000 |" in clear_row
    assert "40 faces; gallery: 80 images of 20 identities" in table


def test_bad_inputs(faces):
    clear, ids, _, variants = faces
    with pytest.raises(ValueError, match="uint8"):
        fa.analyze(clear.astype(np.float32), {}, ids)
    with pytest.raises(ValueError, match="has 39 images"):
        fa.analyze(clear, {"blurred": variants["blurred"][:39]}, ids)
    with pytest.raises(ValueError, match="ground-truth row"):
        fa.analyze(clear, {"clear": clear}, ids)
    with pytest.raises(ValueError, match="identities"):
        fa.analyze(clear, {}, ids[:5])
    with pytest.raises(ValueError, match="empty"):
        fa.analyze(clear, {}, ids, (clear[:0], ids[:0]))
