"""evaluators.psnr_ssim: degradation per pair, hand-made metric cases, aggregation, the
evaluator's scalars."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facedeblur_jax.degrade import blur as blur_lib
from facedeblur_jax.degrade import kernel_bank
from facedeblur_jax.evaluators import psnr_ssim
from facedeblur_jax.evaluators.faceset import load_faces
from facedeblur_jax.models import priors
from facedeblur_jax.serving.loading import load_model

SIZES = np.asarray([3, 3, 5, 5])


def test_blur_with_bank_depends_only_on_the_pair():
    rng = np.random.default_rng(0)
    sharp = jnp.asarray(rng.uniform(size=(4, 16, 16, 3)), jnp.float32)
    kernels = jnp.asarray(rng.dirichlet(np.ones(25), size=4).reshape(4, 5, 5), jnp.float32)
    faces, ks = jnp.asarray([0, 1, 2, 0]), jnp.asarray([0, 0, 1, 1])
    fn = jax.jit(psnr_ssim.blur_with_bank)
    batch = np.asarray(fn(sharp, kernels, faces, ks))
    for b in range(4):  # the same pair alone, in a batch of one
        one = fn(sharp[b : b + 1], kernels[b : b + 1], faces[b : b + 1], ks[b : b + 1])
        np.testing.assert_allclose(batch[b], np.asarray(one)[0], atol=1e-6)
    # Noise: std σ around the plain blur, and different for different pairs.
    plain = np.asarray(blur_lib.blur(sharp, kernels))
    noise = batch - plain
    inside = (plain > 0.05) & (plain < 0.95)  # away from the clip at 0 and 1
    assert abs(noise[inside].std() - 0.01) < 1e-3
    assert not np.allclose(noise[0], noise[3])
    silent = fn(sharp, kernels, faces, ks, noise_sigma=0.0)
    np.testing.assert_allclose(np.asarray(silent), np.clip(plain, 0, 1), atol=1e-7)


def _scores(pred, target) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in psnr_ssim.per_image_metrics(pred, target).items()}


def test_constant_offset_of_0_1_is_20_db():
    gt = jnp.full((8, 16, 16, 3), 0.5, jnp.float32)
    s = _scores(gt + 0.1, gt)  # MSE 0.01 -> 10 log10(1 / 0.01) = 20 dB
    per_image = {"offset": {"psnr": s["psnr"].reshape(2, 4), "ssim": s["ssim"].reshape(2, 4)}}
    table = psnr_ssim.aggregate(per_image, SIZES)
    for k in ("3", "5"):
        assert table["per_size"]["offset"][k]["psnr"] == pytest.approx(20.0, abs=1e-3)
        assert table["per_size"]["offset"][k]["count"] == 4
    o = table["overall"]["offset"]
    assert o["psnr_mean"] == pytest.approx(20.0, abs=1e-3)
    assert o["psnr_worst"] == pytest.approx(20.0, abs=1e-3)
    assert o["psnr_std"] == pytest.approx(0.0, abs=1e-3)
    assert o["num_images"] == 8 and o["psnr_inf"] == 0


def test_aggregate_by_hand():
    psnr = np.asarray([[10.0, 20.0, 30.0, 40.0], [20.0, 30.0, 40.0, 50.0]])
    ssim = psnr / 100.0
    table = psnr_ssim.aggregate({"m": {"psnr": psnr, "ssim": ssim}}, SIZES)
    assert table["sizes"] == [3, 5] and table["methods"] == ["m"]
    assert table["per_size"]["m"]["3"]["psnr"] == pytest.approx(20.0)  # (10+20+20+30)/4
    assert table["per_size"]["m"]["5"]["ssim"] == pytest.approx(0.40)  # (30+40+40+50)/400
    o = table["overall"]["m"]
    assert o["psnr_mean"] == pytest.approx(30.0) and o["psnr_worst"] == 10.0
    assert o["psnr_std"] == pytest.approx(math.sqrt(1200 / 8))  # population std
    assert o["ssim_worst"] == pytest.approx(0.10)
    with pytest.raises(ValueError, match="K = 4 kernels"):
        psnr_ssim.aggregate({"m": {"psnr": psnr[:, :3], "ssim": ssim[:, :3]}}, SIZES)


def test_aggregate_reports_an_extra_group_beside_the_sizes():
    """A released kernel as its own group: its own per-size entry, left out of Table 10's
    overall numbers (the drawn kernels, as the paper's 80)."""
    psnr = np.asarray([[10.0, 20.0, 30.0, 40.0, 99.0], [20.0, 30.0, 40.0, 50.0, 97.0]])
    sizes, groups = np.asarray([3, 3, 5, 5, 5]), ["3", "3", "5", "5", "released27"]
    table = psnr_ssim.aggregate({"m": {"psnr": psnr, "ssim": psnr / 100}}, sizes, groups)
    assert table["sizes"] == [3, 5] and table["extra_groups"] == ["released27"]
    assert table["per_size"]["m"]["5"]["psnr"] == pytest.approx(40.0)  # not the extra's 98
    assert table["per_size"]["m"]["released27"] == {"psnr": 98.0, "ssim": 0.98, "count": 2}
    assert table["overall"]["m"]["psnr_mean"] == pytest.approx(30.0)
    assert table["overall"]["m"]["num_images"] == 8
    with pytest.raises(ValueError, match="groups must be"):
        psnr_ssim.aggregate({"m": {"psnr": psnr, "ssim": psnr / 100}}, sizes, groups[:4])


def test_pairs():
    assert psnr_ssim.grid_pairs(10, 4, rows=4) == [(0, 0), (2, 1), (5, 2), (7, 3)]
    assert psnr_ssim.pairs_per_face(3, 4, 2) == [(0, 0), (0, 1), (1, 2), (1, 3), (2, 0), (2, 1)]
    assert psnr_ssim.pairs_per_face(2, 3, 9) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


def test_run_is_the_aggregate_of_evaluate_and_sees_the_variables(tiny_checkpoint, bank_path):
    """The training scalars are Table 10's means of the same per-image scores; other
    variables give other G_c / full-model numbers and the same blurred-input numbers."""
    loaded = load_model(tiny_checkpoint)
    faces = load_faces(loaded.config, {}, "test", max_faces=2)
    bank = kernel_bank.load_bank(bank_path)
    ev = psnr_ssim.Evaluator(loaded.model, faces, bank, batch_size=5)
    scalars = ev.run(loaded.variables)
    table = psnr_ssim.aggregate(ev.evaluate(loaded.variables)["per_image"], bank.sizes)
    full = table["overall"][psnr_ssim.FULL]
    assert scalars["psnr_full"] == pytest.approx(full["psnr_mean"], abs=1e-6)
    assert scalars["ssim_full_worst"] == pytest.approx(full["ssim_worst"], abs=1e-6)
    coarse = table["overall"][psnr_ssim.COARSE]["psnr_mean"]
    assert scalars["psnr_coarse"] == pytest.approx(coarse, abs=1e-6)
    assert set(scalars) == {
        f"{m}_{s}" for m in ("psnr", "ssim") for s in ("blurred", "coarse", "full")
    } | {"psnr_full_worst", "ssim_full_worst"}
    # Shifted weights (BN variances stay positive): the residual nets' outputs move far.
    shifted = jax.tree.map(lambda x: x + 0.1, loaded.variables)
    other = ev.run(shifted)
    assert other["psnr_blurred"] == scalars["psnr_blurred"]
    assert other["psnr_coarse"] != pytest.approx(scalars["psnr_coarse"], abs=1e-3)


def test_bad_evaluator_arguments_are_named(tiny_checkpoint, bank_path):
    loaded = load_model(tiny_checkpoint)
    faces = load_faces(loaded.config, {}, "test", max_faces=1)
    bank = kernel_bank.load_bank(bank_path)
    with pytest.raises(ValueError, match="batch_size"):
        psnr_ssim.Evaluator(loaded.model, faces, bank, batch_size=0)
    with pytest.raises(ValueError, match="noise sigma"):
        psnr_ssim.Evaluator(loaded.model, faces, bank, noise_sigma=1.5)
    big = kernel_bank.make_bank(sizes=(3,), per_size=1, canvas=65, num_steps=20)
    with pytest.raises(ValueError, match="canvas 65 is too large for 32 px"):
        psnr_ssim.Evaluator(loaded.model, faces, big)


def test_fed_priors_are_the_model_run_with_that_prior(tiny_checkpoint, bank_path):
    """``priors=``: each extra row is the full model on the same blurred input with G_f fed
    zeros, the face's one-hot label, or face (i + N // 2) mod N's label."""
    loaded = load_model(tiny_checkpoint)
    # The checkpoint's G_f is untrained: its zero last convs make it the identity, blind to
    # the prior. Perturbed weights make it depend on every input channel.
    params = dict(loaded.variables["params"])
    leaves, tree = jax.tree.flatten(params["fine_0"])
    keys = jax.random.split(jax.random.key(0), len(leaves))
    noise = [0.02 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    params["fine_0"] = jax.tree.unflatten(tree, [x + d for x, d in zip(leaves, noise, strict=True)])
    variables = {**loaded.variables, "params": params}
    faces = load_faces(loaded.config, {}, "test", max_faces=4)
    assert faces.has_labels.all()
    bank = kernel_bank.load_bank(bank_path)
    ev = psnr_ssim.Evaluator(loaded.model, faces, bank, batch_size=5, priors=priors.TEST)
    per_image = ev.evaluate(variables)["per_image"]
    names = [psnr_ssim.prior_method(p) for p in priors.TEST]
    builtin = (psnr_ssim.BLURRED, psnr_ssim.COARSE, psnr_ssim.FULL)
    assert ev.builtin == builtin and list(per_image) == [*builtin, *names]
    k = loaded.model.num_classes
    n = len(faces)
    for i, j in [(0, 0), (3, 5)]:
        sharp = jnp.asarray(faces.images[i : i + 1], jnp.float32) / 255
        blurred = psnr_ssim.blur_with_bank(
            sharp,
            jnp.asarray(bank.kernels[j : j + 1]),
            jnp.asarray([faces.index[i]]),
            jnp.asarray([j]),
        )
        fed = {
            "zeros": jnp.zeros((1, *sharp.shape[1:3], k)),
            "ground_truth": jax.nn.one_hot(faces.labels[i : i + 1], k),
            "shuffled": jax.nn.one_hot(faces.labels[(i + n // 2) % n][None], k),
        }
        for name, prior in fed.items():
            y = jnp.clip(loaded.model.apply(variables, blurred, prior=prior).y, 0, 1)
            want = float(psnr_ssim.per_image_metrics(y, sharp)["psnr"][0])
            got = float(per_image[psnr_ssim.prior_method(name)]["psnr"][i, j])
            assert got == pytest.approx(want, abs=1e-3), name
    full = per_image[psnr_ssim.FULL]["psnr"]
    assert not np.allclose(per_image[names[0]]["psnr"], full, atol=1e-4)


def test_priors_that_need_labels_name_the_face_without_one(tiny_checkpoint, bank_path):
    import dataclasses

    loaded = load_model(tiny_checkpoint)
    faces = load_faces(loaded.config, {}, "test", max_faces=2)
    bank = kernel_bank.load_bank(bank_path)
    with pytest.raises(ValueError, match="unknown prior"):
        psnr_ssim.Evaluator(loaded.model, faces, bank, priors=("random",))
    unlabelled = dataclasses.replace(faces, has_labels=np.asarray([True, False]))
    with pytest.raises(ValueError, match=f"1 have none \\(first: {faces.names[1]}\\)"):
        psnr_ssim.Evaluator(loaded.model, unlabelled, bank, priors=("shuffled",))
    psnr_ssim.Evaluator(loaded.model, unlabelled, bank, priors=("zeros",))  # needs no label
