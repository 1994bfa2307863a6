"""evaluators.identity: the AUC, verification and recognition rules on hand-made embeddings,
a real (random-weight) MobileFaceNet through ``facedeblur eval --identity-weights``, and the
converted public checkpoint on the 20-identity face set when it is available."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest

from facedeblur_jax import cli
from facedeblur_jax.core.imageio import load_image
from facedeblur_jax.evaluators import identity
from facedeblur_jax.models import mobilefacenet as mfn
from tests.data.conftest import write_face_tree
from tests.evaluators import strict_json
from tests.models.random_mobilefacenet import write_random_mobilefacenet


def _brute_auc(scores, positive):
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize(
    ("scores", "positive", "expected"),
    [
        ([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 0], 1.0),  # separable
        ([0.9, 0.8, 0.7, 0.6], [0, 0, 1, 1], 0.0),  # inverted
        ([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], 0.75),  # 0.7 loses to 0.8 only: 3 of 4
        ([0.5, 0.5, 0.5], [1, 0, 0], 0.5),  # all tied: one half each
        ([1, 2, 2, 3], [0, 1, 0, 1], 0.875),  # 2 vs 2 tied: (1 + 0.5 + 1 + 1) / 4
        ([3, 1, 2, 2, 2], [1, 0, 1, 0, 0], 5 / 6),  # (1 + 1 + 1) + (1 + 0.5 + 0.5) over 6
    ],
)
def test_roc_auc_hand_computed(scores, positive, expected):
    assert identity.roc_auc(np.asarray(scores), np.asarray(positive, bool)) == pytest.approx(
        expected, abs=1e-12
    )


def test_roc_auc_equals_pair_counting_with_many_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(float)  # heavy ties
    positive = rng.uniform(size=60) < 0.3
    assert identity.roc_auc(scores, positive) == pytest.approx(_brute_auc(scores, positive))
    assert np.isnan(identity.roc_auc(np.ones(3), np.zeros(3, bool)))  # no positives


def test_separable_embeddings_give_auc_one_and_constant_ones_one_half():
    # 3 identities × 3 faces, each identity on its own axis: perfectly separable.
    ids = np.repeat([0, 1, 2], 3)
    faces = np.arange(9)
    emb = identity.unit(np.eye(3)[ids] + 0.05 * np.random.default_rng(1).normal(size=(9, 3)))
    v = identity.verification(emb, faces, emb, ids)
    # Same pairs: 3 identities × 3 faces × 2 others; different: 9 × 6.
    assert v == {"auc": 1.0, "same_pairs": 18, "different_pairs": 54}
    r = identity.recognition(emb, faces, emb, ids)
    assert r == {"top_1": 1.0, "probes": 9, "correct": 9, "gallery_identities": 3}

    constant = identity.unit(np.ones((9, 3)))
    v = identity.verification(constant, faces, constant, ids)
    assert v["auc"] == 0.5  # every pair ties
    # Every identity ties with the probe's own: ties count against it.
    assert identity.recognition(constant, faces, constant, ids)["top_1"] == 0.0


def test_recognition_leaves_the_probes_own_face_out():
    ids = np.asarray([0, 0, 1, 2])  # identities 1 and 2 have one face each
    clear = identity.unit(np.eye(3)[ids])
    r = identity.recognition(clear, np.arange(4), clear, ids)
    assert r["probes"] == 2 and r["correct"] == 2  # faces of identity 0 only
    # A probe identical to another identity's only face is recognised as that identity.
    probe = identity.unit(np.eye(3)[[1]])
    assert identity.recognition(probe, np.asarray([0]), clear, ids)["correct"] == 0


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A random-weight MobileFaceNet saved as the converter's .npz (mechanics only)."""
    return write_random_mobilefacenet(tmp_path_factory.mktemp("mfn") / "random.npz")


def test_analyze_with_repeated_faces(random_weights):
    variables = mfn.load_mobilefacenet(random_weights)
    rng = np.random.default_rng(0)
    clear = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    ids = np.asarray([5, 5, 9, 9])
    # Two probes per face (as --face-analysis-per-face 2): rows 2i and 2i + 1 are face i.
    faces = np.repeat(np.arange(4), 2)
    blurred = np.repeat(clear, 2, axis=0) // 2
    out = identity.analyze(
        variables, np.repeat(clear, 2, axis=0), {"b": blurred}, ids[faces], faces
    )
    assert out["n_images"] == 8 and out["n_faces"] == 4 and out["identities"] == 2
    c, b = out["rows"]["clear"], out["rows"]["b"]
    assert c["images"] == 4 and c["same_pairs"] == 4 and c["different_pairs"] == 8
    assert b["images"] == 8 and b["same_pairs"] == 8 and b["different_pairs"] == 16
    assert c["cosine_mean"] == 0.0 and b["cosine_mean"] > 0
    assert c["probes"] == 4 and b["probes"] == 8
    with pytest.raises(ValueError, match="one face with two identities"):
        identity.analyze(variables, clear, {}, np.asarray([1, 2, 3, 4]), np.zeros(4, int))


