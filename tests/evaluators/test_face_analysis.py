"""evaluators.face_analysis: the hook into facedeblur_jax.faces.recognition, through the command.

The analysis module is replaced by a recording stand-in: what is tested is what the hook
hands it (probes, variants, identities, gallery) and how its answer reaches the report.
"""

from __future__ import annotations

import sys
import types

import numpy as np

from facedeblur_jax import cli
from facedeblur_jax.evaluators import face_analysis, identity, report
from tests.data.conftest import write_face_tree
from tests.evaluators import strict_json


def _eval(ckpt, bank, out, *extra):
    argv = ["eval", "--checkpoint", str(ckpt), "--data", "sample", "--kernels", str(bank)]
    return cli.main([*argv, "--out", str(out), "--max-faces", "3", "--no-progress", *extra])


def test_face_analysis_hook(bank_path, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    calls = {}

    def analyze(clear, variants, identities, gallery):
        calls.update(clear=clear, variants=variants, identities=identities, gallery=gallery)
        return {
            "detection_rate": {"clear": {"rate": 1.0}, "blurred input": {"rate": 0.5}},
            "note": np.float32(0.25),
        }

    fake = types.ModuleType(face_analysis.FACE_ANALYSIS_MODULE)
    fake.analyze = analyze
    fake.to_markdown = lambda result: f"TABLE OF {sorted(result)}"
    monkeypatch.setitem(sys.modules, face_analysis.FACE_ANALYSIS_MODULE, fake)
    monkeypatch.setattr(face_analysis, "FACE_ANALYSIS_PACKAGES", ())  # the fake needs no dlib
    flags = ["--face-analysis", "--face-analysis-per-face", "2"]
    assert _eval(tiny_checkpoint, bank_path, tmp_path / "fa", *flags) == 0
    # Without --identity-weights the MobileFaceNet section is skipped, saying how to enable it.
    assert [identity.HOW_TO_ENABLE] == [
        line for line in capsys.readouterr().err.splitlines() if "identity" in line
    ]
    clear, variants = calls["clear"], calls["variants"]
    assert clear.dtype == np.uint8 and clear.shape == (6, 32, 32, 3)  # 3 faces × 2 kernels
    assert list(variants) == ["blurred input", "G_c", "full model"]
    assert all(v.dtype == np.uint8 and v.shape == clear.shape for v in variants.values())
    a, b, c = sorted(set(calls["identities"].tolist()))
    assert calls["identities"].tolist() == [a, a, b, b, c, c]
    # Gallery: the clear train faces of every identity of the test split (20 × 8).
    g_images, g_ids = calls["gallery"]
    assert g_images.shape == (160, 32, 32, 3) and len(set(g_ids.tolist())) == 20
    results = strict_json.loads((tmp_path / "fa" / "results.json").read_text())
    assert results["face_analysis"]["detection_rate"]["blurred input"]["rate"] == 0.5
    assert results["face_analysis"]["note"] == 0.25
    assert results["face_analysis_input"]["num_probes"] == 6
    md = (tmp_path / "fa" / "results.md").read_text()
    assert "## Face analysis" in md and "TABLE OF ['detection_rate', 'note']" in md
    assert "face_analysis_markdown" not in results and "identity" not in results
    # A module without to_markdown: tables for {row: {column: value}}, JSON for the rest.
    generic = "\n".join(report.face_analysis_markdown(analyze(None, None, None, None)))
    assert "| blurred input | 0.500 |" in generic and '"note": 0.25' in generic

    # A package the module needs at run time is missing: an error before any work.
    monkeypatch.setattr(face_analysis, "FACE_ANALYSIS_PACKAGES", ("no_such_package_4f2a",))
    assert _eval(tiny_checkpoint, bank_path, tmp_path / "nodlib", "--face-analysis") == 2
    assert "needs ['no_such_package_4f2a']: pip install" in capsys.readouterr().err
    assert not (tmp_path / "nodlib").exists()
    # Without the module: a clear error before any work, nothing written.
    monkeypatch.setitem(sys.modules, face_analysis.FACE_ANALYSIS_MODULE, None)
    assert _eval(tiny_checkpoint, bank_path, tmp_path / "none", "--face-analysis") == 2
    assert f"needs the module {face_analysis.FACE_ANALYSIS_MODULE}" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_identity_disjoint_splits_use_the_test_faces_as_gallery(
    bank_path, tiny_checkpoint, tmp_path, monkeypatch
):
    """A folder whose train split shares no identity with its test split (as 'facedeblur
    data prepare celeba' writes): no gallery from train, so the analysis gets ``None``
    (leave-one-out among the clear probes) and the report says why."""
    root = tmp_path / "faces"
    write_face_tree(root, root / "labels", splits=(("train", 4), ("test", 4)), identities=8)
    calls = {}

    def analyze(clear, variants, identities, gallery):
        calls.update(identities=identities, gallery=gallery)
        return {"detection_rate": {"clear": {"rate": 1.0}}}

    fake = types.ModuleType(face_analysis.FACE_ANALYSIS_MODULE)
    fake.analyze = analyze
    monkeypatch.setitem(sys.modules, face_analysis.FACE_ANALYSIS_MODULE, fake)
    monkeypatch.setattr(face_analysis, "FACE_ANALYSIS_PACKAGES", ())
    argv = ["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(root)]
    argv += ["--kernels", str(bank_path), "--out", str(tmp_path / "fa"), "--no-progress"]
    assert cli.main([*argv, "--face-analysis"]) == 0
    assert calls["gallery"] is None and len(set(calls["identities"].tolist())) == 4
    results = strict_json.loads((tmp_path / "fa" / "results.json").read_text())
    assert "holds none of the test split's identities" in results["face_analysis_input"]["gallery"]
