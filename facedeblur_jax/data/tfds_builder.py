"""A TFDS builder writing an image folder (+ parsing labels) as ArrayRecord, and its reader.

Writing and reading need ``tensorflow_datasets`` and ``array_record`` but not TensorFlow:
TFDS's ``Image`` feature encodes with TensorFlow, so images and label maps are stored as
PNG bytes in scalar ``Tensor(dtype=object)`` features and decoded with Pillow on read.

Features of each example::

    image_png:  bytes   RGB PNG (the decoded source image re-encoded losslessly, so gray /
                        RGBA / JPEG inputs are stored as the RGB the folder source yields)
    labels_png: bytes   single-channel PNG of the label map, b"" when there is none
    has_labels: bool
    identity:   int64   index into metadata "identities", -1 when unknown
    name:       str     the folder source's record name ("train/id00_0000")

Examples are stored in the folder source's (sorted) order: shuffling at write time is
disabled, so ``source[i]`` of the folder and of the ArrayRecord data agree.

Build: ``facedeblur build-tfds --root DIR --data-dir OUT [--label-root DIR]
[--splits train,test]`` (or :func:`build`); read: ``tfds.data_source("face_folder",
data_dir=OUT)`` or ``config.data.source = "tfds"``, ``config.data.root = OUT``.
"""

from __future__ import annotations

import io
import os
import pathlib
import tempfile
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from facedeblur_jax.core.imageio import ImageError
from facedeblur_jax.core.outputs import check_output_folder
from facedeblur_jax.data import folders, validate
from facedeblur_jax.data.labels import NUM_CLASSES

NAME = "face_folder"


def encode_png(array: np.ndarray) -> bytes:
    """``uint8[H, W, 3]`` or ``uint8[H, W]`` -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class FaceFolder(tfds.core.GeneratorBasedBuilder):
    """Face images of a folder (``root/<split>/...``) with optional parsing labels.

    Args:
      root: the image folder (only needed to build; reading needs only ``data_dir``).
      label_root: parsing labels mirroring ``root`` (``<split>/<stem>.png``), optional.
      splits: the sub-folders of ``root`` to write as splits.
      verify: the folder scan's check (``"header"`` | ``"decode"``).
      num_classes: label values must be ``< num_classes``.
      **kwargs: ``tfds.core.DatasetBuilder`` arguments (``data_dir``, …).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "PNG bytes in Tensor features; readable without TensorFlow."
    }

    def __init__(
        self,
        *,
        root: str | os.PathLike | None = None,
        label_root: str | os.PathLike | None = None,
        splits: Sequence[str] = ("train", "test"),
        verify: str = "header",
        num_classes: int = NUM_CLASSES,
        **kwargs,
    ):
        self._root = None if root is None else pathlib.Path(root)
        self._label_root = None if label_root is None else pathlib.Path(label_root)
        self._splits = tuple(splits)
        self._verify = verify
        self._num_classes = num_classes
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        identities = []
        if self._root is not None and (self._root / "labels.csv").is_file():
            identities = list(folders.identity_table(self._root)[0])
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.splitlines()[0],
            features=tfds.features.FeaturesDict(
                {
                    "image_png": tfds.features.Tensor(shape=(), dtype=np.object_),
                    "labels_png": tfds.features.Tensor(shape=(), dtype=np.object_),
                    "has_labels": tfds.features.Tensor(shape=(), dtype=np.bool_),
                    "identity": tfds.features.Tensor(shape=(), dtype=np.int64),
                    "name": tfds.features.Text(),
                }
            ),
            metadata=tfds.core.MetadataDict(identities=identities),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        if self._root is None:
            raise ValueError("FaceFolder needs root= to build the data set")
        return {split: self._generate_examples(split) for split in self._splits}

    def _generate_examples(self, split: str):
        source = folders.folder_source(
            self._root,
            split,
            label_root=self._label_root,
            verify=self._verify,
            num_classes=self._num_classes,
        )
        skipped = 0
        for i in range(len(source)):
            try:
                record = source[i]
            except ImageError as e:
                skipped += 1
                validate.LOG.warning("not writing unreadable record %d: %s", i, e)
                continue
            labels = record.get("labels")
            yield (
                record["name"],
                {
                    "image_png": encode_png(record["image"]),
                    "labels_png": b"" if labels is None else encode_png(labels),
                    "has_labels": labels is not None,
                    "identity": int(record.get("identity", -1)),
                    "name": record["name"],
                },
            )
        if skipped:
            validate.LOG.warning("split %r: %d unreadable record(s) not written", split, skipped)


