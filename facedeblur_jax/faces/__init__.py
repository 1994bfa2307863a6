"""Faces in photos with dlib (the ``faces`` extra: ``pip install -e ".[faces]"``).

- ``landmarks.py``: dlib itself and its models (HOG detector, 68-point shape predictor, face
  recognition network), 68 landmarks of an aligned crop with a fixed-box fallback.
- ``pseudo_labels.py``: pseudo face-parsing labels rasterised from the 68 landmarks.
- ``align.py``: 5-point similarity onto the aligned-crop template, crop, paste-back.
- ``celeba.py``: CelebA's photos aligned (the main face, or the annotated frame).
- ``recognition.py``: detection rate, identity distance and recognition (paper §5.2).

``facedeblur deblur`` (detect, align, deblur, paste back) is ``serving/photos.py``.

dlib is imported on first use (:func:`facedeblur_jax.faces.landmarks.dlib_module`), never by
importing ``facedeblur_jax`` or this package; a missing dlib is one error naming the extra.
The label set itself (:mod:`facedeblur_jax.data.labels`) needs no dlib.
"""
