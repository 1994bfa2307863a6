"""Benchmarks and reference implementations: throughput (JAX vs PyTorch), degradation,
scaling, data loading, profiles, the PyTorch twin of the model and its training step.

Each benchmark runs as ``python -m facedeblur_jax.bench.<name> --help``.
"""
