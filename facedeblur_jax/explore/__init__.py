"""Helpers of the notebooks in ``notebooks/`` (``notebook.py``): held-back faces, P's maps,
other priors fed to G_f, per-part errors, G_f's weights on its inputs."""
