"""Bad input: corrupt, truncated, gray, RGBA, 16-bit, non-image files, bad label maps.

Each case builds a real folder with the bad file beside good ones and checks the policy
of ``validate.py``: converted (gray, RGBA) or skipped with exactly one warning naming the
file, a summary count, and never a wrong label.
"""

import numpy as np
import pytest
from PIL import Image

from facedeblur_jax.core.imageio import ImageError
from facedeblur_jax.data import sources, validate
from tests.data.conftest import truncate, warnings_naming, write_face_tree, write_png


def noisy(hw=(24, 20), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


def summary(caplog) -> str:
    (line,) = [m for m in caplog.messages if m.startswith("folder ")]
    return line


@pytest.fixture
def tree(tmp_path):
    root, labels = tmp_path / "faces", tmp_path / "parsing"
    write_face_tree(root, labels, splits=(("train", 4),))
    return root, labels


def test_corrupt_file_is_skipped_with_one_warning_and_a_count(tree, data_caplog):
    root, labels = tree
    (root / "train" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    src = sources.folder_source(root, "train", label_root=labels)
    assert len(src) == 4 and all(e.name != "train/broken" for e in src.entries)
    assert len(warnings_naming(data_caplog, "broken.png")) == 1
    assert "skipped 1 bad file(s)" in summary(data_caplog)


def test_non_image_file_is_skipped_with_one_warning(tree, data_caplog):
    root, labels = tree
    (root / "train" / "notes.txt").write_text("not a face")
    (root / "train" / "fake.jpg").write_text("not a jpeg either")
    src = sources.folder_source(root, "train", label_root=labels)
    assert len(src) == 4
    assert len(warnings_naming(data_caplog, "notes.txt")) == 1
    assert len(warnings_naming(data_caplog, "fake.jpg")) == 1
    assert "skipped 2 bad file(s)" in summary(data_caplog)


def test_truncated_png_header_scan_keeps_it_and_decode_raises_naming_it(tree, data_caplog):
    root, labels = tree
    bad = truncate(write_png(root / "train" / "cut.png", noisy()))
    src = sources.folder_source(root, "train", label_root=labels, verify="header")
    index = [e.name for e in src.entries].index("train/cut")
    with pytest.raises(ImageError, match="cut.png"):
        src[index]
    assert src[index + 1]["image"].shape == (24, 20, 3)  # neighbours still fine
    assert bad.exists()


def test_truncated_png_is_skipped_by_a_decode_scan(tree, data_caplog):
    root, labels = tree
    truncate(write_png(root / "train" / "cut.png", noisy()))
    src = sources.folder_source(root, "train", label_root=labels, verify="decode")
    assert len(src) == 4
    (warning,) = warnings_naming(data_caplog, "cut.png")
    assert "truncated" in warning


def test_grayscale_and_rgba_are_converted_to_rgb(tree, data_caplog):
    root, _ = tree
    write_png(root / "train" / "gray.png", np.full((24, 20), 77, np.uint8))
    rgba = np.zeros((24, 20, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:12, :, 3] = 255  # top half opaque, bottom half transparent
    write_png(root / "train" / "rgba.png", rgba)
    src = sources.folder_source(root, "train")
    by_name = {e.name: i for i, e in enumerate(src.entries)}
    gray = src[by_name["train/gray"]]["image"]
    assert gray.shape == (24, 20, 3) and (gray == 77).all()
    image = src[by_name["train/rgba"]]["image"]
    assert image.shape == (24, 20, 3)
    assert (image[:12] == (200, 100, 50)).all() and (image[12:] == 0).all()  # on black
    assert "converting to RGB: 1 L, 1 RGBA" in summary(data_caplog)
    assert not warnings_naming(data_caplog, "gray.png")


def test_16_bit_image_is_skipped_not_clipped(tree, data_caplog):
    root, _ = tree
    Image.fromarray(np.full((24, 20), 4000, np.uint16)).save(root / "train" / "deep.png")
    assert validate.read_header(root / "train" / "deep.png").mode.startswith("I")
    src = sources.folder_source(root, "train")
    assert len(src) == 4
    assert "unsupported pixel mode" in warnings_naming(data_caplog, "deep.png")[0]


def test_label_map_of_wrong_size_drops_labels_keeps_image(tree, data_caplog):
    root, labels = tree
    write_png(labels / "train" / "f001.png", np.full((12, 10), 3, np.uint8))  # half size
    src = sources.folder_source(root, "train", label_root=labels)
    assert len(src) == 4 and src.num_labelled == 3
    rec = src[1]
    assert "labels" not in rec and rec["image"].shape == (24, 20, 3)
    (warning,) = warnings_naming(data_caplog, "f001.png")
    assert "12×10" in warning and "never resized" in warning
    assert "ignored 1 bad label map(s)" in summary(data_caplog)


def test_rgb_label_map_is_rejected(tree, data_caplog):
    root, labels = tree
    write_png(labels / "train" / "f002.png", np.full((24, 20, 3), 2, np.uint8))
    src = sources.folder_source(root, "train", label_root=labels)
    assert "labels" not in src[2]
    assert "single-channel" in warnings_naming(data_caplog, "f002.png")[0]


def test_out_of_range_labels_are_dropped_at_scan_or_decode(tree, data_caplog):
    root, labels = tree
    write_png(labels / "train" / "f003.png", np.full((24, 20), 37, np.uint8))
    lazy = sources.folder_source(root, "train", label_root=labels, verify="header")
    assert lazy.num_labelled == 4  # the header cannot see pixel values …
    rec = lazy[3]
    assert "labels" not in rec and rec["image"].shape == (24, 20, 3)  # … decoding drops them
    assert any("class 37" in m for m in warnings_naming(data_caplog, "f003.png"))
    eager = sources.folder_source(root, "train", label_root=labels, verify="decode")
    assert eager.num_labelled == 3


def test_truncated_label_map_drops_labels_at_decode(tree, data_caplog):
    root, labels = tree
    noise = np.random.default_rng(1).integers(0, 11, (24, 20), dtype=np.uint8)
    truncate(write_png(labels / "train" / "f000.png", noise))
    src = sources.folder_source(root, "train", label_root=labels)
    rec = src[0]
    assert "labels" not in rec and (rec["image"] == 5).all()
    assert warnings_naming(data_caplog, "f000.png")


def test_header_of_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        validate.read_header(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="verify must be one of"):
        validate.check_image(tmp_path / "missing.png", verify="full")


def test_decode_bytes_matches_decode_file(tmp_path):
    image = noisy(seed=3)
    path = write_png(tmp_path / "x.png", image)
    np.testing.assert_array_equal(validate.decode_image_bytes(path.read_bytes(), "x"), image)
    with pytest.raises(ImageError, match="'x'"):
        validate.decode_image_bytes(path.read_bytes()[:100], "x")


def test_file_removed_after_the_scan_is_an_image_error(tree):
    root, _ = tree
    src = sources.folder_source(root, "train")
    (root / "train" / "f002.png").unlink()
    with pytest.raises(ImageError, match="f002.png' no longer exists"):
        src[2]
