"""A trained model in use: loaded, run, exported, shipped.

- ``loading.py``: ``load_model`` from a training workdir, a checkpoint or a weights file
  (the one module that loads models); batched deblurring; ``export_weights``.
- ``weights_file.py``: the generator weights file's format (``.npz``, a JSON card).
- ``stablehlo.py``: the inference function as serialised StableHLO (``facedeblur export``).
- ``photos.py``: ``facedeblur deblur`` on photos (dlib alignment) or aligned crops.
"""
