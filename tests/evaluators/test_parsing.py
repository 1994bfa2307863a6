"""evaluators.parsing: F-score counts on the device, the Table 3 evaluator on a real model."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.degrade import kernel_bank
from facedeblur_jax.evaluators import parsing, psnr_ssim
from facedeblur_jax.evaluators.faceset import load_faces
from facedeblur_jax.serving.loading import load_model


def test_counts_on_device_match_pooled_f_scores():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 5, size=(3, 8, 8))
    gt = rng.integers(0, 4, size=(3, 8, 8))  # class 4 never in the ground truth
    counts = np.asarray(parsing.class_counts(jnp.asarray(pred), jnp.asarray(gt), 6))
    f = parsing.f_from_counts(counts)
    np.testing.assert_allclose(f, parsing.f_scores(pred, gt, 6), equal_nan=True)
    assert np.isnan(f[5]) and f[4] == 0.0  # absent from both; predicted but never true
    assert counts[2].sum() == 3 * 64  # every ground-truth pixel counted once
    # Padded rows count nothing.
    valid = jnp.asarray([True, False, True])
    masked = np.asarray(parsing.class_counts(jnp.asarray(pred), jnp.asarray(gt), 6, valid))
    np.testing.assert_array_equal(masked, parsing.class_counts(pred[[0, 2]], gt[[0, 2]], 6))


def test_average_skips_background_and_missing_classes():
    f = np.full(11, np.nan)
    f[0], f[1], f[6] = 0.99, 0.5, 0.25
    assert parsing.average(f) == pytest.approx(0.375)
    assert np.isnan(parsing.average(np.full(11, np.nan)))


@pytest.fixture(scope="module")
def setup(tiny_checkpoint, bank_path):
    loaded = load_model(tiny_checkpoint)
    faces = load_faces(loaded.config, {}, "test", max_faces=3)
    return loaded, faces, kernel_bank.load_bank(bank_path)


def test_evaluator_matches_a_direct_computation(setup):
    """F-scores of P on clear / blurred / G_c output, recomputed outside the batched loop
    from the same blurred inputs as the PSNR protocol."""
    loaded, faces, bank = setup
    pairs = [(0, 1), (1, 4), (2, 5), (0, 3)]
    ev = parsing.Evaluator(loaded.model, faces, bank, pairs=pairs, batch_size=3)
    got = ev.evaluate(loaded.variables)
    assert got["num_images"] == 4 and got["num_faces"] == 3

    i, j = np.asarray(pairs).T
    sharp = jnp.asarray(faces.images[i], jnp.float32) / 255.0
    blurred = psnr_ssim.blur_with_bank(
        sharp, jnp.asarray(bank.kernels[j]), jnp.asarray(faces.index[i]), jnp.asarray(j)
    )
    maps = {
        "clear": loaded.model.apply(loaded.variables, sharp, method="parse"),
        "blurred": loaded.model.apply(loaded.variables, blurred, method="parse"),
        "deblurred": loaded.model.apply(loaded.variables, blurred, upto="parsing").parsing_logits,
    }
    gt = faces.labels[i]
    for name, logits in maps.items():
        want = parsing.f_scores(np.asarray(jnp.argmax(logits, -1)), gt, 11)
        np.testing.assert_allclose(got["f_scores"][name], want, equal_nan=True, atol=1e-12)
        assert got["average"][name] == pytest.approx(parsing.average(want))
    # P on the coarse output is the map G_f gets (the model's own prior).
    prior = loaded.model.apply(loaded.variables, blurred).prior
    np.testing.assert_array_equal(jnp.argmax(prior, -1), jnp.argmax(maps["deblurred"], -1))

    assert set(ev.run(loaded.variables)) == {"f_clear", "f_blurred", "f_deblurred"}
    summary = parsing.summary(got)
    assert summary["classes"][0] == "skin" and len(summary["classes"]) == 10
    assert summary["f_score"]["clear"]["nose"] == pytest.approx(float(got["f_scores"]["clear"][6]))


def test_default_pairs_and_faces_without_labels(setup):
    loaded, faces, bank = setup
    ev = parsing.Evaluator(loaded.model, faces, bank, per_face=2)
    assert ev.pairs == [(0, 0), (0, 1), (1, 2), (1, 3), (2, 4), (2, 5)]
    unlabelled = dataclasses.replace(faces, has_labels=np.asarray([False, True, False]))
    with pytest.raises(ValueError, match="faces with parsing labels"):
        parsing.Evaluator(loaded.model, unlabelled, bank, pairs=[(0, 0)])
    assert parsing.Evaluator(loaded.model, unlabelled, bank).pairs == [(1, 0)]
    unlabelled = dataclasses.replace(faces, has_labels=np.zeros(3, bool))
    with pytest.raises(ValueError, match="none of the faces has parsing labels"):
        parsing.Evaluator(loaded.model, unlabelled, bank)


def test_after_phase_evaluator_scores_the_configured_faces(setup):
    """The evaluator the training loop runs after a phase that trains P: the
    ``evals.parsing`` entry's split on ``train.parsing_eval_faces`` faces, one bank kernel
    each; its metric lines and table carry the same numbers as ``evaluate``."""
    from facedeblur_jax.config import load_config

    loaded, _, _ = setup
    config = load_config("tiny")
    ev = parsing.after_phase_evaluator(config)
    assert ev.split == "test" and len(ev.faces) == config.train.parsing_eval_faces == 4
    assert ev.faces.index.tolist() == [0, 10, 20, 30]  # spread over the 40 test faces
    assert len(ev.pairs) == 4 and len({j for _, j in ev.pairs}) == 4
    got = ev.evaluate(loaded.variables)
    lines = parsing.metric_lines(got)
    assert list(lines) == list(parsing.INPUTS)
    for name, line in lines.items():
        assert len(line) == 12 and line[f"parsing_f/{name}/num_faces"] == 4.0
        assert line[f"parsing_f/{name}/mean"] == got["average"][name]
        assert line[f"parsing_f/{name}/nose"] == got["f_scores"][name][6]
    rows = parsing.table(got).splitlines()
    assert rows[0].split()[-1] == "mean" and [r.split()[0] for r in rows[1:]] == list(
        parsing.INPUTS
    )
    assert float(rows[1].split()[-1]) == pytest.approx(got["average"]["clear"], abs=5e-4)
    # The entry's split is the one scored.
    train = parsing.after_phase_evaluator(load_config("tiny", {"evals.parsing.split": "train"}))
    assert train.split == "train" and train.faces.index.tolist() == [0, 40, 80, 120]
    with pytest.raises((ValueError, FileNotFoundError)):
        parsing.after_phase_evaluator(load_config("tiny", {"data.label_root": "/nonexistent"}))
