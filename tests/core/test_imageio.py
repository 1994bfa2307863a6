"""core.imageio: decoding to 8-bit RGB without silent damage, and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facedeblur_jax.core import imageio


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    rgb = imageio.load_image(tmp_path / "g16.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.round(values / 257).astype(np.uint8))
    assert rgb.min() == 0 and rgb.max() == 255 and 120 < rgb.mean() < 135  # not all white


def test_alpha_is_kept_apart_or_composited_on_black(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[...] = (200, 100, 50, 128)
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    colour, alpha = imageio.load_image_and_alpha(tmp_path / "rgba.png")
    np.testing.assert_array_equal(colour, rgba[..., :3])  # as stored, not darkened
    np.testing.assert_array_equal(alpha, rgba[..., 3])
    composited = imageio.load_image(tmp_path / "rgba.png")  # the training data's policy
    assert tuple(composited[1, 1]) == (100, 50, 25)
    Image.fromarray(rgba[..., :3]).save(tmp_path / "rgb.png")
    assert imageio.load_image_and_alpha(tmp_path / "rgb.png")[1] is None
    # Written back as RGBA.
    imageio.save_image(tmp_path / "out.png", np.dstack([colour, alpha]))
    assert Image.open(tmp_path / "out.png").mode == "RGBA"


def test_cmyk_and_palette_become_rgb(tmp_path):
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).convert("CMYK").save(tmp_path / "c.jpg")
    assert imageio.load_image(tmp_path / "c.jpg").shape == (8, 8, 3)
    Image.fromarray(np.full((8, 8), 77, np.uint8)).convert("P").save(tmp_path / "p.png")
    assert tuple(imageio.load_image(tmp_path / "p.png")[0, 0]) == (77, 77, 77)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("zero.png", b"", "the file is empty (0 bytes)"),
        ("text.jpg", b"a shopping list\n", "not an image file of a known format"),
        ("cut.png", None, "truncated or corrupt"),
        ("float.tif", "float", "32-bit float pixels (mode 'F')"),
    ],
)
def test_unusable_files_are_one_line_naming_them(tmp_path, name, content, words):
    path = tmp_path / name
    if content is None:
        Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 3).save(tmp_path / "whole.png")
        raw = (tmp_path / "whole.png").read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif content == "float":
        Image.fromarray(np.zeros((4, 4), np.float32)).save(path)
    else:
        path.write_bytes(content)
    with pytest.raises(imageio.ImageError) as info:
        imageio.load_image(path)
    message = str(info.value)
    assert repr(str(path)) in message and words in message and "\n" not in message
    with pytest.raises(FileNotFoundError):
        imageio.load_image(tmp_path / "absent.png")
