"""CelebAMask-HQ on a tiny tree written here: per-part masks merged into the 11 classes."""

import numpy as np
import pytest
from PIL import Image

from facedeblur_jax.config import load_config
from facedeblur_jax.data import celebamask, sources
from tests.data.conftest import warnings_naming, write_png

M = 16  # mask size; images are 2·M as in the real data (1024 vs 512)


def box(y0, y1, x0, x1) -> np.ndarray:
    mask = np.zeros((M, M), np.uint8)
    mask[y0:y1, x0:x1] = 255
    return mask


PARTS = {
    "skin": box(2, 14, 2, 14),
    "nose": box(6, 10, 7, 9),
    "eye_g": box(4, 7, 3, 13),  # glasses over eyes and skin: not painted
    "l_eye": box(5, 6, 4, 6),
    "r_eye": box(5, 6, 10, 12),
    "l_brow": box(3, 4, 4, 6),
    "r_brow": box(3, 4, 10, 12),
    "mouth": box(11, 12, 6, 10),
    "u_lip": box(10, 11, 6, 10),
    "l_lip": box(12, 13, 6, 10),
    "hair": box(0, 3, 0, 16),
    "hat": box(0, 1, 0, 16),  # over hair: background
    "neck": box(14, 16, 5, 11),
    "l_ear": box(6, 9, 0, 2),
}


def expected_labels() -> np.ndarray:
    labels = np.zeros((M, M), np.uint8)
    for part, cls in celebamask.PAINT_ORDER:
        if part in PARTS and cls is not None:
            labels[PARTS[part] > 127] = cls
    return labels


def write_celebamask(root, count=5):
    rng = np.random.default_rng(0)
    for i in range(count):
        image = rng.integers(0, 256, (2 * M, 2 * M, 3), dtype=np.uint8)
        (root / celebamask.IMAGE_DIR).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / celebamask.IMAGE_DIR / f"{i}.jpg", quality=95)
        for part, mask in PARTS.items():
            folder = root / celebamask.MASK_DIR / str(i // celebamask.IMAGES_PER_MASK_FOLDER)
            # The released masks are 3-channel PNGs; write them that way.
            write_png(folder / f"{i:05d}_{part}.png", np.repeat(mask[..., None], 3, -1))
    mapping = ["idx orig_idx orig_file"]
    mapping += [f"{i} {100 + i} {101 + i:06d}.jpg" for i in range(count)]
    (root / celebamask.MAPPING_FILE).write_text("\n".join(mapping) + "\n")
    partition = [f"{101 + i:06d}.jpg {[0, 0, 1, 2, 0][i]}" for i in range(count)]
    (root / celebamask.PARTITION_FILE).write_text("\n".join(partition) + "\n")


@pytest.fixture
def cm_root(tmp_path):
    root = tmp_path / "CelebAMask-HQ"
    write_celebamask(root)
    return root


def test_masks_merge_in_the_datasets_paint_order(cm_root):
    src = celebamask.celebamask_source(cm_root, "all")
    assert [e.name for e in src.entries] == ["00000", "00001", "00002", "00003", "00004"]
    rec = src[0]
    expected = expected_labels()
    np.testing.assert_array_equal(rec["labels"], expected)
    assert expected[5, 4] == 4 and expected[4, 3] == 1  # eye over glasses; glasses → skin
    assert expected[0, 5] == 0 and expected[1, 5] == 10  # hat paints background over hair
    assert set(np.unique(expected)) == set(range(11))


def test_image_is_downsampled_to_the_mask_grid(cm_root):
    rec = celebamask.celebamask_source(cm_root, "all")[1]
    assert rec["image"].shape == (M, M, 3) and rec["labels"].shape == (M, M)
    full = np.asarray(Image.open(cm_root / celebamask.IMAGE_DIR / "1.jpg"), np.float32)
    pooled = full.reshape(M, 2, M, 2, 3).mean((1, 3))
    assert np.abs(rec["image"].astype(np.float32) - pooled).mean() < 25


def test_splits_follow_the_celeba_partition(cm_root):
    names = lambda s: [e.name for e in celebamask.celebamask_source(cm_root, s).entries]
    assert names("train") == ["00000", "00001", "00004"]
    assert names("val") == ["00002"] and names("test") == ["00003"]


def test_missing_partition_file_names_it(cm_root):
    (cm_root / celebamask.PARTITION_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="list_eval_partition.txt"):
        celebamask.celebamask_source(cm_root, "train")
    assert len(celebamask.celebamask_source(cm_root, "all")) == 5


def test_make_source_dispatches_to_celebamask(cm_root):
    cfg = load_config("tiny").data
    cfg.source, cfg.root = "celebamask", str(cm_root)
    assert len(sources.make_source(cfg, "train")) == 3


def test_non_integer_size_ratio_drops_labels(cm_root, data_caplog):
    image = np.zeros((2 * M + 3, 2 * M, 3), np.uint8)
    Image.fromarray(image).save(cm_root / celebamask.IMAGE_DIR / "2.jpg")
    for path in (cm_root / celebamask.MASK_DIR / "0").glob("00004_*.png"):
        path.unlink()
    src = celebamask.celebamask_source(cm_root, "all")
    assert "labels" not in src[2] and src[2]["image"].shape == (2 * M + 3, 2 * M, 3)
    assert "not an integer multiple" in warnings_naming(data_caplog, "2.jpg")[0]
    assert "labels" not in src[4]  # no masks at all
    assert src.num_labelled == 3
