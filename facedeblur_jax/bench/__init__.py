"""Benchmarks and reference implementations: throughput (JAX vs PyTorch), degradation,
scaling, data loading, profiles, the PyTorch twin of the model and its training step, and
``facedeblur deblur``'s two ways back for faces larger than the model (photo_resolution).

Each benchmark runs as ``python -m facedeblur_jax.bench.<name> --help``.
"""
