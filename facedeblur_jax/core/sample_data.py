"""The sample faces bundled inside the package (``facedeblur_jax/assets/faces``).

200 aligned 112×112 crops of 20 identities (8 train + 2 test each) with ``labels.csv``
(``split,file,identity``), so the demo and tests run on a fresh machine. ``labels/`` holds a
pseudo parsing-label PNG per face (same relative path; 11 Helen classes, written by
``facedeblur make-labels`` from dlib landmarks — see
:mod:`facedeblur_jax.faces.pseudo_labels`), with that run's ``report.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "assets"
SAMPLE_FACES = ASSETS / "faces"
SAMPLE_LABELS = SAMPLE_FACES / "labels"


@dataclasses.dataclass(frozen=True)
class FaceFile:
    path: pathlib.Path
    identity: str
    split: str


def read_labels_csv(root: pathlib.Path, split: str | None = None) -> list[FaceFile]:
    """Rows of ``root/labels.csv`` (columns ``split,file,identity``), optionally one split."""
    labels = root / "labels.csv"
    if not labels.is_file():
        raise FileNotFoundError(f"label file {str(labels)!r} not found")
    with labels.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"split", "file", "identity"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{str(labels)!r} lacks column(s) {sorted(missing)}")
        rows = [
            FaceFile(root / row["file"], row["identity"], row["split"])
            for row in reader
            if split is None or row["split"] == split
        ]
    return sorted(rows, key=lambda r: str(r.path))


def sample_faces(split: str | None = None) -> list[FaceFile]:
    """The bundled faces of ``split`` (``"train"``, ``"test"`` or ``None`` for both)."""
    return read_labels_csv(SAMPLE_FACES, split)


def sample_label_path(face: FaceFile) -> pathlib.Path:
    """The shipped pseudo parsing-label PNG of a bundled face (``uint8`` classes 0..10)."""
    return SAMPLE_LABELS / face.path.relative_to(SAMPLE_FACES)
