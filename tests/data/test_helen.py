"""Helen (SmithCVPR2013 layout) on a tiny tree written here: argmax of the 11 soft maps."""

import numpy as np
import pytest
from PIL import Image

from facedeblur_jax.config import load_config
from facedeblur_jax.data import helen, sources
from tests.data.conftest import warnings_naming, write_png

HW = (24, 30)


def truth_map(seed: int) -> np.ndarray:
    """Vertical stripes of all 11 classes, shifted per image."""
    cols = (np.arange(HW[1]) // 3 + seed) % 11
    return np.broadcast_to(cols, HW).astype(np.uint8).copy()


def write_helen(root, names_by_file):
    rng = np.random.default_rng(0)
    for names in names_by_file.values():
        for seed, name in enumerate(names):
            image = rng.integers(0, 256, (*HW, 3), dtype=np.uint8)
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / "images" / f"{name}.jpg")
            truth = truth_map(seed)
            for k in range(helen.NUM_PARTS):
                # Soft maps: the true class is strongest, others weak noise.
                soft = rng.integers(0, 90, HW, dtype=np.uint8)
                soft[truth == k] = 200
                write_png(root / "labels" / name / f"{name}_lbl{k:02d}.png", soft)
    for fname, names in names_by_file.items():
        lines = [f"{i + 1:>4} , {n}" for i, n in enumerate(names)]
        (root / fname).write_text("\n".join(lines) + "\n\n")


@pytest.fixture
def helen_root(tmp_path):
    root = tmp_path / "SmithCVPR2013_dataset_resized"
    write_helen(
        root,
        {
            "exemplars.txt": ["100032540_1", "10405146_1", "1691766_1"],
            "tuning.txt": ["2237231829_1"],
            "testing.txt": ["2402254405_1", "2460149069_1"],
        },
    )
    return root


def test_train_split_labels_are_the_argmax_of_the_part_maps(helen_root):
    src = helen.helen_source(helen_root, "train")
    assert [e.name for e in src.entries] == ["100032540_1", "10405146_1", "1691766_1"]
    for seed in range(3):
        rec = src[seed]
        assert rec["image"].shape == (*HW, 3) and rec["labels"].dtype == np.uint8
        np.testing.assert_array_equal(rec["labels"], truth_map(seed))
        assert "identity" not in rec


def test_all_zero_pixels_are_background(helen_root):
    name = "2237231829_1"
    for k in range(helen.NUM_PARTS):
        path = helen_root / "labels" / name / f"{name}_lbl{k:02d}.png"
        soft = np.asarray(Image.open(path)).copy()
        soft[:4] = 0
        write_png(path, soft)
    labels = helen.helen_source(helen_root, "val")[0]["labels"]
    assert (labels[:4] == 0).all() and (labels[4:] == truth_map(0)[4:]).all()


def test_splits_and_all(helen_root):
    assert len(helen.helen_source(helen_root, "val")) == 1
    assert len(helen.helen_source(helen_root, "test")) == 2
    assert len(helen.helen_source(helen_root, "all")) == 6
    with pytest.raises(ValueError, match="splits"):
        helen.helen_source(helen_root, "validation")


def test_make_source_dispatches_to_helen(helen_root):
    cfg = load_config("tiny").data
    cfg.source, cfg.root = "helen", str(helen_root)
    src = sources.make_source(cfg, "test")
    assert len(src) == 2 and src[1]["labels"].shape == HW


def test_missing_split_file_names_it(helen_root):
    (helen_root / "testing.txt").unlink()
    with pytest.raises(FileNotFoundError, match="testing.txt"):
        helen.helen_source(helen_root, "test")


def test_malformed_split_file_names_the_line(helen_root):
    (helen_root / "tuning.txt").write_text("1 , a\n2 ; b\n")
    with pytest.raises(ValueError, match="tuning.txt' line 2"):
        helen.helen_source(helen_root, "val")


def test_bad_part_maps_drop_labels_and_missing_images_are_skipped(helen_root, data_caplog):
    (helen_root / "labels" / "10405146_1" / "10405146_1_lbl07.png").unlink()
    small = helen_root / "labels" / "1691766_1" / "1691766_1_lbl03.png"
    write_png(small, np.zeros((5, 5), np.uint8))
    (helen_root / "images" / "100032540_1.jpg").unlink()
    src = helen.helen_source(helen_root, "train")
    assert [e.name for e in src.entries] == ["10405146_1", "1691766_1"]
    assert src.num_labelled == 0
    assert all("labels" not in src[i] for i in range(2))
    assert len(warnings_naming(data_caplog, "100032540_1.jpg")) == 1
    assert "lbl07" in warnings_naming(data_caplog, "10405146_1.jpg")[0]
    assert "5×5" in warnings_naming(data_caplog, "1691766_1.jpg")[0]
