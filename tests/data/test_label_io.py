import numpy as np
import pytest
from PIL import Image

from facedeblur_jax.core.imageio import ImageError
from facedeblur_jax.data.label_io import load_labels, save_labels


def test_round_trip_is_exact_and_gray(tmp_path):
    labels = np.arange(11, dtype=np.uint8).repeat(12).reshape(11, 12)
    path = save_labels(tmp_path / "a" / "x.png", labels)
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (12, 11)
    np.testing.assert_array_equal(load_labels(path), labels)


def test_refuses_to_overwrite(tmp_path):
    path = save_labels(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        save_labels(path, np.ones((4, 4), np.uint8))
    assert load_labels(path).max() == 0
    save_labels(path, np.ones((4, 4), np.uint8), overwrite=True)
    assert load_labels(path).min() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary files left


def test_reads_palette_files_as_indices(tmp_path):
    im = Image.fromarray(np.array([[0, 3], [10, 7]], np.uint8), mode="P")
    im.putpalette([v for i in range(256) for v in (i * 20 % 256, 5, 9)])
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_labels(tmp_path / "p.png"), [[0, 3], [10, 7]])


def test_rejects_rgb_out_of_range_and_corrupt_files(tmp_path):
    Image.new("RGB", (3, 3)).save(tmp_path / "rgb.png")
    with pytest.raises(ImageError, match="mode 'RGB'"):
        load_labels(tmp_path / "rgb.png")
    Image.fromarray(np.full((3, 3), 11, np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match="class 11"):
        load_labels(tmp_path / "big.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="bad.png"):
        load_labels(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="uint8"):
        save_labels(tmp_path / "f.png", np.zeros((3, 3), np.float32))
