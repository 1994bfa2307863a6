"""Layer 0: what every other layer may use, depending on no other module of the package.

- ``atomic.py``: files written whole or not at all; ``imageio.py``: images in and out,
  ``grid``; ``asserts.py``: argument checks that name the argument; ``metrics.py``: PSNR /
  SSIM; ``batching.py``: fixed-shape batches; ``digest.py``: sha256; ``sample_data.py``:
  the faces bundled with the package; ``compile_cache.py``: XLA's persistent cache.
- ``compat.py``: every old file format, migrated or refused in one place.
"""
