"""The built-in experiment configs (``ml_collections.ConfigDict``), one file per recipe.

``paper.py`` is the reference: every key that exists is defined there; ``demo.py``,
``tiny.py``, ``gpu_short.py``, ``cpu_study.py`` and ``cvpr18.py`` (the authors' released
graph, stand-in widths) start from it and override values. ``--config NAME``
loads one of them; a config file of your own can start from them the same way
(``from facedeblur_jax.configs import paper``).
"""
