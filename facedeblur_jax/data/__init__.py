"""Data layer (docs/design.md §7): sources, the grain pipeline and the TFDS/ArrayRecord builder.

- ``sources.py``: ``make_source(config.data, split)``, the source a config names (folder,
  bundled sample, aligned face folder, Helen, CelebAMask-HQ, TFDS).
- ``records.py``: the record dict and ``ImageSource``; ``folders.py``, ``helen.py``,
  ``celebamask.py``: the dataset formats (each passes ``ImageSource`` its label reader).
- ``validate.py``: where and how bad files are caught.
- ``preprocess.py``: resize / centre-crop to ``image_size``.
- ``pipeline.py``: ``make_train_iterator`` (checkpointable) and ``make_eval_batches``.
- ``tfds_builder.py``: write an image folder as ArrayRecord, read it without TensorFlow.
"""