def build(
    root: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    label_root: str | os.PathLike | None = None,
    splits: Sequence[str] = ("train", "test"),
    verify: str = "header",
    num_classes: int = NUM_CLASSES,
) -> pathlib.Path:
    """Writes ``root`` as the ``face_folder`` data set under ``data_dir``; returns its folder.

    An already prepared data set in ``data_dir`` is reused, not overwritten. A missing
    ``root`` or ``label_root``, or a ``data_dir`` that cannot be written, is an error before
    TFDS starts (which would leave an empty data set folder behind).
    """
    for what, folder in (("image folder", root), ("label folder", label_root)):
        if folder is not None and not pathlib.Path(folder).is_dir():
            raise FileNotFoundError(f"{what} {str(folder)!r} not found")
    check_output_folder(data_dir, flag="--data-dir")
    builder = FaceFolder(
        root=root,
        label_root=label_root,
        splits=splits,
        verify=verify,
        num_classes=num_classes,
        data_dir=str(data_dir),
    )
    with tempfile.TemporaryDirectory() as downloads:
        builder.download_and_prepare(download_dir=downloads)
    return pathlib.Path(builder.data_dir)


class TfdsSource:
    """A grain random-access source over a split of a prepared ``face_folder`` data set.

    Records are those of the folder source it was built from (see ``folders.py``). A
    stored image that fails to decode raises :class:`ImageError`; a stored label map that
    is unusable only drops ``labels`` (with a warning), like the folder source.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        name: str = NAME,
        split: str = "train",
        *,
        num_classes: int = NUM_CLASSES,
    ):
        self.data_dir = pathlib.Path(data_dir)
        self.name = name
        self.split = split
        self.num_classes = int(num_classes)
        folder = self.data_dir / name.split(":")[0].split("/")[0]
        if not folder.is_dir():
            raise FileNotFoundError(f"TFDS data set {str(folder)!r} not found (build it first)")
        self._ds = None
        ds = self._data_source()
        self.identities = tuple(ds.dataset_info.metadata.get("identities", ()))
        self._len = len(ds)

    def _data_source(self):
        if self._ds is None:
            self._ds = tfds.data_source(self.name, split=self.split, data_dir=str(self.data_dir))
        return self._ds

    def __getstate__(self) -> dict[str, Any]:  # grain workers reopen the files
        return {**self.__dict__, "_ds": None}

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"TfdsSource({str(self.data_dir)!r}, {self.name!r}, {self.split!r}, {self._len})"

    def identity_name(self, identity: int) -> str:
        return self.identities[identity]

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < self._len:
            raise IndexError(f"index {index} out of range for {self._len} records")
        raw = self._data_source()[index]
        name = raw["name"]
        name = name.decode("utf-8") if isinstance(name, bytes) else str(name)
        what = f"{self.name}/{self.split}[{index}] {name}"
        image = validate.decode_image_bytes(raw["image_png"], what)
        record: dict[str, Any] = {"image": image, "name": name}
        if int(raw["identity"]) >= 0:
            record["identity"] = int(raw["identity"])
        if bool(raw["has_labels"]):
            try:
                record["labels"] = validate.decode_label_bytes(
                    raw["labels_png"], image.shape[:2], self.num_classes, what
                )
            except ImageError as e:
                validate.LOG.warning("ignoring labels of %s: %s", what, e)
        return record
