"""Data layer (DESIGN.md §7): sources, the grain pipeline and the TFDS/ArrayRecord builder.

- ``sources.py``: random-access sources (folder, bundled sample, face set, Helen,
  CelebAMask-HQ, TFDS) and ``make_source(config.data, split)``.
- ``validate.py``: where and how bad files are caught.
- ``preprocess.py``: resize / centre-crop to ``image_size``.
- ``pipeline.py``: ``make_train_iterator`` (checkpointable) and ``make_eval_batches``.
- ``tfds_builder.py``: write an image folder as ArrayRecord, read it without TensorFlow.
"""
