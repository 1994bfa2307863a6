"""P's F-scores on held-out faces: hand-made counts, the held-out set, the batched scorer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax import parsing_scores as ps
from facedeblur_jax.config import load_config
from facedeblur_jax.data.labels import NUM_CLASSES


def test_f_scores_hand_computed_pixels_pooled():
    gt = np.zeros((2, 2, 3), np.int32)
    gt[0, 0, :2] = 4  # 2 eye pixels in image 0
    gt[1, 1, :] = 6  # 3 nose pixels in image 1
    pred = gt.copy()
    pred[0, 0, 1] = 0  # one eye pixel missed
    pred[1, 0, 0] = 6  # one false nose pixel
    f = ps.parsing_fscores(pred, gt)
    assert f.shape == (NUM_CLASSES,)
    assert f[4] == pytest.approx(2 * 1 / (1 + 2))  # TP 1, |pred| 1, |gt| 2
    assert f[6] == pytest.approx(2 * 3 / (4 + 3))  # pooled over both images
    assert f[0] == pytest.approx(2 * 6 / (7 + 7))
    assert np.isnan(f[10])  # hair: in neither map
    # Table 3's mean: the classes other than background that occur, NaN skipped.
    assert ps.average(f) == pytest.approx((f[4] + f[6]) / 2)
    logits = jax.nn.one_hot(pred, NUM_CLASSES) * 5.0
    np.testing.assert_array_equal(ps.parsing_fscores(logits, gt), f)
    with pytest.raises(ValueError, match=r"must be \[B, H, W\]"):
        ps.parsing_fscores(pred[0], gt)


def test_class_counts_ignore_padding_rows():
    gt = jnp.asarray([[[1, 2]], [[1, 1]]])
    counts = np.asarray(ps.class_counts(gt, gt, 3, valid=jnp.asarray([True, False])))
    np.testing.assert_array_equal(counts, [[0, 1, 1], [0, 1, 1], [0, 1, 1]])


@pytest.fixture(scope="module")
def tiny():
    return load_config("tiny")


def test_held_out_faces_are_spread_over_the_test_split(tiny):
    faces = ps.load_held_out(tiny, 4)
    assert faces.images.shape == (4, 32, 32, 3) and faces.images.dtype == np.uint8
    assert faces.labels.shape == (4, 32, 32) and faces.index.tolist() == [0, 10, 20, 30]
    assert len(np.unique(faces.labels)) > 5  # real label maps
    assert ps.load_held_out(tiny, 100).index.tolist() == list(range(40))  # the whole split
    unlabelled = load_config("tiny", {"data.label_root": "/nonexistent-labels"})
    with pytest.raises((LookupError, FileNotFoundError, ValueError)):
        ps.load_held_out(unlabelled, 4)


def test_scorer_is_p_on_the_clear_and_the_deblurred_faces(tiny):
    """The batched, padded scorer (batch 3 over 4 faces) against a direct computation: P
    alone on the sharp faces, the model up to P on the fixed-seed blurred ones."""
    from facedeblur_jax.degrade.synthesize import synthesize
    from facedeblur_jax.models.factory import build_discriminator, build_model
    from facedeblur_jax.models.parsing_net import ParsingNet
    from facedeblur_jax.train_state import create_train_state

    model = build_model(tiny.model)
    state = create_train_state(tiny, model, build_discriminator(tiny.model), jax.random.key(1))
    faces = ps.load_held_out(tiny, 4)
    scores = ps.ParsingScores(tiny, faces, batch_size=3)(state.params, state.batch_stats)
    assert set(scores) == {"clear", "deblurred"}

    m = tiny.model
    net = ParsingNet(num_classes=m.num_classes, features=tuple(m.parsing_features))
    sharp = jnp.asarray(faces.images, jnp.float32) / 255
    p_vars = {"params": state.params["parsing"], "batch_stats": state.batch_stats["parsing"]}
    np.testing.assert_array_equal(
        scores["clear"], ps.parsing_fscores(net.apply(p_vars, sharp), faces.labels)
    )
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
        jax.random.key(ps.EVAL_SEED), jnp.asarray(faces.index)
    )
    degrade = ps._eval_degrade_config(tiny)
    blurred = synthesize(keys, sharp, None, degrade).blurred
    variables = {
        "params": {k: v for k, v in state.params.items() if k != "disc"},
        "batch_stats": state.batch_stats,
    }
    logits = model.apply(variables, blurred, upto="parsing").parsing_logits
    np.testing.assert_allclose(
        scores["deblurred"], ps.parsing_fscores(logits, faces.labels), atol=1e-6
    )
    lines = ps.metric_lines(scores, 4)
    assert len(lines["clear"]) == 12 and lines["clear"]["parsing_f/clear/num_faces"] == 4.0
    assert ps.table(scores).splitlines()[0].split()[-1] == "mean"
