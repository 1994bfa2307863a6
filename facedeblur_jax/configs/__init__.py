"""Experiment configs (``ml_collections.ConfigDict``), one file per recipe.

``paper.py`` is the reference: every key that exists is defined there; ``demo.py`` and
``tiny.py`` start from it and override values. Installed, this folder is the subpackage
``facedeblur_jax.configs``.
"""
