"""evaluators.data: the faces an evaluation reads."""

from __future__ import annotations

import numpy as np
import pytest

from facedeblur_jax.config import load_config
from facedeblur_jax.evaluators import faceset as data
from tests.data.conftest import label_value, write_face_tree


def test_spread_indices():
    assert data.spread_indices(40, 3).tolist() == [0, 13, 26]
    assert data.spread_indices(5, None).tolist() == data.spread_indices(5, 9).tolist()


def test_load_faces_keeps_names_positions_and_labels():
    config = load_config("tiny")
    faces = data.load_faces(config, {}, "test", max_faces=4)
    assert faces.names == ["test/id00_0000", "test/id06_0000", "test/id12_0000", "test/id18_0000"]
    assert faces.index.tolist() == [0, 10, 20, 30] and faces.split_size == 40
    assert faces.images.shape == (4, 32, 32, 3) and faces.images.dtype == np.uint8
    # The bundled faces have parsing labels: a face map with several classes each.
    assert faces.has_labels.tolist() == [True] * 4 and faces.labels.shape == (4, 32, 32)
    assert all(len(np.unique(m)) >= 5 for m in faces.labels)
    with pytest.raises(ValueError, match="max_faces must be >= 1"):
        data.load_faces(config, {}, "test", max_faces=0)


def test_data_spec(tmp_path):
    assert data.data_spec("sample") == (
        {"source": "sample", "root": "", "label_root": ""},
        "test",
        "train",
    )
    (tmp_path / "test").mkdir()
    cfg, split, gallery = data.data_spec(str(tmp_path))
    assert cfg["source"] == "folder" and split == "test" and gallery is None
    with pytest.raises(FileNotFoundError, match="neither 'sample', 'faces' nor"):
        data.data_spec(str(tmp_path / "missing"))
    (tmp_path / "labels").mkdir()  # parsing labels mirroring the folder's tree
    cfg, _, _ = data.data_spec(str(tmp_path))
    assert cfg["label_root"] == str((tmp_path / "labels").resolve())


def test_load_faces_of_a_folder_reads_its_labels_and_identities(tmp_path):
    """A face folder with labels.csv and labels/ (the layout 'facedeblur data prepare
    celeba' writes): its test split with parsing labels and identities."""
    root = tmp_path / "faces"
    names = write_face_tree(root, root / "labels", splits=(("train", 3), ("test", 4)))
    overrides, split, gallery = data.data_spec(str(root))
    assert (split, gallery) == ("test", "train")
    faces = data.load_faces(load_config("tiny"), overrides, split)
    assert faces.names == [n for n in names if n.startswith("test/")]
    assert faces.has_labels.all() and faces.labels.shape == (4, 32, 32)
    for i, name in enumerate(faces.names):
        assert (faces.labels[i] == label_value(names.index(name))).all()
    assert (faces.identities >= 0).all()