def _eval(ckpt, data, bank, out, *extra):
    argv = ["eval", "--checkpoint", str(ckpt), "--data", str(data), "--kernels", str(bank)]
    return cli.main([*argv, "--out", str(out), "--no-progress", *extra])


def test_eval_identity_section(bank_path, tiny_checkpoint, random_weights, tmp_path, capsys):
    root = tmp_path / "faces"
    # train f000-f003 (ids 0, 1, 2, 0), test f004-f009 (ids 1, 2, 0, 1, 2, 0): 3 × 2.
    write_face_tree(root, root / "labels", splits=(("train", 4), ("test", 6)), identities=3)
    flags = ["--identity-weights", str(random_weights), "--face-analysis-per-face", "2"]
    assert _eval(tiny_checkpoint, root, bank_path, tmp_path / "ev", *flags) == 0
    results = strict_json.loads((tmp_path / "ev" / "results.json").read_text())
    ident = results["identity"]
    assert ident["n_images"] == 12 and ident["n_faces"] == 6 and ident["identities"] == 3
    assert ident["identities_in_train"] == 3
    assert ident["weights"] == str(random_weights.resolve())
    assert list(ident["rows"]) == ["clear", "blurred input", "G_c", "full model"]
    for name, row in ident["rows"].items():
        n = 6 if name == "clear" else 12
        # Each image pairs with the 5 other faces: 1 of its identity, 4 of others.
        assert (row["same_pairs"], row["different_pairs"]) == (n, 4 * n), name
        assert 0.0 <= row["auc"] <= 1.0 and row["probes"] == n, name
    md = (tmp_path / "ev" / "results.md").read_text()
    assert "## Identity with MobileFaceNet" in md
    assert "| clear |" in md and "| full model |" in md
    assert "Test identities that the train split also holds: 3." in md


def test_eval_identity_weights_errors(bank_path, tiny_checkpoint, tmp_path, capsys):
    cases = {
        "missing.npz": None,
        "corrupt.npz": b"not a zip archive",
        "068.ckpt": b"\x80\x02 pretend pytorch",
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        out = tmp_path / f"out_{name}"
        assert (
            _eval(tiny_checkpoint, "sample", bank_path, out, "--identity-weights", str(path)) == 2
        )
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err, err
        assert "Traceback" not in err and not out.exists()
        if name.endswith(".ckpt"):
            assert f"facedeblur convert-mobilefacenet --input {path}" in err


@pytest.mark.slow
def test_real_checkpoint_clear_top1_on_the_face_set(
    mobilefacenet_checkpoint, shared_faces_dir, tmp_path
):
    """The converted public checkpoint, clear test faces of the 20-identity set as probes and
    leave-one-out gallery (543 faces embedded with the flip: ~40 s of CPU). Measured: top-1
    99.26 % (539 of 543), verification AUC 0.99561 over 14,980 same / 279,326 different
    pairs."""
    from facedeblur_jax.models.mobilefacenet_convert import main as convert

    out = tmp_path / "mobilefacenet.npz"
    assert convert(["--input", str(mobilefacenet_checkpoint), "--out", str(out)]) == 0
    variables = identity.load_identity_weights(out)
    rows = list(csv.DictReader(open(shared_faces_dir / "labels.csv", newline="")))
    rows = [r for r in rows if r["split"] == "test"]
    images = np.stack([load_image(shared_faces_dir / r["file"]) for r in rows])
    names = sorted({r["identity"] for r in rows})
    ids = np.asarray([names.index(r["identity"]) for r in rows])
    clear = identity.analyze(variables, images, {}, ids)["rows"]["clear"]
    assert clear["probes"] == len(rows) == 543
    assert (clear["same_pairs"], clear["different_pairs"]) == (14_980, 279_326)
    assert clear["top_1"] == pytest.approx(539 / 543, abs=0.004)  # within 2 faces
    assert clear["auc"] == pytest.approx(0.99561, abs=0.001)
