"""serving.loading: what load_model takes and refuses."""

from __future__ import annotations

import pytest

from facedeblur_jax.serving.loading import load_model


def test_load_model_names_what_it_takes(tmp_path):
    other = tmp_path / "model.bin"
    other.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"or a weights file \(\.npz, facedeblur"):
        load_model(other)
    with pytest.raises(FileNotFoundError, match="generator weights file not found"):
        load_model(tmp_path / "model.npz")
