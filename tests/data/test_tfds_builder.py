"""TFDS/ArrayRecord: build from a 20-image folder, read back identical without TensorFlow."""

import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from facedeblur_jax.data import pipeline, sources, tfds_builder
from tests.data.conftest import write_face_tree, write_png
from tests.data.test_pipeline import assert_labels_match, take, tiny_config


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 20-image tree (14 train, 6 test) with one gray image and one unlabelled image."""
    tmp = tmp_path_factory.mktemp("tfds")
    root, labels = tmp / "faces", tmp / "parsing"
    write_face_tree(root, labels, splits=(("train", 14), ("test", 6)))
    write_png(root / "train" / "f003.png", np.full((24, 20), 35, np.uint8))  # gray, same value
    (labels / "test" / "f016.png").unlink()
    tfds.disable_progress_bar()
    path = tfds_builder.build(root, tmp / "tfds", label_root=labels)
    return root, labels, tmp / "tfds", path


def test_files_are_array_record(built):
    *_, path = built
    names = sorted(p.name for p in path.iterdir())
    assert "face_folder-train.array_record-00000-of-00001" in names
    assert "face_folder-test.array_record-00000-of-00001" in names


@pytest.mark.parametrize(("split", "count"), [("train", 14), ("test", 6)])
def test_round_trip_is_identical_to_the_folder_source(built, split, count):
    root, labels, data_dir, _ = built
    folder = sources.folder_source(root, split, label_root=labels)
    stored = tfds_builder.TfdsSource(data_dir, split=split)
    assert len(stored) == len(folder) == count
    assert stored.identities == folder.identities == ("id00", "id01", "id02")
    for i in range(count):
        a, b = folder[i], stored[i]
        assert a.keys() == b.keys() and a["name"] == b["name"]
        np.testing.assert_array_equal(a["image"], b["image"])
        assert a.get("identity") == b.get("identity")
        if "labels" in a:
            np.testing.assert_array_equal(a["labels"], b["labels"])
    assert sum("labels" in stored[i] for i in range(count)) == count - (split == "test")
    assert "tensorflow" not in sys.modules


def test_plain_tfds_data_source_reads_it(built):
    *_, data_dir, _ = built
    ds = tfds.data_source("face_folder", split="train", data_dir=str(data_dir))
    raw = ds[3]
    assert set(raw) == {"image_png", "labels_png", "has_labels", "identity", "name"}
    assert raw["name"] == b"train/f003" and raw["identity"] == 0 and raw["has_labels"]
    assert raw["image_png"][:8] == b"\x89PNG\r\n\x1a\n"
    image = tfds_builder.validate.decode_image_bytes(raw["image_png"], "x")
    assert image.shape == (24, 20, 3) and (image == 35).all()  # gray stored as RGB
    assert "tensorflow" not in sys.modules


def test_pipeline_accepts_the_tfds_source(built):
    *_, data_dir, _ = built
    cfg = tiny_config(data_dir, source="tfds")
    with pipeline.make_train_iterator(cfg) as it:
        batches = take(it, 3)
    for batch in batches:
        assert batch["image"].shape == (8, 32, 32, 3)
        assert_labels_match(batch)
    eval_batches = list(pipeline.make_eval_batches(cfg, "test", batch_size=4))
    assert [n for b in eval_batches for n in b["name"]][:6] == [
        f"test/f{i:03d}" for i in range(14, 20)
    ]


def test_tfds_source_pickles_without_open_files(built):
    import pickle

    *_, data_dir, _ = built
    src = tfds_builder.TfdsSource(data_dir, split="test")
    src[0]
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone[5]["image"], src[5]["image"])


def test_missing_data_dir_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="face_folder"):
        tfds_builder.TfdsSource(tmp_path, split="train")
