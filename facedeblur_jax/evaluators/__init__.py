"""Evaluation: one interface, run by ``facedeblur eval`` and during training.

Modules, one concern each:

* ``common.py``: the :class:`Evaluator` interface (``run(variables) -> {metric: float}``),
  ``config.evals`` and the evaluations during training (:func:`from_config`);
* ``psnr_ssim.py``: PSNR / SSIM over test faces × a fixed kernel bank (Tables 9 and 10);
* ``parsing.py``: P's F-scores on clear, blurred and deblurred faces (Table 3);
* ``identity.py``: MobileFaceNet verification AUC, cosine distance and top-1;
* ``face_analysis.py``: dlib detection, identity and recognition (Table 11), through
  ``facedeblur_jax.faces.recognition``;
* ``faceset.py``: the test faces (:class:`~facedeblur_jax.evaluators.faceset.FaceSet`);
* ``report.py``: what ``facedeblur eval`` (``commands/eval.py``) writes: ``results.json``,
  ``results.md``, ``per_image.npz``, plots, ``grid.png``;
* ``compare.py``: ablation tables from several eval folders (``facedeblur compare``).
"""

from facedeblur_jax.evaluators.common import Evaluator, TrainingEvals, from_config

__all__ = ["Evaluator", "TrainingEvals", "from_config"]
