"""``facedeblur convert-mobilefacenet``: a PyTorch MobileFaceNet checkpoint -> the identity
network's weights file (``.npz``).

    facedeblur convert-mobilefacenet --input 068.ckpt --out weights/mobilefacenet.npz

The conversion itself is :mod:`facedeblur_jax.models.mobilefacenet_convert`.
"""

from __future__ import annotations

from facedeblur_jax.models import mobilefacenet_convert


def main(argv: list[str] | None = None) -> int:
    return mobilefacenet_convert.main(argv, prog="facedeblur convert-mobilefacenet")
