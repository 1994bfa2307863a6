"""Fixture trees written by the tests themselves: real PNG files in the real layouts.

Face ``i`` is a solid colour ``10 * i + 5`` (all channels) and its label map holds the
single class ``i % 11``, so a batch row whose labels do not belong to its image is
detectable after any resize or crop.
"""

import csv
import logging
import pathlib

import numpy as np
import pytest
from PIL import Image

LOGGER = "facedeblur_jax.data"


def write_png(path: pathlib.Path, array: np.ndarray, mode: str | None = None) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(array))
    if mode is not None:
        image = image.convert(mode)
    image.save(path)
    return path


def face_value(i: int) -> int:
    return 10 * i + 5


def label_value(i: int) -> int:
    return i % 11


def write_face_tree(
    root: pathlib.Path,
    label_root: pathlib.Path | None,
    splits=(("train", 12), ("test", 4)),
    hw=(24, 20),
    identities: int = 3,
) -> list[str]:
    """``root/<split>/f<i>.png`` (+ labels, + ``labels.csv``); returns the record names."""
    names, rows, i = [], [], 0
    for split, count in splits:
        for _ in range(count):
            name = f"{split}/f{i:03d}"
            write_png(root / f"{name}.png", np.full((*hw, 3), face_value(i), np.uint8))
            if label_root is not None:
                write_png(label_root / f"{name}.png", np.full(hw, label_value(i), np.uint8))
            rows.append((split, f"{name}.png", f"id{i % identities:02d}"))
            names.append(name)
            i += 1
    with (root / "labels.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["split", "file", "identity"])
        writer.writerows(rows)
    return names


def truncate(path: pathlib.Path, keep: float = 0.5) -> pathlib.Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def warnings_naming(caplog, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name == LOGGER and text in r.getMessage()
    ]


@pytest.fixture
def face_tree(tmp_path):
    root, labels = tmp_path / "faces", tmp_path / "parsing"
    names = write_face_tree(root, labels)
    return root, labels, names


@pytest.fixture
def data_caplog(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    return caplog
